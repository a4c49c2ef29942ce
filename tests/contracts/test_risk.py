"""Risk-based release: customs sets AEO credit levels and low-risk HS ranges; a qualifying lot is cleared by the
rule, without an inspection, and the chain shows that it was the rule."""

from __future__ import annotations

import pytest
from registry_support import LOT_STATE, RANGE_COUNT_SLOT, STEP, fresh_hash, fresh_lot, poke_storage, role_id
from web3.logs import DISCARD

HS_MILK = 402_210_000  # 0402.21.0000, as a 10-digit number


@pytest.fixture
def low_risk_range(registry, accounts):
    """Range 1: HS 0401000000..0406999999 low risk for enterprises of credit level >= 2."""
    registry.functions.addLowRiskRange(401_000_000, 406_999_999, 2).transact({"from": accounts.customs})
    return 1


def _declare(registry, accounts, lot, range_id, *, hs_code=HS_MILK, quantity=100):
    tx = registry.functions.declareLotClassified(lot, quantity, hs_code, range_id, fresh_hash()).transact(
        {"from": accounts.enterprise}
    )
    return registry.w3.eth.wait_for_transaction_receipt(tx)


def _entered(registry, driver, accounts, range_id, *, counted=100):
    lot = fresh_lot()
    _declare(registry, accounts, lot, range_id)
    driver.enter(lot, counted)
    return lot


def _clear(registry, driver, accounts, lot, sender=None):
    tx = registry.functions.clearByRule(lot, driver.next_seq(lot), fresh_hash()).transact(
        {"from": sender or accounts.warehouse}
    )
    return registry.w3.eth.wait_for_transaction_receipt(tx)


def _set_level(registry, accounts, level, enterprise=None):
    registry.functions.setCreditLevel(enterprise or accounts.enterprise, level).transact({"from": accounts.customs})


def test_customs_sets_an_enterprises_credit_level(registry, accounts):
    _set_level(registry, accounts, 3)
    assert registry.functions.creditLevel(accounts.enterprise).call() == 3


def test_credit_level_is_set_only_by_customs(registry, accounts, expect_revert):
    with expect_revert("AccessControlUnauthorizedAccount"):
        registry.functions.setCreditLevel(accounts.enterprise, 3).transact({"from": accounts.admin})


def test_customs_adds_a_low_risk_range(registry, low_risk_range):
    assert tuple(registry.functions.lowRiskRange(low_risk_range).call()) == (401_000_000, 406_999_999, 2)


def test_invalid_range_is_rejected(registry, accounts, expect_revert):
    with expect_revert("TraceRegistryInvalidRange", 5, 4, 1):
        registry.functions.addLowRiskRange(5, 4, 1).transact({"from": accounts.customs})


def test_range_is_added_only_by_customs(registry, accounts, expect_revert):
    with expect_revert("AccessControlUnauthorizedAccount"):
        registry.functions.addLowRiskRange(1, 2, 1).transact({"from": accounts.enterprise})


def test_declaring_under_a_range_classifies_the_lot(registry, accounts, low_risk_range):
    lot = fresh_lot()
    receipt = _declare(registry, accounts, lot, low_risk_range)
    (classified,) = registry.events.LotClassified().process_receipt(receipt, errors=DISCARD)
    assert (classified.args.lotId, classified.args.hsCode, classified.args.rangeId) == (lot, HS_MILK, 1)
    assert registry.functions.getLedger(lot).call()[7] == low_risk_range


def test_declaring_an_hs_code_outside_the_range_is_rejected(registry, accounts, low_risk_range, expect_revert):
    with expect_revert("TraceRegistryHsCodeOutOfRange", 8_471_300_000, low_risk_range):
        _declare(registry, accounts, fresh_lot(), low_risk_range, hs_code=8_471_300_000)


def test_qualifying_lot_is_cleared_by_the_rule(registry, driver, accounts, low_risk_range):
    _set_level(registry, accounts, 2)
    lot = _entered(registry, driver, accounts, low_risk_range)
    (event,) = registry.events.EventRecorded().process_receipt(_clear(registry, driver, accounts, lot), errors=DISCARD)
    assert event.args.step == STEP["ClearedByRule"]
    assert event.args.author == accounts.warehouse
    assert registry.functions.getLot(lot).call()[0] == LOT_STATE["Cleared"]


