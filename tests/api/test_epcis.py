"""EPCIS 2.0 capture and query: a client that knows only the standard runs the whole journey."""

from __future__ import annotations

from typing import Any

from api_support import GTIN, Api, Journey, ProblemCheck, sscc
from sqlmodel import Session, select

from tracer.epcis import document_hashes
from tracer.store.models import Event, Lot

LOT = "WMS-7/2026"
LOT_CLASS = f"https://id.gs1.org/01/{GTIN}/10/WMS-7%2F2026"
ZONE = "urn:epc:id:sgln:9521234.00000.0"
SHELF = "urn:epc:id:sgln:9521234.00000.A13"
NS = "https://ns.tracer.dev/epcis/"
BTT = "https://ns.tracer.dev/btt/"
COMMITMENT = "0x" + "5a" * 32
# A WMS binds our namespace to a prefix of its own choosing: "bz".
CONTEXT = [
    "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
    {"bz": NS, "wms": "https://wms.example/ns/"},
]


def _document(*events: dict[str, Any]) -> dict[str, Any]:
    return {
        "@context": CONTEXT,
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-11-27T08:00:00Z",
        "epcisBody": {"eventList": list(events)},
    }


def _event(kind: str, biz_step: str, disposition: str | None = None, **fields: Any) -> dict[str, Any]:
    event = {
        "type": kind,
        "eventTime": "2026-11-27T08:00:00.000+08:00",
        "eventTimeZoneOffset": "+08:00",
        "bizStep": biz_step,
        **fields,
    }
    if kind != "TransformationEvent":
        event.setdefault("action", "OBSERVE")
    if disposition:
        event["disposition"] = disposition
    return event


def _btt(kind: str, number: str) -> dict[str, str]:
    return {"type": BTT + kind, "bizTransaction": f"urn:tracer:{kind}:{number}"}


def declaration() -> dict[str, Any]:
    return _event(
        "TransactionEvent",
        "other",
        "in_transit",
        action="ADD",
        bizTransactionList=[_btt("declaration", "DEC-WMS-1")],
        quantityList=[{"epcClass": LOT_CLASS, "quantity": 100}],
        **{
            "bz:productName": "Infant formula",
            "bz:hsCode": "190110",
            "bz:originCountry": "NZ",
            "bz:manufacturer": "Waikato Dairy Ltd",
            "bz:itemExpirationDate": "2028-06-30",
            "wms:batchNote": {"wms:shift": "night", "wms:dock": 4},
        },
    )


def entry() -> dict[str, Any]:
    return _event(
        "ObjectEvent",
        "https://ref.gs1.org/cbv/BizStep-receiving",
        "sellable_not_accessible",
        quantityList=[{"epcClass": LOT_CLASS, "quantity": 100}],
        bizLocation={"id": ZONE},
    )


def inspection() -> dict[str, Any]:
    return _event("ObjectEvent", "inspecting", "conformant", quantityList=[{"epcClass": LOT_CLASS}])


def storage() -> dict[str, Any]:
    return _event(
        "ObjectEvent",
        "storing",
        "sellable_not_accessible",
        quantityList=[{"epcClass": LOT_CLASS}],
        bizLocation={"id": SHELF},
    )


def split(code: str, quantity: int = 2) -> dict[str, Any]:
    return _event(
        "AggregationEvent",
        "packing",
        "container_closed",
        action="ADD",
        parentID=f"https://id.gs1.org/00/{code}",
        childQuantityList=[{"epcClass": LOT_CLASS, "quantity": quantity}],
    )


def order(code: str) -> dict[str, Any]:
    return _event(
        "TransactionEvent",
        "other",
        "reserved",
        action="ADD",
        epcList=[f"https://id.gs1.org/00/{code}"],
        bizTransactionList=[_btt("order", f"O-{code[-4:]}")],
        **{
            "bz:orderTotal": "398.00",
            "bz:currency": "CNY",
            "bz:items": [{"bz:gtin": GTIN, "bz:quantity": 2, "bz:unitPrice": "199.00"}],
            "bz:consigneeCommitment": COMMITMENT,
            "bz:documentCommitment": COMMITMENT,
        },
    )


def payment(code: str, amount: str = "398.00") -> dict[str, Any]:
    return _event(
        "TransactionEvent",
        "other",
        "reserved",
        action="ADD",
        epcList=[f"https://id.gs1.org/00/{code}"],
        bizTransactionList=[_btt("payment", f"P-{code[-4:]}"), _btt("order", f"O-{code[-4:]}")],
        **{
            "bz:paidAmount": amount,
            "bz:currency": "CNY",
            "bz:payerCommitment": COMMITMENT,
            "bz:documentCommitment": COMMITMENT,
        },
    )


