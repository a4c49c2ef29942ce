"""``ChainView`` (tracer.scan_cache) over a scripted node: a lot's read that spans a check of the chain's head is
kept only when none of the blocks that check added carry logs of that lot."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from tracer.chain.client import ChainClient
from tracer.scan_cache import ChainView

A, B = b"\xaa" * 32, b"\xbb" * 32


@dataclass
class _Log:
    lot_id: bytes
    seq: int
    block_number: int
    block_hash: bytes = b"\x01" * 32  # its time is not asked of this node (block_times gives up quietly)


@dataclass
class _Node:
    """Blocks 1..head; ``logs`` by block; ``during_read`` runs while a lot's log is being read (a slow read)."""

    head: int = 10
    logs: list[_Log] = field(default_factory=list)
    reads: list[bytes] = field(default_factory=list)
    during_read: Any = None

    def latest_block(self) -> int:
        return self.head

    def block_hash(self, number: int) -> bytes:
        return number.to_bytes(32, "big")

    def recorded_events(self, *, from_block: int, to_block: int) -> list[_Log]:
        return [log for log in self.logs if from_block <= log.block_number <= to_block]

    def lot_events(self, lot_id: bytes, *, to_block: int) -> list[_Log]:
        self.reads.append(lot_id)
        found = [log for log in self.logs if log.lot_id == lot_id and log.block_number <= to_block]
        during, self.during_read = self.during_read, None
        if during is not None:
            during()
        return found


def _view(node: _Node) -> ChainView:
    return ChainView(cast(ChainClient, node), check_seconds=3600)


def _grow(node: _Node, view: ChainView, lot_id: bytes) -> None:
    """The chain grows by a block with a log of ``lot_id``, and another scan's check sees it."""
    node.head += 1
    node.logs.append(_Log(lot_id, len(node.logs), node.head))
    view.lot_events(b"\xcc" * 32, newest_stored_block=node.head)  # a forced check, as a fresh anchor causes


def test_a_read_spanning_growth_of_other_lots_is_kept() -> None:
    node = _Node(logs=[_Log(A, 0, 5)])
    view = _view(node)
    node.during_read = lambda: _grow(node, view, B)
    assert [log.seq for log in view.lot_events(A)] == [0]
    assert [log.seq for log in view.lot_events(A)] == [0]
    assert node.reads.count(A) == 1  # kept: the new block has no log of A


def test_a_read_spanning_growth_of_its_own_lot_is_not_kept() -> None:
    node = _Node(logs=[_Log(A, 0, 5)])
    view = _view(node)
    node.during_read = lambda: _grow(node, view, A)
    assert [log.seq for log in view.lot_events(A)] == [0]  # read at the old tip
    assert [log.seq for log in view.lot_events(A)] == [0, 1]  # read again, with the new block's log
    assert node.reads.count(A) == 2


def test_a_read_spanning_a_reorg_is_not_kept() -> None:
    node = _Node(logs=[_Log(A, 0, 5)])
    view = _view(node)

    def reorg() -> None:
        node.block_hash = lambda number: (number + 1000).to_bytes(32, "big")  # type: ignore[method-assign]
        node.head += 1
        view.lot_events(b"\xcc" * 32, newest_stored_block=node.head)

    node.during_read = reorg
    view.lot_events(A)
    view.lot_events(A)
    assert node.reads.count(A) == 2
