"""Serialised units (/01/{gtin14}/21/{serial}): named when a parcel is split, listed in its split event and
anchored with it, scanned like their parcel, claimed, labelled, and proved to be in it."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from datetime import date, timedelta
from typing import Any

import pytest
from api_support import GTIN, LOT, Journey, ProblemCheck, sscc
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from tracer import identifiers
from tracer.chain.client import ChainClient
from tracer.store.models import Event, Lot, Unit
from tracer.verify import Status, verify_bundle

JSON = {"Accept": "application/json"}
SERIALS = ["S0001", "S/0002"]  # a "/" in a serial travels percent-encoded in the path
PARCEL = sscc(7)


def _split(journey: Journey, *parcels: tuple[str, int, list[str]]) -> Any:
    body = {"parcels": [{"sscc": code, "quantity": quantity, "units": units} for code, quantity, units in parcels]}
    return journey.api.post(f"/lots/{journey.lot_id}/parcels", journey.parties.warehouse, body)


def _packed(journey: Journey, *, deliver: bool = False) -> None:
    journey.to_stored()
    assert _split(journey, (PARCEL, 2, SERIALS)).status_code == 202
    if deliver:
        journey.documents(PARCEL)
        journey.release(PARCEL)
        journey.deliver(PARCEL)
    journey.api.anchor()


def _unit(serial: str = SERIALS[1]) -> str:
    return identifiers.unit_path(GTIN, serial)


def _scan(client: TestClient, path: str) -> dict[str, Any]:
    response = client.get(path, headers=JSON)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _split_event(journey: Journey) -> Event:
    with Session(journey.api.service.engine) as session:
        return session.exec(select(Event).where(Event.step == "split")).one()


def test_a_split_names_its_units_in_the_events_child_epcs_and_stores_them(journey: Journey) -> None:
    _packed(journey)
    event = _split_event(journey)
    payload = json.loads(event.payload)
    assert payload["childEPCs"] == [f"https://id.gs1.org{_unit(s)}" for s in SERIALS]
    assert payload["childQuantityList"][0]["quantity"] == 2  # the lot class quantity stays beside them
    assert event.status == "anchored"
    with Session(journey.api.service.engine) as session:
        units = session.exec(select(Unit).order_by(col(Unit.id))).all()
    assert [(u.gtin, u.serial) for u in units] == [(GTIN, s) for s in SERIALS]
    assert {u.parcel_pk for u in units} == {event.parcel_pk}
    ledger = journey.api.get(f"/lots/{journey.lot_id}", journey.parties.warehouse).json()
    assert [(p["sscc"], p["units"]) for p in ledger["parcels"]] == [(PARCEL, SERIALS)]


def test_a_unit_scan_resolves_to_its_parcels_journey_verified(journey: Journey) -> None:
    _packed(journey, deliver=True)
    unit = _scan(journey.api.http, _unit())
    parcel = _scan(journey.api.http, f"/00/{PARCEL}")
    assert unit["id"] == "https://trace.example/01/09421902960055/21/S%2F0002"
    assert unit["product"]["serial"] == "S/0002" and unit["product"]["sscc"] == PARCEL
    assert unit["product"]["lot"] == LOT and unit["product"]["expiry"] == "2028-06-30"
    assert [e["eventID"] for e in unit["events"]] == [e["eventID"] for e in parcel["events"]]
    assert unit["verification"]["status"] == "verified" and unit["verification"]["events_checked"] == 10
    assert unit["recall"] == {"recalled": False} and unit["clone_warning"] is None
    assert unit["links"] == {
        kind: f"https://trace.example/{kind.replace('_', '/')}{_unit()}" for kind in ("qr_png", "qr_svg", "proof")
    } | {"claim": f"https://trace.example/claim{_unit()}"}
    assert unit["scans"]["count"] == 1 and unit["scans"]["claimable"] is True


def test_a_unit_link_that_also_names_its_lot_resolves_but_another_lot_does_not(journey: Journey) -> None:
    _packed(journey)
    with_lot = f"/01/{GTIN}/10/{identifiers.lot_path(GTIN, LOT).rsplit('/', 1)[1]}/21/S0001"
    assert _scan(journey.api.http, with_lot)["id"].endswith(_unit("S0001"))
    assert journey.api.get(f"/01/{GTIN}/10/OTHER/21/S0001", headers=JSON).status_code == 404


def test_an_altered_unit_list_in_the_stored_split_event_scans_tampered(journey: Journey) -> None:
    _packed(journey)
    with Session(journey.api.service.engine) as session:
        event = session.exec(select(Event).where(Event.step == "split")).one()
        payload = json.loads(event.payload)
        payload["childEPCs"].append(f"https://id.gs1.org{_unit('FORGED')}")
        event.payload = json.dumps(payload)
        seq = event.seq
        session.add(event)
        session.commit()
    verification = _scan(journey.api.http, _unit())["verification"]
    assert verification["status"] == "tampered" and f"event {seq}" in verification["reason"]


def test_a_recalled_lot_shows_on_its_units_scan_and_page(journey: Journey) -> None:
    _packed(journey)
    response = journey.api.post(f"/lots/{journey.lot_id}/recall", journey.parties.customs, {"reason": "melamine"})
    assert response.status_code == 202
    journey.api.anchor()
    scan = _scan(journey.api.http, _unit())
    assert scan["recall"]["recalled"] is True and scan["recall"]["reason"] == "melamine"
    page = journey.api.get(_unit(), headers={"Accept-Language": "zh-CN"}).text
    assert page.index('data-test="recall"') < page.index("data-status=") and "该批次商品已被召回" in page


def test_the_unit_page_shows_its_serial_and_parcel_in_chinese(journey: Journey) -> None:
    _packed(journey, deliver=True)
    page = journey.api.get(_unit(), headers={"Accept-Language": "zh-CN"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<dd data-test="serial">S/0002</dd>' in page.text and PARCEL in page.text
    assert "您收到这个商品了吗？" in page.text and 'action="/claim/01/09421902960055/21/S%2F0002"' in page.text
    assert 'data-status="verified"' in page.text


def test_a_unit_claimed_after_delivery_warns_another_device(journey: Journey) -> None:
    _packed(journey, deliver=True)
    owner = journey.api.http
    owner.get(_unit())  # the page sets the device cookie
    claimed = owner.post(f"/claim{_unit()}", headers=JSON)
    assert claimed.status_code == 201, claimed.text
    assert _scan(owner, _unit())["clone_warning"] is None
    other = TestClient(owner.app)
    other.get(_unit())
    warning = _scan(other, _unit())["clone_warning"]
    assert warning["reason"] == "scanned_after_claim" and warning["scans_after_claim"] == 2
    assert _scan(owner, f"/00/{PARCEL}")["clone_warning"] is None  # the parcel's own code is another code


def test_a_unit_scanned_by_many_devices_warns(journey: Journey) -> None:
    _packed(journey)
    for _ in range(6):
        TestClient(journey.api.http.app).get(_unit())
    warning = _scan(journey.api.http, _unit())["clone_warning"]
    assert warning["reason"] == "many_devices" and warning["distinct_devices"] == 7


def test_a_unit_cannot_be_claimed_before_its_parcel_is_delivered(journey: Journey, problem: ProblemCheck) -> None:
    _packed(journey)
    journey.api.http.get(_unit())
    problem(journey.api.http.post(f"/claim{_unit()}", headers=JSON), 409)


def test_qr_codes_of_a_unit_encode_its_digital_link(journey: Journey) -> None:
    _packed(journey)
    png = journey.api.get(f"/qr/png{_unit()}")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    svg = journey.api.get(f"/qr/svg{_unit()}")
    assert svg.status_code == 200 and b"<svg" in svg.content
    other = journey.api.get(f"/qr/svg{_unit('S0001')}")
    assert other.content != svg.content


def _unit_bundle(journey: Journey) -> dict[str, Any]:
    _packed(journey)
    response = journey.api.get(f"/proof{_unit()}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def _trusted(journey: Journey) -> ChainClient:
    return ChainClient(journey.api.service.client.w3, address=journey.api.service.registry)


def test_a_units_proof_is_its_parcels_plus_the_split_that_packs_it_and_verifies(journey: Journey) -> None:
    bundle = _unit_bundle(journey)
    parcel = journey.api.get(f"/proof/00/{PARCEL}").json()
    assert bundle["events"] == parcel["events"] and bundle["subject"] == _unit()
    split = _split_event(journey)
    assert bundle["unit"] == {
        "gtin": GTIN,
        "serial": "S/0002",
        "epc": f"https://id.gs1.org{_unit()}",
        "parcel": f"https://id.gs1.org/00/{PARCEL}",
        "seq": split.seq,
        "eventID": split.event_hash,
    }
    verdict = verify_bundle(bundle, client=_trusted(journey))
    assert verdict.status is Status.VERIFIED, verdict.reason
    assert f"unit {GTIN}/S/0002 is packed into parcel https://id.gs1.org/00/{PARCEL} by event 4" in verdict.reason


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("serial", "S0003", "does not pack it"),
        ("seq", 0, "does not pack it"),
        ("seq", 99, "not in the bundle"),
        ("parcel", f"https://id.gs1.org/00/{sscc(8)}", "packs it into"),
    ],
)
def test_a_forged_unit_membership_is_tampered(journey: Journey, field: str, value: Any, reason: str) -> None:
    forged = copy.deepcopy(_unit_bundle(journey))
    forged["unit"][field] = value
    verdict = verify_bundle(forged, client=_trusted(journey))
    assert verdict.status is Status.TAMPERED and reason in verdict.reason


def test_a_unit_added_to_the_bundled_split_event_is_tampered(journey: Journey) -> None:
    forged = copy.deepcopy(_unit_bundle(journey))
    seq = forged["unit"]["seq"]
    forged["events"][seq]["event"]["childEPCs"].append(f"https://id.gs1.org{_unit('S0003')}")
    forged["unit"]["serial"] = "S0003"
    verdict = verify_bundle(forged, client=_trusted(journey))
    assert verdict.status is Status.TAMPERED and f"event {seq} differs" in verdict.reason


def test_a_parcels_units_print_on_a_label_sheet(journey: Journey) -> None:
    _packed(journey)
    response = journey.api.get(f"/labels/00/{PARCEL}.svg", journey.parties.warehouse)
    assert response.status_code == 200, response.text
    assert response.headers["x-total-pages"] == "1"
    root = ET.fromstring(response.content)
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert texts == [f"(01) {GTIN} (21) S0001", f"(10) {LOT}", f"(01) {GTIN} (21) S/0002", f"(10) {LOT}"]
    titles = [t.text for t in root.iter("{http://www.w3.org/2000/svg}title")]
    assert titles == [f"https://trace.example{_unit(s)}" for s in SERIALS]


def test_a_parcel_without_units_has_no_label_sheet_and_a_unit_none_of_its_own(
    journey: Journey, problem: ProblemCheck
) -> None:
    _packed(journey)
    assert _split(journey, (sscc(8), 1, [])).status_code == 202
    problem(journey.api.get(f"/labels/00/{sscc(8)}.svg", journey.parties.warehouse), 404)
    problem(journey.api.get(f"/labels{_unit()}.svg", journey.parties.warehouse), 400, "/21")


@pytest.mark.parametrize(
    ("units", "pointer"),
    [
        (["S" * 21], "/parcels/0/units/0"),  # AI 21 allows 20 characters
        (["S 1"], "/parcels/0/units/0"),  # a space is not in character set 82
        (["OK", "SÉRIE"], "/parcels/0/units/1"),
        ([""], "/parcels/0/units/0"),
        (["A", "B", "C"], "/parcels/0/units"),  # more serials than the parcel holds
    ],
)
def test_malformed_serials_are_400_naming_the_serial(
    journey: Journey, problem: ProblemCheck, units: list[str], pointer: str
) -> None:
    journey.to_stored()
    problem(_split(journey, (PARCEL, 2, units)), 400, pointer)
    with Session(journey.api.service.engine) as session:
        assert session.exec(select(Unit)).all() == []


def test_a_serial_of_the_same_gtin_twice_is_409(journey: Journey, problem: ProblemCheck) -> None:
    journey.to_stored()
    body = problem(_split(journey, (PARCEL, 2, ["S1", "S1"])), 409)
    assert "/21/S1" in body["detail"]
    problem(_split(journey, (PARCEL, 1, ["S1"]), (sscc(8), 1, ["S1"])), 409)
    assert _split(journey, (PARCEL, 1, ["S1"])).status_code == 202
    problem(_split(journey, (sscc(8), 1, ["S1"])), 409)


@pytest.mark.parametrize(
    ("path", "pointer"),
    [
        ("/01/09421902960054/21/S0001", "/01"),  # check digit should be 5
        ("/01/09421902960055/21/" + "S" * 21, "/21"),
        ("/01/09421902960055/21/S%200001", "/21"),  # a space
        ("/01/09421902960055/21/S%C3%89", "/21"),  # É
    ],
)
def test_malformed_unit_links_are_400_naming_the_part(
    journey: Journey, problem: ProblemCheck, path: str, pointer: str
) -> None:
    problem(journey.api.get(path, headers=JSON), 400, pointer)
    problem(journey.api.get(f"/proof{path}"), 400, pointer)


def test_an_unknown_unit_is_404(journey: Journey, problem: ProblemCheck) -> None:
    _packed(journey)
    body = problem(journey.api.get(_unit("S9999"), headers=JSON), 404)
    assert "/21/S9999" in body["detail"]


def test_a_serial_with_markup_characters_is_escaped_on_the_page_and_the_label_sheet(journey: Journey) -> None:
    journey.to_stored()
    serial = "<b>&\"'x"  # all in GS1 character set 82
    assert _split(journey, (PARCEL, 1, [serial])).status_code == 202
    journey.api.anchor()
    page = journey.api.get(_unit(serial), headers={"Accept-Language": "en"})
    assert page.status_code == 200 and "<b>&" not in page.text
    assert '<dd data-test="serial">&lt;b&gt;&amp;&#34;&#39;x</dd>' in page.text
    sheet = journey.api.get(f"/labels/00/{PARCEL}.svg", journey.parties.warehouse)
    texts = [t.text for t in ET.fromstring(sheet.content).iter("{http://www.w3.org/2000/svg}text")]
    assert texts[0] == f"(01) {GTIN} (21) {serial}"  # parsed back from well-formed XML


def test_more_serials_than_a_parcel_may_name_is_400(journey: Journey, problem: ProblemCheck) -> None:
    journey.to_stored()
    units = [f"S{i}" for i in range(1001)]
    problem(_split(journey, (PARCEL, 1001, units)), 400, "/parcels/0/units")


def test_a_unit_of_a_lot_expiring_soon_warns_on_its_page(journey: Journey) -> None:
    _packed(journey)
    soon = (date.today() + timedelta(days=5)).isoformat()
    with Session(journey.api.service.engine) as session:
        lot = session.exec(select(Lot)).one()
        lot.expiry = soon  # the lot's master data, as a declaration with that expiry would have stored it
        session.add(lot)
        session.commit()
    page = journey.api.get(_unit(), headers={"Accept-Language": "en"}).text
    assert 'data-test="expiry"' in page and f"Expires on {soon} (in 5 days)" in page
