"""The indexer: follows the registry's logs, confirms anchors from them, and repairs after a reorg.

It reads ``EventRecorded`` logs in chunks from a cursor, stores each once (keyed by block hash and log
index) with the hash of the blocks it reached, and anchors the database's events from what the chain
logged. When the chain changes under it — a reorg, or an anvil that came back from an older state dump,
which to the indexer is the same thing — the stored block hashes no longer match: it rewinds to the
last block both agree on, forgets the logs above it, and puts the events anchored there back into the
outbox, whose writer sends them again (a re-send the chain already holds counts as done).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, insert, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, delete, select
from web3.exceptions import BlockNotFound

from tracer.chain.client import ChainClient, RecordedEvent
from tracer.chain.worker import Worker
from tracer.epcis import event_hash_bytes
from tracer.exceptions import ChainError, ChainUnavailable
from tracer.store.database import get_meta, set_meta
from tracer.store.models import ChainLog, Event, IndexedBlock, Lot

log = logging.getLogger(__name__)

CURSOR_KEY = "indexer_block"
#: Blocks per round: a long way behind, the indexer catches up in bounded steps.
CHUNK_BLOCKS = 5_000
#: Block hashes kept to find the common ancestor after a reorg; a deeper reorg re-indexes from scratch.
KEPT_BLOCKS = 256


@dataclass
class IndexReport:
    """What one round (or a whole re-index) found."""

    logs: int = 0
    anchored: int = 0
    rewound_to: int | None = None
    reopened: list[str] = field(default_factory=list)  # eventIDs put back into the outbox
    mismatched: list[str] = field(default_factory=list)  # "lot/seq": the chain logged another hash
    missing_from_database: list[str] = field(default_factory=list)  # "lot/seq" logged but not stored


class Indexer(Worker):
    """Follows the registry's logs into the database (``run_once``: one bounded round)."""

    name = "indexer"

    def __init__(self, *, engine: Engine, client: ChainClient, idle_seconds: float = 1.0) -> None:
        super().__init__(idle_seconds=idle_seconds)
        self._engine = engine
        self._client = client

    def run_once(self) -> int:
        """Indexes up to ``CHUNK_BLOCKS`` new blocks, after repairing any reorg; returns logs + repairs."""
        report = self.index_round()
        return report.logs + len(report.reopened)

    def index_round(self) -> IndexReport:
        """One round, with its report."""
        report = IndexReport()
        latest = self._client.latest_block()
        # No database transaction stays open across a call to the node: a node that is slow or away must not
        # hold SQLite's write lock (commit() before each call; expire_on_commit=False keeps what was read).
        with Session(self._engine, expire_on_commit=False) as session:
            cursor = self._cursor(session)
            known = self._known_blocks(session)
            session.commit()
            ancestor = self._common_ancestor(known, cursor)
            if ancestor < cursor:
                self._rewind(session, ancestor, report)
                session.commit()
                cursor = ancestor
            # Events anchored above the chain's height are gone too (a node restored from an older state that
            # the index had not reached yet): back to the outbox, without waiting for the chain to grow past them.
            height = self._client.latest_block()
            for event in session.exec(
                select(Event).where(Event.status == "anchored", col(Event.block_number) > height)
            ).all():
                _reopen(session, event, report)
            session.commit()
            if latest > cursor:
                to_block = min(latest, cursor + CHUNK_BLOCKS)
                tip_hash = "0x" + self._client.block_hash(to_block).hex()
                recorded = self._client.recorded_events(from_block=cursor + 1, to_block=to_block)
                if "0x" + self._client.block_hash(to_block).hex() != tip_hash:
                    # The chain changed while its logs were read (a node restarted from an older state mid-round):
                    # they may mix two chains. Nothing of them is kept; the next round finds the common ancestor.
                    log.warning("the chain changed while blocks %d-%d were read; reading again", cursor + 1, to_block)
                    return report
                self._ingest(session, recorded, report)
                session.add(IndexedBlock(number=to_block, hash=tip_hash))
                set_meta(session, CURSOR_KEY, str(to_block))
                session.exec(delete(IndexedBlock).where(col(IndexedBlock.number) < to_block - KEPT_BLOCKS))
                cursor = to_block
            session.flush()
            # An anchor in a block the index has passed without reading its log was lost: the writer took it
            # from the receipt of a block that a reorg or a node restored from an older state dropped, perhaps
            # after this indexer had already read the new chain at that height. Back to the outbox.
            for event in session.exec(
                select(Event).where(col(Event.indexed).is_(False), Event.status == "anchored")
            ).all():
                if event.block_number is not None and event.block_number <= cursor:
                    _reopen(session, event, report)
            session.commit()
        return report

    def reindex(self) -> IndexReport:
        """Forgets everything indexed and reads the registry's whole history again; reports what differed."""
        with Session(self._engine) as session:
            session.exec(delete(ChainLog))
            session.exec(delete(IndexedBlock))
            set_meta(session, CURSOR_KEY, str(self._client.deploy_block - 1))
            session.commit()
        total = IndexReport()
        while True:
            report = self.index_round()
            for name in ("logs", "anchored"):
                setattr(total, name, getattr(total, name) + getattr(report, name))
            total.reopened += report.reopened
            total.mismatched += report.mismatched
            total.missing_from_database += report.missing_from_database
            with Session(self._engine) as session:
                if self._cursor(session) >= self._client.latest_block():
                    return total

    # -- internals ------------------------------------------------------------------------------------------

    def _cursor(self, session: Session) -> int:
        stored = get_meta(session, CURSOR_KEY)
        return int(stored) if stored is not None else self._client.deploy_block - 1

    @staticmethod
    def _known_blocks(session: Session) -> dict[int, str]:
        """The blocks the index holds logs of, and the tips of earlier rounds: number -> hash."""
        known = {block.number: block.hash for block in session.exec(select(IndexedBlock))}
        known.update(session.exec(select(ChainLog.block_number, ChainLog.block_hash).distinct()).all())
        return known

    def _common_ancestor(self, known: dict[int, str], cursor: int) -> int:
        """The highest indexed block whose hash the chain still has (the cursor when nothing changed)."""
        for number in sorted(known, reverse=True):
            try:
                if "0x" + self._client.block_hash(number).hex() == known[number]:
                    return min(number, cursor)
            except ChainUnavailable:
                raise  # a node that is away is no evidence of a reorg: try again when it answers
            except (ChainError, BlockNotFound):
                continue  # the chain is shorter now: that block is gone
        return cursor if not known else self._client.deploy_block - 1

    def _rewind(self, session: Session, ancestor: int, report: IndexReport) -> None:
        log.warning("the chain changed above block %d (reorg or restored state): rewinding the index", ancestor)
        report.rewound_to = ancestor
        session.exec(delete(ChainLog).where(col(ChainLog.block_number) > ancestor))
        session.exec(delete(IndexedBlock).where(col(IndexedBlock.number) > ancestor))
        for event in session.exec(
            select(Event).where(Event.status == "anchored", col(Event.block_number) > ancestor)
        ).all():
            _reopen(session, event, report)
        set_meta(session, CURSOR_KEY, str(ancestor))

    def _ingest(self, session: Session, recorded: list[RecordedEvent], report: IndexReport) -> None:
        # The chunk's stored logs and database events are read up front, a few queries per chunk instead of two per
        # log, and written back by one multi-row INSERT and one executemany UPDATE, without an ORM object per row: a
        # chunk of a bulk capture holds thousands of logs, and the work per log was most of the service's CPU.
        lots = {lot_id: lot_pk for lot_id, lot_pk in session.exec(select(Lot.lot_id, Lot.id)) if lot_pk is not None}
        known = self._known_logs(session, {"0x" + entry.block_hash.hex() for entry in recorded})
        events = self._events_at(
            session, {(lots[lot], e.seq) for e in recorded if (lot := "0x" + e.lot_id.hex()) in lots}
        )
        new_logs: list[dict[str, Any]] = []
        anchored: dict[int, dict[str, Any]] = {}
        for entry in recorded:
            lot_id = "0x" + entry.lot_id.hex()
            block_hash = "0x" + entry.block_hash.hex()
            if (block_hash, entry.log_index, entry.seq) not in known:
                known.add((block_hash, entry.log_index, entry.seq))
                new_logs.append(
                    {
                        "lot_id": lot_id,
                        "seq": entry.seq,
                        "step": entry.step,
                        "subject": "0x" + entry.subject.hex(),
                        "event_hash": "0x" + entry.event_hash.hex(),
                        "author": entry.author,
                        "tx_hash": entry.tx_hash,
                        "block_number": entry.block_number,
                        "block_hash": block_hash,
                        "log_index": entry.log_index,
                    }
                )
                report.logs += 1
            event = events.get((lots[lot_id], entry.seq)) if lot_id in lots else None
            if event is None:
                report.missing_from_database.append(f"{lot_id}/{entry.seq}")
                continue
            if event_hash_bytes(event["event_hash"]) != entry.event_hash:
                report.mismatched.append(f"{lot_id}/{entry.seq}")
                continue
            if (
                event["status"] != "anchored"
                or event["block_hash"] != block_hash
                or event["log_index"] != entry.log_index
                or not event["indexed"]
            ):
                event.update(
                    status="anchored",
                    reason=None,
                    indexed=True,
                    tx_hash=entry.tx_hash,
                    block_number=entry.block_number,
                    block_hash=block_hash,
                    log_index=entry.log_index,
                )
                anchored[event["id"]] = {key: value for key, value in event.items() if key != "event_hash"}
                report.anchored += 1
        if new_logs:
            session.execute(insert(ChainLog), new_logs)
        if anchored:
            session.execute(update(Event), list(anchored.values()))

    @staticmethod
    def _known_logs(session: Session, block_hashes: set[str]) -> set[tuple[str, int, int]]:
        """The stored logs of these blocks: (block hash, log index, seq)."""
        known: set[tuple[str, int, int]] = set()
        for part in _parts(sorted(block_hashes)):
            known.update(
                session.exec(
                    select(ChainLog.block_hash, ChainLog.log_index, ChainLog.seq).where(
                        col(ChainLog.block_hash).in_(part)
                    )
                ).all()
            )
        return known

    @staticmethod
    def _events_at(session: Session, places: set[tuple[int, int]]) -> dict[tuple[int, int], dict[str, Any]]:
        """The database's events at these (lot, seq) places (the columns the indexer compares and sets), read per
        lot by its range of sequence numbers."""
        by_lot: dict[int, list[int]] = {}
        for lot_pk, seq in places:
            by_lot.setdefault(lot_pk, []).append(seq)
        found: dict[tuple[int, int], dict[str, Any]] = {}
        for lot_pk, seqs in by_lot.items():
            wanted = set(seqs)
            # Plain rows (SQLAlchemy's select: SQLModel's takes at most four columns), not ORM objects.
            rows = session.execute(
                sa_select(
                    col(Event.id),
                    col(Event.seq),
                    col(Event.event_hash),
                    col(Event.status),
                    col(Event.block_hash),
                    col(Event.log_index),
                    col(Event.indexed),
                ).where(col(Event.lot_pk) == lot_pk, col(Event.seq) >= min(seqs), col(Event.seq) <= max(seqs))
            )
            for event_id, seq, event_hash, status, block_hash, log_index, indexed in rows:
                if seq in wanted:
                    found[(lot_pk, seq)] = {
                        "id": event_id,
                        "event_hash": event_hash,
                        "status": status,
                        "block_hash": block_hash,
                        "log_index": log_index,
                        "indexed": indexed,
                    }
        return found


def _parts(values: list[str], size: int = 500) -> list[list[str]]:
    """``values`` in parts small enough for one IN list on every database."""
    return [values[start : start + size] for start in range(0, len(values), size)]


def _reopen(session: Session, event: Event, report: IndexReport) -> None:
    log.warning("event %s (seq %d) is no longer on chain; it goes back to the outbox", event.event_hash, event.seq)
    event.status, event.reason, event.indexed = "pending", None, False
    event.tx_hash = event.block_hash = None
    event.block_number = event.log_index = None
    session.add(event)
    report.reopened.append(event.event_hash)
