"""The auditor's reconciliation: the chain alone tells each lot's story; the operator's database is checked against it.

Two halves, kept apart:

- **A pure core** (no I/O): ``reconcile_lot`` (the quantity ledger rebuilt from the logged steps and the
  quantities in their transactions' calldata, against ``getLedger``), ``check_sequence`` (gap-free sequence
  numbers and the hash chain folded into the head the registry holds), ``check_authors`` (each author held the
  step's role at that block, from replayed ``RoleGranted``/``RoleRevoked`` logs), ``check_bytecode`` (runtime code
  against the committed artifact, immutables masked and checked on their own) and ``compare_database`` (each stored
  event re-hashed with its stored context and compared with the logged hash).
- **Readers**: ``ChainReader`` speaks raw JSON-RPC (batched over HTTP, so 100,000 events read in seconds, through
  web3 for in-process providers such as eth-tester) and ``read_database`` loads the operator's rows.

``run_audit`` ties them together for a scope (one lot, one enterprise, a block range, or everything) and returns an
``AuditReport``; ``render_json`` / ``render_csv`` / ``render_html`` write it. A finding is a result, not an
exception: only a node that does not answer (``ChainUnavailable``) or a broken configuration raise.
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import orjson
from eth_abi import abi as eth_abi
from eth_utils.abi import event_abi_to_log_topic, function_abi_to_4byte_selector, get_abi_input_types
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3 import Web3

from tracer.chain.client import LOG_CHUNK_BLOCKS, ROLE_NAMES, STEP_NAMES, redact_url, role_id
from tracer.chain.compiler import RegistryArtifact, load_artifact
from tracer.chain.typed_data import DOMAIN_NAME, DOMAIN_VERSION, Action
from tracer.exceptions import ChainError, ChainUnavailable, InvalidInput, TracerError


# orjson parses the node's large log responses ~5x faster than json.
def _loads(raw: bytes) -> Any:
    return orjson.loads(raw)


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value)


#: Every kind of finding (INTERFACES.md "Verification and audit").
FINDING_KINDS: tuple[str, ...] = (
    "altered",
    "missing_from_database",
    "unanchored",
    "sequence_gap",
    "late_anchor",
    "quantity_imbalance",
    "bytecode_mismatch",
    "unauthorized_author",
)

#: ``ITraceRegistry.Step`` of registry v2 and v3 in declaration order (the logged ``step`` is the index).
STEPS = STEP_NAMES

#: The roles that may author each step (the registry's own checks, restated so an audit does not trust them).
STEP_ROLES: dict[str, tuple[str, ...]] = {
    "Declared": ("enterprise",),
    "Entered": ("warehouse",),
    "Inspected": ("customs",),
    "Stored": ("warehouse",),
    "Split": ("warehouse",),
    "DocumentAttached": ("enterprise", "payment", "carrier"),  # narrowed by the document's kind when known
    "Released": ("customs",),
    "Delivered": ("carrier",),
    "Recalled": ("enterprise", "customs"),
    "Observed": ("warehouse", "carrier", "customs"),
    "ClearedByRule": ("warehouse",),
    "ManifestReleased": ("customs",),
    "Returned": ("customs",),
    "Destroyed": ("customs",),
    "HoldLifted": ("customs",),
}
DOCUMENT_KINDS = ("order", "payment", "waybill")
DOCUMENT_ROLES = {"order": "enterprise", "payment": "payment", "waybill": "carrier"}
INSPECTION_RESULTS = ("conformant", "non_conformant", "sampled")
DISPOSALS = ("returned", "destroyed")

#: Event time this far before its block's time is a possible back-dating (``late_anchor``).
DEFAULT_LATE_ANCHOR_SECONDS = 86_400
#: A stored event still pending this recently is in flight, not ``unanchored``.
DEFAULT_PENDING_GRACE_SECONDS = 600

#: Requests per JSON-RPC batch (nodes cap batches: geth at 1,000).
RPC_BATCH = 250
#: Lot ids per ``eth_getLogs`` topic list.
LOTS_PER_FILTER = 200

_ZERO32 = "0x" + "00" * 32
_ROLE_BY_ID = {"0x" + role_id(name).hex(): name for name in ROLE_NAMES}
# A signed batch's ``Action`` i records ``Step`` i (Declare → Declared … Observe → Observed); a SplitBatch op
# records one Split per parcel.
_SIGNED_ACTIONS = tuple("Split" if action is Action.SPLIT_BATCH else STEP_NAMES[action] for action in Action)

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: called as a long audit advances (the CLI draws rich bars)."""


def _no_progress(_stage: str, _done: int, _total: int) -> None:
    return None


# -- what an audit works on -----------------------------------------------------------------------------------


@dataclass(slots=True)
class ChainEvent:
    """One ``EventRecorded`` log, with the block's time and what its transaction's calldata says it moved."""

    lot_id: str
    seq: int
    author: str
    step: str
    subject: str
    event_hash: str
    head: str
    tx_hash: str
    block_number: int
    block_hash: str
    log_index: int
    timestamp: int | None = None
    quantity: int | None = None  # units this step moved (declared, counted, split, released, disposed)
    detail: str | None = None  # inspection result, document kind or disposal kind
    parcels: int | None = None  # parcels released by a manifest step

    def public(self) -> dict[str, Any]:
        """The event as JSON and CSV show it."""
        return {
            "lot": self.lot_id,
            "seq": self.seq,
            "step": self.step,
            "author": self.author,
            "subject": self.subject,
            "event_hash": self.event_hash,
            "quantity": self.quantity,
            "detail": self.detail,
            "block_number": self.block_number,
            "block_time": _iso(self.timestamp),
            "tx_hash": self.tx_hash,
            "log_index": self.log_index,
        }


@dataclass(frozen=True, slots=True)
class RoleChange:
    """A ``RoleGranted`` or ``RoleRevoked`` log: who gave or took which role, and when."""

    role: str
    account: str
    sender: str
    granted: bool
    block_number: int
    log_index: int
    tx_hash: str
    timestamp: int | None = None

    def public(self) -> dict[str, Any]:
        """The change as JSON shows it."""
        return {
            "role": self.role,
            "account": self.account,
            "by": self.sender,
            "change": "granted" if self.granted else "revoked",
            "block_number": self.block_number,
            "block_time": _iso(self.timestamp),
            "tx_hash": self.tx_hash,
        }


@dataclass(frozen=True, slots=True)
class Ledger:
    """A lot's ``getLedger`` and ``getLot`` as the registry answers them."""

    declared: int
    received: int
    split: int
    released: int
    destroyed: int
    returned: int
    remaining: int
    next_seq: int
    head: str
    state: int
    recalled: bool
    enterprise: str


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event row of the operator's database, with what the audit needs of its lot and actor."""

    lot_id: str
    seq: int
    step: str
    payload: str
    context: str | None
    event_hash: str
    status: str
    tx_hash: str | None
    block_number: int | None
    actor_address: str | None
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class StoredLot:
    """A lot row of the operator's database (its ledger as the service shows it) and its parcels."""

    lot_id: str
    label: str
    enterprise_address: str | None
    declared: int
    received: int | None
    split: int
    released: int
    parcels: dict[str, int] = field(default_factory=dict)  # parcel id -> quantity


@dataclass(frozen=True, slots=True)
class Finding:
    """Something the audit found wrong, in INTERFACES.md's shape."""

    kind: str
    lot: str | None
    event: int | None
    evidence: dict[str, Any]

    def public(self) -> dict[str, Any]:
        """``{"kind", "lot", "event", "evidence"}``."""
        return {"kind": self.kind, "lot": self.lot, "event": self.event, "evidence": self.evidence}


@dataclass(frozen=True, slots=True)
class Scope:
    """What to audit: one lot, one enterprise's lots, the lots touched in a block range, or (all None) everything."""

    lot_id: str | None = None
    lot_label: str | None = None
    enterprise: str | None = None
    from_block: int | None = None
    to_block: int | None = None

    def public(self) -> dict[str, Any]:
        """The scope as the report names it."""
        return {
            "lot": self.lot_id,
            "lot_label": self.lot_label,
            "enterprise": self.enterprise,
            "from_block": self.from_block,
            "to_block": self.to_block,
        }


