"""Split batches: many parcels off a lot in one call (one root slot, one log, one event per parcel on the
lot's chain), their lazy parcel records (registerParcel with a Merkle proof) and the signed SplitBatch op."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest
from registry_support import (
    DOCUMENT,
    LOT_STATE,
    PARCEL_STATE,
    STEP,
    Driver,
    SplitBatch,
    fresh_hash,
    fresh_lot,
    fresh_parcel,
    next_head,
    role_id,
)
from signed_support import Relayer, self_custody_actor
from web3.contract import Contract
from web3.logs import DISCARD

from tracer.chain.typed_data import Action, LotOps, SignedOp, split_hashes
from tracer.merkle import SPLIT_PARCEL_TYPES, StandardMerkleTree

ExpectRevert = Callable[..., AbstractContextManager[None]]
LOT_PARCELS, LOT_NEXT_SEQ, LOT_SPLIT, LOT_HEAD = 8, 7, 5, 9


def _parcels(*quantities: int) -> list[tuple[bytes, int]]:
    return [(fresh_parcel(), quantity) for quantity in quantities]


def test_a_batch_takes_one_sequence_number_and_one_index_per_parcel(driver: Driver, registry: Contract) -> None:
    lot = driver.stored_lot()
    driver.split(lot, fresh_parcel(), 5)  # index 0, by the single-parcel call
    before = registry.functions.getLot(lot).call()

    batch = driver.split_batch(lot, _parcels(3, 4, 6))

    after = registry.functions.getLot(lot).call()
    assert (batch.first_index, batch.first_seq) == (1, before[LOT_NEXT_SEQ])
    assert after[LOT_PARCELS] == 4
    assert after[LOT_NEXT_SEQ] == before[LOT_NEXT_SEQ] + 3
    assert after[LOT_SPLIT] == 5 + 13
    head = before[LOT_HEAD]
    for event_hash in batch.hashes:
        head = next_head(head, event_hash)
    assert after[LOT_HEAD] == head
    assert registry.functions.splitRoot(lot, 1, 3).call() == batch.tree.root
    assert registry.functions.splitRoot(lot, 1, 2).call() == b"\x00" * 32  # the range is part of the key

    (log,) = registry.events.ParcelsSplit().process_receipt(batch.receipt, errors=DISCARD)
    assert log.args.lotId == lot and log.args.firstSeq == batch.first_seq
    assert log.args.author == driver.accounts.warehouse
    assert (log.args.firstIndex, log.args.parcelsRoot, log.args.quantity) == (1, batch.tree.root, 13)
    assert log.args.priorHead == before[LOT_HEAD]
    assert list(log.args.eventHashes) == batch.hashes
    assert registry.events.EventRecorded().process_receipt(batch.receipt, errors=DISCARD) == ()
    # No parcel record until someone registers it.
    assert registry.functions.getParcel(batch.parcels[0][0]).call()[1] == PARCEL_STATE["None"]


def test_a_registered_parcel_goes_through_its_journey(driver: Driver, registry: Contract) -> None:
    lot = driver.stored_lot()
    batch = driver.split_batch(lot, _parcels(2, 3, 4, 5, 6))
    parcel, quantity = batch.parcels[3]

    receipt = driver.register(batch, 3)

    assert tuple(registry.functions.getParcel(parcel).call()) == (lot, PARCEL_STATE["Split"], 3, quantity, 0)
    (log,) = registry.events.ParcelRegistered().process_receipt(receipt, errors=DISCARD)
    assert (log.args.lotId, log.args.parcelId, log.args.index, log.args.quantity) == (lot, parcel, 3, quantity)
    seq_before = driver.next_seq(lot)
    assert seq_before == registry.functions.getLot(lot).call()[LOT_NEXT_SEQ]  # registering adds no event
    driver.attach_all(parcel)
    driver.release(parcel)
    assert registry.functions.getParcel(parcel).call()[1] == PARCEL_STATE["Released"]
    assert registry.functions.getLedger(lot).call()[3] == quantity


def test_registering_a_parcel_a_manifest_released_reads_released(driver: Driver, registry: Contract) -> None:
    lot = driver.stored_lot()
    batch = driver.split_batch(lot, _parcels(2, 3))
    manifest = [(lot, driver.next_seq(lot), 3, 0, [0b10], fresh_hash())]
    driver.send(registry.functions.releaseManifest(fresh_hash(), manifest), driver.accounts.customs)

    driver.register(batch, 1)
    driver.register(batch, 0)

    assert registry.functions.getParcel(batch.parcels[1][0]).call()[1] == PARCEL_STATE["Released"]
    assert registry.functions.getParcel(batch.parcels[0][0]).call()[1] == PARCEL_STATE["Split"]


def test_a_recall_reaches_registered_parcels_of_a_batch(driver: Driver, registry: Contract) -> None:
    lot = driver.stored_lot()
    batch = driver.split_batch(lot, _parcels(1, 1))
    driver.recall(lot)
    driver.register(batch, 0)  # registration stays open: the record is what answers "recalled"
    assert registry.functions.isRecalled(batch.parcels[0][0]).call() is True


def test_only_a_warehouse_splits_a_batch(driver: Driver, registry: Contract, expect_revert: ExpectRevert) -> None:
    lot = driver.stored_lot()
    batch = SplitBatch.of(lot, driver.next_seq(lot), 0, _parcels(1))
    with expect_revert("AccessControlUnauthorizedAccount", driver.accounts.customs, role_id("warehouse")):
        driver.send(batch.call(registry), driver.accounts.customs)


@pytest.mark.parametrize("root", [None, b"\x00" * 32])
def test_a_batch_needs_parcels_and_a_root(
    driver: Driver, registry: Contract, expect_revert: ExpectRevert, root: bytes | None
) -> None:
    lot = driver.stored_lot()
    hashes = [] if root is None else [fresh_hash()]
    with expect_revert("TraceRegistryEmptySplit", lot):
        driver.send(
            registry.functions.splitParcels(lot, driver.next_seq(lot), root or fresh_hash(), 5, hashes),
            driver.accounts.warehouse,
        )


def test_a_batch_holds_at_least_one_unit_per_parcel(
    driver: Driver, registry: Contract, expect_revert: ExpectRevert
) -> None:
    lot = driver.stored_lot()
    call = registry.functions.splitParcels(lot, driver.next_seq(lot), fresh_hash(), 2, [fresh_hash()] * 3)
    with expect_revert("TraceRegistryQuantityBelowParcels", lot, 2, 3):
        driver.send(call, driver.accounts.warehouse)


def test_a_batch_cannot_split_more_than_remains(driver: Driver, expect_revert: ExpectRevert) -> None:
    lot = driver.stored_lot(received=10)
    driver.split_batch(lot, _parcels(4, 4))
    with expect_revert("TraceRegistryOverSplit", lot, 3, 2):
        driver.split_batch(lot, _parcels(1, 2))


def test_a_batch_needs_a_stored_lot_and_the_next_sequence_number(
    driver: Driver, registry: Contract, expect_revert: ExpectRevert
) -> None:
    lot = driver.stored_lot()
    batch = SplitBatch.of(lot, driver.next_seq(lot) + 1, 0, _parcels(1))
    with expect_revert("TraceRegistrySequenceMismatch", lot, batch.first_seq - 1, batch.first_seq):
        driver.send(batch.call(registry), driver.accounts.warehouse)
    driver.recall(lot)
    with expect_revert("TraceRegistryLotRecalled", lot):
        driver.split_batch(lot, _parcels(1))


def test_a_batch_off_a_lot_not_stored_is_out_of_order(driver: Driver, expect_revert: ExpectRevert) -> None:
    lot = fresh_lot()
    driver.declare(lot)
    driver.enter(lot)
    with expect_revert("TraceRegistryStepOutOfOrder", lot, STEP["Split"], LOT_STATE["Entered"]):
        driver.split_batch(lot, _parcels(1))


def test_registration_names_an_existing_batch_and_its_range(
    driver: Driver, registry: Contract, expect_revert: ExpectRevert
) -> None:
    lot = driver.stored_lot()
    batch = driver.split_batch(lot, _parcels(1, 2, 3))
    parcel, quantity = batch.parcels[0]
    with expect_revert("TraceRegistryUnknownSplit", lot, 0, 2):
        driver.send(
            registry.functions.registerParcel(lot, 0, 2, parcel, 0, quantity, batch.tree.proof(0)),
            driver.accounts.outsider,
        )
    with expect_revert("TraceRegistryIndexOutOfSplit", lot, 3, 0, 3):
        driver.send(
            registry.functions.registerParcel(lot, 0, 3, parcel, 3, quantity, batch.tree.proof(0)),
            driver.accounts.outsider,
        )


def test_a_leaf_outside_the_batch_range_cannot_be_registered(
    driver: Driver, registry: Contract, expect_revert: ExpectRevert
) -> None:
    """Even a root that (wrongly) holds an index of another batch does not let that index be registered."""
    lot = driver.stored_lot()
    parcels = _parcels(1, 1)
    leaves = [(parcels[0][0], 0, 1), (parcels[1][0], 7, 1)]
    tree = StandardMerkleTree.of(leaves, SPLIT_PARCEL_TYPES)
    driver.send(
        registry.functions.splitParcels(lot, driver.next_seq(lot), tree.root, 2, [fresh_hash(), fresh_hash()]),
        driver.accounts.warehouse,
    )
    with expect_revert("TraceRegistryIndexOutOfSplit", lot, 7, 0, 2):
        driver.send(
            registry.functions.registerParcel(lot, 0, 2, parcels[1][0], 7, 1, tree.proof(1)), driver.accounts.outsider
        )


def test_a_forged_leaf_or_proof_is_refused(driver: Driver, registry: Contract, expect_revert: ExpectRevert) -> None:
    lot = driver.stored_lot()
    batch = driver.split_batch(lot, _parcels(2, 3, 4))
    parcel, quantity = batch.parcels[1]
    with expect_revert("TraceRegistryInvalidProof", lot, parcel):
        driver.send(
            registry.functions.registerParcel(lot, 0, 3, parcel, 1, quantity + 1, batch.tree.proof(1)),
            driver.accounts.outsider,
        )
    with expect_revert("TraceRegistryInvalidProof", lot, parcel):
        driver.send(
            registry.functions.registerParcel(lot, 0, 3, parcel, 1, quantity, batch.tree.proof(0)),
            driver.accounts.outsider,
        )


def test_a_parcel_is_registered_once(driver: Driver, expect_revert: ExpectRevert) -> None:
    lot = driver.stored_lot()
    batch = driver.split_batch(lot, _parcels(2, 3))
    driver.register(batch, 0)
    with expect_revert("TraceRegistryParcelExists", batch.parcels[0][0]):
        driver.register(batch, 0)


def test_a_leaf_of_zero_units_is_refused(driver: Driver, registry: Contract, expect_revert: ExpectRevert) -> None:
    lot = driver.stored_lot()
    batch = SplitBatch.of(lot, driver.next_seq(lot), 0, _parcels(0, 2))
    driver.send(batch.call(registry), driver.accounts.warehouse)
    with expect_revert("TraceRegistryZeroQuantity", batch.parcels[0][0]):
        driver.register(batch, 0)


def test_registration_stops_while_paused(driver: Driver, registry: Contract, expect_revert: ExpectRevert) -> None:
    lot = driver.stored_lot()
    batch = driver.split_batch(lot, _parcels(2))
    driver.send(registry.functions.pause(), driver.accounts.admin)
    with expect_revert("EnforcedPause"):
        driver.register(batch, 0)


# -- the signed path ---------------------------------------------------------------------------------------------


def _signed_split(driver: Driver, registry: Contract, lot: bytes, *quantities: int) -> tuple[SplitBatch, SignedOp]:
    batch = SplitBatch.of(lot, driver.next_seq(lot), registry.functions.getLot(lot).call()[LOT_PARCELS],
                          _parcels(*quantities))  # fmt: skip
    return batch, SignedOp.split_batch(batch.tree.root, batch.quantity, batch.hashes)


def test_a_signed_split_batch_is_authored_by_its_signer(driver: Driver, registry: Contract, accounts: Any) -> None:
    warehouse = self_custody_actor(registry, accounts.admin, role_id("warehouse"))
    relayer = Relayer(registry, accounts.outsider)
    lot = driver.stored_lot()
    batch, op = _signed_split(driver, registry, lot, 2, 3, 4)
    observe = SignedOp(Action.OBSERVE, fresh_hash())
    storage_seq = batch.first_seq

    receipt = relayer.record(warehouse, [LotOps(lot, storage_seq, [op, observe])])

    (log,) = registry.events.ParcelsSplit().process_receipt(receipt, errors=DISCARD)
    assert log.args.author == warehouse.address
    assert list(log.args.eventHashes) == batch.hashes
    (observed,) = registry.events.EventRecorded().process_receipt(receipt, errors=DISCARD)
    assert observed.args.seq == storage_seq + 3  # after the three split events
    assert registry.functions.splitRoot(lot, 0, 3).call() == batch.tree.root
    driver.register(batch, 2)
    assert registry.functions.getParcel(batch.parcels[2][0]).call()[2] == 2


def test_signed_split_hashes_must_be_the_signed_ones(
    driver: Driver, registry: Contract, accounts: Any, expect_revert: ExpectRevert
) -> None:
    warehouse = self_custody_actor(registry, accounts.admin, role_id("warehouse"))
    relayer = Relayer(registry, accounts.outsider)
    lot = driver.stored_lot()
    batch, op = _signed_split(driver, registry, lot, 2, 3)
    lots = [LotOps(lot, batch.first_seq, [op])]
    signed, signature = relayer.sign(warehouse, lots)
    with expect_revert("TraceRegistrySplitHashesMismatch", lot, batch.first_seq):
        relayer.submit(signed, signature, (), [[batch.hashes[1], batch.hashes[0]]])
    with expect_revert("TraceRegistrySplitHashesMismatch", lot, batch.first_seq):
        relayer.submit(signed, signature, (), [])
    relayer.submit(signed, signature, (), split_hashes(lots))
    assert registry.functions.getLot(lot).call()[LOT_NEXT_SEQ] == batch.first_seq + 2


def test_a_resent_signed_split_batch_is_skipped(driver: Driver, registry: Contract, accounts: Any) -> None:
    warehouse = self_custody_actor(registry, accounts.admin, role_id("warehouse"))
    relayer = Relayer(registry, accounts.outsider)
    lot = driver.stored_lot()
    prior = registry.functions.getLot(lot).call()[LOT_HEAD]
    batch, op = _signed_split(driver, registry, lot, 2, 3, 4)
    lots = [LotOps(lot, batch.first_seq, [op, SignedOp(Action.OBSERVE, fresh_hash())])]
    signed, signature = relayer.sign(warehouse, lots)
    relayer.submit(signed, signature, [prior], split_hashes(lots))
    head = registry.functions.getLot(lot).call()[LOT_HEAD]

    receipt = relayer.submit(signed, signature, [prior], split_hashes(lots))

    (skipped,) = registry.events.EventsAlreadyRecorded().process_receipt(receipt, errors=DISCARD)
    assert (skipped.args.seq, skipped.args.count) == (batch.first_seq, 4)
    assert registry.functions.getLot(lot).call()[LOT_HEAD] == head
    hashes = [*batch.hashes, lots[0].ops[1].event_hash]
    assert registry.functions.isRecorded(lot, batch.first_seq, prior, hashes).call() is True


def test_split_and_release_by_documents(driver: Driver, registry: Contract) -> None:
    """A registered parcel's documents go through the single-parcel checks (kinds, roles)."""
    lot = driver.stored_lot()
    batch = driver.split_batch(lot, _parcels(5))
    driver.register(batch, 0)
    parcel = batch.parcels[0][0]
    driver.attach(parcel, "Order")
    assert registry.functions.getParcel(parcel).call()[4] == 1 << DOCUMENT["Order"]


@pytest.mark.parametrize("count", [1, 100])
def test_a_batch_of_n_parcels_costs_at_most_80000_plus_2000_per_parcel(driver: Driver, count: int) -> None:
    lot = driver.stored_lot()
    batch = driver.split_batch(lot, _parcels(*[1] * count))
    assert batch.receipt["gasUsed"] <= 80_000 + 2_000 * count, batch.receipt["gasUsed"]
