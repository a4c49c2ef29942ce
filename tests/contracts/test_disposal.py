"""Non-conformant goods: a failed inspection holds the lot; customs returns or destroys all or part of it, and the
ledger keeps released + destroyed + returned + remaining = received."""

from __future__ import annotations

import pytest
from registry_support import LOT_STATE, STEP, fresh_hash, fresh_lot, fresh_parcel

RETURNED, DESTROYED = 0, 1
# getLedger positions.
DECLARED, RECEIVED, SPLIT, RELEASED, L_DESTROYED, L_RETURNED, REMAINING = range(7)


@pytest.fixture
def held_lot(driver):
    lot = fresh_lot()
    driver.declare(lot, 100)
    driver.enter(lot, 100)
    driver.inspect(lot, "NonConformant")
    return lot


def _dispose(registry, driver, accounts, lot, kind, quantity, sender=None):
    tx = registry.functions.recordDisposal(lot, driver.next_seq(lot), kind, quantity, fresh_hash()).transact(
        {"from": sender or accounts.customs}
    )
    return registry.w3.eth.wait_for_transaction_receipt(tx)


def _ledger(registry, lot):
    return registry.functions.getLedger(lot).call()


def _conserved(ledger):
    return ledger[RELEASED] + ledger[L_DESTROYED] + ledger[L_RETURNED] + ledger[REMAINING] == ledger[RECEIVED]


def test_destruction_writes_off_part_of_a_held_lot(registry, driver, accounts, held_lot):
    _dispose(registry, driver, accounts, held_lot, DESTROYED, 30)
    ledger = _ledger(registry, held_lot)
    assert (ledger[L_DESTROYED], ledger[REMAINING]) == (30, 70)
    assert _conserved(ledger)


def test_return_writes_off_part_of_a_held_lot(registry, driver, accounts, held_lot):
    _dispose(registry, driver, accounts, held_lot, RETURNED, 40)
    ledger = _ledger(registry, held_lot)
    assert (ledger[L_RETURNED], ledger[REMAINING]) == (40, 60)


def test_disposal_steps_are_logged_by_kind(registry, driver, accounts, held_lot):
    receipt = _dispose(registry, driver, accounts, held_lot, RETURNED, 1)
    (event,) = registry.events.EventRecorded().process_receipt(receipt)
    assert (event.args.step, event.args.author) == (STEP["Returned"], accounts.customs)


def test_disposing_of_all_of_a_held_lot_closes_it(registry, driver, accounts, held_lot):
    _dispose(registry, driver, accounts, held_lot, RETURNED, 60)
    _dispose(registry, driver, accounts, held_lot, DESTROYED, 40)
    assert registry.functions.getLot(held_lot).call()[0] == LOT_STATE["Closed"]
    assert _ledger(registry, held_lot)[REMAINING] == 0


def test_disposal_above_the_remaining_quantity_is_rejected(registry, driver, accounts, held_lot, expect_revert):
    _dispose(registry, driver, accounts, held_lot, DESTROYED, 90)
    with expect_revert("TraceRegistryOverDisposal", held_lot, 11, 10):
        _dispose(registry, driver, accounts, held_lot, RETURNED, 11)


def test_disposal_of_zero_is_rejected(registry, driver, accounts, held_lot, expect_revert):
    with expect_revert("TraceRegistryZeroQuantity", held_lot):
        _dispose(registry, driver, accounts, held_lot, DESTROYED, 0)


def test_disposal_requires_customs(registry, driver, accounts, held_lot, expect_revert):
    with expect_revert("AccessControlUnauthorizedAccount"):
        _dispose(registry, driver, accounts, held_lot, DESTROYED, 1, sender=accounts.warehouse)


def test_disposal_of_a_cleared_lot_is_out_of_order(registry, driver, accounts, expect_revert):
    lot = fresh_lot()
    driver.declare(lot)
    driver.enter(lot)
    driver.inspect(lot)
    with expect_revert("TraceRegistryStepOutOfOrder", lot, STEP["Destroyed"], LOT_STATE["Cleared"]):
        _dispose(registry, driver, accounts, lot, DESTROYED, 1)


def test_disposal_of_a_closed_lot_is_out_of_order(registry, driver, accounts, held_lot, expect_revert):
    _dispose(registry, driver, accounts, held_lot, DESTROYED, 100)
    with expect_revert("TraceRegistryStepOutOfOrder", held_lot, STEP["Destroyed"], LOT_STATE["Closed"]):
        _dispose(registry, driver, accounts, held_lot, DESTROYED, 1)


def test_lifting_the_hold_clears_the_rest_of_the_lot(registry, driver, accounts, held_lot):
    _dispose(registry, driver, accounts, held_lot, DESTROYED, 30)
    registry.functions.liftHold(held_lot, driver.next_seq(held_lot), fresh_hash()).transact({"from": accounts.customs})
    assert registry.functions.getLot(held_lot).call()[0] == LOT_STATE["Cleared"]


def test_lifting_a_hold_of_a_lot_not_held_is_out_of_order(registry, driver, accounts, expect_revert):
    lot = driver.stored_lot()
    with expect_revert("TraceRegistryStepOutOfOrder", lot, STEP["HoldLifted"], LOT_STATE["Stored"]):
        registry.functions.liftHold(lot, driver.next_seq(lot), fresh_hash()).transact({"from": accounts.customs})


def test_splits_after_a_partial_destruction_stay_within_the_rest(registry, driver, accounts, held_lot, expect_revert):
    _dispose(registry, driver, accounts, held_lot, DESTROYED, 30)
    registry.functions.liftHold(held_lot, driver.next_seq(held_lot), fresh_hash()).transact({"from": accounts.customs})
    driver.store(held_lot)
    driver.split(held_lot, fresh_parcel(), 70)
    with expect_revert("TraceRegistryOverSplit", held_lot, 1, 0):
        driver.split(held_lot, fresh_parcel(), 1)


def test_unsplit_stock_of_a_stored_lot_can_be_destroyed(registry, driver, accounts):
    lot = driver.stored_lot(received=100)
    driver.split(lot, fresh_parcel(), 60)
    _dispose(registry, driver, accounts, lot, DESTROYED, 40)
    ledger = _ledger(registry, lot)
    assert (ledger[SPLIT], ledger[L_DESTROYED], ledger[REMAINING]) == (60, 40, 60)
    assert _conserved(ledger)


def test_split_stock_cannot_be_destroyed_as_unsplit(registry, driver, accounts, expect_revert):
    lot = driver.stored_lot(received=100)
    driver.split(lot, fresh_parcel(), 60)
    with expect_revert("TraceRegistryOverDisposal", lot, 41, 40):
        _dispose(registry, driver, accounts, lot, DESTROYED, 41)