def lot_scope(value: str) -> Scope:
    """The scope of ``GTIN14/LOT`` (a GTIN of 8 to 14 digits; the lot may contain ``/``) or a 0x lot id.

    Raises InvalidInput for anything else.
    """
    from tracer import identifiers

    if re.fullmatch(r"0x[0-9a-fA-F]{64}", value):
        return Scope(lot_id=value.lower())
    gtin, sep, lot = value.partition("/")
    if not sep or not lot:
        raise InvalidInput("name the lot as GTIN14/LOT (or its 0x lot id)", pointer="/lot")
    gtin14 = identifiers.normalize_gtin(gtin, pointer="/lot")
    lot = identifiers.validate_lot(lot, pointer="/lot")
    return Scope(lot_id="0x" + identifiers.lot_id(gtin14, lot).hex(), lot_label=f"{gtin14}/{lot}")


@dataclass
class AuditReport:
    """Everything an audit found: findings, one reconciliation row per lot, the events, the role history."""

    registry: str
    chain_id: int
    rpc_url: str
    scope: Scope
    to_block: int
    deploy_block: int
    with_database: bool
    findings: list[Finding]
    reconciliation: list[dict[str, Any]]
    events: list[ChainEvent]
    event_status: dict[tuple[str, int], str]
    roles: list[RoleChange]
    bytecode: dict[str, Any]
    balances: dict[str, list[tuple[int | None, int, int]]]  # lot -> (time, block, bonded balance)
    stored_only: list[StoredEvent] = field(default_factory=list)
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def status(self) -> str:
        """``clean`` or ``findings``."""
        return "findings" if self.findings else "clean"

    def counts(self) -> dict[str, int]:
        """How many findings of each kind."""
        counted: dict[str, int] = defaultdict(int)
        for finding in self.findings:
            counted[finding.kind] += 1
        return dict(counted)

    def public(self) -> dict[str, Any]:
        """The JSON report: INTERFACES.md's ``status``, ``findings`` and ``reconciliation``, then the rest."""
        return {
            "status": self.status,
            "findings": [finding.public() for finding in self.findings],
            "reconciliation": self.reconciliation,
            "summary": {
                "registry": self.registry,
                "chain_id": self.chain_id,
                "rpc_url": self.rpc_url,
                "scope": self.scope.public(),
                "deploy_block": self.deploy_block,
                "to_block": self.to_block,
                "with_database": self.with_database,
                "lots": len(self.reconciliation),
                "events": len(self.events),
                "findings_by_kind": self.counts(),
                "generated_at": _iso_dt(self.generated_at),
            },
            "bytecode": self.bytecode,
            "roles": [change.public() for change in self.roles],
        }


# -- the pure core --------------------------------------------------------------------------------------------


def fold_head(head: str, event_hash: str) -> str:
    """The next head of a lot's hash chain: ``keccak256(head ‖ eventHash)`` (0x hex in, 0x hex out)."""
    return "0x" + keccak(bytes.fromhex(head[2:]) + bytes.fromhex(event_hash[2:])).hex()


def check_sequence(lot_id: str, events: Sequence[ChainEvent], ledger: Ledger | None) -> list[Finding]:
    """Gap-free sequence numbers ``0..n-1``, each logged head the fold of the ones before, and the registry's own
    head and next sequence number agreeing with the logs (a log a node withholds shows here)."""
    findings: list[Finding] = []
    ordered = sorted(events, key=lambda e: (e.seq, e.block_number, e.log_index))
    counts: dict[int, int] = defaultdict(int)
    for event in ordered:
        counts[event.seq] += 1
    seen = set(counts)
    duplicates = sorted(seq for seq, n in counts.items() if n > 1)
    if duplicates:
        findings.append(Finding("sequence_gap", lot_id, duplicates[0], {"source": "chain", "duplicate": duplicates}))
    expected = set(range(max(seen) + 1)) if seen else set()
    missing = sorted(expected - seen)
    if missing:
        findings.append(
            Finding(
                "sequence_gap", lot_id, missing[0], {"source": "chain", "missing": missing[:50], "count": len(missing)}
            )
        )
    head = _ZERO32
    folded_ok = True
    for event in ordered:
        head = fold_head(head, event.event_hash)
        if folded_ok and event.head.lower() != head:
            findings.append(
                Finding(
                    "sequence_gap",
                    lot_id,
                    event.seq,
                    {"source": "chain", "reason": "hash chain broken", "logged_head": event.head, "folded_head": head},
                )
            )
            folded_ok = False
    if ledger is not None:
        if ledger.next_seq != len(ordered):
            findings.append(
                Finding(
                    "sequence_gap",
                    lot_id,
                    len(ordered),
                    {"source": "chain", "reason": "registry's next sequence differs from the logs",
                     "next_seq": ledger.next_seq, "logged_events": len(ordered)},
                )
            )  # fmt: skip
        elif folded_ok and ordered and ledger.head.lower() != head:
            findings.append(
                Finding(
                    "sequence_gap",
                    lot_id,
                    ordered[-1].seq,
                    {"source": "chain", "reason": "registry's head differs from the folded logs",
                     "registry_head": ledger.head, "folded_head": head},
                )
            )  # fmt: skip
    return findings


def reconcile_lot(
    lot_id: str,
    events: Sequence[ChainEvent],
    ledger: Ledger | None,
    *,
    label: str | None = None,
    stored: StoredLot | None = None,
    registered: Mapping[str, int] | None = None,
) -> tuple[dict[str, Any], list[Finding]]:
    """The lot's quantities rebuilt from its logged steps, checked against the registry's ledger (and against
    the operator's lot row when given). ``registered`` holds the quantity of each parcel of a split batch that got
    its record (``ParcelRegistered``): a batch logs only its total. Returns the reconciliation row and its
    ``quantity_imbalance`` findings."""
    findings: list[Finding] = []

    def imbalance(event: int | None = None, **evidence: Any) -> None:
        findings.append(Finding("quantity_imbalance", lot_id, event, evidence))

    declared = received = None
    inspected = non_conformant = split = released = destroyed = returned = 0
    parcels_split = parcels_released = 0
    unknown: set[str] = set()
    split_parcels: dict[str, int] = dict(registered or {})
    released_parcels: set[str] = set()
    result: str | None = None
    cleared_by_rule = recalled = False
    enterprise: str | None = None
    for event in sorted(events, key=lambda e: e.seq):
        step, quantity = event.step, event.quantity
        if step == "Declared":
            enterprise = event.author
            declared = quantity
            if quantity is None:
                unknown.add("declared")
        elif step == "Entered":
            received = quantity
            if quantity is None:
                unknown.add("received")
        elif step == "Inspected":
            result = event.detail
            if received is not None:
                inspected = received
                if result == "non_conformant":
                    non_conformant = received
        elif step == "ClearedByRule":
            cleared_by_rule = True
        elif step == "Split":
            parcels_split += 1
            if quantity is None:
                unknown.add("split")
            else:
                split += quantity
                split_parcels[event.subject] = quantity
        elif step == "Released":
            parcels_released += 1
            parcel_quantity = split_parcels.get(event.subject)
            if event.subject in released_parcels:
                imbalance(event.seq, reason="parcel released twice", parcel=event.subject)
            released_parcels.add(event.subject)
            if parcel_quantity is None:
                imbalance(event.seq, reason="release of a parcel never split off this lot", parcel=event.subject)
                unknown.add("released")
            else:
                released += parcel_quantity
        elif step == "ManifestReleased":
            parcels_released += event.parcels or 0
            if quantity is None:
                unknown.add("released")
            else:
                released += quantity
        elif step in ("Returned", "Destroyed"):
            if quantity is None:
                unknown.add(step.lower())
            elif step == "Returned":
                returned += quantity
            else:
                destroyed += quantity
        elif step == "Recalled":
            recalled = True
    remaining = None if received is None else received - released - destroyed - returned
    row: dict[str, Any] = {
        "lot": lot_id,
        "label": label,
        "enterprise": enterprise,
        "events": len(events),
        "declared": declared,
        "received": received,
        "discrepancy": None if received is None or declared is None else received - declared,
        "inspected": inspected,
        "inspection": "cleared_by_rule" if cleared_by_rule else result,
        "non_conformant": non_conformant,
        "destroyed": destroyed,
        "returned": returned,
        "split": split,
        "parcels": parcels_split,
        "parcels_released": parcels_released,
        "released": released,
        "remaining": remaining,
        "recalled": recalled,
        "unknown_quantities": sorted(unknown),
        "first_block": min((e.block_number for e in events), default=None),
        "last_block": max((e.block_number for e in events), default=None),
    }
    # The ledger's own identity, then the logs against the ledger.
    if ledger is not None:
        row["ledger"] = {
            "declared": ledger.declared,
            "received": ledger.received,
            "split": ledger.split,
            "released": ledger.released,
            "destroyed": ledger.destroyed,
            "returned": ledger.returned,
            "remaining": ledger.remaining,
        }
        if ledger.released + ledger.destroyed + ledger.returned + ledger.remaining != ledger.received:
            imbalance(reason="ledger does not add up: released + destroyed + returned + remaining != received",
                      ledger=row["ledger"])  # fmt: skip
        logged = {
            "declared": declared or 0,
            "received": received or 0,
            "split": split,
            "released": released,
            "destroyed": destroyed,
            "returned": returned,
            "remaining": remaining or 0,
        }
        for name, value in logged.items():
            if name in unknown or (name == "remaining" and unknown):
                continue
            if value != row["ledger"][name]:
                imbalance(reason="the logged steps and the registry's ledger differ", field=name,
                          from_logs=value, ledger=row["ledger"][name])  # fmt: skip
    if received is not None:
        if released > received:
            imbalance(reason="released more than received", released=released, received=received)
        if split + destroyed + returned > received:
            imbalance(reason="split and disposed more than received", split=split, destroyed=destroyed,
                      returned=returned, received=received)  # fmt: skip
    elif released or split or destroyed or returned:
        imbalance(reason="goods moved before any entry count", split=split, released=released)
    if released > split and "split" not in unknown:
        imbalance(reason="released more than was split into parcels", released=released, split=split)
    if stored is not None:
        row["database"] = {
            "declared": stored.declared,
            "received": stored.received,
            "split": stored.split,
            "released": stored.released,
        }
        chain_side: tuple[tuple[str, int | None], ...] = (
            ("declared", declared),
            ("received", received),
            ("split", split),
            ("released", released),
        )
        for name, chain_value in chain_side:
            if name in unknown:
                continue
            if row["database"][name] != chain_value:
                findings.append(
                    Finding("quantity_imbalance", lot_id, None,
                            {"source": "database", "reason": "the database's lot differs from the chain",
                             "field": name, "database": row["database"][name], "chain": chain_value})
                )  # fmt: skip
        for parcel_id, quantity in stored.parcels.items():
            chain_quantity = split_parcels.get(parcel_id)
            if chain_quantity is not None and chain_quantity != quantity:
                findings.append(
                    Finding("quantity_imbalance", lot_id, None,
                            {"source": "database", "reason": "the database's parcel differs from the chain",
                             "parcel": parcel_id, "database": quantity, "chain": chain_quantity})
                )  # fmt: skip
    row["balanced"] = not findings
    return row, findings


