"""``ScanLog`` (tracer.scans): a scan's counts are the committed ones plus itself, exactly what the database says
once its record is in; the records are written behind the scans, never waiting for the write lock, and none is
lost to a busy database, a burst of scans of one code, a failed batch or a stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from tracer import scans
from tracer.scans import PendingScan, ScanLog, ScanSummary
from tracer.store.database import create_db_engine, init_db
from tracer.store.models import ScanClaim, ScanRecord

SUBJECT = "/00/095212340000000017"
START = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


@pytest.fixture(name="engine")
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'scans.db'}")
    init_db(engine)
    yield engine
    engine.dispose()


def _pending(device: str, at: datetime, subject: str = SUBJECT) -> PendingScan:
    return PendingScan(subject=subject, device_hash=device, latitude=None, longitude=None, scanned_at=at)


def _recorded(engine: Engine, subject: str = SUBJECT) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).where(ScanRecord.subject == subject)).scalar_one())


def _counts(summary: ScanSummary) -> tuple[object, ...]:
    return (
        summary.scan_count,
        summary.distinct_devices,
        summary.first_scan_at,
        summary.claimed_at,
        summary.claimed_by_this_device,
        summary.scans_after_claim_by_others,
        summary.warning,
    )


@settings(max_examples=40)
@given(
    devices=st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=14),
    claim=st.one_of(st.none(), st.tuples(st.integers(0, 13), st.sampled_from("abcdefgh"))),
)
def test_a_scans_counts_are_those_the_database_holds_once_its_record_is_in(
    devices: list[str], claim: tuple[int, str] | None
) -> None:
    engine = create_db_engine("sqlite://")
    init_db(engine)
    with Session(engine) as session:
        if claim is not None:  # claimed half a second after the scan of that index (or before any scan)
            when = START + timedelta(seconds=claim[0] - 0.5)
            session.add(ScanClaim(subject=SUBJECT, device_hash=claim[1] * 32, claimed_at=when))
            session.commit()
        for index, letter in enumerate(devices):
            device, at = letter * 32, START + timedelta(seconds=index)
            answered = scans.summarise(connection=session.connection(), subject=SUBJECT, device=device)
            answered = answered.with_scan(device=device, at=at)
            scans.record_scan(session=session, subject=SUBJECT, device=device, at=at)
            stored = scans.summarise(connection=session.connection(), subject=SUBJECT, device=device)
            assert _counts(answered) == _counts(stored)
    engine.dispose()


def test_records_are_written_behind_the_scans(engine: Engine) -> None:
    log = ScanLog(engine)
    for second in range(5):
        log.record(_pending("a" * 32, START + timedelta(seconds=second)))
    assert log.flush(timeout=30)
    assert _recorded(engine) == 5 and log.queued == 0 and log.settled(SUBJECT)
    log.close()


def test_a_scan_is_never_held_up_by_the_write_lock_and_its_record_waits_for_it(engine: Engine) -> None:
    log = ScanLog(engine)
    with engine.connect() as other:
        other.exec_driver_sql("SELECT 1")  # the listener began IMMEDIATE: this connection holds the write lock
        started = time.monotonic()
        for second in range(20):
            log.record(_pending("b" * 32, START + timedelta(seconds=second)))
        assert time.monotonic() - started < 5  # a hang guard: queueing takes microseconds
        assert not log.flush(timeout=0.5) and not log.settled(SUBJECT)  # the batch waits for the lock...
        other.rollback()
    assert log.flush(timeout=30)  # ...and goes in once it is free: nothing lost
    assert _recorded(engine) == 20
    log.close()


def test_settling_waits_for_earlier_records_only_while_more_of_the_same_code_arrive(engine: Engine) -> None:
    log = ScanLog(engine)
    log.record(_pending("c" * 32, START))
    stop = threading.Event()

    def more_of_the_same_code() -> None:
        second = 1
        while not stop.is_set():
            log.record(_pending("d" * 32, START + timedelta(seconds=second)))
            second += 1
            time.sleep(0.002)

    feeder = threading.Thread(target=more_of_the_same_code)
    feeder.start()
    try:
        first = log._newest[SUBJECT]  # the records queued before settling began
        log.settle(SUBJECT, timeout=30)
        assert log._committed >= first  # returned because they were in, not because 30 s ran out
    finally:
        stop.set()
        feeder.join()
    assert log.flush(timeout=30)
    log.close()


def test_a_batch_that_fails_for_another_reason_leaves_the_thread_writing(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = ScanLog(engine)
    real = ScanLog._write
    failures = iter([RuntimeError("a bug")])

    def write_once_broken(self: ScanLog, batch: list[PendingScan]) -> None:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        real(self, batch)

    monkeypatch.setattr(ScanLog, "_write", write_once_broken)
    log.record(_pending("e" * 32, START))
    assert log.flush(timeout=30)  # given up and logged
    log.record(_pending("e" * 32, START + timedelta(seconds=1)))
    assert log.flush(timeout=30)
    assert _recorded(engine) == 1
    log.close()


def test_closing_writes_what_is_queued(engine: Engine) -> None:
    log = ScanLog(engine)
    for second in range(3):
        log.record(_pending("f" * 32, START + timedelta(seconds=second), subject=f"/00/{second}"))
    log.close()
    assert sum(_recorded(engine, f"/00/{second}") for second in range(3)) == 3


def test_a_scan_summary_reads_the_covering_index_only(engine: Engine) -> None:
    """The summary every scan of a code makes never visits the table: on a code scanned hundreds of times (a
    copied code is), a row read per record made it grow with them."""
    compiled = scans._SUMMARY.statement.compile(dialect=engine.dialect)
    params = compiled.construct_params({"subject": SUBJECT, "device": "a" * 32})
    with engine.connect() as connection:
        plan = connection.exec_driver_sql(
            "EXPLAIN QUERY PLAN " + str(compiled), tuple(params[name] for name in compiled.positiontup or ())
        ).all()
    searches = [row[3] for row in plan if "scanrecord" in row[3]]
    assert searches == ["SEARCH scanrecord USING COVERING INDEX ix_scanrecord_subject_device_time (subject=?)"]


def test_an_older_database_gains_the_index_and_drops_the_one_it_covers(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'older.db'}")
    init_db(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP INDEX ix_scanrecord_subject_device_time")
        connection.exec_driver_sql("CREATE INDEX ix_scanrecord_subject ON scanrecord (subject)")  # as it was
    init_db(engine)
    with engine.connect() as connection:
        names = {row[0] for row in connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "ix_scanrecord_subject_device_time" in names
    assert "ix_scanrecord_subject" not in names  # superseded: its column leads the new index
    engine.dispose()
