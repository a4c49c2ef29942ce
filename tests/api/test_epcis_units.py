"""EPCIS capture of a split that names its units: the units are recorded through the same code path as the
journey endpoint, from Digital Links or SGTIN EPC URNs, and anything else among the childEPCs is refused."""

from __future__ import annotations

from typing import Any

from api_support import GTIN, Journey, ProblemCheck, sscc
from sqlmodel import Session, col, select

from tracer import identifiers
from tracer.store.models import Event, Unit

PARCEL = sscc(21)
LOT_CLASS = "https://id.gs1.org" + identifiers.lot_path(GTIN, "NZ-2026/11")


def _document(*child_epcs: str, quantity: int = 2) -> dict[str, Any]:
    event = {
        "type": "AggregationEvent",
        "eventTime": "2026-11-27T08:00:00.000+08:00",
        "eventTimeZoneOffset": "+08:00",
        "action": "ADD",
        "bizStep": "packing",
        "disposition": "container_closed",
        "parentID": f"https://id.gs1.org/00/{PARCEL}",
        "childEPCs": list(child_epcs),
        "childQuantityList": [{"epcClass": LOT_CLASS, "quantity": quantity}],
    }
    return {
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-11-27T08:00:00Z",
        "epcisBody": {"eventList": [event]},
    }


def _capture(journey: Journey, document: dict[str, Any]) -> Any:
    headers = {"Authorization": f"Bearer {journey.parties.warehouse}"}
    return journey.api.http.post("/capture", json=document, headers=headers)


def _units(journey: Journey) -> list[tuple[str, str]]:
    with Session(journey.api.service.engine) as session:
        return [(u.gtin, u.serial) for u in session.exec(select(Unit).order_by(col(Unit.id)))]


def test_a_captured_split_records_units_named_by_digital_link_or_sgtin_urn(journey: Journey) -> None:
    journey.to_stored()
    # GTIN 09421902960055 with a 7-digit company prefix 9421902: indicator 0, item reference 96005.
    urn = "urn:epc:id:sgtin:9421902.096005.S%2F0002"
    response = _capture(journey, _document("https://id.gs1.org" + identifiers.unit_path(GTIN, "S0001"), urn))
    assert response.status_code == 202, response.text
    journey.api.anchor()
    assert _units(journey) == [(GTIN, "S0001"), (GTIN, "S/0002")]
    with Session(journey.api.service.engine) as session:
        split = session.exec(select(Event).where(Event.step == "split")).one()
    assert urn in split.payload and split.status == "anchored"  # kept as captured, hashed as captured
    scan = journey.api.get(identifiers.unit_path(GTIN, "S/0002"), headers={"Accept": "application/json"}).json()
    assert scan["product"]["sscc"] == PARCEL and scan["verification"]["status"] == "verified"
    # A query by the unit's Digital Link finds the split that named it by its URN.
    link = "https://id.gs1.org" + identifiers.unit_path(GTIN, "S/0002")
    found = journey.api.get("/events", journey.parties.warehouse, params={"MATCH_anyEPC": link}).json()
    assert [e["eventID"] for e in found["epcisBody"]["queryResults"]["resultsBody"]["eventList"]] == [split.event_hash]


def test_a_captured_split_naming_a_unit_of_another_gtin_is_refused_by_position(
    journey: Journey, problem: ProblemCheck
) -> None:
    journey.to_stored()
    other = "https://id.gs1.org" + identifiers.unit_path("09521234000013", "S0001")
    body = problem(_capture(journey, _document(other)), 400, "/epcisBody/eventList/0/childEPCs/0")
    assert GTIN in body["errors"][0]["message"]
    assert _units(journey) == []


def test_a_captured_split_naming_a_parcel_or_a_bad_serial_among_its_children_is_refused(
    journey: Journey, problem: ProblemCheck
) -> None:
    journey.to_stored()
    problem(
        _capture(journey, _document(f"https://id.gs1.org/00/{sscc(22)}")), 400, "/epcisBody/eventList/0/childEPCs/0"
    )
    long_serial = f"https://id.gs1.org/01/{GTIN}/21/{'S' * 21}"
    problem(_capture(journey, _document(long_serial)), 400, "/epcisBody/eventList/0/childEPCs/0")
    assert _units(journey) == []


def test_a_captured_split_with_more_units_than_its_quantity_is_refused(journey: Journey, problem: ProblemCheck) -> None:
    journey.to_stored()
    epcs = ["https://id.gs1.org" + identifiers.unit_path(GTIN, f"S{i}") for i in range(3)]
    problem(_capture(journey, _document(*epcs, quantity=2)), 400)
    assert _units(journey) == []


def test_an_observation_of_a_unit_is_anchored_on_its_parcel_and_shows_on_its_scan(
    journey: Journey, problem: ProblemCheck
) -> None:
    journey.to_stored()
    assert _capture(journey, _document("https://id.gs1.org" + identifiers.unit_path(GTIN, "S0001"))).status_code == 202
    observed = {
        "type": "ObjectEvent",
        "eventTime": "2026-11-28T09:00:00.000+08:00",
        "eventTimeZoneOffset": "+08:00",
        "action": "OBSERVE",
        "bizStep": "arriving",
        "epcList": ["urn:epc:id:sgtin:9421902.096005.S0001"],
    }
    document = _document()
    document["epcisBody"]["eventList"] = [observed]
    assert _capture(journey, document).status_code == 202
    journey.api.anchor()
    scan = journey.api.get(identifiers.unit_path(GTIN, "S0001"), headers={"Accept": "application/json"}).json()
    assert [e["step"] for e in scan["events"]][-2:] == ["split", "observation"]
    assert scan["verification"]["status"] == "verified"
    observed["epcList"] = ["urn:epc:id:sgtin:9421902.096005.S0002"]  # a serial nobody packed
    observed["eventTime"] = "2026-11-28T10:00:00.000+08:00"
    problem(_capture(journey, document), 404)