def waybill(code: str) -> dict[str, Any]:
    return _event(
        "TransactionEvent",
        "staging_outbound",
        "reserved",
        action="ADD",
        epcList=[f"https://id.gs1.org/00/{code}"],
        bizTransactionList=[_btt("waybill", f"W-{code[-4:]}"), _btt("order", f"O-{code[-4:]}")],
        **{"bz:consigneeCommitment": COMMITMENT, "bz:documentCommitment": COMMITMENT},
    )


def release(code: str) -> dict[str, Any]:
    return _event(
        "ObjectEvent",
        "departing",
        "in_transit",
        epcList=[f"https://id.gs1.org/00/{code}"],
        bizTransactionList=[_btt("customsRelease", f"R-{code[-4:]}")],
    )


def delivery(code: str) -> dict[str, Any]:
    return _event("ObjectEvent", "accepting", "retail_sold", epcList=[f"https://id.gs1.org/00/{code}"])


def _capture(api: Api, key: str, *events: dict[str, Any], behaviour: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {key}"}
    if behaviour:
        headers["GS1-Capture-Error-Behaviour"] = behaviour
    return api.http.post("/capture", json=_document(*events), headers=headers)


def _captured_journey(journey: Journey, code: str) -> None:
    api, parties = journey.api, journey.parties
    for key, events in (
        (parties.enterprise, [declaration()]),
        (parties.warehouse, [entry()]),
        (parties.customs, [inspection()]),
        (parties.warehouse, [storage(), split(code)]),
        (parties.enterprise, [order(code)]),
        (parties.payment, [payment(code)]),
        (parties.carrier, [waybill(code)]),
        (parties.customs, [release(code)]),
        (parties.carrier, [delivery(code)]),
    ):
        response = _capture(api, key, *events)
        assert response.status_code == 202, response.text
        assert response.headers["Location"].startswith("/capture/")
        job = api.get(response.headers["Location"], key).json()
        assert job["success"] is True and job["running"] is False and job["errors"] == []


def test_a_wms_captures_the_whole_journey_and_queries_it_back(journey: Journey) -> None:
    code = sscc(41)
    _captured_journey(journey, code)
    journey.api.anchor()
    result = journey.api.get("/events", journey.parties.warehouse).json()
    events = result["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    assert len(events) == 10
    assert document_hashes(result) == [event["eventID"] for event in events]  # each re-hashes to its eventID
    assert {anchor["status"] for anchor in result["tracer:anchors"].values()} == {"anchored"}
    assert events[0]["wms:batchNote"] == {"wms:shift": "night", "wms:dock": 4}  # extensions kept unchanged
    scan = journey.api.get(f"/00/{code}", headers={"Accept": "application/json"}).json()
    assert scan["verification"]["status"] == "verified"


def test_queries_filter_by_the_standard_parameters(journey: Journey) -> None:
    code = sscc(42)
    _captured_journey(journey, code)
    key = journey.parties.warehouse

    def ids(query: str) -> list[str]:
        response = journey.api.get(f"/events?{query}", key)
        assert response.status_code == 200, response.text
        return [e["bizStep"] for e in response.json()["epcisBody"]["queryResults"]["resultsBody"]["eventList"]]

    assert ids("EQ_bizStep=https://ref.gs1.org/cbv/BizStep-receiving") == ["https://ref.gs1.org/cbv/BizStep-receiving"]
    assert ids("EQ_disposition=retail_sold") == ["accepting"]
    assert len(ids(f"MATCH_epc=https://id.gs1.org/00/{code}")) == 5
    assert len(ids(f"MATCH_anyEPC=https://id.gs1.org/00/{code}")) == 6  # + the split's parentID
    assert len(ids(f"MATCH_epcClass={LOT_CLASS.replace('%', '%25')}")) == 5
    assert ids(f"EQ_bizLocation={SHELF}") == ["storing"]
    assert ids(f"EQ_bizTransaction_{BTT}waybill=urn:tracer:waybill:W-{code[-4:]}") == ["staging_outbound"]
    assert ids("GE_eventTime=2026-11-26T00:00:00Z&LT_eventTime=2026-11-27T00:00:00Z") == []
    assert len(ids("GE_eventTime=2026-11-27T00:00:00Z")) == 10
    by_epc = journey.api.get(f"/epcs/https://id.gs1.org/00/{code}/events", key).json()
    assert len(by_epc["epcisBody"]["queryResults"]["resultsBody"]["eventList"]) == 6


def test_results_page_with_per_page_and_next_page_token(journey: Journey) -> None:
    _captured_journey(journey, sscc(43))
    key = journey.parties.warehouse
    first = journey.api.get("/events?perPage=4", key)
    assert len(first.json()["epcisBody"]["queryResults"]["resultsBody"]["eventList"]) == 4
    seen = [e["eventID"] for e in first.json()["epcisBody"]["queryResults"]["resultsBody"]["eventList"]]
    link = first.headers["Link"]
    next_url = link[link.index("<") + 1 : link.index(">")]
    second = journey.api.get(next_url.removeprefix("http://testserver"), key).json()
    more = [e["eventID"] for e in second["epcisBody"]["queryResults"]["resultsBody"]["eventList"]]
    assert len(more) == 4 and not set(seen) & set(more)


def test_an_invalid_document_is_400_naming_event_and_field_and_stores_nothing(
    journey: Journey, problem: ProblemCheck
) -> None:
    bad = entry()
    bad["bizStep"] = "unloading-ish"
    response = _capture(journey.api, journey.parties.enterprise, declaration(), bad)
    problem(response, 400, pointer="/epcisBody/eventList/1/bizStep")
    with Session(journey.api.service.engine) as session:
        assert session.exec(select(Lot)).all() == []


def test_a_document_breaking_the_rules_is_409_and_rolls_back_entirely(journey: Journey, problem: ProblemCheck) -> None:
    assert _capture(journey.api, journey.parties.enterprise, declaration()).status_code == 202
    # storage before entry and inspection: out of order; the entry before it must not stay either
    response = _capture(journey.api, journey.parties.warehouse, entry(), storage())
    body = problem(response, 409)
    assert body["errors"][0]["pointer"].startswith("/epcisBody/eventList/1")
    with Session(journey.api.service.engine) as session:
        assert [e.step for e in session.exec(select(Event))] == ["declaration"]


def test_proceed_keeps_the_good_events_and_lists_the_bad(journey: Journey) -> None:
    assert _capture(journey.api, journey.parties.enterprise, declaration()).status_code == 202
    response = _capture(journey.api, journey.parties.warehouse, entry(), storage(), behaviour="proceed")
    assert response.status_code == 202
    job = journey.api.get(response.headers["Location"], journey.parties.warehouse).json()
    assert job["success"] is False and job["captureErrorBehaviour"] == "proceed"
    assert [error["eventIndex"] for error in job["errors"]] == [1]
    with Session(journey.api.service.engine) as session:
        assert [e.step for e in session.exec(select(Event).order_by(Event.seq))] == ["declaration", "entry"]


def test_a_payment_that_does_not_match_its_order_blocks_the_captured_release(
    journey: Journey, problem: ProblemCheck
) -> None:
    code = sscc(44)
    api, parties = journey.api, journey.parties
    for key, events in (
        (parties.enterprise, [declaration()]),
        (parties.warehouse, [entry()]),
        (parties.customs, [inspection()]),
        (parties.warehouse, [storage(), split(code)]),
        (parties.enterprise, [order(code)]),
        (parties.payment, [payment(code, amount="1.00")]),
        (parties.carrier, [waybill(code)]),
    ):
        assert _capture(api, key, *events).status_code == 202
    problem(_capture(api, parties.customs, release(code)), 422)


def test_a_capture_by_the_wrong_role_is_403(journey: Journey, problem: ProblemCheck) -> None:
    problem(_capture(journey.api, journey.parties.carrier, declaration()), 403)


def test_capture_advertises_its_limit_and_refuses_more(journey: Journey, problem: ProblemCheck) -> None:
    response = _capture(journey.api, journey.parties.enterprise, declaration())
    limit = int(response.headers["GS1-EPCIS-Capture-Limit"])
    too_many = _capture(journey.api, journey.parties.enterprise, *[declaration()] * (limit + 1))
    problem(too_many, 413, pointer="/epcisBody/eventList")


def test_an_event_naming_no_lot_or_parcel_is_refused_by_name(journey: Journey, problem: ProblemCheck) -> None:
    odd = _event("ObjectEvent", "repairing", epcList=["urn:epc:id:grai:9521234.00001.1"])
    body = problem(_capture(journey.api, journey.parties.warehouse, odd), 400)
    assert "names no lot class and no parcel" in body["detail"]


def test_events_that_are_no_journey_step_are_anchored_as_observations(journey: Journey) -> None:
    code = sscc(45)
    api, parties = journey.api, journey.parties
    for key, events in (
        (parties.enterprise, [declaration()]),
        (parties.warehouse, [entry()]),
        (parties.customs, [inspection()]),
        (parties.warehouse, [storage(), split(code)]),
    ):
        assert _capture(api, key, *events).status_code == 202
    reading = _event(
        "ObjectEvent",
        "sensor_reporting",
        quantityList=[{"epcClass": LOT_CLASS}],
        sensorElementList=[{"sensorReport": [{"type": "Temperature", "value": 4.5, "uom": "CEL"}]}],
    )
    association = _event(
        "AssociationEvent",
        "assembling",
        action="ADD",
        parentID="urn:epc:id:grai:9521234.00001.1",
        childEPCs=[f"https://id.gs1.org/00/{code}"],
    )
    response = _capture(api, parties.carrier, reading, association)
    assert response.status_code == 202, response.text
    api.anchor()
    with Session(api.service.engine) as session:
        steps = [(e.step, e.status) for e in session.exec(select(Event).order_by(Event.seq))]
    assert steps[-2:] == [("observation", "anchored"), ("observation", "anchored")]
    scan = api.get(f"/00/{code}", headers={"Accept": "application/json"}).json()
    assert scan["verification"]["status"] == "verified"


def test_a_re_sent_event_is_a_duplicate_but_a_correction_is_its_own_anchored_step(
    journey: Journey, problem: ProblemCheck
) -> None:
    api, parties = journey.api, journey.parties
    assert _capture(api, parties.enterprise, declaration()).status_code == 202
    assert _capture(api, parties.warehouse, entry()).status_code == 202
    problem(_capture(api, parties.warehouse, entry()), 409)  # the same event again: a re-send
    declared = {"declarationTime": "2026-11-27T09:00:00.000Z", "reason": "incorrect_data"}
    assert _capture(api, parties.warehouse, {**entry(), "errorDeclaration": declared}).status_code == 202
    api.anchor()
    result = api.get("/events", parties.warehouse).json()
    events = result["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    assert events[1]["eventID"] == events[2]["eventID"]  # GS1's hash ignores errorDeclaration
    assert "errorDeclaration" in events[2]
    original_anchor = result["tracer:anchors"][events[1]["eventID"]]
    [correction_anchor] = result["tracer:correctionAnchors"][events[1]["eventID"]]
    assert original_anchor["status"] == correction_anchor["status"] == "anchored"
    assert (original_anchor["txHash"], original_anchor["logIndex"]) != (
        correction_anchor["txHash"],
        correction_anchor["logIndex"],
    )


def test_a_correction_of_nothing_is_400(journey: Journey, problem: ProblemCheck) -> None:
    assert _capture(journey.api, journey.parties.enterprise, declaration()).status_code == 202
    corrected = {**entry(), "errorDeclaration": {"declarationTime": "2026-11-27T09:00:00.000Z"}}
    problem(_capture(journey.api, journey.parties.warehouse, corrected), 400)


def test_epc_urns_and_digital_links_name_the_same_lot_and_parcel(journey: Journey) -> None:
    code = sscc(46)
    urn_class = "urn:epc:class:lgtin:9421902.096005.WMS-7%2F2026"
    urn_parcel = f"urn:epc:id:sscc:{code[1:8]}.{code[0]}{code[8:17]}"
    api, parties = journey.api, journey.parties
    declared = declaration()
    declared["quantityList"] = [{"epcClass": urn_class, "quantity": 100}]
    for key, events in (
        (parties.enterprise, [declared]),
        (parties.warehouse, [entry()]),
        (parties.customs, [inspection()]),
        (parties.warehouse, [storage(), {**split(code), "parentID": urn_parcel}]),
    ):
        response = _capture(api, key, *events)
        assert response.status_code == 202, response.text
    found = api.get(f"/events?MATCH_anyEPC=https://id.gs1.org/00/{code}", parties.warehouse).json()
    assert len(found["epcisBody"]["queryResults"]["resultsBody"]["eventList"]) == 1
    by_urn = api.get(f"/events?MATCH_epcClass={urn_class.replace('%', '%25')}", parties.warehouse).json()
    assert len(by_urn["epcisBody"]["queryResults"]["resultsBody"]["eventList"]) == 5


def test_unknown_query_parameters_are_400(journey: Journey, problem: ProblemCheck) -> None:
    problem(journey.api.get("/events?EQ_colour=red", journey.parties.warehouse), 400, pointer="/EQ_colour")
