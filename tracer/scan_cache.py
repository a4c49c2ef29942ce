"""Caches that let a scan verify a lot without re-reading the chain or re-hashing every event, and stay honest.

Three caches, each keyed so that what could make a verdict wrong misses it:

``ChainView`` holds, per lot, the registry's log of the lot (its on-chain ``(seq, hash)`` list) as read at one
block, the view's *tip*. At most every ``check_seconds`` a scan asks the node for its latest block (one
``eth_blockNumber`` and one ``eth_getBlockByNumber``, never more often whatever the load):

- the tip is unchanged: every entry stands;
- the chain grew and the old tip is still canonical (its hash at its height is unchanged): the registry's logs
  of the new blocks only are read (one ``eth_getLogs``) and appended to the cached logs of the lots they name;
- the old tip is gone (a reorg) or the node does not answer: everything is dropped, and the scan reads the chain
  afresh, or reads ``unverifiable``.

A scan whose stored events name a block past the tip (the writer has just anchored one) forces that check at
once, so a freshly anchored event never reads as "anchored but not on chain". The bound: a reorg or a node that
stops answering is seen by scans within ``check_seconds`` (plus one request in flight); until then a scan may
show the verdict of the chain as it was at the tip.

``EventHashes`` maps a digest of an event's stored bytes (payload and context) to its canonical hash: an
altered row has other bytes, misses, and is hashed afresh, so a tampered row reads ``tampered`` on the very
next scan.

``LotViews`` keeps, per lot, what a scan shows of its events (parsed payloads, anchors, block times, each
event's verdict) with the fingerprint it was built from: the event rows as this scan read them (every column
shown or verified) and this scan's verdicts. Any changed column or verdict misses it; it only spares parsing and
shaping rows that are the same.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from hexbytes import HexBytes
from web3.exceptions import BlockNotFound

from tracer.chain.client import ChainClient, RecordedEvent
from tracer.exceptions import ChainUnavailable
from tracer.verify import hash_stored

MAX_CACHED_LOTS = 50_000
MAX_CACHED_HASHES = 500_000
_REMEMBERED_BUMPS = 64  # a read that spans more of the view's changes than this is not stored


@dataclass(frozen=True)
class Tip:
    """The block a ``ChainView``'s entries were read at."""

    number: int
    block_hash: bytes


class ChainView:
    """The registry's per-lot logs as of one block, kept current by a cheap check of the chain's head.

    Thread-safe: the service answers scans from a thread pool.
    """

    def __init__(self, client: ChainClient, *, check_seconds: float) -> None:
        self.client = client
        self.check_seconds = check_seconds
        self._lock = threading.Lock()
        self._tip: Tip | None = None
        self._checked_at = float("-inf")
        self._generation = 0  # bumped whenever entries may have gone stale, so a slow read is not stored
        # What each bump changed: the lots whose logs grew, or None when everything was dropped. A read that
        # spanned bumps is still stored when none of them touched its lot: on a live chain (a block a second with
        # events of some lot in most) discarding every such read left busy workers reading the same lots again.
        self._changes: dict[int, frozenset[bytes] | None] = {}
        self._lots: dict[bytes, list[RecordedEvent]] = {}

    @property
    def tip(self) -> Tip | None:
        """The block the cached logs are current at (None before the first read or after a failure)."""
        return self._tip

    def lot_events(self, lot_id: str | bytes, *, newest_stored_block: int | None = None) -> list[RecordedEvent]:
        """The registry's log of ``lot_id`` as of the view's tip, from the cache when it holds it.

        ``newest_stored_block``: the highest block the database says the lot's events sit in; past the tip it
        forces a check of the chain now. Raises ChainUnavailable when the node does not answer.
        """
        key = bytes(HexBytes(lot_id))
        force = newest_stored_block is not None and (self._tip is None or newest_stored_block > self._tip.number)
        tip, generation = self._check(force=force)
        cached = self._lots.get(key)
        if cached is not None:
            return cached
        events = self.client.lot_events(key, to_block=tip.number)
        with self._lock:
            if self._untouched_since(generation, key):
                if len(self._lots) >= MAX_CACHED_LOTS:
                    self._lots.clear()  # bounded memory: a miss costs one eth_getLogs
                self._lots[key] = events
        return events

    def _untouched_since(self, generation: int, key: bytes) -> bool:
        """True when no bump after ``generation`` dropped everything or grew the log of ``key`` (lock held)."""
        for bump in range(generation + 1, self._generation + 1):
            changed = self._changes.get(bump)  # a bump forgotten (past the bound) counts as a drop
            if changed is None or key in changed:
                return False
        return True

    def _bump(self, changed: frozenset[bytes] | None) -> None:
        self._generation += 1
        self._changes[self._generation] = changed
        self._changes.pop(self._generation - _REMEMBERED_BUMPS, None)

    def _check(self, *, force: bool) -> tuple[Tip, int]:
        tip = self._tip
        if tip is not None and not force and time.monotonic() - self._checked_at < self.check_seconds:
            return tip, self._generation
        with self._lock:
            tip = self._tip
            if tip is not None and not force and time.monotonic() - self._checked_at < self.check_seconds:
                return tip, self._generation  # another thread checked while this one waited
            try:
                self._advance()
            except ChainUnavailable:
                self._forget()
                raise
            assert self._tip is not None
            return self._tip, self._generation

    def _advance(self) -> None:
        """Moves the tip to the node's latest block, dropping what the move may have made stale (lock held)."""
        checked_at = time.monotonic()
        number = self.client.latest_block()
        latest = Tip(number, self.client.block_hash(number))
        old = self._tip
        if old is None or latest == old:
            pass
        elif latest.number >= old.number and self._canonical(old):
            grown: dict[bytes, list[RecordedEvent]] = {}
            for event in self.client.recorded_events(from_block=old.number + 1, to_block=latest.number):
                grown.setdefault(event.lot_id, []).append(event)
            if grown:
                self._bump(frozenset(grown))  # a read of one of these lots started at the old tip lacks them
            for lot_id, events in grown.items():
                if lot_id in self._lots:  # in chain order: the new blocks follow the old tip
                    self._lots[lot_id] = self._lots[lot_id] + events
        else:
            self._forget()  # a reorg: any entry may hold logs of blocks no longer canonical
        self._tip = latest
        self._checked_at = checked_at

    def _canonical(self, tip: Tip) -> bool:
        try:
            return self.client.block_hash(tip.number) == tip.block_hash
        except BlockNotFound:
            return False

    def _forget(self) -> None:
        self._bump(None)
        self._lots.clear()
        self._tip = None
        self._checked_at = float("-inf")


