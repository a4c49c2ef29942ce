"""What an operator watches: the outbox, the writer's lag behind the chain, the indexer's height.

``snapshot`` reads it from the database (a handful of aggregate queries over indexed columns) and the node
(one ``eth_blockNumber``); it is cheap enough to run on every scrape, so the figures are never stale
and survive a restart. The web layer turns a snapshot into Prometheus metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from tracer.chain.client import ChainClient
from tracer.chain.indexer import CURSOR_KEY
from tracer.exceptions import ChainUnavailable
from tracer.store.database import get_meta
from tracer.store.models import ChainTask, Event

#: Every status an event can be in; each is reported, zero included, so an alert can compare against 0.
EVENT_STATUSES = ("pending", "anchored", "rejected")


@dataclass(frozen=True)
class Snapshot:
    """The service's state at one moment, as the metrics report it."""

    events: dict[str, int]  # status -> count; accepted = their sum
    tasks_pending: int  # role grants and fundings waiting in the outbox
    tasks_rejected: int
    oldest_pending_seconds: float  # age of the oldest pending event, 0 when none waits
    chain_head: int | None  # None: the node does not answer
    newest_anchor_block: int  # the registry's deployment block before the first anchor
    indexer_height: int

    @property
    def accepted(self) -> int:
        """Every event the service accepted (committed), whatever became of it since."""
        return sum(self.events.values())

    @property
    def writer_lag_blocks(self) -> int | None:
        """Blocks the chain has grown since the writer last anchored, while events wait; 0 when none waits.

        Counted only while something is pending: an idle writer on a node that makes empty blocks is not
        behind. None when the node does not answer.
        """
        if self.chain_head is None:
            return None
        if not self.events.get("pending") and not self.tasks_pending:
            return 0
        return max(0, self.chain_head - self.newest_anchor_block)

    @property
    def indexer_lag_blocks(self) -> int | None:
        """Blocks the indexer has not read yet (None when the node does not answer)."""
        return None if self.chain_head is None else max(0, self.chain_head - self.indexer_height)


def snapshot(*, engine: Engine, client: ChainClient, now: datetime | None = None) -> Snapshot:
    """The outbox, anchoring and indexing figures now; the node being away shows as ``chain_head=None``."""
    try:
        head: int | None = client.latest_block()
    except ChainUnavailable:
        head = None
    with Session(engine) as session:
        events = dict.fromkeys(EVENT_STATUSES, 0)
        for status, number in session.exec(select(Event.status, func.count()).group_by(Event.status)).all():
            events[status] = number
        tasks = dict(session.exec(select(ChainTask.status, func.count()).group_by(ChainTask.status)).all())
        oldest = session.exec(select(func.min(Event.created_at)).where(Event.status == "pending")).one()
        newest_anchor = session.exec(select(func.max(col(Event.block_number))).where(Event.status == "anchored")).one()
        cursor = get_meta(session, CURSOR_KEY)
    return Snapshot(
        events=events,
        tasks_pending=tasks.get("pending", 0),
        tasks_rejected=tasks.get("rejected", 0),
        oldest_pending_seconds=_age(oldest, now or datetime.now(UTC)),
        chain_head=head,
        newest_anchor_block=newest_anchor if newest_anchor is not None else client.deploy_block,
        indexer_height=int(cursor) if cursor is not None else client.deploy_block - 1,
    )


def _age(created_at: datetime | None, now: datetime) -> float:
    if created_at is None:
        return 0.0
    if created_at.tzinfo is None:  # SQLite gives back naive timestamps; they were written in UTC
        created_at = created_at.replace(tzinfo=UTC)
    return max(0.0, (now - created_at).total_seconds())
