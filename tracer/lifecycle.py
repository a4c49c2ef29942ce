"""The bonded-import journey as pure rules: which role takes which step from which state.

The registry contract enforces the same rules on chain; this model lets the API refuse a wrong step
early, with a friendly error, before anything is written. Both must agree (tests drive them together).

::

    lot:    declared -entry-> entered -inspection-> cleared -storage-> stored -split-> (parcels)
                                        \\-(non-conformant)-> held
    parcel: split -order/payment/waybill-> (documents) -release-> released -delivery-> delivered
    recall: any lot state, once; a recalled lot splits and releases nothing more

Registry v2 adds: clearance by the low-risk rule (entered -> cleared, no officer), disposal of held goods
(held -return/destruction-> held | closed when nothing is left; stored lots may dispose of unsplit stock),
lifting a hold (held -> cleared), release manifests (many parcels by index, the summed quantity written off)
and observations (a step on the lot's chain that changes no state). The ledger always conserves:
released + destroyed + returned + remaining = received (:func:`ledger_conserved`).

Registry v3 adds split batches: many parcels off a stored lot in one step (one event each), the chain keeping
only the Merkle root of their leaves. Such a parcel has no record on chain until someone registers it with its
proof (:func:`check_registration`); its own steps (documents, release, delivery) need the record, a manifest
releases it by index without one.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from tracer.exceptions import DuplicateRecord, NotFound, OverRelease, PermissionDenied, StepOutOfOrder


class Step(StrEnum):
    """A journey step; the value names it in the API, the store and the docs."""

    DECLARATION = "declaration"
    ENTRY = "entry"
    INSPECTION = "inspection"
    STORAGE = "storage"
    SPLIT = "split"
    ORDER = "order"
    PAYMENT = "payment"
    WAYBILL = "waybill"
    RELEASE = "release"
    DELIVERY = "delivery"
    RECALL = "recall"
    OBSERVATION = "observation"
    RULE_CLEARANCE = "rule_clearance"
    MANIFEST_RELEASE = "manifest_release"
    RETURN = "return"
    DESTRUCTION = "destruction"
    HOLD_LIFT = "hold_lift"
    CORRECTION = "correction"


class LotState(StrEnum):
    """Where a lot stands (the contract's ``LotState``)."""

    DECLARED = "declared"
    ENTERED = "entered"
    CLEARED = "cleared"
    HELD = "held"
    STORED = "stored"
    CLOSED = "closed"


class ParcelState(StrEnum):
    """Where a parcel stands (the contract's ``ParcelState``)."""

    SPLIT = "split"
    RELEASED = "released"
    DELIVERED = "delivered"


class InspectionResult(StrEnum):
    """The outcome of a customs inspection (the contract's ``InspectionResult``)."""

    CONFORMANT = "conformant"
    NON_CONFORMANT = "non_conformant"
    SAMPLED = "sampled"


DOCUMENT_STEPS = (Step.ORDER, Step.PAYMENT, Step.WAYBILL)

ROLES_FOR_STEP: dict[Step, frozenset[str]] = {
    Step.DECLARATION: frozenset({"enterprise"}),
    Step.ENTRY: frozenset({"warehouse"}),
    Step.INSPECTION: frozenset({"customs"}),
    Step.STORAGE: frozenset({"warehouse"}),
    Step.SPLIT: frozenset({"warehouse"}),
    Step.ORDER: frozenset({"enterprise"}),
    Step.PAYMENT: frozenset({"payment"}),
    Step.WAYBILL: frozenset({"carrier"}),
    Step.RELEASE: frozenset({"customs"}),
    Step.DELIVERY: frozenset({"carrier"}),
    Step.RECALL: frozenset({"enterprise", "customs"}),
    # Observations change no state: a WMS count, a temperature log, a transit scan, or a correction.
    Step.OBSERVATION: frozenset({"warehouse", "carrier", "customs"}),
    Step.CORRECTION: frozenset({"warehouse", "carrier", "customs"}),
    Step.RULE_CLEARANCE: frozenset({"warehouse"}),
    Step.MANIFEST_RELEASE: frozenset({"customs"}),
    Step.RETURN: frozenset({"customs"}),
    Step.DESTRUCTION: frozenset({"customs"}),
    Step.HOLD_LIFT: frozenset({"customs"}),
}

_LOT_TRANSITIONS: dict[Step, tuple[LotState, LotState]] = {
    Step.ENTRY: (LotState.DECLARED, LotState.ENTERED),
    Step.STORAGE: (LotState.CLEARED, LotState.STORED),
    Step.RULE_CLEARANCE: (LotState.ENTERED, LotState.CLEARED),
    Step.HOLD_LIFT: (LotState.HELD, LotState.CLEARED),
}


def check_role(*, step: Step, actor: str, role: str) -> None:
    """Raises PermissionDenied unless ``role`` may take ``step``."""
    allowed = ROLES_FOR_STEP[step]
    if role not in allowed:
        raise PermissionDenied(actor, role, " or ".join(sorted(allowed)))


def lot_state_after(*, state: LotState, step: Step, subject: str, result: InspectionResult | None = None) -> LotState:
    """The lot's state after ``step``; raises StepOutOfOrder where the contract would revert."""
    if step is Step.INSPECTION:
        if state is not LotState.ENTERED:
            raise StepOutOfOrder(subject, step, state)
        return LotState.HELD if result is InspectionResult.NON_CONFORMANT else LotState.CLEARED
    expected, after = _LOT_TRANSITIONS[step]
    if state is not expected:
        raise StepOutOfOrder(subject, step, state)
    return after


def check_split(
    *, state: LotState, recalled: bool, subject: str, received: int, split: int, quantity: int, disposed: int = 0
) -> None:
    """Raises unless a parcel of ``quantity`` may be split off the lot now (``disposed``: returned + destroyed)."""
    if recalled:
        raise StepOutOfOrder(subject, Step.SPLIT, "recalled")
    if state is not LotState.STORED:
        raise StepOutOfOrder(subject, Step.SPLIT, state)
    if split + disposed + quantity > received:
        raise OverRelease(subject, quantity, received - split - disposed)


def check_split_batch(
    *,
    state: LotState,
    recalled: bool,
    subject: str,
    received: int,
    split: int,
    quantities: Sequence[int],
    disposed: int = 0,
) -> None:
    """Raises unless parcels of ``quantities`` may be split off the lot in one batch: as one split of their sum,
    with at least one parcel and at least as many units as parcels (the chain sees only the total; a parcel's
    own quantity is checked when it is registered, see :func:`check_registration`)."""
    if recalled or state is not LotState.STORED:
        check_split(state=state, recalled=recalled, subject=subject, received=received, split=split, quantity=0)
    if not quantities or sum(quantities) < len(quantities):
        raise StepOutOfOrder(subject, Step.SPLIT, "a batch needs parcels and at least one unit per parcel")
    check_split(
        state=state, recalled=recalled, subject=subject, received=received, split=split, quantity=sum(quantities),
        disposed=disposed,
    )  # fmt: skip


def check_registration(
    *, registered: bool, subject: str, first_index: int, count: int, index: int, quantity: int
) -> None:
    """Raises unless a parcel of a split batch may get its record now: its index within the batch's range, not
    registered yet, at least one unit (anyone may register; the proof ties the leaf to the batch's root)."""
    if not first_index <= index < first_index + count:
        raise NotFound("parcel index in the split batch", f"{subject} at {index}")
    if registered:
        raise DuplicateRecord("parcel", subject)
    if quantity < 1:
        raise StepOutOfOrder(subject, Step.SPLIT, "a parcel of no units")


def check_parcel_record(*, registered: bool, subject: str) -> None:
    """Raises NotFound unless the parcel has its record on chain (a parcel's own steps need it)."""
    if not registered:
        raise NotFound("parcel record", subject)


def check_document(*, parcel_state: ParcelState, subject: str, step: Step, present: set[str]) -> None:
    """Raises unless document ``step`` may be attached to the parcel now (once per kind, before release)."""
    if parcel_state is not ParcelState.SPLIT:
        raise StepOutOfOrder(subject, step, parcel_state)
    if step.value in present:
        raise StepOutOfOrder(subject, step, f"holding a {step.value} already")


def check_release(
    *,
    parcel_state: ParcelState,
    recalled: bool,
    subject: str,
    present: set[str],
    received: int,
    released: int,
    quantity: int,
    lot: str,
) -> None:
    """Raises unless the parcel may leave the bonded zone: split, not recalled, three documents, balance."""
    if recalled:
        raise StepOutOfOrder(subject, Step.RELEASE, "recalled")
    if parcel_state is not ParcelState.SPLIT:
        raise StepOutOfOrder(subject, Step.RELEASE, parcel_state)
    missing = [step.value for step in DOCUMENT_STEPS if step.value not in present]
    if missing:
        raise StepOutOfOrder(subject, Step.RELEASE, "missing its " + ", ".join(missing))
    if released + quantity > received:
        raise OverRelease(lot, quantity, received - released)


def check_delivery(*, parcel_state: ParcelState, subject: str) -> None:
    """Raises unless the parcel was released and not yet delivered."""
    if parcel_state is not ParcelState.RELEASED:
        raise StepOutOfOrder(subject, Step.DELIVERY, parcel_state)


def check_recall(*, recalled: bool, subject: str) -> None:
    """Raises if the lot is recalled already."""
    if recalled:
        raise StepOutOfOrder(subject, Step.RECALL, "recalled")


class Disposal(StrEnum):
    """How customs disposes of non-conformant goods (the contract's ``Disposal``)."""

    RETURNED = "returned"
    DESTROYED = "destroyed"


def check_rule_clearance(
    *,
    state: LotState,
    subject: str,
    range_active: bool,
    credit_level: int,
    required_level: int,
    declared: int,
    received: int,
) -> LotState:
    """The lot's state after clearance by the low-risk rule; raises StepOutOfOrder where the contract reverts:
    not entered, not declared under an active low-risk range, the enterprise's AEO credit level below the
    range's, or an entry count that differs from the declaration."""
    after = lot_state_after(state=state, step=Step.RULE_CLEARANCE, subject=subject)
    if not range_active:
        raise StepOutOfOrder(subject, Step.RULE_CLEARANCE, "not declared under an active low-risk range")
    if credit_level < required_level:
        raise StepOutOfOrder(subject, Step.RULE_CLEARANCE, f"of credit level {credit_level} < {required_level}")
    if received != declared:
        raise StepOutOfOrder(subject, Step.RULE_CLEARANCE, f"counted {received} of {declared} declared")
    return after


def check_disposal(
    *,
    state: LotState,
    subject: str,
    kind: Disposal,
    quantity: int,
    received: int,
    split: int,
    destroyed: int,
    returned: int,
) -> LotState:
    """The lot's state after returning or destroying ``quantity`` units that are neither split off nor disposed
    of; raises StepOutOfOrder (lot neither held nor stored, zero quantity) or OverRelease (above that)."""
    step = Step.RETURN if kind is Disposal.RETURNED else Step.DESTRUCTION
    if state not in (LotState.HELD, LotState.STORED):
        raise StepOutOfOrder(subject, step, state)
    if quantity <= 0:
        raise StepOutOfOrder(subject, step, "asked for no quantity")
    available = received - split - destroyed - returned
    if quantity > available:
        raise OverRelease(subject, quantity, available)
    return LotState.CLOSED if state is LotState.HELD and quantity == available else state


def check_manifest_lot(
    *,
    state: LotState,
    recalled: bool,
    subject: str,
    indices: set[int],
    released_indices: set[int],
    parcel_count: int,
    quantity: int,
    split: int,
    released: int,
) -> None:
    """Raises unless a manifest may release the parcels ``indices`` of the lot, writing ``quantity`` off: the
    lot stored and not recalled, every index split off and not released, at least one unit per parcel, and no
    more than what was split off and not yet released."""
    if state is not LotState.STORED:
        raise StepOutOfOrder(subject, Step.MANIFEST_RELEASE, state)
    if recalled:
        raise StepOutOfOrder(subject, Step.MANIFEST_RELEASE, "recalled")
    unknown = sorted(i for i in indices if i >= parcel_count)
    if unknown:
        raise StepOutOfOrder(subject, Step.MANIFEST_RELEASE, f"without parcel index {unknown[-1]}")
    again = sorted(indices & released_indices)
    if again:
        raise StepOutOfOrder(subject, Step.MANIFEST_RELEASE, f"holding released parcel index {again[0]}")
    if not indices or quantity < len(indices):
        raise StepOutOfOrder(subject, Step.MANIFEST_RELEASE, f"asked {quantity} for {len(indices)} parcels")
    if quantity > split - released:
        raise OverRelease(subject, quantity, split - released)


def ledger_conserved(*, received: int, split: int, released: int, destroyed: int, returned: int) -> bool:
    """Whether a lot's ledger conserves quantity: released + destroyed + returned + remaining = received with
    nothing negative, releases within what was split off, and splits within what was not disposed of."""
    remaining = received - released - destroyed - returned
    return (
        min(split, released, destroyed, returned, remaining) >= 0
        and released <= split
        and split + destroyed + returned <= received
        and released + destroyed + returned + remaining == received
    )
