"""The in-house hash agrees with GS1's reference package on generated events of all five types.

The reference (``epcis-event-hash-generator`` 1.9.3, offline through :mod:`tracer.epcis.reference`) is
the oracle: for every generated event, both pre-hash strings and hashes must be equal. Events carry
quantities, ILMD, sensor elements and reports, bizTransactions, sources/destinations, persistent
dispositions, nested user extensions, EPC URNs and Digital Link URIs, CBV names in bare, URI and URN
form, and timestamps with offsets and sub-millisecond digits.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracer.epcis import document_hashes, event_hash, prehash
from tracer.epcis.canonical import canonical_digital_link, gs1_check_digit_int, prehash_string
from tracer.epcis.vocabulary import CBV_BIZSTEPS, CBV_DISPOSITIONS, EPCIS_CONTEXT_URL, TRACER_NS

reference = pytest.importorskip("tracer.epcis.reference", reason="the reference package is a test extra")

EX_NS = "https://ns.example.com/epcis/"
CONTEXT: list[Any] = [EPCIS_CONTEXT_URL, {"ex": EX_NS, "tracer": TRACER_NS}]
FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "epcis-hash" / "examples"

# Sizes: enough variety to reach every branch of the canonicaliser, few enough to stay a few seconds.
ORACLE_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

digits = st.text(alphabet="0123456789", min_size=1, max_size=1)
company_prefix = st.integers(min_value=6, max_value=12).flatmap(
    lambda n: st.text(alphabet="0123456789", min_size=n, max_size=n)
)
# No "i"/"I": the package raises on "inf"/"infinity" (OverflowError), which we hash as written.
safe_text = st.text(alphabet="abcdefghjkmnopqrstuvwxyzABCXYZ0123456789-_.", min_size=1, max_size=12)
serial = st.text(alphabet="ABCxyz0123456789-_.'", min_size=1, max_size=20)


def _digits(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=n, max_size=n)


# Serials the Digital Link escapes (!()*+,:) or that carry percent-escapes: the in-house SGTIN fast path
# leaves those to the general conversion.
escaped_serial = st.lists(
    st.sampled_from(["A", "1", ".", "!", "(", ")", "*", "+", ",", ":", "%2F", "%25"]), min_size=1, max_size=8
).map("".join)


@st.composite
def sgtin_urn(draw: st.DrawFn) -> str:
    cp = draw(company_prefix)
    return f"urn:epc:id:sgtin:{cp}.{draw(_digits(13 - len(cp)))}.{draw(serial | escaped_serial)}"


@st.composite
def lgtin_urn(draw: st.DrawFn) -> str:
    cp = draw(company_prefix)
    return f"urn:epc:class:lgtin:{cp}.{draw(_digits(13 - len(cp)))}.{draw(serial)}"


@st.composite
def sscc_urn(draw: st.DrawFn) -> str:
    cp = draw(company_prefix)
    return f"urn:epc:id:sscc:{cp}.{draw(_digits(17 - len(cp)))}"


@st.composite
def sgln_urn(draw: st.DrawFn) -> str:
    cp = draw(company_prefix)
    ext = draw(st.sampled_from(["0", "1", "ZONE-A", "x.y"]))
    return f"urn:epc:id:sgln:{cp}.{draw(_digits(12 - len(cp)))}.{ext}"


@st.composite
def pgln_urn(draw: st.DrawFn) -> str:
    cp = draw(company_prefix)
    return f"urn:epc:id:pgln:{cp}.{draw(_digits(12 - len(cp)))}"


@st.composite
def gtin14(draw: st.DrawFn) -> str:
    body = draw(_digits(13))
    return body + str(gs1_check_digit_int(body))


host = st.sampled_from(["https://id.gs1.org", "https://example.com/dl", "http://id.tracer.dev"])


@st.composite
def dl_unit(draw: st.DrawFn) -> str:
    lot = draw(st.none() | serial)
    middle = f"/10/{lot}" if lot else ""
    return f"{draw(host)}/01/{draw(gtin14())}{middle}/21/{draw(serial)}{draw(st.sampled_from(['', '?linkType=all']))}"


@st.composite
def dl_lot(draw: st.DrawFn) -> str:
    return f"{draw(host)}/01/{draw(gtin14())}/10/{draw(serial)}"


@st.composite
def dl_parcel(draw: st.DrawFn) -> str:
    body = draw(_digits(17))
    return f"{draw(host)}/00/{body}{gs1_check_digit_int(body)}"


epc = st.one_of(
    sgtin_urn(), sscc_urn(), dl_unit(), dl_parcel(), st.just("urn:uuid:2a4c5f7e-0000-4000-8000-000000000001")
)
epc_class = st.one_of(lgtin_urn(), dl_lot(), st.builds(lambda g: f"https://id.gs1.org/01/{g}", gtin14()))
location = st.one_of(sgln_urn(), st.builds(lambda g: f"https://id.gs1.org/414/{g}", gtin14().map(lambda g: g[1:])))


@st.composite
def timestamp(draw: st.DrawFn) -> str:
    moment = draw(
        st.datetimes(
            min_value=__import__("datetime").datetime(2000, 1, 1), max_value=__import__("datetime").datetime(2099, 1, 1)
        )
    )
    fraction = draw(st.sampled_from(["", ".0", ".123", ".1415", ".0005", ".0015", ".999", ".12345678"]))
    zone = draw(st.sampled_from(["Z", "+00:00", "+08:00", "-05:30", "+14:00"]))
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + fraction + zone


def cbv(names: frozenset[str], uri: str, urn: str) -> st.SearchStrategy[str]:
    name = st.sampled_from(sorted(names))
    return st.one_of(name, name.map(lambda n: uri + n), name.map(lambda n: urn + n))


biz_step = cbv(CBV_BIZSTEPS, "https://ref.gs1.org/cbv/BizStep-", "urn:epcglobal:cbv:bizstep:")
disposition = cbv(CBV_DISPOSITIONS, "https://ref.gs1.org/cbv/Disp-", "urn:epcglobal:cbv:disp:")
number = st.one_of(
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda f: round(f, 4)),
)
scalar = st.one_of(
    safe_text,
    number,
    st.booleans(),
    st.sampled_from(["1.0", "007", "+3", "receiving", "in_progress", "Temperature", "1e3", " padded "]),
    epc,
)
ext_key = st.builds(
    lambda p, k: f"{p}:{k}",
    st.sampled_from(["ex", "tracer"]),
    st.sampled_from(["a", "b", "zone", "list", "grade", "temperatureLog"]),
)
extension_value = st.recursive(
    scalar,
    lambda inner: st.one_of(
        st.dictionaries(ext_key, inner, min_size=1, max_size=3), st.lists(inner, min_size=1, max_size=3)
    ),
    max_leaves=6,
)
extensions = st.dictionaries(ext_key, extension_value, max_size=3)


@st.composite
def quantity_element(draw: st.DrawFn) -> dict[str, Any]:
    element: dict[str, Any] = {"epcClass": draw(epc_class)}
    if draw(st.booleans()):
        element["quantity"] = draw(st.one_of(st.integers(0, 10_000), st.sampled_from([1.0, 2.5, 0.3434, 10.50])))
        if draw(st.booleans()):
            element["uom"] = draw(st.sampled_from(["KGM", "LTR", "EA"]))
    return element


quantities = st.lists(quantity_element(), min_size=1, max_size=3)
btt = st.one_of(
    st.sampled_from(["po", "inv", "desadv", "urn:epcglobal:cbv:btt:po", "https://ref.gs1.org/cbv/BTT-bol"]),
    st.sampled_from(["https://ns.tracer.dev/btt/order", "https://ns.tracer.dev/btt/waybill"]),
)
sdt = st.sampled_from(["owning_party", "possessing_party", "location", "https://ref.gs1.org/cbv/SDT-location"])


@st.composite
def typed_entry(
    draw: st.DrawFn, field: str, types: st.SearchStrategy[str], ids: st.SearchStrategy[str]
) -> dict[str, Any]:
    pairs = [("type", draw(types)), (field, draw(ids))]
    if draw(st.booleans()):
        pairs.reverse()  # the package keeps these objects' key order
    return dict(pairs)


@st.composite
def sensor_element(draw: st.DrawFn) -> dict[str, Any]:
    element: dict[str, Any] = {}
    if draw(st.booleans()):
        metadata: dict[str, Any] = {"time": draw(timestamp())}
        if draw(st.booleans()):
            metadata["deviceID"] = "urn:epc:id:giai:4000001.111"
        if draw(st.booleans()):
            metadata["startTime"], metadata["endTime"] = draw(timestamp()), draw(timestamp())
        metadata.update(draw(st.dictionaries(ext_key, scalar, max_size=2)))
        element["sensorMetadata"] = metadata
    reports = []
    for _ in range(draw(st.integers(1, 3))):
        report: dict[str, Any] = {
            "type": draw(st.sampled_from(["Temperature", "RelativeHumidity", "gs1:Mass", "https://gs1.org/voc/Speed"]))
        }
        if draw(st.booleans()):
            report["value"] = draw(number)
            report["uom"] = draw(st.sampled_from(["CEL", "A93", "KGM"]))
        if draw(st.booleans()):
            report["time"] = draw(timestamp())
        if draw(st.booleans()):
            report[draw(st.sampled_from(["minValue", "maxValue", "meanValue", "sDev"]))] = draw(number)
        if draw(st.booleans()):
            report[draw(st.sampled_from(["stringValue", "booleanValue", "exception", "component"]))] = draw(
                st.sampled_from(["ALARM_CONDITION", "x", "latitude", True, "abc"])
            )
        report.update(draw(st.dictionaries(ext_key, scalar, max_size=2)))
        reports.append(report)
    element["sensorReport"] = reports
    element.update(draw(st.dictionaries(ext_key, scalar, max_size=1)))
    return element


def maybe(draw: st.DrawFn, event: dict[str, Any], key: str, strategy: st.SearchStrategy[Any]) -> None:
    if draw(st.booleans()):
        event[key] = draw(strategy)


@st.composite
def epcis_event(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(
        st.sampled_from(
            ["ObjectEvent", "AggregationEvent", "TransactionEvent", "TransformationEvent", "AssociationEvent"]
        )
    )
    event: dict[str, Any] = {"type": kind, "eventTime": draw(timestamp())}
    event["eventTimeZoneOffset"] = draw(st.sampled_from(["+00:00", "+08:00", "-05:30"]))
    epcs = st.lists(epc, min_size=1, max_size=4)
    if kind in ("ObjectEvent", "TransactionEvent"):
        maybe(draw, event, "epcList", epcs)
        maybe(draw, event, "quantityList", quantities)
    if kind in ("AggregationEvent", "AssociationEvent", "TransactionEvent"):
        maybe(draw, event, "parentID", epc)
    if kind in ("AggregationEvent", "AssociationEvent"):
        maybe(draw, event, "childEPCs", epcs)
        maybe(draw, event, "childQuantityList", quantities)
    if kind == "TransformationEvent":
        maybe(draw, event, "inputEPCList", epcs)
        maybe(draw, event, "inputQuantityList", quantities)
        maybe(draw, event, "outputEPCList", epcs)
        maybe(draw, event, "outputQuantityList", quantities)
        maybe(draw, event, "transformationID", st.just("urn:uuid:7a2b0e1c-0000-4000-8000-00000000000a"))
    else:
        event["action"] = draw(st.sampled_from(["ADD", "OBSERVE", "DELETE"]))
    maybe(draw, event, "bizStep", biz_step)
    maybe(draw, event, "disposition", disposition)
    maybe(
        draw,
        event,
        "persistentDisposition",
        st.fixed_dictionaries(
            {"set": st.lists(disposition, min_size=1, max_size=2)},
            optional={"unset": st.lists(disposition, min_size=1, max_size=2)},
        ),
    )
    if draw(st.booleans()):
        event["readPoint"] = {"id": draw(location), **draw(st.dictionaries(ext_key, scalar, max_size=1))}
    if draw(st.booleans()):
        event["bizLocation"] = {"id": draw(location)}
    maybe(
        draw,
        event,
        "bizTransactionList",
        st.lists(
            typed_entry("bizTransaction", btt, st.just("urn:epcglobal:cbv:bt:0614141000005:PO-1")),
            min_size=1,
            max_size=2,
        ),
    )
    maybe(draw, event, "sourceList", st.lists(typed_entry("source", sdt, pgln_urn()), min_size=1, max_size=2))
    maybe(draw, event, "destinationList", st.lists(typed_entry("destination", sdt, location), min_size=1, max_size=2))
    maybe(draw, event, "sensorElementList", st.lists(sensor_element(), min_size=1, max_size=2))
    if kind in ("ObjectEvent", "TransformationEvent"):
        maybe(draw, event, "ilmd", st.dictionaries(ext_key, extension_value, min_size=1, max_size=3))
    event.update(draw(extensions))
    if draw(st.integers(0, 9)) == 0:
        event["errorDeclaration"] = {"declarationTime": draw(timestamp()), "reason": "incorrect_data"}
    if draw(st.booleans()):
        event["eventID"] = "urn:uuid:0e4c2b1a-0000-4000-8000-0000000000ff"
    items = list(event.items())
    order = draw(st.permutations(range(len(items))))
    return dict(items[i] for i in order)  # key order must not matter


@ORACLE_SETTINGS
@given(epcis_event())
def test_in_house_hash_equals_the_reference_package(event: dict[str, Any]) -> None:
    expected = reference.reference_prehash(event, context=CONTEXT)
    assert prehash(event, context=CONTEXT) == expected
    # the tree that handles every shape, not only the direct path's usual ones
    assert prehash_string(event, CONTEXT, direct=False) == expected
    assert event_hash(event, context=CONTEXT) == reference.reference_event_hash(event, context=CONTEXT)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(sgtin_urn(), lgtin_urn(), sscc_urn(), sgln_urn(), pgln_urn(), dl_unit(), dl_lot(), dl_parcel(), safe_text)
)
def test_digital_link_normalisation_equals_the_reference(value: str) -> None:
    from epcis_event_hash_generator.dl_normaliser import normaliser

    assert canonical_digital_link(value) == normaliser(value)


@pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"GS1 hash vectors not found: {FIXTURES} is absent")
def test_reference_wrapper_still_reads_every_vector() -> None:
    for path in sorted(FIXTURES.glob("*.jsonld")):
        if path.with_suffix(".hashes").exists():
            document = json.loads(path.read_text())
            assert reference.reference_document_hashes(document) == document_hashes(document), path.name


ORACLE_IMPORT = re.compile(
    r"^\s*(?:from|import)\s+(?:epcis_event_hash_generator|pyld|tracer\.epcis\.reference)\b", re.M
)


def test_production_code_never_imports_the_reference_package() -> None:
    root = Path(__file__).resolve().parents[2]
    offenders = [
        str(path.relative_to(root))
        for folder in ("tracer", "api")
        for path in (root / folder).rglob("*.py")
        if path.name != "reference.py" and ORACLE_IMPORT.search(path.read_text())
    ]
    assert offenders == []
    project = (root / "pyproject.toml").read_text()
    runtime = project.split("[project.optional-dependencies]")[0]
    assert "epcis-event-hash-generator" not in runtime