def balance_series(
    events: Sequence[ChainEvent], registered: Mapping[str, int] | None = None
) -> list[tuple[int | None, int, int]]:
    """The lot's bonded balance (received − released − destroyed − returned) after each step that changes it,
    as ``(block time, block, balance)``, from the entry count on (``registered`` as for ``reconcile_lot``)."""
    series: list[tuple[int | None, int, int]] = []
    balance = 0
    split_parcels: dict[str, int] = dict(registered or {})
    for event in sorted(events, key=lambda e: e.seq):
        quantity = event.quantity
        if event.step == "Split" and quantity is not None:
            split_parcels[event.subject] = quantity
            continue
        if event.step == "Released":
            quantity = split_parcels.get(event.subject)
        if quantity is None:
            continue
        if event.step == "Entered":
            balance += quantity
        elif event.step in ("Released", "ManifestReleased", "Returned", "Destroyed"):
            balance -= quantity
        else:
            continue
        series.append((event.timestamp, event.block_number, balance))
    return series


class RoleTimeline:
    """Who held which role when, replayed from ``RoleGranted``/``RoleRevoked`` logs in chain order."""

    def __init__(self, changes: Iterable[RoleChange]) -> None:
        self._changes: dict[tuple[str, str], list[tuple[int, int, bool]]] = defaultdict(list)
        for change in sorted(changes, key=lambda c: (c.block_number, c.log_index)):
            self._changes[(change.role, change.account.lower())].append(
                (change.block_number, change.log_index, change.granted)
            )

    def holds(self, role: str, account: str, *, block: int, log_index: int) -> bool:
        """Whether ``account`` held ``role`` just before the log at (``block``, ``log_index``)."""
        history = self._changes.get((role, account.lower()))
        if not history:
            return False
        at = bisect.bisect_left(history, (block, log_index, False))
        return at > 0 and history[at - 1][2]


def check_authors(
    events: Sequence[ChainEvent], timeline: RoleTimeline, *, enterprise: str | None = None
) -> list[Finding]:
    """``unauthorized_author`` for each event whose author did not hold the step's role at its block, and for an
    order or an enterprise's recall by an enterprise that is not the lot's own (``enterprise``, the declarer)."""
    findings: list[Finding] = []
    for event in events:
        roles = STEP_ROLES.get(event.step, ())
        if event.step == "DocumentAttached" and event.detail in DOCUMENT_ROLES:
            roles = (DOCUMENT_ROLES[event.detail],)
        held = [
            r for r in roles if timeline.holds(r, event.author, block=event.block_number, log_index=event.log_index)
        ]
        if not held:
            findings.append(
                Finding("unauthorized_author", event.lot_id, event.seq,
                        {"author": event.author, "step": event.step, "needs": list(roles) or ["(unknown step)"],
                         "block_number": event.block_number, "tx_hash": event.tx_hash})
            )  # fmt: skip
            continue
        own_lot_only = (event.step == "DocumentAttached" and event.detail == "order") or (
            event.step == "Recalled" and "customs" not in held
        )
        if own_lot_only and enterprise is not None and event.author.lower() != enterprise.lower():
            findings.append(
                Finding("unauthorized_author", event.lot_id, event.seq,
                        {"author": event.author, "step": event.step, "reason": "not the lot's enterprise",
                         "lot_enterprise": enterprise, "block_number": event.block_number})
            )  # fmt: skip
    return findings


