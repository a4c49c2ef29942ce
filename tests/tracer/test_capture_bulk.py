"""A capture document applied in bulk: one lock per lot, one duplicate query, one INSERT, and still the rules,
the sequence numbers and the errors of one event at a time. On SQLite and PostgreSQL, without a chain (nothing
here is sent; the outbox rows are what is checked)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlmodel import Session, col, select

from tracer import capture, identifiers, journey
from tracer.actors import create_actor
from tracer.capture import CaptureRejected
from tracer.config import Settings
from tracer.epcis import document_hashes
from tracer.exceptions import DuplicateRecord, NotFound
from tracer.service import open_store
from tracer.store.database import set_meta
from tracer.store.models import Actor, Event, Meta

GTIN = "09421902960055"
CONTEXT = ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"]


@dataclass
class Store:
    engine: Engine
    warehouse: Actor
    lots: list[str]  # lot numbers, declared (seq 0 of each lot is its declaration)

    def capture(self, document: dict[str, Any], behaviour: str = capture.ROLLBACK) -> capture.CaptureResult:
        with Session(self.engine, expire_on_commit=False) as session:
            result = capture.capture(
                session=session, actor=self.warehouse, document=document, error_behaviour=behaviour
            )
            session.commit()
            return result

    def events(self) -> list[Event]:
        with Session(self.engine) as session:
            return list(session.exec(select(Event).where(Event.step != "declaration").order_by(col(Event.id))))

    def next_seq(self, lot: str) -> int:
        with Session(self.engine) as session:
            return journey.find_lot(session=session, gtin=GTIN, lot_number=lot).next_seq


@pytest.fixture
def store(tmp_path: Path, database_url: str) -> Iterator[Store]:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url, key_passphrase="test passphrase")
    engine, keystore = open_store(settings)
    with Session(engine, expire_on_commit=False) as session:
        enterprise = create_actor(session=session, keystore=keystore, name="enterprise-1", role="enterprise").actor
        warehouse = create_actor(session=session, keystore=keystore, name="wms-1", role="warehouse").actor
        lots = ["COLD-1", "COLD-2"]
        for lot in lots:
            declaration = journey.DeclarationIn(
                gtin=GTIN,
                lot=lot,
                product_name="Infant formula",
                hs_code="190110",
                origin_country="NZ",
                manufacturer="Waikato Dairy Ltd",
                quantity=1000,
                declaration_number=f"DEC-{lot}",
            )
            journey.declare(session=session, actor=enterprise, declaration=declaration)
        session.commit()
    yield Store(engine=engine, warehouse=warehouse, lots=lots)
    engine.dispose()


def reading(lot: str, n: int, **extra: Any) -> dict[str, Any]:
    """A temperature reading of ``lot``: an observation; ``n`` makes it (and its hash) distinct."""
    return {
        "type": "ObjectEvent",
        "eventTime": f"2026-11-27T08:{n // 60 % 60:02d}:{n % 60:02d}.000+08:00",
        "eventTimeZoneOffset": "+08:00",
        "action": "OBSERVE",
        "bizStep": "sensor_reporting",
        "quantityList": [{"epcClass": f"https://id.gs1.org/01/{GTIN}/10/{lot}"}],
        "sensorElementList": [{"sensorReport": [{"type": "Temperature", "value": 4 + n / 1000, "uom": "CEL"}]}],
        **extra,
    }


def correction(event: dict[str, Any]) -> dict[str, Any]:
    return {**event, "errorDeclaration": {"declarationTime": "2026-11-27T09:00:00.000Z", "reason": "incorrect_data"}}


def document(*events: dict[str, Any]) -> dict[str, Any]:
    return {
        "@context": CONTEXT,
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "epcisBody": {"eventList": list(events)},
    }


def statements(engine: Engine) -> list[str]:
    """The SQL the engine sends from now on (an executemany counts once)."""
    sent: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, statement, *_: sent.append(statement))
    return sent


def test_a_document_is_stored_in_each_lots_sequence_with_statements_that_do_not_grow_with_its_events(
    store: Store,
) -> None:
    a, b = store.lots
    small = document(*(reading(a if n % 2 else b, n) for n in range(10)))
    sent = statements(store.engine)
    store.capture(small)
    small_cost = len(sent)
    sent.clear()
    big = document(*(reading(a if n % 2 else b, n) for n in range(10, 410)))
    result = store.capture(big)
    assert len(sent) == small_cost  # lock, re-send look-up, one INSERT, the lots' updates, the job
    assert sum(s.lstrip().upper().startswith("INSERT INTO EVENT") for s in sent) == 1
    stored = store.events()
    assert [e.event_hash for e in stored] == document_hashes(small) + document_hashes(big)
    assert [a.event_id for a in result.accepted] == document_hashes(big)
    for lot in (a, b):
        lot_events = [e for e in stored if e.chain_args.startswith(f'["{_lot_id(lot)}"')]
        assert [e.seq for e in lot_events] == list(range(1, 206))  # gapless after the declaration's 0
        assert store.next_seq(lot) == 206
    assert {e.status for e in stored} == {"pending"}


def test_an_event_sent_twice_in_one_document_is_a_duplicate_and_nothing_is_stored(store: Store) -> None:
    a = store.lots[0]
    with pytest.raises(CaptureRejected) as refused:
        store.capture(document(reading(a, 1), reading(a, 2), reading(a, 1)))
    assert refused.value.index == 2 and isinstance(refused.value.cause, DuplicateRecord)
    assert store.events() == [] and store.next_seq(a) == 1


def test_an_event_already_stored_is_a_duplicate(store: Store) -> None:
    a = store.lots[0]
    store.capture(document(reading(a, 1)))
    with pytest.raises(CaptureRejected) as refused:
        store.capture(document(reading(a, 2), reading(a, 1)))
    assert refused.value.index == 1 and isinstance(refused.value.cause, DuplicateRecord)
    assert len(store.events()) == 1 and store.next_seq(a) == 2


def test_rollback_reports_the_first_bad_event_and_leaves_nothing(store: Store) -> None:
    a, b = store.lots
    bad = reading("NO-SUCH-LOT", 3)
    unreadable = {**reading(a, 4), "quantityList": [], "bizStep": "receiving"}  # an entry naming no lot
    with pytest.raises(CaptureRejected) as refused:
        store.capture(document(reading(a, 1), reading(b, 2), bad, unreadable))
    assert refused.value.index == 2 and isinstance(refused.value.cause, NotFound)
    assert store.events() == []
    assert (store.next_seq(a), store.next_seq(b)) == (1, 1)


def test_proceed_keeps_the_good_events_gapless_and_lists_the_bad(store: Store) -> None:
    a, b = store.lots
    first = reading(a, 1)
    result = store.capture(
        document(first, reading("NO-SUCH-LOT", 2), first, reading(b, 3), correction(first), reading(a, 4)),
        behaviour=capture.PROCEED,
    )
    assert result.job.success is False
    errors = json.loads(result.job.errors)
    assert [(e["eventIndex"], e["type"]) for e in errors] == [(1, "NotFound"), (2, "DuplicateRecord")]
    stored = store.events()
    assert [e.step for e in stored] == ["observation", "observation", "correction", "observation"]
    assert [e.seq for e in stored] == [1, 1, 2, 3]  # a: 1, 2, 3; b: 1 — no number taken by a refused event
    assert stored[2].corrects == stored[0].id
    assert (store.next_seq(a), store.next_seq(b)) == (4, 2)


def test_proceed_without_a_bad_event_stores_all_of_it(store: Store) -> None:
    a, b = store.lots
    result = store.capture(document(*(reading(a if n % 2 else b, n) for n in range(50))), behaviour=capture.PROCEED)
    assert result.job.success is True and len(result.accepted) == 50
    assert len(store.events()) == 50 and (store.next_seq(a), store.next_seq(b)) == (26, 26)


def test_a_correction_of_an_event_of_the_same_document_names_its_row(store: Store) -> None:
    a = store.lots[0]
    first = reading(a, 1)
    store.capture(document(first, reading(a, 2), correction(first)))
    stored = store.events()
    assert [e.step for e in stored] == ["observation", "observation", "correction"]
    assert stored[2].corrects == stored[0].id and stored[2].event_hash == stored[0].event_hash


def test_a_re_send_racing_the_original_waits_for_the_lot_and_is_refused(store: Store) -> None:
    """The lots are locked before re-sends are looked up: the second of two identical documents sees the first
    once it is committed, instead of both being accepted."""
    a = store.lots[0]
    resent = document(reading(a, 1))
    outcome: list[BaseException | capture.CaptureResult] = []

    def second() -> None:
        try:
            outcome.append(store.capture(resent))
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            outcome.append(exc)

    with Session(store.engine, expire_on_commit=False) as session:
        capture.capture(session=session, actor=store.warehouse, document=resent)
        racer = threading.Thread(target=second)
        racer.start()
        racer.join(timeout=1.0)
        assert racer.is_alive(), f"the second capture did not wait for the first: {outcome}"
        session.commit()
    racer.join(timeout=30)
    [result] = outcome
    assert isinstance(result, CaptureRejected) and isinstance(result.cause, DuplicateRecord), result
    assert result.index == 0
    assert len(store.events()) == 1 and store.next_seq(a) == 2


def test_concurrent_documents_on_the_same_lots_all_land_without_gaps(store: Store) -> None:
    """Writers naming the same lots in opposite orders: neither deadlocks nor fails with "database is locked"."""
    a, b = store.lots
    failures: list[BaseException] = []

    def client(index: int) -> None:
        try:
            for number in range(5):
                order = (a, b) if index % 2 else (b, a)
                base = 1000 * index + 100 * number
                store.capture(document(*(reading(order[n % 2], base + n) for n in range(40))))
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            failures.append(exc)

    clients = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(timeout=120)
    assert failures == []
    stored = store.events()
    assert len(stored) == 4 * 5 * 40
    for lot in (a, b):
        seqs = sorted(e.seq for e in stored if e.chain_args.startswith(f'["{_lot_id(lot)}"'))
        assert seqs == list(range(1, 401))


def test_a_sqlite_writer_that_read_first_waits_for_another_writer_instead_of_failing(tmp_path: Path) -> None:
    """SQLite transactions begin IMMEDIATE: a transaction that reads and then writes, while another holds the write
    lock, waits for it (busy timeout); a deferred one would fail at its first write ("database is locked")."""
    settings = Settings(
        data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'tracer.db'}", key_passphrase="test"
    )
    engine, _ = open_store(settings)
    failures: list[BaseException] = []

    def reader_then_writer() -> None:
        try:
            with Session(engine) as session:
                seen = len(session.exec(select(Meta)).all())
                set_meta(session, "second", str(seen))
                session.commit()
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            failures.append(exc)

    with Session(engine) as first:
        set_meta(first, "first", "1")
        first.flush()  # holds the write lock from here to its commit
        second = threading.Thread(target=reader_then_writer)
        second.start()
        second.join(timeout=0.5)
        first.commit()
    second.join(timeout=30)
    assert failures == []
    with Session(engine) as session:
        row = session.get(Meta, "second")
        assert row is not None and row.value == "1"  # it began, and read, after the first had committed
    engine.dispose()


def _lot_id(lot: str) -> str:
    return "0x" + identifiers.lot_id(GTIN, lot).hex()
