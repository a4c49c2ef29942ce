"""The indexer and split batches: one ParcelsSplit log holds one event per parcel, each indexed and anchored."""

from __future__ import annotations

from api_support import Journey, sscc
from sqlmodel import Session, col, select, update

from tracer.store.models import ChainLog, Event


def test_each_event_of_a_split_batch_is_indexed_and_anchored_from_its_log(journey: Journey) -> None:
    journey.to_stored()
    assert journey.split(*[(sscc(n), 1) for n in (21, 22, 23)]).status_code == 202
    journey.api.anchor()
    with Session(journey.api.service.engine) as session:  # the writer lost track of every anchor
        session.exec(update(Event).values(status="pending", tx_hash=None, block_number=None, block_hash=None))
        session.commit()

    report = journey.api.service.indexer.index_round()

    assert report.logs == 7 and report.anchored == 7
    with Session(journey.api.service.engine) as session:
        logged = session.exec(select(ChainLog).where(col(ChainLog.seq) >= 4).order_by(col(ChainLog.seq))).all()
        events = session.exec(select(Event).where(col(Event.seq) >= 4).order_by(col(Event.seq))).all()
    assert [log.seq for log in logged] == [4, 5, 6]
    assert len({(log.block_hash, log.log_index) for log in logged}) == 1  # one log
    assert [log.event_hash for log in logged] == ["0x" + e.event_hash.split(";")[1][:64] for e in events]
    assert {e.status for e in events} == {"anchored"} and len({e.tx_hash for e in events}) == 1
