"""Caches that let a scan verify a lot without re-reading the chain or re-hashing every event, and stay honest.

Three caches, each keyed so that what could make a verdict wrong misses it:

``ChainView`` holds, per lot, the registry's log of the lot (its on-chain ``(seq, hash)`` list) as read at one
block, the view's *tip*. Once the tip is ``check_seconds`` old, the next scan has a background thread ask the node
for its latest block (one ``eth_blockNumber`` and one ``eth_getBlockByNumber``, never more often whatever the
load) and goes on with the tip it has; the check:

- the tip is unchanged: every entry stands;
- the chain grew and the old tip is still canonical (its hash at its height is unchanged): the registry's logs
  of the new blocks only are read (one ``eth_getLogs``) and appended to the cached logs of the lots they name,
  and the times of the blocks they sit in are read for the scans to show (``block_times``);
- the old tip is gone (a reorg) or the node does not answer: everything is dropped, and the scan reads the chain
  afresh, or reads ``unverifiable``.

A scan whose stored events name a block past the tip (the writer has just anchored one) waits for that check,
so a freshly anchored event never reads as "anchored but not on chain"; so does a scan when the tip is older
than ``max_age_seconds`` (the background check is late: a busy process, a slow node). The bound: a reorg or a
node that stops answering is seen by scans within ``check_seconds`` plus the check itself, and never later than
``max_age_seconds`` (1 s by default); until then a scan may show the verdict of the chain as it was at the tip.

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
import logging
import threading
import time
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hexbytes import HexBytes
from web3.exceptions import BlockNotFound

from tracer.chain.client import ChainClient, RecordedEvent
from tracer.exceptions import ChainUnavailable, WouldBlock
from tracer.verify import hash_stored

log = logging.getLogger(__name__)

MAX_CACHED_LOTS = 50_000
MAX_CACHED_HASHES = 500_000
_REMEMBERED_BUMPS = 64  # a read that spans more of the view's changes than this is not stored


def staleness_bound(check_seconds: float) -> float:
    """The oldest a ``ChainView``'s tip may be when a scan answers from it (the check interval ``check_seconds``):
    1 s, or four intervals when that is longer."""
    return max(1.0, 4 * check_seconds)


@dataclass(frozen=True)
class Tip:
    """The block a ``ChainView``'s entries were read at."""

    number: int
    block_hash: bytes