class EventHashes:
    """Canonical event hashes by a SHA-256 digest of the stored bytes they were computed from."""

    def __init__(self) -> None:
        self._hashes: dict[bytes, str] = {}

    def __call__(self, payload: str, context: str | None) -> str:
        """The canonical hash of the stored ``payload`` under ``context`` (JSON text, None: the default).

        Raises what ``tracer.epcis.event_hash`` raises for an unreadable event (nothing is cached then).
        """
        digest = hashlib.sha256(payload.encode() + b"\0" + (context or "").encode()).digest()
        known = self._hashes.get(digest)
        if known is not None:
            return known
        computed = hash_stored(payload, context)
        if len(self._hashes) >= MAX_CACHED_HASHES:
            self._hashes.clear()
        self._hashes[digest] = computed
        return computed


class LotViews:
    """What a scan shows of a lot's events (parsed payloads, anchors, per-event verdicts), by lot, each kept with
    the fingerprint it was built from: every stored column the view shows or verifies, as read by this very
    scan, and the verdict of this scan's verification. A changed row, anchor or verdict differs, misses, and the
    view is built afresh; only the parsing and shaping of unchanged rows is spared. Thread-safe enough: a
    lost race builds a view twice."""

    def __init__(self) -> None:
        self._views: dict[str, tuple[Hashable, Any]] = {}

    def get(self, lot_id: str, fingerprint: Hashable) -> Any | None:
        """The view of ``lot_id`` built from ``fingerprint``, or None."""
        known = self._views.get(lot_id)
        return known[1] if known is not None and known[0] == fingerprint else None

    def put(self, lot_id: str, fingerprint: Hashable, view: Any) -> None:
        """Keeps ``view`` of ``lot_id`` as built from ``fingerprint`` (replacing an older one)."""
        if len(self._views) >= MAX_CACHED_LOTS and lot_id not in self._views:
            self._views.clear()  # bounded memory: a miss costs one build
        self._views[lot_id] = (fingerprint, view)


@dataclass
class ScanCache:
    """The caches of one service process: the chain view of its client, the event hashes, the lots' views."""

    chain: ChainView
    hashes: EventHashes
    views: LotViews = field(default_factory=LotViews)

    @classmethod
    def for_client(cls, client: ChainClient, *, check_seconds: float) -> ScanCache:
        """Empty caches over ``client``."""
        return cls(ChainView(client, check_seconds=check_seconds), EventHashes())
