"""Verification of a lot's events against the chain, never against a hash column of our own database.

Each stored event is re-hashed from its payload (GS1's canonical hash) and compared, sequence by
sequence, with what the registry logged for the lot. A failed verification is a result, not an
exception: ``tampered`` when any event is altered or missing on either side, ``unverifiable`` when the
node does not answer, ``pending`` when some events are not on chain yet, else ``verified``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from tracer.chain.client import ChainClient, RecordedEvent
from tracer.epcis import event_hash, event_hash_bytes
from tracer.exceptions import ChainUnavailable, InvalidInput, TracerError, WouldBlock
from tracer.merkle import SPLIT_PARCEL_TYPES, leaf_hash, process_proof
from tracer.units import membership_problem, membership_summary

if TYPE_CHECKING:
    from tracer.scan_cache import ScanCache  # which imports this module's hash_stored


class Status(StrEnum):
    """The outcome of a verification, in precedence order (the first that applies wins)."""

    TAMPERED = "tampered"
    UNVERIFIABLE = "unverifiable"
    PENDING = "pending"
    VERIFIED = "verified"


class StoredEvent(Protocol):
    """What verification needs of a stored event (``tracer.store.models.Event`` has it)."""

    seq: int
    payload: str
    context: str | None
    status: str


class AnchoredEvent(StoredEvent, Protocol):
    """A stored event with the block the database says anchors it (None while pending)."""

    block_number: int | None


EventHasher = Callable[[str, "str | None"], str]
"""The canonical hash of an event from its stored payload and context (JSON text)."""


def hash_stored(payload: str, context: str | None) -> str:
    """The canonical hash of a stored event, computed afresh (raises ValueError or a TracerError if unreadable)."""
    return event_hash(json.loads(payload), context=json.loads(context) if context else None)


@dataclass(frozen=True)
class EventCheck:
    """The verdict on one event of a lot's chain."""

    seq: int
    event_id: str | None
    status: Status
    reason: str


@dataclass(frozen=True)
class Verification:
    """The verdict on a lot's whole chain, with one check per event."""

    status: Status
    reason: str
    checked_at: datetime
    events_checked: int
    checks: list[EventCheck] = field(default_factory=list)

    def public(self) -> dict[str, object]:
        """The ``verification`` object of the scan JSON (INTERFACES.md)."""
        return {
            "status": self.status.value,
            "reason": self.reason,
            "checked_at": self.checked_at.isoformat().replace("+00:00", "Z"),
            "events_checked": self.events_checked,
        }


def compare_with_chain(
    events: Sequence[StoredEvent],
    recorded: Sequence[RecordedEvent],
    *,
    holder: str = "the database",
    hasher: EventHasher = hash_stored,
) -> Verification:
    """Compares stored events with the registry's log of the lot (pure: no I/O); ``holder`` names where
    the events came from, for the reasons; ``hasher`` hashes each event from its stored bytes."""
    on_chain = {r.seq: r for r in recorded}
    checks: list[EventCheck] = []
    for event in events:
        try:
            event_id: str | None = hasher(event.payload, event.context)
        except (ValueError, TracerError) as exc:
            checks.append(EventCheck(event.seq, None, Status.TAMPERED, f"event {event.seq} cannot be read: {exc}"))
            on_chain.pop(event.seq, None)
            continue
        logged = on_chain.pop(event.seq, None)
        if logged is None:
            if event.status == "anchored":
                checks.append(
                    EventCheck(
                        event.seq,
                        event_id,
                        Status.TAMPERED,
                        f"event {event.seq} is recorded as anchored but the chain does not hold it",
                    )
                )
            else:
                checks.append(EventCheck(event.seq, event_id, Status.PENDING, f"event {event.seq} is not on chain yet"))
        elif logged.event_hash != event_hash_bytes(event_id or ""):
            checks.append(
                EventCheck(
                    event.seq,
                    event_id,
                    Status.TAMPERED,
                    f"event {event.seq} differs from the hash the chain holds (altered)",
                )
            )
        else:
            checks.append(
                EventCheck(
                    event.seq, event_id, Status.VERIFIED, f"event {event.seq} matches block {logged.block_number}"
                )
            )
    for seq in sorted(on_chain):
        checks.append(EventCheck(seq, None, Status.TAMPERED, f"event {seq} is on chain but missing from {holder}"))
    return _summarise(checks)


