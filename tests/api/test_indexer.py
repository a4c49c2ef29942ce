"""The indexer: anchors from the chain's own logs, and repairs after the chain changes under it."""

from __future__ import annotations

from api_support import Journey
from sqlmodel import Session, select

from tracer.store.models import ChainLog, Event


def _events(journey: Journey) -> list[Event]:
    with Session(journey.api.service.engine) as session:
        return list(session.exec(select(Event).order_by(Event.seq)))


def _index(journey: Journey):  # type: ignore[no-untyped-def]
    return journey.api.service.indexer.index_round()


def test_the_index_holds_each_log_once_and_confirms_the_anchors(journey: Journey) -> None:
    journey.to_stored()
    journey.api.anchor()
    first = _index(journey)
    assert first.logs == 4 and first.reopened == [] and first.missing_from_database == []
    assert _index(journey).logs == 0  # nothing new: nothing read twice
    with Session(journey.api.service.engine) as session:
        logged = session.exec(select(ChainLog).order_by(ChainLog.seq)).all()
    assert [(log.seq, log.tx_hash) for log in logged] == [(e.seq, e.tx_hash) for e in _events(journey)]


def test_events_the_writer_lost_track_of_are_anchored_from_the_logs(journey: Journey) -> None:
    journey.to_stored()
    journey.api.anchor()
    with Session(journey.api.service.engine) as session:
        for event in session.exec(select(Event)):
            event.status, event.tx_hash, event.block_number, event.block_hash = "pending", None, None, None
            session.add(event)
        session.commit()
    assert _index(journey).anchored == 4
    assert {e.status for e in _events(journey)} == {"anchored"}


def test_a_reorg_sends_the_dropped_events_again_and_the_index_repairs(journey: Journey) -> None:
    w3 = journey.api.service.client.w3
    tester = w3.provider.ethereum_tester  # type: ignore[attr-defined]
    journey.declare()
    journey.api.anchor()
    snapshot = tester.take_snapshot()
    journey.api.post(
        f"/lots/{journey.lot_id}/entry",
        journey.parties.warehouse,
        {"counted_quantity": 1000, "biz_location": "https://id.gs1.org/414/9521234000006"},
    )
    journey.api.anchor()
    assert _index(journey).logs == 2
    dropped = _events(journey)[1]

    tester.revert_to_snapshot(snapshot)  # the entry's block is gone: another chain grows in its place
    tester.mine_blocks(3)
    repaired = _index(journey)
    assert repaired.rewound_to is not None and repaired.reopened == [dropped.event_hash]
    assert [e.status for e in _events(journey)] == ["anchored", "pending"]

    journey.api.anchor()  # the writer sends it again
    assert _index(journey).logs == 1
    resent = _events(journey)[1]
    assert resent.status == "anchored" and resent.block_hash != dropped.block_hash
    scan = journey.api.get(f"/lots/{journey.lot_id}", journey.parties.warehouse).json()
    assert [e["status"] for e in scan["events"]] == ["anchored", "anchored"]


def test_reindex_rebuilds_from_logs_alone_and_reports_what_the_database_lacks(journey: Journey) -> None:
    journey.to_stored()
    journey.api.anchor()
    _index(journey)
    with Session(journey.api.service.engine) as session:
        session.delete(session.exec(select(Event).where(Event.seq == 3)).one())
        session.commit()
    report = journey.api.service.indexer.reindex()
    assert report.logs == 4
    assert report.missing_from_database == [f"{journey.lot_id}/3"]