def compare_database(
    chain_events: Mapping[str, Sequence[ChainEvent]],
    stored: Mapping[str, Sequence[StoredEvent]],
    *,
    late_anchor_seconds: int = DEFAULT_LATE_ANCHOR_SECONDS,
    pending_grace_seconds: int = DEFAULT_PENDING_GRACE_SECONDS,
    now: datetime | None = None,
) -> tuple[dict[tuple[str, int], str], list[Finding], list[StoredEvent]]:
    """Each event as ``matching``, ``altered``, ``missing_from_database``, ``unanchored``, ``late_anchor`` or
    ``pending`` (accepted in the last ``pending_grace_seconds``), keyed by (lot, seq), with the findings.

    Each stored payload is re-hashed with its stored context and compared with the hash the chain logged, so an
    edited payload is caught whether or not the stored hash column was edited to match; the column and the
    stored anchor are compared too. Also returns the stored events the chain does not hold.
    """
    from tracer.epcis import event_hash

    now = now or datetime.now(UTC)
    status: dict[tuple[str, int], str] = {}
    findings: list[Finding] = []
    unanchored: list[StoredEvent] = []
    for lot_id in sorted(set(chain_events) | set(stored)):
        on_chain = {e.seq: e for e in chain_events.get(lot_id, ())}
        rows = sorted(stored.get(lot_id, ()), key=lambda r: r.seq)
        for row in rows:
            key = (lot_id, row.seq)
            logged = on_chain.pop(row.seq, None)
            try:
                context = json.loads(row.context) if row.context else None
                payload = json.loads(row.payload)
                recomputed: str | None = event_hash(payload, context=context)
            except (ValueError, TracerError) as exc:
                payload, recomputed = None, None
                reason = f"the stored payload cannot be read or hashed: {exc}"
            if logged is None:
                created = row.created_at.replace(tzinfo=row.created_at.tzinfo or UTC) if row.created_at else None
                recent = created is not None and (now - created).total_seconds() < pending_grace_seconds
                if row.status == "pending" and recent:
                    status[key] = "pending"
                    continue
                status[key] = "unanchored"
                unanchored.append(row)
                findings.append(
                    Finding("unanchored", lot_id, row.seq,
                            {"step": row.step, "event_id": recomputed or row.event_hash, "database_status": row.status,
                             "database_tx_hash": row.tx_hash, "reason": "the chain holds no event at this sequence"})
                )  # fmt: skip
                continue
            digest = _digest(recomputed) if recomputed else None
            problems: dict[str, Any] = {}
            if recomputed is None:
                problems["reason"] = reason
            elif digest != logged.event_hash:
                problems["reason"] = "the stored payload re-hashes to another hash than the chain logged"
                problems["recomputed"] = recomputed
                problems["stored_hash_matches_chain"] = _digest(row.event_hash) == logged.event_hash
            elif row.event_hash != recomputed:
                problems["reason"] = "the stored hash column differs from the payload's hash"
                problems["stored_hash"] = row.event_hash
            if row.tx_hash and row.tx_hash.lower() != logged.tx_hash.lower():
                problems.setdefault("reason", "the stored anchor names another transaction")
                problems["stored_tx_hash"] = row.tx_hash
            if problems:
                status[key] = "altered"
                findings.append(
                    Finding("altered", lot_id, row.seq,
                            {**problems, "step": row.step, "chain_hash": logged.event_hash, "tx_hash": logged.tx_hash})
                )  # fmt: skip
                continue
            if row.actor_address and row.actor_address.lower() != logged.author.lower():
                findings.append(
                    Finding("unauthorized_author", lot_id, row.seq,
                            {"reason": "the database names another actor than the chain's author",
                             "database_actor": row.actor_address, "author": logged.author})
                )  # fmt: skip
            event_time = _event_time(payload)
            if event_time is not None and logged.timestamp is not None:
                lag = logged.timestamp - event_time
                if lag > late_anchor_seconds:
                    status[key] = "late_anchor"
                    findings.append(
                        Finding("late_anchor", lot_id, row.seq,
                                {"event_time": _iso(event_time), "block_time": _iso(logged.timestamp),
                                 "lag_seconds": lag, "threshold_seconds": late_anchor_seconds,
                                 "block_number": logged.block_number})
                    )  # fmt: skip
                    continue
            status[key] = "matching"
        for seq, logged in sorted(on_chain.items()):
            status[(lot_id, seq)] = "missing_from_database"
            findings.append(
                Finding("missing_from_database", lot_id, seq,
                        {"step": logged.step, "chain_hash": logged.event_hash, "tx_hash": logged.tx_hash,
                         "block_number": logged.block_number})
            )  # fmt: skip
        seqs = [r.seq for r in rows]
        if seqs:
            missing = sorted(set(range(max(seqs) + 1)) - set(seqs))
            if missing:
                findings.append(
                    Finding("sequence_gap", lot_id, missing[0],
                            {"source": "database", "missing": missing[:50], "count": len(missing)})
                )  # fmt: skip
    return status, findings, unanchored


_EIP712_DOMAIN_TYPEHASH = keccak(
    text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)


def expected_immutables(*, address: str, chain_id: int) -> dict[str, str]:
    """The values the registry's immutables (OpenZeppelin ``EIP712``) must hold at ``address`` on ``chain_id``,
    as 32-byte 0x hex words, by name."""

    def short_string(text: str) -> bytes:
        raw = text.encode()
        return raw.ljust(31, b"\x00") + bytes([len(raw)])

    hashed_name, hashed_version = keccak(text=DOMAIN_NAME), keccak(text=DOMAIN_VERSION)
    this = bytes.fromhex(to_checksum_address(address)[2:]).rjust(32, b"\x00")
    chain = chain_id.to_bytes(32, "big")
    separator = keccak(_EIP712_DOMAIN_TYPEHASH + hashed_name + hashed_version + chain + this)
    words = {
        "cachedDomainSeparator": separator,
        "cachedChainId": chain,
        "cachedThisAddress": this,
        "hashedName": hashed_name,
        "hashedVersion": hashed_version,
        "name": short_string(DOMAIN_NAME),
        "version": short_string(DOMAIN_VERSION),
    }
    return {name: "0x" + word.hex() for name, word in words.items()}


def check_bytecode(
    code: bytes, artifact: RegistryArtifact, *, address: str, chain_id: int
) -> tuple[dict[str, Any], list[Finding]]:
    """The runtime code at ``address`` against the artifact's deployed bytecode with the immutable references
    masked, then each immutable's value against what the deployment must hold (``expected_immutables``)."""
    expected_code = bytes(HexBytes(artifact.deployed_bytecode))
    summary: dict[str, Any] = {
        "address": to_checksum_address(address),
        "artifact": artifact.contract_name,
        "artifact_keccak": "0x" + keccak(expected_code).hex(),
        "deployed_keccak": "0x" + keccak(code).hex(),
        "deployed_length": len(code),
        "artifact_length": len(expected_code),
        "immutables": {},
    }
    findings: list[Finding] = []
    if not code:
        summary["status"] = "no code"
        findings.append(Finding("bytecode_mismatch", None, None, {"reason": "no contract at the registry address",
                                                                  "address": summary["address"]}))  # fmt: skip
        return summary, findings
    ranges = [(ref["start"], ref["length"]) for refs in artifact.immutable_references.values() for ref in refs]
    if len(code) != len(expected_code):
        findings.append(
            Finding("bytecode_mismatch", None, None,
                    {"reason": "runtime code length differs from the artifact", "deployed_length": len(code),
                     "artifact_length": len(expected_code)})
        )  # fmt: skip
    else:
        masked_code, masked_expected = bytearray(code), bytearray(expected_code)
        for start, length in ranges:
            masked_code[start : start + length] = masked_expected[start : start + length] = b"\x00" * length
        if masked_code != masked_expected:
            first = next(i for i, (a, b) in enumerate(zip(masked_code, masked_expected, strict=True)) if a != b)
            findings.append(
                Finding("bytecode_mismatch", None, None,
                        {"reason": "runtime code differs from the artifact outside the immutables",
                         "first_difference": first})
            )  # fmt: skip
    if not findings:
        wanted = expected_immutables(address=address, chain_id=chain_id)
        by_value = {value: name for name, value in wanted.items()}
        found: dict[str, str] = {}
        for reference, refs in sorted(artifact.immutable_references.items()):
            values = {"0x" + code[r["start"] : r["start"] + r["length"]].hex() for r in refs}
            value = values.pop() if len(values) == 1 else None
            name = by_value.get(value) if value is not None else None
            if name is None:
                findings.append(
                    Finding("bytecode_mismatch", None, None,
                            {"reason": "an immutable holds a value this deployment cannot have",
                             "reference": reference, "values": sorted(values | ({value} if value else set()))})
                )  # fmt: skip
            else:
                found[name] = value or ""
                summary["immutables"][name] = value
        absent = sorted(set(wanted) - set(found))
        if absent and not findings:
            findings.append(Finding("bytecode_mismatch", None, None,
                                    {"reason": "immutables missing from the code", "names": absent}))  # fmt: skip
    summary["status"] = "mismatch" if findings else "matches"
    return summary, findings


# -- calldata: the quantities the logs do not carry ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Moved:
    quantity: int | None = None
    detail: str | None = None
    parcels: int | None = None


class CalldataDecoder:
    """Reads what each registry call moved from its calldata, keyed by (lot or parcel id, sequence number)."""

    _NAMES = (
        "declareLot",
        "declareLotClassified",
        "recordEntry",
        "recordInspection",
        "splitParcel",
        "attachDocument",
        "recordDisposal",
        "releaseManifest",
        "recordSigned",
    )

    def __init__(self, abi: Sequence[Mapping[str, Any]]) -> None:
        self._table: dict[bytes, tuple[str, list[str]]] = {}
        for item in abi:
            if item.get("type") == "function" and item.get("name") in self._NAMES:
                self._table[function_abi_to_4byte_selector(item)] = (  # type: ignore[arg-type]
                    item["name"],
                    list(get_abi_input_types(item)),  # type: ignore[arg-type]
                )

    def decode(self, data: bytes) -> dict[tuple[str, int], _Moved]:
        """What one transaction's input moved; empty for any other call (or input that does not decode)."""
        known = self._table.get(data[:4])
        if known is None:
            return {}
        name, types = known
        try:
            args = eth_abi.decode(types, data[4:])
        except Exception:  # noqa: BLE001 - a malformed input moved nothing we can read
            return {}
        return _moved(name, args)


