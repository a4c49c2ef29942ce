"""GS1 Digital Link: build and parse with 22/10/21, SSCC, GLN with 254; EPC URNs both ways (golden + properties)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracer.epcis.canonical import canonical_digital_link
from tracer.exceptions import InvalidInput
from tracer.identifiers import (
    DigitalLink,
    digital_link_to_epc_urn,
    epc_urn_to_digital_link,
    gs1_check_digit,
    parse_digital_link,
)

CSET82 = "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"

# EPC Tag Data Standard examples and their Digital Links (check digits computed by hand).
GOLDEN_URNS = [
    ("urn:epc:id:sgtin:0614141.812345.6789", "https://id.gs1.org/01/80614141123458/21/6789", 7),
    ("urn:epc:class:lgtin:4012345.012345.998877", "https://id.gs1.org/01/04012345123456/10/998877", 7),
    ("urn:epc:id:sscc:0614141.1234567890", "https://id.gs1.org/00/106141412345678908", 7),
    ("urn:epc:id:sgln:0614141.12345.400", "https://id.gs1.org/414/0614141123452/254/400", 7),
    ("urn:epc:id:sgln:0614141.00001.0", "https://id.gs1.org/414/0614141000012", 7),
    ("urn:epc:id:sgtin:061414112.3456.A%2FB", "https://id.gs1.org/01/30614141124566/21/A%2FB", 9),
]


@pytest.mark.parametrize(("urn", "link", "prefix_length"), GOLDEN_URNS)
def test_epc_urns_convert_to_digital_link_and_back(urn: str, link: str, prefix_length: int) -> None:
    assert epc_urn_to_digital_link(urn) == link
    assert digital_link_to_epc_urn(link, company_prefix_length=prefix_length) == urn


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (
            "https://example.com/01/9506000134376/22/2A/10/ABC%2F1/21/XYZ?linkType=all",
            DigitalLink(gtin="09506000134376", cpv="2A", lot="ABC/1", serial="XYZ"),
        ),
        ("https://id.gs1.org/00/106141412345678908", DigitalLink(sscc="106141412345678908")),
        ("/414/0614141123452/254/400", DigitalLink(gln="0614141123452", gln_extension="400")),
        ("https://resolver.example/tracer/01/09421902960017/10/L1", DigitalLink(gtin="09421902960017", lot="L1")),
    ],
)
def test_parse_digital_link_golden(uri: str, expected: DigitalLink) -> None:
    assert parse_digital_link(uri) == expected


def test_build_uses_the_standard_qualifier_order() -> None:
    link = DigitalLink(gtin="9506000134376", serial="S/1", lot="L&1", cpv="2A")
    assert link.uri == "https://id.gs1.org/01/09506000134376/22/2A/10/L%261/21/S%2F1"


@pytest.mark.parametrize(
    ("uri", "pointer", "message"),
    [
        ("https://id.gs1.org/01/09506000134377/21/X", "/01", "check digit should be 6"),
        ("https://id.gs1.org/00/106141412345678909", "/00", "check digit should be 8"),
        ("https://id.gs1.org/414/0614141123453", "/414", "check digit should be 2"),
        ("https://id.gs1.org/01/09506000134376/21/X/10/L", "/10", "out of order"),
        ("https://id.gs1.org/01/09506000134376/254/X", "/254", "not a qualifier"),
        ("https://id.gs1.org/01/09506000134376/21/" + "x" * 21, "/21", "at most 20"),
        ("https://id.gs1.org/00/106141412345678908/21/X", "/21", "not a qualifier"),
        ("https://id.gs1.org/01/0950600013437/21/X", "/01", "check digit should be 9"),
    ],
)
def test_malformed_links_name_the_wrong_part(uri: str, pointer: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as info:
        parse_digital_link(uri)
    assert info.value.pointer == pointer


@pytest.mark.parametrize(
    "urn",
    [
        "urn:epc:id:sgtin:0614141.11234.400",
        "urn:epc:id:sscc:0614141.123",
        "urn:epc:class:sgtin:0614141.112345.4",
        "urn:epc:id:lgtin:0614141.112345.4",
        "urn:epc:id:sgtin:06141.11234567.400",
        "urn:epc:id:grai:0614141.12345.1",
    ],
)
def test_bad_epc_urns_are_invalid_input(urn: str) -> None:
    with pytest.raises(InvalidInput):
        epc_urn_to_digital_link(urn)


def test_urn_back_needs_a_serial_or_lot() -> None:
    with pytest.raises(InvalidInput, match="serial"):
        digital_link_to_epc_urn("https://id.gs1.org/01/09506000134376", company_prefix_length=7)
    with pytest.raises(InvalidInput, match="company_prefix_length"):
        digital_link_to_epc_urn("https://id.gs1.org/00/106141412345678908", company_prefix_length=13)


def _with_check(body: str) -> str:
    return body + str(gs1_check_digit(body))


digits = st.text(alphabet="0123456789")
values = st.text(alphabet=CSET82, min_size=1, max_size=20)


@st.composite
def links(draw: st.DrawFn) -> DigitalLink:
    kind = draw(st.sampled_from(["gtin", "sscc", "gln"]))
    if kind == "sscc":
        return DigitalLink(sscc=_with_check(draw(st.text(alphabet="0123456789", min_size=17, max_size=17))))
    if kind == "gln":
        return DigitalLink(
            gln=_with_check(draw(st.text(alphabet="0123456789", min_size=12, max_size=12))),
            gln_extension=draw(st.none() | values),
        )
    gtin = _with_check(draw(st.text(alphabet="0123456789", min_size=13, max_size=13)))
    if set(gtin) == {"0"}:
        gtin = "09506000134376"
    return DigitalLink(
        gtin=gtin, cpv=draw(st.none() | values), lot=draw(st.none() | values), serial=draw(st.none() | values)
    )


@settings(max_examples=200)
@given(links())
def test_build_then_parse_roundtrips(link: DigitalLink) -> None:
    assert parse_digital_link(link.uri) == link
    assert parse_digital_link(link.path) == link


@settings(max_examples=200)
@given(links(), st.integers(min_value=6, max_value=12))
def test_urn_roundtrips_and_agrees_with_the_hash_normaliser(link: DigitalLink, prefix_length: int) -> None:
    if link.gtin is not None and link.serial is None and link.lot is None:
        return
    canonical = DigitalLink(
        gtin=link.gtin,
        serial=link.serial,
        lot=None if link.serial else link.lot,
        sscc=link.sscc,
        gln=link.gln,
        gln_extension=None if link.gln_extension == "0" else link.gln_extension,
    )
    urn = digital_link_to_epc_urn(link, company_prefix_length=prefix_length)
    assert epc_urn_to_digital_link(urn) == canonical.uri
    assert digital_link_to_epc_urn(canonical.uri, company_prefix_length=prefix_length) == urn
    # The canonical event hash reads the URN as the same identifier where its characters allow: GS1's
    # reference normaliser leaves some reserved characters of a serial or lot unescaped (";" for one).
    variable = canonical.serial or canonical.lot or canonical.gln_extension or ""
    if all(ch.isalnum() or ch in "-_." for ch in variable):
        assert canonical_digital_link(urn) == canonical.uri