def verify_events(
    *,
    client: ChainClient,
    lot_id: str,
    events: Sequence[AnchoredEvent],
    cache: ScanCache | None = None,
    may_block: bool = True,
) -> Verification:
    """Verifies a lot's stored events against the registry ``client`` reads; never raises for a verdict.

    With ``cache`` (of the same client) the lot's log comes from its chain view and event hashes from its
    table (``tracer.scan_cache``: a tampered row or a reorg still reads ``tampered``); without, both are read
    and computed afresh. With ``may_block`` false (and a cache) it raises WouldBlock where the node would be
    asked.
    """
    if cache is not None and cache.chain.client is not client:
        cache = None  # a cache of another node says nothing about this one
    try:
        if cache is None:
            if not may_block:
                raise WouldBlock("verifying without the scan caches reads the chain")
            recorded = client.lot_events(lot_id)
        else:
            anchored = [e.block_number for e in events if e.block_number is not None]
            newest = max(anchored, default=None)
            asked = time.monotonic()
            recorded = cache.chain.lot_events(lot_id, newest_stored_block=newest, may_block=may_block)
            if _anchors_disagree(events, recorded):
                # The database saw the chain change after the cached log was read (the indexer put an event back
                # after a reorg, the writer anchored it again): the chain is asked now, not within the bound.
                recorded = cache.chain.lot_events(lot_id, checked_since=asked, may_block=may_block)
    except ChainUnavailable as exc:
        return Verification(
            status=Status.UNVERIFIABLE,
            reason=f"the chain could not be read: {exc.reason}",
            checked_at=_now(),
            events_checked=0,
        )
    return compare_with_chain(events, recorded, hasher=cache.hashes if cache is not None else hash_stored)


def _anchors_disagree(events: Sequence[AnchoredEvent], recorded: Sequence[RecordedEvent]) -> bool:
    """True when an event's stored anchor and the log differ: anchored or not, or in another block."""
    logged = {r.seq: r.block_number for r in recorded}
    for event in events:
        block = logged.get(event.seq)
        if (event.status == "anchored") != (block is not None):
            return True
        if block is not None and event.block_number is not None and block != event.block_number:
            return True
    return False


def _summarise(checks: list[EventCheck]) -> Verification:
    for status in (Status.TAMPERED, Status.PENDING):
        failing = [check for check in checks if check.status is status]
        if failing:
            reason = "; ".join(check.reason for check in failing[:5])
            if len(failing) > 5:
                reason += f"; and {len(failing) - 5} more"
            return Verification(status, reason, _now(), len(checks), checks)
    if not checks:
        return Verification(Status.PENDING, "no events recorded yet", _now(), 0, checks)
    return Verification(
        Status.VERIFIED,
        f"all {len(checks)} events match the hashes the registry holds, in sequence",
        _now(),
        len(checks),
        checks,
    )


def _now() -> datetime:
    return datetime.now(UTC)


# -- proof bundles ------------------------------------------------------------------------------------------


@dataclass
class _BundledEvent:
    """An event of a proof bundle, seen as verification sees a stored event."""

    seq: int
    payload: str
    context: str | None
    status: str
    claimed_tx: str | None


def verify_bundle(bundle: dict[str, object], *, client: ChainClient) -> Verification:
    """Checks a proof bundle against the registry ``client`` trusts (never the registry the bundle names).

    Catches an edited event, a dropped or added one (per-lot sequence, and the hash chain the registry
    holds), an anchor that names another transaction, a bundle made against another registry or chain,
    a unit's bundle whose split event does not pack the unit, and a split event's parcel leaf or Merkle proof
    (``splitProof``) that does not lead to the root the registry logged for it. Raises InvalidInput when the
    bundle is not one.
    """
    events, lot_id = _bundled_events(bundle)
    try:
        recorded = client.lot_events(lot_id)
        chain_id = client.chain_id
    except ChainUnavailable as exc:
        return Verification(Status.UNVERIFIABLE, f"the chain could not be read: {exc.reason}", _now(), 0)
    verdict = compare_with_chain(events, recorded, holder="the bundle")
    problems = [check.reason for check in verdict.checks if check.status is Status.TAMPERED]
    if str(bundle.get("registry", "")).lower() != client.address.lower():
        problems.insert(0, f"the bundle was made against registry {bundle.get('registry')}, not {client.address}")
    if bundle.get("chain_id") != chain_id:
        problems.insert(0, f"the bundle was made for chain {bundle.get('chain_id')}, not chain {chain_id}")
    if (membership := membership_problem(bundle)) is not None:
        problems.append(membership)  # a unit's bundle: the anchored split event must pack that unit
    problems += split_proof_problems(bundle, recorded)
    logged_tx = {r.seq: r.tx_hash.lower() for r in recorded}
    for event in events:
        if event.claimed_tx and event.seq in logged_tx and event.claimed_tx.lower() != logged_tx[event.seq]:
            problems.append(
                f"event {event.seq}'s anchor names transaction {event.claimed_tx}, not the one that logged it"
            )
    if problems:
        return Verification(
            Status.TAMPERED, "; ".join(problems), verdict.checked_at, verdict.events_checked, verdict.checks
        )
    if (packed := membership_summary(bundle)) is not None:
        return replace(verdict, reason=f"{verdict.reason}; {packed}")
    return verdict


