"""The scan of a lot or parcel: verified against the chain, never against our own hash column."""

from __future__ import annotations

import json

from api_support import GTIN, LOT, Journey, sscc
from sqlmodel import Session, select

from tracer import identifiers
from tracer.chain.client import ChainClient
from tracer.epcis import event_hash
from tracer.store.models import Event

JSON = {"Accept": "application/json"}


def _delivered(journey: Journey) -> str:
    journey.to_stored()
    parcel = sscc(7)
    journey.split((parcel, 2))
    journey.documents(parcel)
    journey.release(parcel)
    journey.deliver(parcel)
    journey.api.anchor()
    return parcel


def _scan(journey: Journey, path: str) -> dict:
    response = journey.api.get(path, headers=JSON)
    assert response.status_code == 200, response.text
    return response.json()


def test_scan_json_has_the_documented_shape(journey: Journey) -> None:
    parcel = _delivered(journey)
    scan = _scan(journey, f"/00/{parcel}")
    # INTERFACES.md's fields, plus ours for a parcel: its scan counts and claim (docs/scan.md)
    assert set(scan) == {"id", "product", "events", "verification", "recall", "clone_warning", "links", "scans"}
    assert scan["id"] == f"https://trace.example/00/{parcel}"
    assert set(scan["verification"]) == {"status", "reason", "checked_at", "events_checked"}
    assert scan["verification"]["events_checked"] == 10
    assert scan["recall"] == {"recalled": False}
    assert all(e["anchor"]["status"] == "anchored" and e["anchor"]["txHash"] for e in scan["events"])
    assert set(scan["links"]) == {"qr_png", "qr_svg", "proof", "claim"}
    assert scan["clone_warning"] is None
    assert all(e["check"] == "verified" and e["recordedAt"] for e in scan["events"])


def test_lot_path_with_a_percent_encoded_slash_resolves(journey: Journey) -> None:
    _delivered(journey)
    path = identifiers.lot_path(GTIN, LOT)
    assert "%2F" in path
    scan = _scan(journey, path)
    assert scan["product"]["lot"] == LOT
    assert scan["verification"]["status"] == "verified"
    assert {e["step"] for e in scan["events"]} == {"declaration", "entry", "inspection", "storage"}


def test_unanchored_events_scan_pending(journey: Journey) -> None:
    journey.declare()
    assert _scan(journey, identifiers.lot_path(GTIN, LOT))["verification"]["status"] == "pending"


def test_editing_a_stored_event_and_its_hash_scans_tampered(journey: Journey) -> None:
    parcel = _delivered(journey)
    with Session(journey.api.service.engine) as session:
        event = session.exec(select(Event).where(Event.step == "entry")).one()
        payload = json.loads(event.payload)
        payload["quantityList"][0]["quantity"] = 990
        event.payload = json.dumps(payload)
        event.event_hash = event_hash(payload)  # the forger fixes our hash column too
        session.add(event)
        session.commit()
    verification = _scan(journey, f"/00/{parcel}")["verification"]
    assert verification["status"] == "tampered"
    assert "event 1" in verification["reason"]


def test_deleting_a_stored_event_scans_tampered(journey: Journey) -> None:
    parcel = _delivered(journey)
    with Session(journey.api.service.engine) as session:
        session.delete(session.exec(select(Event).where(Event.step == "inspection")).one())
        session.commit()
    verification = _scan(journey, f"/00/{parcel}")["verification"]
    assert verification["status"] == "tampered"
    assert "missing from the database" in verification["reason"]


def test_an_unreachable_node_scans_unverifiable_never_verified(journey: Journey) -> None:
    parcel = _delivered(journey)
    service = journey.api.service
    service.client = ChainClient.connect("http://127.0.0.1:9", address=service.registry, timeout=1)
    assert _scan(journey, f"/00/{parcel}")["verification"]["status"] == "unverifiable"


def test_html_scan_shows_the_journey_in_chinese(journey: Journey) -> None:
    parcel = _delivered(journey)
    page = journey.api.get(f"/00/{parcel}", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "海关放行" in page.text and 'data-status="verified"' in page.text


def test_recall_shows_on_the_parcel_scan(journey: Journey) -> None:
    parcel = _delivered(journey)
    response = journey.api.post(f"/lots/{journey.lot_id}/recall", journey.parties.customs, {"reason": "melamine"})
    assert response.status_code == 202
    journey.api.anchor()
    scan = _scan(journey, f"/00/{parcel}")
    assert scan["recall"]["recalled"] is True and scan["recall"]["reason"] == "melamine"
    assert journey.api.service.client.is_recalled(identifiers.parcel_id(parcel))


def test_qr_codes_encode_the_digital_link(journey: Journey) -> None:
    parcel = _delivered(journey)
    links = _scan(journey, f"/00/{parcel}")["links"]
    png = journey.api.get(links["qr_png"].removeprefix("https://trace.example"))
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    svg = journey.api.get(links["qr_svg"].removeprefix("https://trace.example"))
    assert svg.status_code == 200 and b"<svg" in svg.content


def test_unknown_parcel_scan_is_404(journey: Journey) -> None:
    assert journey.api.get(f"/00/{sscc(99)}", headers=JSON).status_code == 404
