"""The scan page's HTML: language negotiation, warnings, escaping; and its pure display helpers."""

from __future__ import annotations

from datetime import date, timedelta

from api_support import GTIN, LOT, Journey, sscc

from tracer import identifiers
from tracer.views import display_place, display_time, expiry_state


def _stored_parcel(journey: Journey) -> str:
    journey.to_stored()
    parcel = sscc(7)
    journey.split((parcel, 2))
    journey.api.anchor()
    return parcel


def test_accept_language_picks_the_first_of_zh_or_en(journey: Journey) -> None:
    parcel = _stored_parcel(journey)
    english = journey.api.get(f"/00/{parcel}", headers={"Accept-Language": "fr-FR,en-US;q=0.8,zh;q=0.5"})
    assert '<html lang="en">' in english.text and "Verified on the blockchain" in english.text
    chinese = journey.api.get(f"/00/{parcel}", headers={"Accept-Language": "zh-TW,en;q=0.5"})
    assert '<html lang="zh-CN">' in chinese.text and "已通过区块链核验" in chinese.text


def test_the_switch_overrides_and_is_remembered(journey: Journey) -> None:
    parcel = _stored_parcel(journey)
    chosen = journey.api.get(f"/00/{parcel}?lang=en", headers={"Accept-Language": "zh-CN"})
    assert '<html lang="en">' in chosen.text and chosen.cookies.get("tracer_lang") == "en"
    again = journey.api.get(f"/00/{parcel}", headers={"Accept-Language": "zh-CN"})
    assert '<html lang="en">' in again.text


def test_the_page_is_self_contained_and_not_cached(journey: Journey) -> None:
    parcel = _stored_parcel(journey)
    page = journey.api.get(f"/00/{parcel}")
    assert page.headers["cache-control"] == "no-store"
    assert "<script" not in page.text and '<link rel="stylesheet"' not in page.text
    assert "https://" not in page.text.split("<body>")[0]  # nothing loaded from elsewhere


def test_a_lot_page_has_the_timeline_but_no_claim(journey: Journey) -> None:
    _stored_parcel(journey)
    page = journey.api.get(identifiers.lot_path(GTIN, LOT), headers={"Accept-Language": "en"})
    assert page.status_code == 200
    assert 'data-step="storage"' in page.text and 'data-test="claim"' not in page.text
    assert "GLN 9521234000006 · A-01-03" in page.text


def test_a_recall_reason_is_escaped_and_tops_the_page(journey: Journey) -> None:
    parcel = _stored_parcel(journey)
    reason = "<script>alert(1)</script> melamine"
    assert journey.api.post(f"/lots/{journey.lot_id}/recall", journey.parties.customs, {"reason": reason}).status_code
    journey.api.anchor()
    page = journey.api.get(f"/00/{parcel}", headers={"Accept-Language": "en"}).text
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; melamine" in page
    assert page.index('data-test="recall"') < page.index("data-status=")


def test_expiry_state_warns_within_thirty_days_and_after() -> None:
    today = date(2028, 6, 1)
    assert expiry_state("2028-06-30", today=today) == {"date": "2028-06-30", "state": "soon", "days_left": 29}
    assert expiry_state("2028-05-31", today=today)["state"] == "expired"
    assert expiry_state("2029-01-01", today=today)["state"] == "ok"
    assert expiry_state(None, today=today) is None and expiry_state("someday", today=today) is None


def test_times_show_in_china_standard_time_and_places_as_gln() -> None:
    assert display_time("2026-11-01T16:30:00.000Z") == "2026-11-02 00:30"
    assert display_time("not a time") is None
    assert display_place("https://id.gs1.org/414/9521234000006/254/A-01%2F03") == "GLN 9521234000006 · A-01/03"
    assert display_place("urn:epc:id:sgln:952123.4000.0") == "urn:epc:id:sgln:952123.4000.0"


def test_a_lot_expiring_soon_shows_a_warning(journey: Journey) -> None:
    soon = (date.today() + timedelta(days=10)).isoformat()
    assert journey.declare(expiry=soon).status_code == 202
    journey.api.anchor()
    page = journey.api.get(identifiers.lot_path(GTIN, LOT), headers={"Accept-Language": "en"}).text
    assert 'data-test="expiry"' in page and f"Expires on {soon}" in page
