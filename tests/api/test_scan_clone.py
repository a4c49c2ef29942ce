"""Clone detection: scans of a parcel code are recorded without personal data, the first scanner after
delivery claims it, and a later scan by another device, or many devices, warns of a copy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api_support import GTIN, LOT, Journey, sscc
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from tracer import identifiers, scans
from tracer.store.models import ScanClaim, ScanRecord

JSON = {"Accept": "application/json"}
HTML = {"Accept": "text/html"}


def _delivered(journey: Journey, *, deliver: bool = True) -> str:
    journey.to_stored()
    parcel = sscc(7)
    journey.split((parcel, 2))
    journey.documents(parcel)
    journey.release(parcel)
    if deliver:
        journey.deliver(parcel)
    journey.api.anchor()
    return parcel


def _phone(journey: Journey) -> TestClient:
    """Another device: a client of the same app with its own cookie jar."""
    return TestClient(journey.api.http.app)


def _scan(client: TestClient, parcel: str, **params: float) -> dict:
    response = client.get(f"/00/{parcel}", headers=JSON, params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_each_parcel_scan_is_recorded_with_a_salted_device_hash_only(journey: Journey) -> None:
    parcel = _delivered(journey)
    journey.api.http.get(f"/00/{parcel}", headers={**HTML, "User-Agent": "Mozilla/5.0 (iPhone)"})
    cookie = journey.api.http.cookies.get("tracer_device")
    assert cookie
    scan = _scan(journey.api.http, parcel, lat=39.9042, lon=116.4074)
    assert scan["scans"]["count"] == 2 and scan["scans"]["distinct_devices"] == 1
    assert journey.api.service.scan_log.flush()  # the records are written right after the answers
    with Session(journey.api.service.engine) as session:
        records = session.exec(select(ScanRecord)).all()
    assert {r.subject for r in records} == {f"/00/{parcel}"}
    assert all(len(r.device_hash) == 32 and cookie not in r.device_hash for r in records)
    assert (records[1].latitude, records[1].longitude) == (39.9, 116.4)  # about 11 km, never finer
    assert records[0].latitude is None


def test_a_scan_given_up_on_the_event_loop_and_run_in_a_thread_is_counted_once(journey: Journey) -> None:
    parcel = _delivered(journey)
    # The first scan after a start finds the lot's log uncached: on SQLite it gives up on the event loop after
    # reading its counts, and runs again in a thread.
    first = _scan(journey.api.http, parcel)
    assert first["scans"]["count"] == 1 and first["verification"]["status"] == "verified"
    second = _scan(journey.api.http, parcel)
    assert second["scans"]["count"] == 2
    assert journey.api.service.scan_log.flush()
    with Session(journey.api.service.engine) as session:
        assert len(session.exec(select(ScanRecord)).all()) == 2


def test_lot_scans_are_not_counted(journey: Journey) -> None:
    _delivered(journey)
    scan = journey.api.get(identifiers.lot_path(GTIN, LOT), headers=JSON).json()
    assert "scans" not in scan and scan["clone_warning"] is None
    assert journey.api.service.scan_log.flush()
    with Session(journey.api.service.engine) as session:
        assert session.exec(select(ScanRecord)).all() == []


def test_the_first_scanner_claims_and_may_scan_again_without_warning(journey: Journey) -> None:
    parcel = _delivered(journey)
    me = journey.api.http
    assert me.get(f"/00/{parcel}", headers=HTML).status_code == 200
    claimed = me.post(f"/claim/00/{parcel}", headers=JSON)
    assert claimed.status_code == 201, claimed.text
    assert me.post(f"/claim/00/{parcel}", headers=JSON).status_code == 200  # again: harmless
    scan = _scan(me, parcel)
    assert scan["scans"]["claimed"] and scan["scans"]["claimed_by_you"]
    assert scan["clone_warning"] is None


def test_a_scan_by_another_device_after_the_claim_warns(journey: Journey) -> None:
    parcel = _delivered(journey)
    me = journey.api.http
    me.get(f"/00/{parcel}", headers=HTML)
    assert me.post(f"/claim/00/{parcel}", headers=JSON).status_code == 201
    with _phone(journey) as other:
        other.get(f"/00/{parcel}", headers=HTML)
        warning = _scan(other, parcel)["clone_warning"]
        assert warning["reason"] == "scanned_after_claim"
        assert warning["scan_count"] == 3 and warning["scans_after_claim"] == 2
        assert warning["first_scan_at"] and warning["claimed_at"]
        assert other.post(f"/claim/00/{parcel}", headers=JSON).status_code == 409
    assert _scan(me, parcel)["clone_warning"]["reason"] == "scanned_after_claim"  # the owner learns it too


def test_a_form_claim_redirects_to_the_page(journey: Journey) -> None:
    parcel = _delivered(journey)
    me = journey.api.http
    me.get(f"/00/{parcel}", headers=HTML)
    response = me.post(f"/claim/00/{parcel}", headers=HTML, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == f"/00/{parcel}"


def test_an_undelivered_parcel_cannot_be_claimed(journey: Journey) -> None:
    parcel = _delivered(journey, deliver=False)
    me = journey.api.http
    scan = me.get(f"/00/{parcel}", headers=HTML)
    assert "确认已签收" not in scan.text and "Confirm I received it" not in scan.text
    assert me.post(f"/claim/00/{parcel}", headers=JSON).status_code == 409


def test_a_claim_without_the_device_cookie_is_refused(journey: Journey) -> None:
    parcel = _delivered(journey)
    with _phone(journey) as stranger:
        assert stranger.post(f"/claim/00/{parcel}", headers=JSON).status_code == 400


def test_many_distinct_devices_warn_even_without_a_claim(journey: Journey) -> None:
    parcel = _delivered(journey)
    for _ in range(scans.DEVICE_THRESHOLD):
        with _phone(journey) as phone:
            page = phone.get(f"/00/{parcel}", headers=HTML)
    assert 'data-test="clone"' not in page.text  # a household and a courier stay below the threshold
    with _phone(journey) as phone:
        page = phone.get(f"/00/{parcel}", headers={**HTML, "Accept-Language": "en"})
    assert 'data-test="clone"' in page.text and "different devices" in page.text
    warning = _scan(journey.api.http, parcel)["clone_warning"]
    assert warning["reason"] == "many_devices" and warning["distinct_devices"] > scans.DEVICE_THRESHOLD


def test_an_app_polling_without_cookies_counts_as_one_device(journey: Journey) -> None:
    parcel = _delivered(journey)
    for _ in range(scans.DEVICE_THRESHOLD + 3):
        with _phone(journey) as app:
            scan = _scan(app, parcel)
    assert scan["scans"]["distinct_devices"] == 1 and scan["clone_warning"] is None


def test_a_location_out_of_range_is_refused(journey: Journey) -> None:
    parcel = _delivered(journey)
    assert journey.api.get(f"/00/{parcel}", headers=JSON, params={"lat": 91, "lon": 0}).status_code == 400


def test_summary_counts_only_other_devices_after_the_claim(journey: Journey) -> None:
    with Session(journey.api.service.engine) as session:
        start = datetime.now(UTC) - timedelta(hours=1)
        scans.record_scan(session=session, subject="/00/x", device="a" * 32, at=start)
        scans.record_scan(session=session, subject="/00/x", device="b" * 32, at=start + timedelta(minutes=1))
        session.add(ScanClaim(subject="/00/x", device_hash="a" * 32, claimed_at=start + timedelta(minutes=2)))
        scans.record_scan(session=session, subject="/00/x", device="a" * 32, at=start + timedelta(minutes=3))
        session.commit()
        quiet = scans.summarise(connection=session.connection(), subject="/00/x", device="a" * 32)
        assert quiet.warning is None and quiet.scan_count == 3 and quiet.distinct_devices == 2
        scans.record_scan(session=session, subject="/00/x", device="b" * 32, at=start + timedelta(minutes=4))
        session.commit()
        loud = scans.summarise(connection=session.connection(), subject="/00/x")
        assert loud.warning == "scanned_after_claim" and loud.scans_after_claim_by_others == 1
        assert loud.first_scan_at == start