def test_lot_cleared_by_rule_goes_on_to_storage(registry, driver, accounts, low_risk_range):
    _set_level(registry, accounts, 2)
    lot = _entered(registry, driver, accounts, low_risk_range)
    _clear(registry, driver, accounts, lot)
    driver.store(lot)
    assert registry.functions.getLot(lot).call()[0] == LOT_STATE["Stored"]


def test_enterprise_below_the_ranges_credit_level_needs_an_inspection(
    registry, driver, accounts, low_risk_range, expect_revert
):
    _set_level(registry, accounts, 1)
    lot = _entered(registry, driver, accounts, low_risk_range)
    with expect_revert("TraceRegistryCreditTooLow", accounts.enterprise, 1, 2):
        _clear(registry, driver, accounts, lot)


def test_lot_declared_without_a_range_needs_an_inspection(registry, driver, accounts, expect_revert):
    lot = fresh_lot()
    driver.declare(lot)
    driver.enter(lot)
    with expect_revert("TraceRegistryNotLowRisk", lot, 0):
        _clear(registry, driver, accounts, lot)


def test_revoked_range_clears_nothing_more(registry, driver, accounts, low_risk_range, expect_revert):
    _set_level(registry, accounts, 2)
    lot = _entered(registry, driver, accounts, low_risk_range)
    registry.functions.revokeLowRiskRange(low_risk_range).transact({"from": accounts.customs})
    with expect_revert("TraceRegistryNotLowRisk", lot, low_risk_range):
        _clear(registry, driver, accounts, lot)


def test_entry_discrepancy_blocks_the_rule(registry, driver, accounts, low_risk_range, expect_revert):
    _set_level(registry, accounts, 2)
    lot = _entered(registry, driver, accounts, low_risk_range, counted=99)
    with expect_revert("TraceRegistryEntryDiscrepancy", lot, 100, 99):
        _clear(registry, driver, accounts, lot)


def test_rule_clearance_before_entry_is_out_of_order(registry, driver, accounts, low_risk_range, expect_revert):
    lot = fresh_lot()
    _declare(registry, accounts, lot, low_risk_range)
    with expect_revert("TraceRegistryStepOutOfOrder", lot, STEP["ClearedByRule"], LOT_STATE["Declared"]):
        _clear(registry, driver, accounts, lot)


def test_rule_clearance_is_triggered_by_the_warehouse(registry, driver, accounts, low_risk_range, expect_revert):
    _set_level(registry, accounts, 2)
    lot = _entered(registry, driver, accounts, low_risk_range)
    with expect_revert("AccessControlUnauthorizedAccount", accounts.enterprise, role_id("warehouse")):
        _clear(registry, driver, accounts, lot, sender=accounts.enterprise)


def test_range_ids_are_consecutive_from_one(registry, accounts):
    ids = [registry.functions.addLowRiskRange(1, 2, 1).call({"from": accounts.customs})]
    registry.functions.addLowRiskRange(1, 2, 1).transact({"from": accounts.customs})
    ids.append(registry.functions.addLowRiskRange(1, 2, 1).call({"from": accounts.customs}))
    assert ids == [1, 2]


def test_too_many_ranges_are_refused(w3, registry, accounts, expect_revert):
    registry.functions.addLowRiskRange(1, 2, 1).transact({"from": accounts.customs})
    poke_storage(w3, registry.address, RANGE_COUNT_SLOT, 255)  # as after 255 ranges, without 255 transactions
    with expect_revert("TraceRegistryTooManyRanges"):
        registry.functions.addLowRiskRange(1, 2, 1).transact({"from": accounts.customs})


def test_revoking_an_unknown_range_is_rejected(registry, accounts, expect_revert):
    with expect_revert("TraceRegistryNotLowRisk", b"\0" * 32, 7):
        registry.functions.revokeLowRiskRange(7).transact({"from": accounts.customs})
