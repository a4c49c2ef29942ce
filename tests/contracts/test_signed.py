"""EIP-712 signed batches: the signer is the author, its roles are checked, relayers can neither forge nor
replay, and a re-sent batch is recognised."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak
from registry_support import INSPECTION, LOT_STATE, STEP, fresh_hash, fresh_lot, fresh_parcel, next_head, role_id
from signed_support import Relayer, self_custody_actor
from web3.logs import DISCARD

from tracer.chain.typed_data import Action, LotOps, SignedOp, typed_data

NEXT_SEQ, HEAD = 7, 9


@pytest.fixture
def relayer(registry, accounts):
    return Relayer(registry, accounts.outsider)


@pytest.fixture
def warehouse_key(registry, accounts):
    return self_custody_actor(registry, accounts.admin, role_id("warehouse"))


@pytest.fixture
def entered_lot(driver):
    lot = fresh_lot()
    driver.declare(lot)
    driver.enter(lot)
    return lot


def _observations(count):
    return [SignedOp(Action.OBSERVE, fresh_hash()) for _ in range(count)]


def _logs(registry, receipt):
    return registry.events.EventRecorded().process_receipt(receipt, errors=DISCARD)


def test_type_hashes_match_the_documented_types(registry):
    op = "Op(uint8 action,bytes32 subject,uint64 amount,bytes32 data,bytes32 eventHash)"
    lot_ops = "LotOps(bytes32 lotId,uint64 seq,Op[] ops)"
    assert registry.functions.OP_TYPEHASH().call() == keccak(text=op)
    assert registry.functions.LOT_OPS_TYPEHASH().call() == keccak(text=lot_ops + op)
    assert registry.functions.BATCH_TYPEHASH().call() == keccak(
        text="Batch(address signer,uint64 deadline,LotOps[] lots)" + lot_ops + op
    )


def test_domain_names_the_registry_its_version_chain_and_address(registry):
    fields, name, version, chain_id, address, *_ = registry.functions.eip712Domain().call()
    assert (fields, name, version) == (b"\x0f", "TraceRegistry", "3")
    assert (chain_id, address) == (registry.w3.eth.chain_id, registry.address)


def test_signed_event_is_authored_by_the_signer_not_the_relayer(registry, relayer, warehouse_key, entered_lot):
    receipt = relayer.record(warehouse_key, [LotOps(entered_lot, 2, _observations(1))])
    (event,) = _logs(registry, receipt)
    assert event.args.author == warehouse_key.address
    assert receipt["from"] == relayer.sender
    assert event.args.step == STEP["Observed"]


def test_relayer_needs_no_role(registry, relayer, warehouse_key, entered_lot):
    assert not any(
        registry.functions.hasRole(role_id(name), relayer.sender).call()
        for name in ("admin", "enterprise", "warehouse", "customs", "carrier", "payment")
    )
    relayer.record(warehouse_key, [LotOps(entered_lot, 2, _observations(1))])
    assert registry.functions.getLot(entered_lot).call()[NEXT_SEQ] == 3


def test_one_signature_covers_a_journey_of_many_steps(registry, relayer, accounts):
    enterprise = self_custody_actor(registry, accounts.admin, role_id("enterprise"))
    lot, hashes = fresh_lot(), [fresh_hash() for _ in range(2)]
    receipt = relayer.record(
        enterprise,
        [LotOps(lot, 0, [SignedOp(Action.DECLARE, hashes[0], amount=50), SignedOp(Action.RECALL, hashes[1])])],
    )
    record = registry.functions.getLot(lot).call()
    assert record[2] == enterprise.address
    assert record[1] is True
    assert record[HEAD] == next_head(next_head(b"\0" * 32, hashes[0]), hashes[1])
    assert [e.args.seq for e in _logs(registry, receipt)] == [0, 1]


def test_one_signature_covers_events_on_many_lots(registry, relayer, warehouse_key, driver):
    lots = [driver.stored_lot() for _ in range(3)]
    relayer.record(warehouse_key, [LotOps(lot, 4, _observations(2)) for lot in lots])
    assert [registry.functions.getLot(lot).call()[NEXT_SEQ] for lot in lots] == [6, 6, 6]


def test_signed_step_checks_the_signers_role(relayer, accounts, registry, entered_lot, expect_revert):
    carrier = self_custody_actor(registry, accounts.admin, role_id("carrier"))
    with expect_revert("AccessControlUnauthorizedAccount", carrier.address, role_id("customs")):
        relayer.record(carrier, [LotOps(entered_lot, 2, [SignedOp(Action.INSPECTION, fresh_hash())])])


def test_signed_steps_follow_the_state_machine(relayer, warehouse_key, entered_lot, expect_revert):
    with expect_revert("TraceRegistryStepOutOfOrder", entered_lot, STEP["Stored"], LOT_STATE["Entered"]):
        relayer.record(warehouse_key, [LotOps(entered_lot, 2, [SignedOp(Action.STORAGE, fresh_hash())])])


def test_signed_split_and_delivery_use_the_same_rules(registry, relayer, driver, accounts):
    warehouse = self_custody_actor(registry, accounts.admin, role_id("warehouse"))
    carrier = self_custody_actor(registry, accounts.admin, role_id("carrier"))
    lot, parcel = driver.stored_lot(), fresh_parcel()
    relayer.record(warehouse, [LotOps(lot, 4, [SignedOp(Action.SPLIT, fresh_hash(), subject=parcel, amount=7)])])
    commitment = keccak(text="waybill")
    relayer.record(
        carrier, [LotOps(lot, 5, [SignedOp(Action.DOCUMENT, fresh_hash(), subject=parcel, amount=2, data=commitment)])]
    )
    assert registry.functions.getParcel(parcel).call()[3] == 7
    assert registry.functions.getDocument(parcel, 2).call() == commitment


def test_signed_parcel_step_must_name_the_parcels_lot(registry, relayer, driver, accounts, expect_revert):
    carrier = self_custody_actor(registry, accounts.admin, role_id("carrier"))
    _, parcel = driver.split_parcel()
    other = driver.stored_lot()
    with expect_revert("TraceRegistryParcelNotInLot", parcel, other):
        relayer.record(carrier, [LotOps(other, 4, [SignedOp(Action.DELIVERY, fresh_hash(), subject=parcel)])])


def test_signature_of_another_key_is_rejected(relayer, warehouse_key, entered_lot, expect_revert):
    batch, _ = relayer.sign(warehouse_key, [LotOps(entered_lot, 2, _observations(1))])
    forger = Account.create()
    _, forged = relayer.sign(forger, [LotOps(entered_lot, 2, _observations(1))])
    with expect_revert("TraceRegistryInvalidSignature"):
        relayer.submit(batch, forged)


def test_relayer_cannot_alter_a_signed_event(relayer, warehouse_key, entered_lot, expect_revert):
    batch, signature = relayer.sign(warehouse_key, [LotOps(entered_lot, 2, _observations(1))])
    signer, deadline, [(lot, seq, [(action, subject, amount, data, _)])] = batch
    altered = (signer, deadline, [(lot, seq, [(action, subject, amount, data, fresh_hash())])])
    with expect_revert("TraceRegistryInvalidSignature"):
        relayer.submit(altered, signature)


def test_signature_for_another_chain_is_rejected(registry, relayer, warehouse_key, entered_lot, expect_revert):
    lots = [LotOps(entered_lot, 2, _observations(1))]
    message = typed_data(
        chain_id=registry.w3.eth.chain_id + 1,
        registry=registry.address,
        signer=warehouse_key.address,
        deadline=2**63,
        lots=lots,
    )
    signature = bytes(warehouse_key.sign_message(encode_typed_data(full_message=message)).signature)
    batch, _ = relayer.sign(warehouse_key, lots)
    with expect_revert("TraceRegistryInvalidSignature"):
        relayer.submit(batch, signature)


def test_signature_for_another_registry_is_rejected(registry, relayer, warehouse_key, entered_lot, expect_revert):
    lots = [LotOps(entered_lot, 2, _observations(1))]
    message = typed_data(
        chain_id=registry.w3.eth.chain_id,
        registry="0x" + "11" * 20,
        signer=warehouse_key.address,
        deadline=2**63,
        lots=lots,
    )
    signature = bytes(warehouse_key.sign_message(encode_typed_data(full_message=message)).signature)
    batch, _ = relayer.sign(warehouse_key, lots)
    with expect_revert("TraceRegistryInvalidSignature"):
        relayer.submit(batch, signature)


def test_malformed_signature_is_rejected_with_zero_recovered(relayer, warehouse_key, entered_lot, expect_revert):
    batch, _ = relayer.sign(warehouse_key, [LotOps(entered_lot, 2, _observations(1))])
    with expect_revert("TraceRegistryInvalidSignature", warehouse_key.address, "0x" + "00" * 20):
        relayer.submit(batch, b"\x01" * 64)


def test_expired_batch_is_rejected(registry, relayer, warehouse_key, entered_lot, expect_revert):
    now = registry.w3.eth.get_block("latest")["timestamp"]
    batch, signature = relayer.sign(warehouse_key, [LotOps(entered_lot, 2, _observations(1))], deadline=now - 1)
    with expect_revert("TraceRegistrySignatureExpired"):
        relayer.submit(batch, signature)


def test_replayed_batch_is_rejected_by_the_lots_sequence(relayer, warehouse_key, entered_lot, expect_revert):
    batch, signature = relayer.sign(warehouse_key, [LotOps(entered_lot, 2, _observations(1))])
    relayer.submit(batch, signature)
    with expect_revert("TraceRegistrySequenceMismatch", entered_lot, 3, 2):
        relayer.submit(batch, signature)


def test_resent_batch_with_prior_heads_is_a_recognised_no_op(registry, relayer, warehouse_key, entered_lot):
    prior = registry.functions.getLot(entered_lot).call()[HEAD]
    batch, signature = relayer.sign(warehouse_key, [LotOps(entered_lot, 2, _observations(3))])
    relayer.submit(batch, signature)
    head = registry.functions.getLot(entered_lot).call()[HEAD]
    receipt = relayer.submit(batch, signature, [prior])
    assert _logs(registry, receipt) == ()
    (skipped,) = registry.events.EventsAlreadyRecorded().process_receipt(receipt)
    assert (skipped.args.lotId, skipped.args.seq, skipped.args.count) == (entered_lot, 2, 3)
    assert registry.functions.getLot(entered_lot).call()[HEAD] == head


def test_resent_batch_with_a_wrong_prior_head_is_a_sequence_mismatch(
    relayer, warehouse_key, entered_lot, expect_revert
):
    batch, signature = relayer.sign(warehouse_key, [LotOps(entered_lot, 2, _observations(1))])
    relayer.submit(batch, signature)
    with expect_revert("TraceRegistrySequenceMismatch", entered_lot, 3, 2):
        relayer.submit(batch, signature, [fresh_hash()])


def test_conflicting_event_at_a_recorded_sequence_is_not_taken_for_a_resend(
    registry, relayer, warehouse_key, entered_lot, expect_revert
):
    prior = registry.functions.getLot(entered_lot).call()[HEAD]
    relayer.record(warehouse_key, [LotOps(entered_lot, 2, _observations(1))])
    batch, signature = relayer.sign(warehouse_key, [LotOps(entered_lot, 2, _observations(1))])
    with expect_revert("TraceRegistrySequenceMismatch", entered_lot, 3, 2):
        relayer.submit(batch, signature, [prior])


def test_unknown_action_is_rejected(relayer, warehouse_key, entered_lot, expect_revert):
    op = SignedOp(Action.OBSERVE, fresh_hash())
    object.__setattr__(op, "action", 42)
    with expect_revert("TraceRegistryUnknownAction", 42):
        relayer.record(warehouse_key, [LotOps(entered_lot, 2, [op])])


def test_signed_batches_stop_while_paused(registry, relayer, warehouse_key, entered_lot, accounts, expect_revert):
    registry.functions.pause().transact({"from": accounts.admin})
    with expect_revert("EnforcedPause"):
        relayer.record(warehouse_key, [LotOps(entered_lot, 2, _observations(1))])


def test_signed_inspection_result_decides_the_state(registry, relayer, accounts, entered_lot):
    customs = self_custody_actor(registry, accounts.admin, role_id("customs"), granter=accounts.customs_admin)
    relayer.record(
        customs,
        [LotOps(entered_lot, 2, [SignedOp(Action.INSPECTION, fresh_hash(), amount=INSPECTION["NonConformant"])])],
    )
    assert registry.functions.getLot(entered_lot).call()[0] == LOT_STATE["Held"]


# --- gas ---------------------------------------------------------------------------------------------------


def test_batch_of_100_events_on_one_lot_costs_at_most_6000_gas_each(relayer, warehouse_key, entered_lot):
    receipt = relayer.record(warehouse_key, [LotOps(entered_lot, 2, _observations(100))])
    assert receipt["gasUsed"] / 100 <= 6_000, receipt["gasUsed"]


def test_batch_of_100_events_on_100_lots_costs_at_most_20000_gas_each(relayer, warehouse_key, driver):
    lots = []
    for _ in range(100):
        lot = fresh_lot()
        driver.declare(lot)
        driver.enter(lot)
        lots.append(lot)
    receipt = relayer.record(warehouse_key, [LotOps(lot, 2, _observations(1)) for lot in lots])
    assert receipt["gasUsed"] / 100 <= 20_000, receipt["gasUsed"]