class ChainView:
    """The registry's per-lot logs as of one block, kept current by a cheap check of the chain's head.

    Thread-safe: the service answers scans from a thread pool.
    """

    def __init__(self, client: ChainClient, *, check_seconds: float, max_age_seconds: float | None = None) -> None:
        self.client = client
        self.check_seconds = check_seconds
        self.max_age_seconds = staleness_bound(check_seconds) if max_age_seconds is None else max_age_seconds
        self._lock = threading.Lock()  # held while the tip moves (and while a read is stored)
        self._checking = False  # a background check is under way (read and set under _checking_guard)
        self._checking_guard = threading.Lock()
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

    def lot_events(
        self,
        lot_id: str | bytes,
        *,
        newest_stored_block: int | None = None,
        checked_since: float | None = None,
        may_block: bool = True,
    ) -> list[RecordedEvent]:
        """The registry's log of ``lot_id`` as of the view's tip, from the cache when it holds it.

        ``newest_stored_block``: the highest block the database says the lot's events sit in; past the tip it
        forces a check of the chain now. ``checked_since`` (a ``time.monotonic()``): a tip whose check began
        before it is checked again now. Raises ChainUnavailable when the node does not answer; with
        ``may_block`` false, WouldBlock instead of asking the node (or waiting for another thread's check).
        """
        key = bytes(HexBytes(lot_id))
        force = newest_stored_block is not None and (self._tip is None or newest_stored_block > self._tip.number)
        force = force or (checked_since is not None and self._checked_at < checked_since)
        tip, generation = self._check(force=force, may_block=may_block, checked_since=checked_since)
        cached = self._lots.get(key)
        if cached is not None:
            return cached
        if not may_block:
            raise WouldBlock(f"the log of lot 0x{key.hex()} is not cached")
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

    def _check(self, *, force: bool, may_block: bool = True, checked_since: float | None = None) -> tuple[Tip, int]:
        # Unlocked, the generation first: a move of the tip bumps it before it moves the tip, so a read made at a
        # tip older than the generation returned is never stored (_untouched_since sees the bump).
        generation = self._generation
        tip = self._tip
        if tip is not None and not force:
            age = time.monotonic() - self._checked_at
            if age < self.check_seconds:
                return tip, generation
            if age < self.max_age_seconds:
                # Due: a background thread asks the node while this scan goes on with the tip it has. Asked here
                # it held up the scan, and, in a thread beside a busy event loop, waited for the GIL on every
                # socket call: hundreds of milliseconds.
                self._check_in_background()
                return tip, generation
        if not may_block:
            raise WouldBlock("the chain's head must be checked first")
        with self._lock:
            tip = self._tip
            fresh = time.monotonic() - self._checked_at < self.check_seconds
            since = checked_since is not None and self._checked_at >= checked_since  # began after it was asked
            if tip is not None and fresh and (not force or since):
                return tip, self._generation  # another thread checked while this one waited
            try:
                new_blocks = self._advance()
            except ChainUnavailable:
                self._forget()
                raise
            assert self._tip is not None
            tip, generation = self._tip, self._generation
        block_times(self.client, new_blocks)  # display only: not under the lock
        return tip, generation

    def _check_in_background(self) -> None:
        with self._checking_guard:
            if self._checking:
                return
            self._checking = True
        threading.Thread(target=self._background_check, name="chain-view-check", daemon=True).start()

    def _background_check(self) -> None:
        try:
            new_blocks: list[str] = []
            with self._lock:
                if time.monotonic() - self._checked_at >= self.check_seconds:
                    new_blocks = self._advance()
            block_times(self.client, new_blocks)
        except ChainUnavailable:
            with self._lock:
                self._forget()  # the next scans ask the node themselves, and read unverifiable if it is gone
        except Exception:
            log.exception("the scan cache's check of the chain's head failed; its entries are dropped")
            with self._lock:
                self._forget()
        finally:
            with self._checking_guard:
                self._checking = False

    def _advance(self) -> list[str]:
        """Moves the tip to the node's latest block, dropping what the move may have made stale (lock held);
        returns the blocks holding the registry's new logs, whose times the scans will show."""
        checked_at = time.monotonic()
        number = self.client.latest_block()
        latest = Tip(number, self.client.block_hash(number))
        old = self._tip
        new_blocks: list[str] = []
        if old is None or latest == old:
            pass
        elif latest.number >= old.number and self._canonical(old):
            grown: dict[bytes, list[RecordedEvent]] = {}
            for event in self.client.recorded_events(from_block=old.number + 1, to_block=latest.number):
                grown.setdefault(event.lot_id, []).append(event)
                new_blocks.append(event.block_hash.hex())
            if grown:
                self._bump(frozenset(grown))  # a read of one of these lots started at the old tip lacks them
            for lot_id, events in grown.items():
                if lot_id in self._lots:  # in chain order: the new blocks follow the old tip
                    self._lots[lot_id] = self._lots[lot_id] + events
        else:
            self._forget()  # a reorg: any entry may hold logs of blocks no longer canonical
        self._tip = latest
        self._checked_at = checked_at
        return new_blocks

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


_BLOCK_TIMES: dict[str, str] = {}  # block hash (0x hex) -> ISO time: a block's time never changes
_BLOCK_TIME_LIMIT = 64
_BLOCK_TIME_CACHE = 100_000


def block_times(client: ChainClient, block_hashes: Iterable[str | None], *, may_block: bool = True) -> dict[str, str]:
    """The timestamps (ISO, UTC) of the blocks ``block_hashes``, as far as the node answers; never raises for the
    node. With ``may_block`` false only known ones are given, and WouldBlock is raised when one is not known.

    For display only: the verdict never depends on them. At most 64 blocks are looked up per call.
    """
    wanted = sorted({h if h.startswith("0x") else "0x" + h for h in block_hashes if h})[:_BLOCK_TIME_LIMIT]
    if len(_BLOCK_TIMES) > _BLOCK_TIME_CACHE:
        _BLOCK_TIMES.clear()  # bounded memory; a miss costs one eth_getBlockByHash
    for block_hash in wanted:
        if block_hash in _BLOCK_TIMES:
            continue
        if not may_block:
            raise WouldBlock(f"the time of block {block_hash} is not known")
        try:
            stamp = int(client.w3.eth.get_block(HexBytes(block_hash))["timestamp"])
        except Exception:  # any failure just leaves the time out; the verdict stands
            break
        _BLOCK_TIMES[block_hash] = datetime.fromtimestamp(stamp, UTC).isoformat().replace("+00:00", "Z")
    return {h: _BLOCK_TIMES[h] for h in wanted if h in _BLOCK_TIMES}


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
