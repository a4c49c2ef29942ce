"""The journey's EPCIS event builders: standard shape, CBV vocabulary, no personal data, stable hashes."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracer.commitments import commit, document_commitment, new_salt
from tracer.epcis import (
    OrderLine,
    customs_release_event,
    declaration_event,
    delivery_event,
    entry_event,
    event_hash,
    inspection_event,
    order_event,
    payment_event,
    recall_event,
    split_event,
    storage_event,
    waybill_event,
)
from tracer.epcis.vocabulary import EVENT_TYPES, TRACER_BTT, is_cbv_bizstep, is_cbv_disposition
from tracer.exceptions import InvalidInput

T0 = datetime(2024, 5, 1, 8, 0, 0, 123456, tzinfo=UTC)
GTIN = "9421902960017"
LOT = "NZ24/001"
SSCC = "106141412345678908"
ZONE = "https://id.gs1.org/414/4012345000245/254/BONDED-A"
C1 = "0x" + "1" * 64
C2 = "0x" + "2" * 64

Builder = Callable[..., dict[str, Any]]

# builder, its arguments, expected (type, action, bizStep, disposition), the quantity argument if any
CASES: dict[str, tuple[Builder, dict[str, Any], tuple[str, str, str, str], str | None]] = {
    "declaration": (
        declaration_event,
        dict(
            gtin=GTIN, lot=LOT, quantity=1000, declaration_number="531620241000001", hs_code="1901101000",
            origin_country="NZ", manufacturer="Dairy Co Ltd", product_name="Infant formula stage 1",
            expiry_date=date(2026, 3, 31),
        ),
        ("TransactionEvent", "ADD", "other", "in_transit"),
        "quantity",
    ),
    "entry": (
        entry_event,
        dict(gtin=GTIN, lot=LOT, counted_quantity=998, declared_quantity=1000, biz_location=ZONE),
        ("ObjectEvent", "OBSERVE", "receiving", "sellable_not_accessible"),
        "counted_quantity",
    ),
    "inspection": (
        inspection_event,
        dict(gtin=GTIN, lot=LOT, result="conformant"),
        ("ObjectEvent", "OBSERVE", "inspecting", "conformant"),
        None,
    ),
    "storage": (
        storage_event,
        dict(gtin=GTIN, lot=LOT, storage_location=ZONE, quantity=998),
        ("ObjectEvent", "OBSERVE", "storing", "sellable_not_accessible"),
        "quantity",
    ),
    "split": (
        split_event,
        dict(gtin=GTIN, lot=LOT, sscc=SSCC, quantity=2),
        ("AggregationEvent", "ADD", "packing", "container_closed"),
        "quantity",
    ),
    "order": (
        order_event,
        dict(
            sscc=SSCC, order_number="ORD-1", total="123.40", currency="CNY",
            items=[OrderLine(gtin=GTIN, quantity=2, unit_price=Decimal("61.70"))],
            consignee_commitment=C1, document_commitment=C2,
        ),
        ("TransactionEvent", "ADD", "other", "reserved"),
        None,
    ),
    "payment": (
        payment_event,
        dict(
            sscc=SSCC, payment_number="PAY-1", order_number="ORD-1", amount="123.40", currency="CNY",
            payer_commitment=C1, document_commitment=C2,
        ),
        ("TransactionEvent", "ADD", "other", "reserved"),
        None,
    ),
    "waybill": (
        waybill_event,
        dict(sscc=SSCC, waybill_number="WB-1", order_number="ORD-1", consignee_commitment=C1, document_commitment=C2),
        ("TransactionEvent", "ADD", "staging_outbound", "reserved"),
        None,
    ),
    "release": (
        customs_release_event,
        dict(sscc=SSCC, release_number="REL-1", order_number="ORD-1", waybill_number="WB-1"),
        ("ObjectEvent", "OBSERVE", "departing", "in_transit"),
        None,
    ),
    "delivery": (
        delivery_event,
        dict(sscc=SSCC),
        ("ObjectEvent", "OBSERVE", "accepting", "retail_sold"),
        None,
    ),
    "recall": (
        recall_event,
        dict(gtin=GTIN, lot=LOT, reason="supplier notice: packaging defect"),
        ("ObjectEvent", "OBSERVE", "holding", "recalled"),
        "quantity",
    ),
}  # fmt: skip


def build(name: str, **overrides: Any) -> dict[str, Any]:
    builder, kwargs, _, _ = CASES[name]
    return builder(**{"event_time": T0, **kwargs, **overrides})


@pytest.mark.parametrize("name", CASES)
def test_builder_gives_the_mapped_type_action_bizstep_and_disposition(name: str) -> None:
    event = build(name)
    kind, action, bizstep, disposition = CASES[name][2]
    assert (event["type"], event["action"], event["bizStep"], event["disposition"]) == (
        kind, action, bizstep, disposition,
    )  # fmt: skip
    assert event["type"] in EVENT_TYPES
    assert is_cbv_bizstep(event["bizStep"]) and is_cbv_disposition(event["disposition"])


@pytest.mark.parametrize("name", CASES)
def test_event_time_is_utc_milliseconds_and_there_is_no_event_id(name: str) -> None:
    event = build(name)
    assert event["eventTime"] == "2024-05-01T08:00:00.123Z"
    assert event["eventTimeZoneOffset"] == "+00:00"
    assert "eventID" not in event and "@context" not in event


@pytest.mark.parametrize("name", CASES)
def test_extension_fields_are_in_our_namespace(name: str) -> None:
    standard = {
        "type", "eventTime", "eventTimeZoneOffset", "epcList", "parentID", "childQuantityList", "action",
        "bizStep", "disposition", "readPoint", "bizLocation", "bizTransactionList", "quantityList",
    }  # fmt: skip
    event = build(name)
    assert all(key in standard or key.startswith("tracer:") for key in event)
    for transaction in event.get("bizTransactionList", []):
        assert transaction["type"] in TRACER_BTT.values()
        assert transaction["bizTransaction"].startswith("urn:tracer:")


@pytest.mark.parametrize("name", CASES)
def test_hash_is_stable_for_equal_inputs(name: str) -> None:
    assert event_hash(build(name)) == event_hash(build(name))


@pytest.mark.parametrize("name", [n for n, case in CASES.items() if case[3]])
def test_hash_changes_when_the_quantity_changes(name: str) -> None:
    argument = CASES[name][3]
    assert argument is not None
    assert event_hash(build(name, **{argument: 7})) != event_hash(build(name, **{argument: 8}))


def test_all_journey_events_hash_differently() -> None:
    hashes = {event_hash(build(name)) for name in CASES}
    assert len(hashes) == len(CASES)


def test_identifiers_are_digital_link_uris() -> None:
    declaration = build("declaration")
    assert declaration["quantityList"] == [
        {"epcClass": "https://id.gs1.org/01/09421902960017/10/NZ24%2F001", "quantity": 1000}
    ]
    split = build("split")
    assert split["parentID"] == "https://id.gs1.org/00/106141412345678908"
    assert split["childQuantityList"][0]["quantity"] == 2
    assert build("delivery")["epcList"] == ["https://id.gs1.org/00/106141412345678908"]


def test_declaration_carries_master_data_as_extensions() -> None:
    event = build("declaration")
    assert event["bizTransactionList"] == [
        {"type": "https://ns.tracer.dev/btt/declaration", "bizTransaction": "urn:tracer:declaration:531620241000001"}
    ]
    assert event["tracer:hsCode"] == "1901101000"
    assert event["tracer:originCountry"] == "NZ"
    assert event["tracer:itemExpirationDate"] == "2026-03-31"
    assert "ilmd" not in event


def test_entry_keeps_the_discrepancy() -> None:
    event = build("entry")
    assert event["quantityList"][0]["quantity"] == 998
    assert event["tracer:declaredQuantity"] == 1000
    assert event["bizLocation"] == {"id": ZONE}
    assert build("entry", counted_quantity=0)["quantityList"][0]["quantity"] == 0


def test_sampled_inspection_is_conformant_and_flagged() -> None:
    sampled = build("inspection", result="sampled")
    assert sampled["disposition"] == "conformant" and sampled["tracer:sampled"] is True
    assert build("inspection", result="non_conformant")["disposition"] == "non_conformant"
    assert "tracer:sampled" not in build("inspection")
    with pytest.raises(InvalidInput) as info:
        build("inspection", result="passed")
    assert info.value.pointer == "/result"


def test_release_names_release_order_and_waybill() -> None:
    kinds = [t["type"].rsplit("/", 1)[1] for t in build("release")["bizTransactionList"]]
    assert kinds == ["customsRelease", "order", "waybill"]


def test_order_lines_and_amounts() -> None:
    event = build("order", items=[{"gtin": GTIN, "quantity": 2, "unit_price": "61.70"}])
    assert event["tracer:items"] == [
        {"tracer:gtin": "09421902960017", "tracer:quantity": 2, "tracer:unitPrice": "61.70"}
    ]
    assert event["tracer:orderTotal"] == "123.40" and event["tracer:currency"] == "CNY"


def test_document_numbers_are_percent_encoded_in_the_urn() -> None:
    event = build("waybill", waybill_number="SF/123:4")
    assert event["bizTransactionList"][0]["bizTransaction"] == "urn:tracer:waybill:SF%2F123%3A4"


def test_event_time_in_another_zone_is_converted_and_truncated() -> None:
    beijing = timezone(timedelta(hours=8))
    event = build("delivery", event_time=datetime(2024, 5, 1, 16, 0, 0, 999999, tzinfo=beijing))
    assert event["eventTime"] == "2024-05-01T08:00:00.999Z"


@pytest.mark.parametrize(
    ("name", "overrides", "pointer"),
    [
        ("delivery", {"event_time": datetime(2024, 5, 1)}, "/event_time"),
        ("declaration", {"gtin": "9421902960010"}, "/gtin"),
        ("declaration", {"lot": "A B"}, "/lot"),
        ("declaration", {"quantity": 0}, "/quantity"),
        ("declaration", {"quantity": True}, "/quantity"),
        ("declaration", {"hs_code": "19.01"}, "/hs_code"),
        ("declaration", {"origin_country": "nz"}, "/origin_country"),
        ("declaration", {"manufacturer": "  "}, "/manufacturer"),
        ("declaration", {"declaration_number": "has space"}, "/declaration_number"),
        ("entry", {"biz_location": "ZONE A"}, "/biz_location"),
        ("split", {"sscc": "106141412345678907"}, "/sscc"),
        ("order", {"total": 1.5}, "/total"),
        ("order", {"total": "-1"}, "/total"),
        ("order", {"currency": "yuan"}, "/currency"),
        ("order", {"items": []}, "/items"),
        ("order", {"items": [{"gtin": GTIN, "quantity": 1}]}, "/items/0"),
        ("order", {"consignee_commitment": "Zhang San"}, "/consignee_commitment"),
        ("payment", {"payer_commitment": "0x" + "A" * 64}, "/payer_commitment"),
        ("recall", {"reason": "x" * 501}, "/reason"),
    ],
)
def test_bad_arguments_are_invalid_input_with_a_pointer(name: str, overrides: dict[str, Any], pointer: str) -> None:
    with pytest.raises(InvalidInput) as info:
        build(name, **overrides)
    assert info.value.pointer == pointer


def test_builders_take_keyword_arguments_only_and_nothing_personal() -> None:
    personal = re.compile(r"name$|phone|address|id_number|identity|consignee$|payer$|mobile|email")
    for builder, _kwargs, _, _ in CASES.values():
        parameters = inspect.signature(builder).parameters.values()
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters)
        assert "event_time" in {p.name for p in parameters}
        leaked = [p.name for p in parameters if personal.search(p.name) and p.name != "product_name"]
        assert leaked == [], builder.__name__


# --- personal data never appears -------------------------------------------------------------------

BASELINE = json.dumps([build(name) for name in CASES], ensure_ascii=False).casefold()

names = st.one_of(
    st.text(
        alphabet="王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程",
        min_size=2,
        max_size=4,
    ),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=3, max_size=12).map(str.title),
).filter(lambda s: s.casefold() not in BASELINE)
phones = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)
id_numbers = st.from_regex(r"[1-6][0-9]{16}[0-9X]", fullmatch=True)
addresses = st.builds(
    "{}市{}路{}号".format,
    st.sampled_from(["北京", "上海", "杭州", "深圳"]),
    st.text(alphabet="东南西北中山华新", min_size=2, max_size=3),
    st.integers(1, 999),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=names, phone=phones, id_number=id_numbers, address=addresses)
def test_no_personal_data_reaches_any_event(name: str, phone: str, id_number: str, address: str) -> None:
    salt = new_salt()
    person = {"name": name, "phone": phone, "id_number": id_number, "address": address}
    consignee = commit(name + "|" + id_number, salt)
    payer = commit(name + "|" + id_number, new_salt())
    order_doc = document_commitment({"order_number": "ORD-1", "consignee": person}, salt)
    events = [
        build("order", consignee_commitment=consignee, document_commitment=order_doc),
        build("payment", payer_commitment=payer, document_commitment=document_commitment(person, salt)),
        build("waybill", consignee_commitment=consignee, document_commitment=order_doc),
        *(build(n) for n in CASES if n not in ("order", "payment", "waybill")),
    ]
    # Commitments are 32-byte hashes (the builders accept nothing else there); a name found inside one
    # is a coincidence of random hex, not a leak, so they are cut out before searching.
    text = re.sub(r"0x[0-9a-f]{64}", "<commitment>", json.dumps(events, ensure_ascii=False))
    for value in (name, phone, id_number, address):
        assert value not in text
        assert value.casefold() not in text.casefold()
