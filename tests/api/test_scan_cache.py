"""The scan caches (tracer.scan_cache) stay honest: a tampered row, a reorg or a node gone down is seen by the next
scan (at once, or within the documented bound), and a freshly anchored event is never stale; a cached scan on SQLite
is answered on the event loop."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from api_support import GTIN, LOT, Journey
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlmodel import Session, select
from web3 import Web3

from api.routes import scan as scan_routes
from tracer import identifiers
from tracer.config import Settings
from tracer.scan_cache import ChainView, EventHashes
from tracer.store.models import Event, Lot
from tracer.verify import hash_stored

JSON = {"Accept": "application/json"}
CHECK_SECONDS = 0.2
LOT_PATH = identifiers.lot_path(GTIN, LOT)


@pytest.fixture(name="settings")
def short_check_settings(settings: Settings) -> Settings:
    """The deployment's settings with a short chain-head check, so that the tests can wait it out."""
    return settings.model_copy(update={"scan_check_seconds": CHECK_SECONDS})


def _verification(journey: Journey) -> dict[str, Any]:
    response = journey.api.get(LOT_PATH, headers=JSON)
    assert response.status_code == 200, response.text
    return dict(response.json()["verification"])


def _stored_lot(journey: Journey) -> None:
    journey.to_stored()
    journey.api.anchor()
    assert _verification(journey)["status"] == "verified"  # the lot's log and hashes are cached now


def _enter_and_anchor(journey: Journey) -> None:
    """The declared lot's entry, accepted and anchored (its second event, seq 1)."""
    entry = {"counted_quantity": 1000, "biz_location": "https://id.gs1.org/414/9521234000006"}
    response = journey.api.post(f"/lots/{journey.lot_id}/entry", journey.parties.warehouse, entry)
    assert response.status_code == 202, response.text
    journey.api.anchor()


def _chain_view(journey: Journey) -> ChainView:
    app: Any = journey.api.http.app
    view: ChainView = app.state.scan_cache.chain
    return view