def _moved(name: str, args: Sequence[Any]) -> dict[tuple[str, int], _Moved]:
    hx = _hex32
    if name in ("declareLot", "declareLotClassified"):
        return {(hx(args[0]), 0): _Moved(quantity=int(args[1]))}
    if name == "recordEntry":
        return {(hx(args[0]), int(args[1])): _Moved(quantity=int(args[2]))}
    if name == "recordInspection":
        return {(hx(args[0]), int(args[1])): _Moved(detail=_name(INSPECTION_RESULTS, args[2]))}
    if name == "splitParcel":
        return {(hx(args[0]), int(args[1])): _Moved(quantity=int(args[3]))}
    if name == "attachDocument":
        return {(hx(args[0]), int(args[1])): _Moved(detail=_name(DOCUMENT_KINDS, args[2]))}
    if name == "recordDisposal":
        return {(hx(args[0]), int(args[1])): _Moved(quantity=int(args[3]), detail=_name(DISPOSALS, args[2]))}
    if name == "releaseManifest":
        return {
            (hx(lot[0]), int(lot[1])): _Moved(quantity=int(lot[2]), parcels=sum(bin(w).count("1") for w in lot[4]))
            for lot in args[1]
        }
    moved: dict[tuple[str, int], _Moved] = {}  # recordSigned
    for lot_id, first_seq, ops in args[0][2]:
        lot = hx(lot_id)
        seq = int(first_seq)
        for action, _subject, amount, data, _hash in ops:
            if action == Action.SPLIT_BATCH:
                # One event per parcel; the batch's quantities come from its ParcelsSplit log.
                seq += int.from_bytes(data, "big")
                continue
            step = _SIGNED_ACTIONS[action] if action < len(_SIGNED_ACTIONS) else None
            if step in ("Declared", "Entered", "Split"):
                moved[(lot, seq)] = _Moved(quantity=int(amount))
            elif step == "Inspected":
                moved[(lot, seq)] = _Moved(detail=_name(INSPECTION_RESULTS, amount))
            elif step == "DocumentAttached":
                moved[(lot, seq)] = _Moved(detail=_name(DOCUMENT_KINDS, amount))
            seq += 1
    return moved


def _name(names: Sequence[str], value: int) -> str:
    return names[value] if 0 <= value < len(names) else f"unknown({value})"


# -- reading the chain ----------------------------------------------------------------------------------------


class ChainReader:
    """Raw JSON-RPC reads for an audit: batched over HTTP (fast for 100,000 logs), through web3 otherwise.

    Every method raises ChainUnavailable when the node does not answer and ChainError when it refuses a request.
    """

    def __init__(self, w3: Web3) -> None:
        self._w3 = w3
        self._eth: Any = w3.eth  # typed loosely: requests are built as plain dicts and block tags
        endpoint = getattr(w3.provider, "endpoint_uri", None)
        self._url = str(endpoint) if endpoint and str(endpoint).startswith("http") else None
        self._http = httpx.Client(timeout=300) if self._url else None
        self.rpc_url = redact_url(self._url) if self._url else type(w3.provider).__name__

    def close(self) -> None:
        """Closes the HTTP connection (if any)."""
        if self._http is not None:
            self._http.close()

    # The HTTP path: JSON-RPC batches, results left as the node's hex.

    def _batch(self, method: str, params: Sequence[Sequence[Any]]) -> list[Any]:
        assert self._http is not None and self._url is not None
        results: list[Any] = []
        for start in range(0, len(params), RPC_BATCH):
            body = [
                {"jsonrpc": "2.0", "id": i, "method": method, "params": list(p)}
                for i, p in enumerate(params[start : start + RPC_BATCH])
            ]
            try:
                response = self._http.post(
                    self._url, content=_dumps(body), headers={"Content-Type": "application/json"}
                )
                response.raise_for_status()
            except httpx.HTTPError as exc:
                raise ChainUnavailable(self.rpc_url, f"{type(exc).__name__}: {exc}") from exc
            answers = _loads(response.content)
            if isinstance(answers, dict):  # a node that refuses batches answers with one error
                raise ChainError(f"{method}: {answers.get('error')}")
            answers.sort(key=lambda a: a["id"])
            for answer in answers:
                if "error" in answer:
                    raise ChainError(f"{method}: {answer['error'].get('message')}")
                results.append(answer["result"])
        return results

    def block_number(self) -> int:
        """The latest block's number."""
        if self._http is not None:
            return int(self._batch("eth_blockNumber", [[]])[0], 16)
        return int(self._via_web3(lambda: self._w3.eth.block_number))

    def chain_id(self) -> int:
        """The chain id."""
        if self._http is not None:
            return int(self._batch("eth_chainId", [[]])[0], 16)
        return int(self._via_web3(lambda: self._w3.eth.chain_id))

    def code(self, address: str, block: int | str = "latest") -> bytes:
        """The runtime code at ``address`` (empty if none)."""
        return self.codes(address, [block])[0]

    def codes(self, address: str, blocks: Sequence[int | str]) -> list[bytes]:
        """The runtime code at ``address`` at each of ``blocks``."""
        if self._http is not None:
            tags = [hex(b) if isinstance(b, int) else b for b in blocks]
            return [bytes(HexBytes(c)) for c in self._batch("eth_getCode", [[address, t] for t in tags])]
        checksum = to_checksum_address(address)
        return [bytes(self._via_web3(partial(self._eth.get_code, checksum, b))) for b in blocks]

    def logs(self, address: str, topics: Sequence[Any], from_block: int, to_block: int) -> list[dict[str, Any]]:
        """The address's logs matching ``topics`` between the blocks, as ``{topics, data, blockNumber, logIndex,
        transactionHash, blockHash}`` (hex strings, ints), in ranges of ``LOG_CHUNK_BLOCKS``."""
        found: list[dict[str, Any]] = []
        ranges = [
            (start, min(start + LOG_CHUNK_BLOCKS - 1, to_block))
            for start in range(from_block, to_block + 1, LOG_CHUNK_BLOCKS)
        ]
        filters: list[dict[str, Any]] = [
            {"address": address, "topics": list(topics), "fromBlock": start, "toBlock": end} for start, end in ranges
        ]
        if self._http is not None:
            for chunk in self._batch(
                "eth_getLogs",
                [[{**f, "fromBlock": hex(f["fromBlock"]), "toBlock": hex(f["toBlock"])}] for f in filters],
            ):
                for log in chunk:
                    if log.get("removed"):
                        continue
                    found.append({
                        "topics": log["topics"], "data": log["data"], "blockNumber": int(log["blockNumber"], 16),
                        "logIndex": int(log["logIndex"], 16), "transactionHash": log["transactionHash"],
                        "blockHash": log["blockHash"],
                    })  # fmt: skip
            return found
        for f in filters:
            for log in self._via_web3(partial(self._eth.get_logs, f)):
                found.append({
                    "topics": [HexBytes(t).to_0x_hex() for t in log["topics"]],
                    "data": HexBytes(log["data"]).to_0x_hex(),
                    "blockNumber": int(log["blockNumber"]), "logIndex": int(log["logIndex"]),
                    "transactionHash": HexBytes(log["transactionHash"]).to_0x_hex(),
                    "blockHash": HexBytes(log["blockHash"]).to_0x_hex(),
                })  # fmt: skip
        return found

    def blocks(
        self, numbers: Sequence[int], *, progress: Progress = _no_progress
    ) -> dict[int, tuple[int, dict[str, tuple[str | None, bytes]]]]:
        """Each block's timestamp and its transactions' (to, input) by hash."""
        out: dict[int, tuple[int, dict[str, tuple[str | None, bytes]]]] = {}
        for start in range(0, len(numbers), RPC_BATCH):
            part = numbers[start : start + RPC_BATCH]
            if self._http is not None:
                raw = self._batch("eth_getBlockByNumber", [[hex(n), True] for n in part])
                for number, block in zip(part, raw, strict=True):
                    txs = {
                        tx["hash"].lower(): (tx.get("to"), bytes.fromhex(tx["input"][2:]))
                        for tx in block["transactions"]
                    }
                    out[number] = (int(block["timestamp"], 16), txs)
            else:
                for number in part:
                    block = self._via_web3(partial(self._w3.eth.get_block, number, full_transactions=True))
                    txs = {
                        HexBytes(tx["hash"]).to_0x_hex(): (
                            tx.get("to"),
                            bytes(HexBytes(tx.get("input", tx.get("data", b"")))),
                        )
                        for tx in block["transactions"]
                    }
                    out[number] = (int(block["timestamp"]), txs)
            progress("blocks", len(out), len(numbers))
        return out

    def calls(self, address: str, datas: Sequence[bytes], block: int | str) -> list[bytes]:
        """``eth_call`` of each input against ``address`` at ``block``."""
        if self._http is not None:
            tag = hex(block) if isinstance(block, int) else block
            raw = self._batch("eth_call", [[{"to": address, "data": "0x" + d.hex()}, tag] for d in datas])
            return [bytes(HexBytes(r)) for r in raw]
        checksum = to_checksum_address(address)
        call: Any = self._w3.eth.call
        return [bytes(self._via_web3(partial(call, {"to": checksum, "data": HexBytes(d)}, block))) for d in datas]

    def _via_web3(self, request: Callable[[], Any]) -> Any:
        try:
            return request()
        except OSError as exc:
            raise ChainUnavailable(self.rpc_url, f"{type(exc).__name__}: {exc}") from exc


