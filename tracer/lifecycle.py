"""The bonded-import journey as pure rules: which role takes which step from which state.

The registry contract enforces the same rules on chain; this model lets the API refuse a wrong step
early, with a friendly error, before anything is written. Both must agree (tests drive them together).

::

    lot:    declared -entry-> entered -inspection-> cleared -storage-> stored -split-> (parcels)
                                        \\-(non-conformant)-> held
    parcel: split -order/payment/waybill-> (documents) -release-> released -delivery-> delivered
    recall: any lot state, once; a recalled lot splits and releases nothing more
"""

from __future__ import annotations

from enum import StrEnum

from tracer.exceptions import OverRelease, PermissionDenied, StepOutOfOrder


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
    CORRECTION = "correction"


class LotState(StrEnum):
    """Where a lot stands (the contract's ``LotState``)."""

    DECLARED = "declared"
    ENTERED = "entered"
    CLEARED = "cleared"
    HELD = "held"
    STORED = "stored"


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
}

_LOT_TRANSITIONS: dict[Step, tuple[LotState, LotState]] = {
    Step.ENTRY: (LotState.DECLARED, LotState.ENTERED),
    Step.STORAGE: (LotState.CLEARED, LotState.STORED),
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


def check_split(*, state: LotState, recalled: bool, subject: str, received: int, split: int, quantity: int) -> None:
    """Raises unless a parcel of ``quantity`` may be split off the lot now."""
    if recalled:
        raise StepOutOfOrder(subject, Step.SPLIT, "recalled")
    if state is not LotState.STORED:
        raise StepOutOfOrder(subject, Step.SPLIT, state)
    if split + quantity > received:
        raise OverRelease(subject, quantity, received - split)


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