def split_proof_problems(bundle: dict[str, object], recorded: Sequence[RecordedEvent]) -> list[str]:
    """What is wrong with the ``splitProof`` of the bundle's split events (none when all hold): each names its
    parcel's leaf ``{parcelId, index, quantity}`` and the proof of the leaf under ``merkleRoot``, which must be
    the parcels root the registry logged for that event, the index the one the batch gave that event's parcel;
    a parcel split by itself is logged under its own id (root = its leaf hash, empty proof)."""
    logged = {r.seq: r for r in recorded}
    problems = []
    for item in bundle.get("events") or []:  # type: ignore[attr-defined]
        split = item.get("splitProof") if isinstance(item, dict) else None
        if split is None:
            continue
        seq = item.get("seq")
        on_chain = logged.get(seq) if isinstance(seq, int) else None
        if on_chain is None:
            continue  # not on chain: compare_with_chain reports it
        try:
            leaf = split["leaf"]
            parcel_id = bytes.fromhex(str(leaf["parcelId"]).removeprefix("0x"))
            value = (parcel_id, int(leaf["index"]), int(leaf["quantity"]))
            proof = [bytes.fromhex(str(node).removeprefix("0x")) for node in split["proof"]]
            root = bytes.fromhex(str(split["merkleRoot"]).removeprefix("0x"))
            reached = process_proof(leaf_hash(SPLIT_PARCEL_TYPES, value), proof)
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(f"event {seq}'s split proof cannot be read ({exc})")
            continue
        expected_root = on_chain.subject if on_chain.split_range is not None else reached
        if on_chain.step_name != "Split":
            problems.append(f"event {seq} carries a split proof but the chain logged a {on_chain.step_name}")
        elif reached != root or root != expected_root:
            problems.append(f"event {seq}'s parcel leaf and proof do not lead to the split root the chain logged")
        elif on_chain.split_range is None and (proof or parcel_id != on_chain.subject):
            problems.append(f"event {seq}'s parcel is not the one the chain logged")
        elif on_chain.parcel_index is not None and value[1] != on_chain.parcel_index:
            problems.append(
                f"event {seq}'s parcel index {value[1]} is not {on_chain.parcel_index}, its place in its batch"
            )
    return problems


def _bundled_events(bundle: dict[str, object]) -> tuple[list[_BundledEvent], str]:
    raw_events = bundle.get("events")
    lot_id = bundle.get("lot_id")
    if not isinstance(raw_events, list) or not isinstance(lot_id, str):
        raise InvalidInput("not a tracer proof bundle: it needs lot_id and events", pointer="")
    events = []
    for index, item in enumerate(raw_events):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("seq"), int)
            or not isinstance(item.get("event"), dict)
        ):
            raise InvalidInput("each bundled event needs seq and event", pointer=f"/events/{index}")
        raw_anchor = item.get("anchor")
        anchor: dict[str, Any] = raw_anchor if isinstance(raw_anchor, dict) else {}
        context = item.get("context")
        events.append(
            _BundledEvent(
                seq=item["seq"],
                payload=json.dumps(item["event"]),
                context=None if context is None else json.dumps(context),
                status=str(anchor.get("status", "pending")),
                claimed_tx=anchor.get("txHash"),
            )
        )
    return events, lot_id