def find_deploy_block(reader: ChainReader, address: str, latest: int) -> int:
    """The first block at which ``address`` holds code (binary search of ``eth_getCode``); 0 when the node keeps
    no old state to ask."""
    try:
        if not reader.code(address, latest):
            return latest
        low, high = 0, latest
        while low < high:
            middle = (low + high) // 2
            if reader.code(address, middle):
                high = middle
            else:
                low = middle + 1
        return low
    except ChainError:
        return 0


@dataclass
class _ChainView:
    events: dict[str, list[ChainEvent]]
    roles: list[RoleChange]
    ledgers: dict[str, Ledger]
    code: bytes
    #: Per lot, the quantity of each parcel of a split batch that was registered (``ParcelRegistered``).
    registered: dict[str, dict[str, int]] = field(default_factory=dict)


class _Registry:
    """The registry ABI pieces an audit needs: topics, getLedger/getLot encodings."""

    def __init__(self, abi: Sequence[Mapping[str, Any]]) -> None:
        events = {item["name"]: item for item in abi if item.get("type") == "event"}
        self.recorded = "0x" + event_abi_to_log_topic(events["EventRecorded"]).hex()  # type: ignore[arg-type]
        # Registry v3 on: split batches (one log for many Split events) and their parcels' records.
        self.split = self.parcel_registered = ""
        if "ParcelsSplit" in events:
            self.split = "0x" + event_abi_to_log_topic(events["ParcelsSplit"]).hex()  # type: ignore[arg-type]
            self.parcel_registered = "0x" + event_abi_to_log_topic(events["ParcelRegistered"]).hex()  # type: ignore[arg-type]
        self.lot_topics = [self.recorded, self.split] if self.split else [self.recorded]
        self.granted = "0x" + event_abi_to_log_topic(events["RoleGranted"]).hex()  # type: ignore[arg-type]
        self.revoked = "0x" + event_abi_to_log_topic(events["RoleRevoked"]).hex()  # type: ignore[arg-type]
        functions = {item["name"]: item for item in abi if item.get("type") == "function"}
        self.get_ledger = function_abi_to_4byte_selector(functions["getLedger"])  # type: ignore[arg-type]
        self.get_lot = function_abi_to_4byte_selector(functions["getLot"])  # type: ignore[arg-type]
        self.decoder = CalldataDecoder(abi)


def read_chain(
    reader: ChainReader,
    *,
    registry: str,
    abi: Sequence[Mapping[str, Any]],
    scope: Scope,
    deploy_block: int,
    to_block: int,
    progress: Progress = _no_progress,
) -> _ChainView:
    """Every log, block time, calldata quantity and ledger the audit of ``scope`` needs, from the chain alone."""
    reg = _Registry(abi)
    authors: dict[str, str] = {}

    def author(topic: str) -> str:
        found = authors.get(topic)
        if found is None:
            found = authors[topic] = to_checksum_address("0x" + topic[-40:])
        return found

    def decode(raw_logs: Iterable[dict[str, Any]]) -> list[ChainEvent]:
        decoded = []
        for log in raw_logs:
            topics, data = log["topics"], log["data"]
            if len(topics) == 4 and reg.split and topics[0].lower() == reg.split:
                decoded += _split_events(log, author(topics[3].lower()))
                continue
            if len(topics) != 4 or topics[0].lower() != reg.recorded or len(data) != 2 + 4 * 64:
                continue
            step = int(data[2:66], 16)
            decoded.append(
                ChainEvent(
                    lot_id=topics[1].lower(),
                    seq=int(topics[2], 16),
                    author=author(topics[3].lower()),
                    step=STEPS[step] if step < len(STEPS) else f"Step{step}",
                    subject="0x" + data[66:130],
                    event_hash="0x" + data[130:194],
                    head="0x" + data[194:258],
                    tx_hash=log["transactionHash"].lower(),
                    block_number=log["blockNumber"],
                    block_hash=log["blockHash"].lower(),
                    log_index=log["logIndex"],
                )
            )
        return decoded

    def lot_logs(lot_ids: Sequence[str]) -> list[ChainEvent]:
        found: list[ChainEvent] = []
        for start in range(0, len(lot_ids), LOTS_PER_FILTER):
            found += decode(reader.logs(registry, [reg.lot_topics, list(lot_ids[start : start + LOTS_PER_FILTER])],
                                        deploy_block, to_block))  # fmt: skip
            progress("logs", min(start + LOTS_PER_FILTER, len(lot_ids)), len(lot_ids))
        return found

    progress("logs", 0, 1)
    if scope.lot_id is not None:
        events = lot_logs([scope.lot_id])
    elif scope.enterprise is not None:
        topic = "0x" + to_checksum_address(scope.enterprise)[2:].lower().rjust(64, "0")
        declared = [e for e in decode(reader.logs(registry, [reg.recorded, None, None, topic], deploy_block, to_block))
                    if e.step == "Declared"]  # fmt: skip
        events = lot_logs(sorted({e.lot_id for e in declared}))
    else:
        start = max(scope.from_block or deploy_block, deploy_block)
        events = decode(reader.logs(registry, [reg.lot_topics], start, to_block))
        if start > deploy_block:  # lots touched in the range are audited over their whole history
            events = lot_logs(sorted({e.lot_id for e in events}))
    progress("logs", 1, 1)
    raw_roles = reader.logs(registry, [[reg.granted, reg.revoked]], deploy_block, to_block)
    registered: dict[str, dict[str, int]] = defaultdict(dict)
    split_lots = sorted({e.lot_id for e in events if e.step == "Split"})
    for start in range(0, len(split_lots) if reg.parcel_registered else 0, LOTS_PER_FILTER):
        chunk = split_lots[start : start + LOTS_PER_FILTER]
        for log in reader.logs(registry, [reg.parcel_registered, chunk], deploy_block, to_block):
            registered[log["topics"][1].lower()][log["topics"][2].lower()] = int(log["data"][66:130], 16)
    # Block times and calldata of every block that holds an event or a role change.
    numbers = sorted({e.block_number for e in events} | {log["blockNumber"] for log in raw_roles})
    blocks = reader.blocks(numbers, progress=progress)
    moved: dict[tuple[str, int], _Moved] = {}
    registry_lower = registry.lower()
    decoded_txs: set[str] = set()
    for event in events:
        timestamp, txs = blocks[event.block_number]
        event.timestamp = timestamp
        if event.tx_hash in decoded_txs:
            continue
        decoded_txs.add(event.tx_hash)
        to, data = txs.get(event.tx_hash, (None, b""))
        if to is not None and to.lower() == registry_lower:
            moved.update(reg.decoder.decode(data))
    for event in events:
        found = moved.get((event.lot_id, event.seq)) or moved.get((event.subject, event.seq))
        if found is not None:
            event.quantity, event.detail, event.parcels = found.quantity, found.detail, found.parcels
    roles = [
        RoleChange(
            role=_ROLE_BY_ID.get(log["topics"][1].lower(), log["topics"][1]),
            account=author(log["topics"][2].lower()),
            sender=author(log["topics"][3].lower()),
            granted=log["topics"][0].lower() == reg.granted,
            block_number=log["blockNumber"],
            log_index=log["logIndex"],
            tx_hash=log["transactionHash"].lower(),
            timestamp=blocks[log["blockNumber"]][0],
        )
        for log in raw_roles
    ]
    by_lot: dict[str, list[ChainEvent]] = defaultdict(list)
    for event in events:
        by_lot[event.lot_id].append(event)
    if scope.lot_id is not None:
        by_lot.setdefault(scope.lot_id, [])
    lot_ids = sorted(by_lot)
    ledgers: dict[str, Ledger] = {}
    datas: list[bytes] = []
    for lot_id in lot_ids:
        raw_id = bytes.fromhex(lot_id[2:])
        datas += [reg.get_ledger + raw_id, reg.get_lot + raw_id]
    progress("ledgers", 0, len(lot_ids))
    answers = reader.calls(registry, datas, to_block)
    for i, lot_id in enumerate(lot_ids):
        ledger = eth_abi.decode(["(uint64,uint64,uint64,uint64,uint64,uint64,uint64,uint8)"], answers[2 * i])[0]
        lot = eth_abi.decode(["(uint8,bool,address,uint64,uint64,uint64,uint64,uint64,uint32,bytes32)"],
                             answers[2 * i + 1])[0]  # fmt: skip
        if lot[0] == 0 and not by_lot[lot_id]:
            continue  # a lot the registry never heard of
        ledgers[lot_id] = Ledger(
            declared=ledger[0], received=ledger[1], split=ledger[2], released=ledger[3], destroyed=ledger[4],
            returned=ledger[5], remaining=ledger[6], next_seq=lot[7], head="0x" + lot[9].hex(), state=lot[0],
            recalled=lot[1], enterprise=to_checksum_address(lot[2]),
        )  # fmt: skip
    progress("ledgers", len(lot_ids), len(lot_ids))
    code = reader.code(registry, "latest")
    return _ChainView(events=dict(by_lot), roles=roles, ledgers=ledgers, code=code, registered=dict(registered))