def _counting_log_reads(journey: Journey, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records each read of a lot's log the scans make (the reads themselves still go to the chain)."""
    client = journey.api.service.client
    reads: list[str] = []
    real: Callable[..., Any] = client.lot_events

    def lot_events(lot_id: Any, **kwargs: Any) -> Any:
        reads.append(str(lot_id))
        return real(lot_id, **kwargs)

    monkeypatch.setattr(client, "lot_events", lot_events)
    return reads


def test_a_second_scan_reads_the_lots_log_from_the_cache(journey: Journey, monkeypatch: pytest.MonkeyPatch) -> None:
    journey.to_stored()
    journey.api.anchor()
    reads = _counting_log_reads(journey, monkeypatch)
    assert _verification(journey)["status"] == "verified"
    _chain_view(journey).check_seconds = 3600  # nothing new on chain: the cached log stands
    assert _verification(journey)["status"] == "verified"
    assert len(reads) == 1


def test_a_row_tampered_after_a_cached_scan_scans_tampered_at_once(journey: Journey) -> None:
    _stored_lot(journey)
    _chain_view(journey).check_seconds = 3600  # no check of the chain's head can help: the row's bytes must
    with Session(journey.api.service.engine) as session:
        event = session.exec(select(Event).where(Event.step == "entry")).one()
        payload = json.loads(event.payload)
        payload["quantityList"][0]["quantity"] = 990
        event.payload = json.dumps(payload)
        seq = event.seq
        session.add(event)
        session.commit()
    verification = _verification(journey)
    assert verification["status"] == "tampered"
    assert f"event {seq} differs" in verification["reason"]


def test_an_event_anchored_after_a_cached_scan_is_verified_at_once(
    journey: Journey, monkeypatch: pytest.MonkeyPatch
) -> None:
    journey.declare()
    journey.api.anchor()
    reads = _counting_log_reads(journey, monkeypatch)
    assert _verification(journey)["status"] == "verified"
    _chain_view(journey).check_seconds = 3600  # only the stored block past the cached tip can force the check
    _enter_and_anchor(journey)
    verification = _verification(journey)
    assert verification["status"] == "verified" and verification["events_checked"] == 2
    assert len(reads) == 1  # the new block's log was appended to the cached one, not read again whole


def test_a_cached_scan_on_sqlite_is_answered_on_the_event_loop(
    journey: Journey, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stored_lot(journey)
    hops: list[object] = []
    real = scan_routes.run_in_threadpool

    async def counting(function: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(function)
        return await real(function, *args, **kwargs)

    monkeypatch.setattr(scan_routes, "run_in_threadpool", counting)
    assert _verification(journey)["status"] == "verified"
    on_sqlite = journey.api.service.engine.dialect.name == "sqlite"
    assert hops == ([] if on_sqlite else [scan_routes._answer_scan])  # PostgreSQL's queries go to a thread


def _reorg_after_a_cached_scan(journey: Journey) -> None:
    """The lot's entry anchored and scanned verified (cached), then its block replaced by a longer chain."""
    w3 = journey.api.service.client.w3
    tester = w3.provider.ethereum_tester  # type: ignore[attr-defined]
    journey.declare()
    journey.api.anchor()
    snapshot = tester.take_snapshot()
    _enter_and_anchor(journey)
    assert _verification(journey)["status"] == "verified"
    tester.revert_to_snapshot(snapshot)  # the entry's block is gone; a longer chain grows in its place
    tester.mine_blocks(5)


def test_a_reorg_after_a_cached_scan_leaves_no_stale_verified(journey: Journey) -> None:
    _reorg_after_a_cached_scan(journey)
    time.sleep(_chain_view(journey).max_age_seconds * 1.1)  # the bound: past it a scan checks before answering
    verification = _verification(journey)
    assert verification["status"] == "tampered"
    assert "event 1 is recorded as anchored but the chain does not hold it" in verification["reason"]


def test_an_event_the_indexer_put_back_after_a_reorg_is_never_shown_verified(journey: Journey) -> None:
    _reorg_after_a_cached_scan(journey)
    journey.api.service.indexer.index_round()  # sees the entry's block gone: the event goes back to the outbox
    # At once, well within the bound: the database and the cached log disagree, so the chain is asked now.
    verification = _verification(journey)
    assert verification["status"] == "pending", verification


def test_a_scan_after_the_check_interval_has_the_head_checked_in_the_background(journey: Journey) -> None:
    _reorg_after_a_cached_scan(journey)
    view = _chain_view(journey)
    before = view.tip  # the tip of the cached scan: nothing has checked the head since
    time.sleep(CHECK_SECONDS * 1.5)
    _verification(journey)  # due: this scan answers at once, with the tip it has, and starts the check
    deadline = time.monotonic() + 30  # a hang guard: the check takes milliseconds
    while view.tip == before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert view.tip is not None and view.tip != before
    verification = _verification(journey)
    assert verification["status"] == "tampered"


def test_the_node_going_down_after_a_cached_scan_reads_unverifiable_within_the_bound(journey: Journey) -> None:
    _stored_lot(journey)
    # The same client, its node gone: nothing on the service's side changes but the answers.
    journey.api.service.client.w3.provider = Web3.HTTPProvider("http://127.0.0.1:9", request_kwargs={"timeout": 1})
    time.sleep(_chain_view(journey).max_age_seconds * 1.1)
    verification = _verification(journey)
    assert verification["status"] == "unverifiable"
    assert _chain_view(journey).tip is None  # and nothing cached is left to serve when it answers again


def test_a_zero_check_interval_turns_the_caches_off(journey: Journey) -> None:
    journey.api.service.settings.scan_check_seconds = 0
    _stored_lot(journey)
    app: Any = journey.api.http.app
    assert not hasattr(app.state, "scan_cache")


PAYLOAD = {
    "type": "ObjectEvent",
    "eventTime": "2026-11-27T08:00:00.000+08:00",
    "eventTimeZoneOffset": "+08:00",
    "action": "OBSERVE",
    "bizStep": "https://ref.gs1.org/cbv/BizStep-inspecting",
    "epcList": ["https://id.gs1.org/01/09421902960055/21/SN-1"],
}


@settings(max_examples=40, deadline=None)
@given(quantity=st.integers(min_value=0, max_value=10**6), step=st.sampled_from(["inspecting", "storing", "shipping"]))
def test_cached_hashes_are_those_of_the_stored_bytes(quantity: int, step: str) -> None:
    hashes = EventHashes()
    original = json.dumps(PAYLOAD)
    altered = json.dumps({**PAYLOAD, "bizStep": f"https://ref.gs1.org/cbv/BizStep-{step}", "tracer:quantity": quantity})
    assert hashes(original, None) == hash_stored(original, None)
    assert hashes(altered, None) == hash_stored(altered, None) != hashes(original, None)
    assert hashes(original, None) == hash_stored(original, None)  # the first entry is not overwritten


def test_an_anchor_changed_in_the_database_after_a_cached_scan_shows_at_once(journey: Journey) -> None:
    """The lot's cached view (parsed events, anchors) is keyed by the rows as read: a changed column misses it."""
    _stored_lot(journey)
    _chain_view(journey).check_seconds = 3600
    first = journey.api.get(LOT_PATH, headers=JSON).json()
    assert first == journey.api.get(LOT_PATH, headers=JSON).json() | {"verification": first["verification"]}
    with Session(journey.api.service.engine) as session:
        event = session.exec(select(Event).where(Event.step == "entry")).one()
        event.tx_hash = "0x" + "ab" * 32
        session.add(event)
        session.commit()
    scanned = journey.api.get(LOT_PATH, headers=JSON).json()
    entry = next(e for e in scanned["events"] if e["step"] == "entry")
    assert entry["anchor"]["txHash"] == "0x" + "ab" * 32


def test_a_recall_flag_changed_after_a_cached_scan_shows_at_once(journey: Journey) -> None:
    _stored_lot(journey)
    _chain_view(journey).check_seconds = 3600
    assert journey.api.get(LOT_PATH, headers=JSON).json()["recall"] == {"recalled": False}
    with Session(journey.api.service.engine) as session:
        lot = session.exec(select(Lot)).one()
        lot.recalled = True
        session.add(lot)
        session.commit()
    assert journey.api.get(LOT_PATH, headers=JSON).json()["recall"]["recalled"] is True
