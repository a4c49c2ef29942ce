"""The registry v2 rules of tracer.lifecycle: rule clearance, disposal, hold lift, manifests, conservation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracer.exceptions import OverRelease, StepOutOfOrder
from tracer.lifecycle import (
    Disposal,
    LotState,
    Step,
    check_disposal,
    check_manifest_lot,
    check_rule_clearance,
    check_split,
    ledger_conserved,
    lot_state_after,
)


def _rule(**overrides):
    args = {
        "state": LotState.ENTERED,
        "subject": "lot",
        "range_active": True,
        "credit_level": 2,
        "required_level": 2,
        "declared": 10,
        "received": 10,
    }
    return check_rule_clearance(**{**args, **overrides})


def _manifest(**overrides):
    args = {
        "state": LotState.STORED,
        "recalled": False,
        "subject": "lot",
        "indices": {0, 1},
        "released_indices": set(),
        "parcel_count": 3,
        "quantity": 4,
        "split": 6,
        "released": 0,
    }
    return check_manifest_lot(**{**args, **overrides})


def _dispose(**overrides):
    args = {
        "state": LotState.HELD,
        "subject": "lot",
        "kind": Disposal.DESTROYED,
        "quantity": 3,
        "received": 10,
        "split": 0,
        "destroyed": 0,
        "returned": 0,
    }
    return check_disposal(**{**args, **overrides})


def test_qualifying_lot_is_cleared_by_rule():
    assert _rule() is LotState.CLEARED


@pytest.mark.parametrize(
    "overrides",
    [{"state": LotState.DECLARED}, {"range_active": False}, {"credit_level": 1}, {"received": 9}],
    ids=["not-entered", "no-range", "credit-too-low", "discrepancy"],
)
def test_rule_clearance_refuses_what_the_contract_refuses(overrides):
    with pytest.raises(StepOutOfOrder):
        _rule(**overrides)


def test_partial_disposal_keeps_the_lot_held():
    assert _dispose() is LotState.HELD


def test_disposing_of_the_rest_of_a_held_lot_closes_it():
    assert _dispose(quantity=4, destroyed=3, returned=3) is LotState.CLOSED


def test_disposal_above_the_unsplit_rest_is_an_over_release():
    with pytest.raises(OverRelease):
        _dispose(state=LotState.STORED, split=8, quantity=3)


def test_disposal_of_a_cleared_lot_is_out_of_order():
    with pytest.raises(StepOutOfOrder):
        _dispose(state=LotState.CLEARED)


def test_hold_lift_clears_a_held_lot():
    assert lot_state_after(state=LotState.HELD, step=Step.HOLD_LIFT, subject="lot") is LotState.CLEARED


def test_split_counts_disposed_units_as_gone():
    with pytest.raises(OverRelease):
        check_split(state=LotState.STORED, recalled=False, subject="lot", received=10, split=5, quantity=3, disposed=3)


def test_manifest_within_the_split_balance_passes():
    _manifest()


@pytest.mark.parametrize(
    "overrides",
    [
        {"state": LotState.CLEARED},
        {"recalled": True},
        {"indices": {0, 3}},
        {"released_indices": {1}},
        {"indices": set()},
        {"quantity": 1},
    ],
    ids=["not-stored", "recalled", "unknown-index", "released-again", "no-parcels", "below-parcel-count"],
)
def test_manifest_refuses_what_the_contract_refuses(overrides):
    with pytest.raises(StepOutOfOrder):
        _manifest(**overrides)


def test_manifest_above_the_split_balance_is_an_over_release():
    with pytest.raises(OverRelease):
        _manifest(quantity=7)


@given(
    received=st.integers(0, 100),
    split=st.integers(0, 100),
    released=st.integers(0, 100),
    destroyed=st.integers(0, 100),
    returned=st.integers(0, 100),
)
def test_conservation_means_nothing_leaves_beyond_what_was_received(received, split, released, destroyed, returned):
    conserved = ledger_conserved(
        received=received, split=split, released=released, destroyed=destroyed, returned=returned
    )
    assert conserved == (released <= split and split + destroyed + returned <= received)