# -- reading the operator's database ---------------------------------------------------------------------------


@dataclass
class DatabaseView:
    """The operator's rows the audit compares with the chain."""

    events: dict[str, list[StoredEvent]]
    lots: dict[str, StoredLot]
    registry: str | None
    deploy_block: int | None


def read_database(engine: Any, *, scope: Scope) -> DatabaseView:
    """Loads the lots, parcels and events (and the registry it anchored to) of ``scope`` from the operator's
    database, read-only. An enterprise scope picks the lots of the actor with that address; a block range keeps
    every lot (the chain's side decides which lots it touched)."""
    from sqlmodel import Session, select

    from tracer.store.database import get_meta
    from tracer.store.models import Actor, Event, Lot, Parcel

    with Session(engine) as session:
        registry = get_meta(session, "registry_address")
        deploy = get_meta(session, "deploy_block")
        actors = {a.id: a for a in session.exec(select(Actor))}
        lot_query = select(Lot)
        if scope.lot_id is not None:
            lot_query = lot_query.where(Lot.lot_id == scope.lot_id)
        lots = list(session.exec(lot_query))
        if scope.enterprise is not None:
            lots = [
                lot
                for lot in lots
                if (a := actors.get(lot.enterprise_id)) and a.address.lower() == scope.enterprise.lower()
            ]
        by_pk = {lot.id: lot for lot in lots}
        parcels: dict[int, dict[str, int]] = defaultdict(dict)
        for parcel in session.exec(select(Parcel)):
            if parcel.lot_pk in by_pk:
                parcels[parcel.lot_pk][parcel.parcel_id.lower()] = parcel.quantity
        events: dict[str, list[StoredEvent]] = defaultdict(list)
        for row in session.exec(select(Event)):
            lot = by_pk.get(row.lot_pk)
            if lot is None:
                continue
            actor = actors.get(row.actor_id)
            events[lot.lot_id.lower()].append(
                StoredEvent(
                    lot_id=lot.lot_id.lower(), seq=row.seq, step=row.step, payload=row.payload, context=row.context,
                    event_hash=row.event_hash, status=row.status, tx_hash=row.tx_hash, block_number=row.block_number,
                    actor_address=actor.address if actor else None, created_at=row.created_at,
                )
            )  # fmt: skip
        stored_lots = {
            lot.lot_id.lower(): StoredLot(
                lot_id=lot.lot_id.lower(),
                label=f"{lot.gtin}/{lot.lot_number}",
                enterprise_address=(a.address if (a := actors.get(lot.enterprise_id)) else None),
                declared=lot.declared_quantity,
                received=lot.received_quantity,
                split=lot.split_quantity,
                released=lot.released_quantity,
                parcels=parcels.get(lot.id or 0, {}),
            )
            for lot in lots
        }
    return DatabaseView(
        events=dict(events), lots=stored_lots, registry=registry, deploy_block=int(deploy) if deploy else None
    )


# -- the audit ------------------------------------------------------------------------------------------------


def run_audit(
    *,
    w3: Web3,
    registry: str,
    scope: Scope = Scope(),  # noqa: B008 - frozen, shared safely
    engine: Any = None,
    artifact: RegistryArtifact | None = None,
    deploy_block: int | None = None,
    late_anchor_seconds: int = DEFAULT_LATE_ANCHOR_SECONDS,
    pending_grace_seconds: int = DEFAULT_PENDING_GRACE_SECONDS,
    progress: Progress = _no_progress,
    now: datetime | None = None,
) -> AuditReport:
    """Audits ``scope`` of the registry at ``registry`` from the chain behind ``w3`` alone, and against the
    operator's database when ``engine`` is given. Raises ChainUnavailable when the node does not answer."""
    artifact = artifact or load_artifact()
    registry = to_checksum_address(registry)
    reader = ChainReader(w3)
    try:
        database = read_database(engine, scope=scope) if engine is not None else None
        if deploy_block is None and database is not None and database.registry == registry:
            deploy_block = database.deploy_block
        latest = reader.block_number()
        to_block = min(scope.to_block, latest) if scope.to_block is not None else latest
        if deploy_block is None:
            deploy_block = find_deploy_block(reader, registry, to_block)
        chain_id = reader.chain_id()
        view = read_chain(reader, registry=registry, abi=artifact.abi, scope=scope, deploy_block=deploy_block,
                          to_block=to_block, progress=progress)  # fmt: skip
    finally:
        reader.close()
    findings: list[Finding] = []
    bytecode, code_findings = check_bytecode(view.code, artifact, address=registry, chain_id=chain_id)
    findings += code_findings
    timeline = RoleTimeline(view.roles)
    stored_lots = database.lots if database else {}
    reconciliation: list[dict[str, Any]] = []
    balances: dict[str, list[tuple[int | None, int, int]]] = {}
    lot_ids = sorted(set(view.events) | (set(stored_lots) if scope.from_block is None else set()))
    for done, lot_id in enumerate(lot_ids):
        events = view.events.get(lot_id, [])
        ledger = view.ledgers.get(lot_id)
        stored = stored_lots.get(lot_id)
        pending = database is not None and any(e.status != "anchored" for e in database.events.get(lot_id, ()))
        label = stored.label if stored else (scope.lot_label if lot_id == scope.lot_id else None)
        if events or ledger is not None:
            registered = view.registered.get(lot_id)
            row, lot_findings = reconcile_lot(lot_id, events, ledger, label=label,
                                              stored=None if pending else stored, registered=registered)  # fmt: skip
            reconciliation.append(row)
            findings += lot_findings
            findings += check_sequence(lot_id, events, ledger)
            findings += check_authors(events, timeline, enterprise=row["enterprise"])
            balances[lot_id] = balance_series(events, registered)
        if done % 1000 == 0:
            progress("reconcile", done, len(lot_ids))
    progress("reconcile", len(lot_ids), len(lot_ids))
    event_status: dict[tuple[str, int], str] = {}
    stored_only: list[StoredEvent] = []
    if database is not None:
        audited = set(lot_ids)
        stored_events = {k: v for k, v in database.events.items() if k in audited}
        event_status, db_findings, stored_only = compare_database(
            view.events, stored_events, late_anchor_seconds=late_anchor_seconds,
            pending_grace_seconds=pending_grace_seconds, now=now,
        )  # fmt: skip
        findings += db_findings
    events_out = [e for lot_id in sorted(view.events) for e in sorted(view.events[lot_id], key=lambda e: e.seq)]
    if scope.from_block is not None:
        events_out = [e for e in events_out if e.block_number >= scope.from_block]
    order = {kind: i for i, kind in enumerate(FINDING_KINDS)}
    findings.sort(key=lambda f: (order.get(f.kind, 99), f.lot or "", f.event if f.event is not None else -1))
    return AuditReport(
        registry=registry,
        chain_id=chain_id,
        rpc_url=reader.rpc_url,
        scope=scope,
        to_block=to_block,
        deploy_block=deploy_block,
        with_database=database is not None,
        findings=findings,
        reconciliation=reconciliation,
        events=events_out,
        event_status=event_status,
        roles=view.roles,
        bytecode=bytecode,
        balances=balances,
        stored_only=stored_only,
    )


# -- output ---------------------------------------------------------------------------------------------------


def render_json(report: AuditReport) -> str:
    """The report as INTERFACES.md's JSON (plus ``summary``, ``bytecode`` and ``roles``)."""
    return json.dumps(report.public(), indent=2, ensure_ascii=False)


CSV_COLUMNS = (
    "lot",
    "label",
    "seq",
    "step",
    "quantity",
    "detail",
    "author",
    "subject",
    "event_hash",
    "block_number",
    "block_time",
    "tx_hash",
    "log_index",
    "database",
    "findings",
)


def render_csv(report: AuditReport) -> str:
    """One row per event of the chain (then the stored events the chain does not hold), with its database status
    and the kinds of the findings about it."""
    labels = {row["lot"]: row.get("label") for row in report.reconciliation}
    about: dict[tuple[str | None, int | None], set[str]] = defaultdict(set)
    for finding in report.findings:
        about[(finding.lot, finding.event)].add(finding.kind)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for event in report.events:
        writer.writerow(
            {
                **{k: v for k, v in event.public().items() if k in CSV_COLUMNS},
                "label": labels.get(event.lot_id) or "",
                "database": report.event_status.get((event.lot_id, event.seq), "") if report.with_database else "",
                "findings": " ".join(sorted(about.get((event.lot_id, event.seq), ()))),
            }
        )
    for stored in report.stored_only:
        writer.writerow(
            {
                "lot": stored.lot_id,
                "label": labels.get(stored.lot_id) or "",
                "seq": stored.seq,
                "step": stored.step,
                "event_hash": stored.event_hash,
                "database": "unanchored",
                "findings": " ".join(sorted(about.get((stored.lot_id, stored.seq), ()))),
            }
        )
    return buffer.getvalue()


#: Lots drawn as balance charts in the HTML report (the table lists them all).
HTML_CHART_LOTS = 60


def render_html(report: AuditReport, *, template_dir: Path) -> str:
    """The printable report (``audit.html`` in ``template_dir``): reconciliation, findings, role history and an
    inline SVG chart of each lot's bonded balance; no external assets."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(str(template_dir)), autoescape=select_autoescape(["html"]))
    charts = [
        {"lot": lot, "label": _label(report, lot), "svg": balance_svg(series)}
        for lot, series in list(report.balances.items())[:HTML_CHART_LOTS]
        if series
    ]
    return env.get_template("audit.html").render(
        report=report,
        data=report.public(),
        charts=charts,
        more_charts=max(0, sum(1 for s in report.balances.values() if s) - HTML_CHART_LOTS),
        columns=(
            "declared",
            "received",
            "discrepancy",
            "inspected",
            "non_conformant",
            "destroyed",
            "returned",
            "split",
            "released",
            "remaining",
        ),  # fmt: skip
    )


def balance_svg(series: Sequence[tuple[int | None, int, int]], *, width: int = 360, height: int = 120) -> str:
    """A step chart of a balance series as a self-contained SVG element (x: block time, or block where there is
    no time; y: units in bond)."""
    if not series:
        return ""
    xs = [float(t if t is not None else b) for t, b, _ in series]
    ys = [v for _, _, v in series]
    x0, x1 = min(xs), max(xs)
    top = max(max(ys), 1)
    pad = 28

    def sx(x: float) -> float:
        return pad + (width - pad - 8) * ((x - x0) / (x1 - x0) if x1 > x0 else 0.5)

    def sy(y: int) -> float:
        return height - 18 - (height - 30) * y / top

    points: list[str] = []
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        if i:
            points.append(f"{sx(x):.1f},{sy(ys[i - 1]):.1f}")
        points.append(f"{sx(x):.1f},{sy(y):.1f}")
    if x1 == x0 or len(points) == 1:
        points.append(f"{width - 8:.1f},{sy(ys[-1]):.1f}")
    first = _iso(int(x0)) if series[0][0] is not None else f"block {int(x0)}"
    last = _iso(int(x1)) if series[-1][0] is not None else f"block {int(x1)}"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="bonded balance over time">'
        f'<line x1="{pad}" y1="{height - 18}" x2="{width - 8}" y2="{height - 18}" stroke="#999"/>'
        f'<line x1="{pad}" y1="8" x2="{pad}" y2="{height - 18}" stroke="#999"/>'
        f'<text x="2" y="{sy(top) + 4:.1f}" font-size="9">{top}</text>'
        f'<text x="2" y="{height - 16}" font-size="9">0</text>'
        f'<polyline fill="none" stroke="#1f5fa8" stroke-width="2" points="{" ".join(points)}"/>'
        f'<text x="{pad}" y="{height - 4}" font-size="9">{first}</text>'
        f'<text x="{width - 8}" y="{height - 4}" font-size="9" text-anchor="end">{last}</text>'
        "</svg>"
    )


def _label(report: AuditReport, lot_id: str) -> str | None:
    return next((row.get("label") for row in report.reconciliation if row["lot"] == lot_id), None)


# -- small helpers --------------------------------------------------------------------------------------------


def _split_events(log: Mapping[str, Any], author: str) -> list[ChainEvent]:
    """The Split events of a ``ParcelsSplit`` log (hex data: firstIndex, parcelsRoot, quantity, priorHead, then
    the event hashes): sequence numbers from its first on, heads folded from its prior head, subject the root;
    the batch's quantity sits on its first event (the log does not split it per parcel)."""
    topics, data = log["topics"], log["data"][2:]
    words = [data[i : i + 64] for i in range(0, len(data), 64)]
    if len(words) < 6 or len(words) != 6 + int(words[5], 16):
        return []
    root, quantity, head = "0x" + words[1], int(words[2], 16), "0x" + words[3]
    first_seq = int(topics[2], 16)
    events = []
    for position, word in enumerate(words[6:]):
        event_hash = "0x" + word
        head = fold_head(head, event_hash)
        events.append(
            ChainEvent(
                lot_id=topics[1].lower(),
                seq=first_seq + position,
                author=author,
                step="Split",
                subject=root,
                event_hash=event_hash,
                head=head,
                tx_hash=log["transactionHash"].lower(),
                block_number=log["blockNumber"],
                block_hash=log["blockHash"].lower(),
                log_index=log["logIndex"],
                quantity=quantity if position == 0 else 0,
            )
        )
    return events


def _hex32(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def _digest(event_id: str) -> str | None:
    from tracer.epcis import event_hash_bytes

    try:
        return "0x" + event_hash_bytes(event_id).hex()
    except TracerError:
        return None


def _event_time(payload: Any) -> int | None:
    if not isinstance(payload, dict) or not isinstance(payload.get("eventTime"), str):
        return None
    try:
        moment = datetime.fromisoformat(payload["eventTime"].replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _iso(timestamp: int | None) -> str | None:
    if timestamp is None:
        return None
    return _iso_dt(datetime.fromtimestamp(timestamp, UTC))


def _iso_dt(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
