"""Release manifests (清单核放, 分批核销): many parcels of many lots released in one transaction by bitmap words,
the quantity written off per lot, the Merkle root of the release records kept, each release provable."""

from __future__ import annotations

import pytest
from eth_utils import keccak
from registry_support import PARCEL_STATE, STEP, fresh_hash, fresh_parcel, poke_lot_ledger, role_id
from signed_support import Relayer, self_custody_actor
from web3.logs import DISCARD

from tracer.chain.typed_data import Action, LotOps, SignedOp
from tracer.merkle import RELEASE_RECORD_TYPES, StandardMerkleTree

SPLIT, RELEASED, NEXT_SEQ = 5, 6, 7


@pytest.fixture
def splitter(registry, accounts):
    """Splits many parcels off a lot in signed batches of 100 (one transaction each), to keep the tests fast."""
    relayer = Relayer(registry, accounts.outsider)
    warehouse = self_custody_actor(registry, accounts.admin, role_id("warehouse"))

    def split(driver, lot, count, quantity):
        parcels = [fresh_parcel() for _ in range(count)]
        for start in range(0, count, 100):
            ops = [
                SignedOp(Action.SPLIT, fresh_hash(), subject=p, amount=quantity) for p in parcels[start : start + 100]
            ]
            relayer.record(warehouse, [LotOps(lot, driver.next_seq(lot), ops)])
        return parcels

    return split


@pytest.fixture
def lot_with_parcels(driver, splitter):
    def make(count, quantity=2, received=10_000):
        lot = driver.stored_lot(received=received)
        return lot, splitter(driver, lot, count, quantity)

    return make


def _records(registry, parcels):
    records = []
    for parcel in parcels:
        lot, _, index, quantity, _ = registry.functions.getParcel(parcel).call()
        records.append(
            (parcel, lot, index, quantity, keccak(b"o" + parcel), keccak(b"p" + parcel), keccak(b"w" + parcel))
        )
    return records


def _bits(indices):
    word = 0
    for index in indices:
        word |= 1 << index
    return word


def _entry(driver, lot, indices, quantity, first_word=0, words=None):
    return (
        lot,
        driver.next_seq(lot),
        quantity,
        first_word,
        words if words is not None else [_bits(indices)],
        fresh_hash(),
    )


def _release(registry, accounts, root, entries, sender=None):
    tx = registry.functions.releaseManifest(root, entries).transact({"from": sender or accounts.customs})
    return registry.w3.eth.wait_for_transaction_receipt(tx)


def test_manifest_writes_off_the_summed_quantity_per_lot(lot_with_parcels, registry, driver, accounts):
    lot, _ = lot_with_parcels(4, quantity=3)
    _release(registry, accounts, fresh_hash(), [_entry(driver, lot, [0, 2], 6)])
    assert registry.functions.getLot(lot).call()[RELEASED] == 6


def test_manifest_marks_the_parcels_released(lot_with_parcels, registry, driver, accounts):
    lot, parcels = lot_with_parcels(3)
    _release(registry, accounts, fresh_hash(), [_entry(driver, lot, [1], 2)])
    states = [registry.functions.getParcel(p).call()[1] for p in parcels]
    assert states == [PARCEL_STATE["Split"], PARCEL_STATE["Released"], PARCEL_STATE["Split"]]
    assert registry.functions.releasedWord(lot, 0).call() == 0b010


def test_manifest_logs_one_event_per_lot_with_the_root_as_subject(lot_with_parcels, registry, driver, accounts):
    lots = [lot_with_parcels(2)[0] for _ in range(2)]
    root = fresh_hash()
    receipt = _release(registry, accounts, root, [_entry(driver, lot, [0, 1], 4) for lot in lots])
    events = registry.events.EventRecorded().process_receipt(receipt, errors=DISCARD)
    assert [(e.args.lotId, e.args.step, e.args.subject) for e in events] == [
        (lot, STEP["ManifestReleased"], root) for lot in lots
    ]
    assert registry.functions.manifestBlock(root).call() == receipt["blockNumber"]


def test_manifest_cannot_release_a_parcel_twice(lot_with_parcels, driver, registry, accounts, expect_revert):
    lot, _ = lot_with_parcels(3)
    _release(registry, accounts, fresh_hash(), [_entry(driver, lot, [0, 1], 4)])
    with expect_revert("TraceRegistryAlreadyReleased", lot, 0, 0b010):
        _release(registry, accounts, fresh_hash(), [_entry(driver, lot, [1, 2], 4)])


def test_manifest_cannot_release_a_parcel_released_singly(lot_with_parcels, driver, registry, accounts, expect_revert):
    lot, parcels = lot_with_parcels(2)
    driver.attach_all(parcels[0])
    driver.release(parcels[0])
    with expect_revert("TraceRegistryAlreadyReleased", lot, 0, 0b01):
        _release(registry, accounts, fresh_hash(), [_entry(driver, lot, [0], 2)])


def test_single_release_of_a_manifest_released_parcel_is_out_of_order(
    lot_with_parcels, driver, registry, accounts, expect_revert
):
    lot, parcels = lot_with_parcels(1)
    driver.attach_all(parcels[0])
    _release(registry, accounts, fresh_hash(), [_entry(driver, lot, [0], 2)])
    with expect_revert("TraceRegistryStepOutOfOrder", parcels[0], STEP["Released"], PARCEL_STATE["Released"]):
        driver.release(parcels[0])


def test_manifest_released_parcel_can_be_delivered(lot_with_parcels, driver, registry, accounts):
    lot, parcels = lot_with_parcels(1)
    _release(registry, accounts, fresh_hash(), [_entry(driver, lot, [0], 2)])
    driver.deliver(parcels[0])
    assert registry.functions.getParcel(parcels[0]).call()[1] == PARCEL_STATE["Delivered"]


def test_manifest_bit_beyond_the_lots_parcels_is_rejected(lot_with_parcels, driver, registry, accounts, expect_revert):
    lot, _ = lot_with_parcels(3)
    with expect_revert("TraceRegistryUnknownParcelIndex", lot, 5, 3):
        _release(registry, accounts, fresh_hash(), [_entry(driver, lot, [0, 5], 4)])


def test_manifest_word_beyond_the_lots_parcels_is_rejected(lot_with_parcels, driver, registry, accounts, expect_revert):
    lot, _ = lot_with_parcels(3)
    with expect_revert("TraceRegistryUnknownParcelIndex", lot, 256, 3):
        _release(registry, accounts, fresh_hash(), [_entry(driver, lot, [], 1, first_word=1, words=[1])])


def test_manifest_quantity_above_the_split_balance_is_rejected(
    lot_with_parcels, driver, registry, accounts, expect_revert
):
    lot, _ = lot_with_parcels(2, quantity=3)
    with expect_revert("TraceRegistryOverRelease", lot, 7, 6):
        _release(registry, accounts, fresh_hash(), [_entry(driver, lot, [0, 1], 7)])


def test_manifest_quantity_below_its_parcel_count_is_rejected(
    lot_with_parcels, driver, registry, accounts, expect_revert
):
    lot, _ = lot_with_parcels(3)
    with expect_revert("TraceRegistryQuantityBelowParcels", lot, 2, 3):
        _release(registry, accounts, fresh_hash(), [_entry(driver, lot, [0, 1, 2], 2)])


def test_manifest_without_parcels_is_rejected(lot_with_parcels, driver, registry, accounts, expect_revert):
    lot, _ = lot_with_parcels(1)
    with expect_revert("TraceRegistryQuantityBelowParcels", lot, 2, 0):
        _release(registry, accounts, fresh_hash(), [_entry(driver, lot, [], 2)])


def test_manifest_root_is_recorded_once(lot_with_parcels, driver, registry, accounts, expect_revert):
    lot, _ = lot_with_parcels(2)
    root = fresh_hash()
    _release(registry, accounts, root, [_entry(driver, lot, [0], 2)])
    with expect_revert("TraceRegistryManifestExists", root):
        _release(registry, accounts, root, [_entry(driver, lot, [1], 2)])


def test_manifest_requires_customs(lot_with_parcels, driver, registry, accounts, expect_revert):
    lot, _ = lot_with_parcels(1)
    with expect_revert("AccessControlUnauthorizedAccount"):
        _release(registry, accounts, fresh_hash(), [_entry(driver, lot, [0], 2)], sender=accounts.warehouse)


def test_manifest_of_a_recalled_lot_is_refused(lot_with_parcels, driver, registry, accounts, expect_revert):
    lot, _ = lot_with_parcels(1)
    driver.recall(lot)
    with expect_revert("TraceRegistryLotRecalled", lot):
        _release(registry, accounts, fresh_hash(), [_entry(driver, lot, [0], 2)])


def test_manifest_checks_each_lots_sequence(lot_with_parcels, driver, registry, accounts, expect_revert):
    lot, _ = lot_with_parcels(1)
    stale = (lot, driver.next_seq(lot) - 1, 2, 0, [1], fresh_hash())
    with expect_revert("TraceRegistrySequenceMismatch"):
        _release(registry, accounts, fresh_hash(), [stale])


def test_parcel_proves_its_release_with_a_merkle_proof(lot_with_parcels, driver, registry, accounts):
    lot, parcels = lot_with_parcels(5)
    records = _records(registry, parcels)
    tree = StandardMerkleTree.of(records, RELEASE_RECORD_TYPES)
    _release(registry, accounts, tree.root, [_entry(driver, lot, range(5), 10)])
    assert all(registry.functions.verifyRelease(tree.root, r, tree.proof(i)).call() for i, r in enumerate(records))


def test_release_proof_with_an_altered_record_fails(lot_with_parcels, driver, registry, accounts):
    lot, parcels = lot_with_parcels(3)
    records = _records(registry, parcels)
    tree = StandardMerkleTree.of(records, RELEASE_RECORD_TYPES)
    _release(registry, accounts, tree.root, [_entry(driver, lot, range(3), 6)])
    altered = (*records[1][:4], fresh_hash(), *records[1][5:])
    assert not registry.functions.verifyRelease(tree.root, altered, tree.proof(1)).call()


def test_release_proof_of_an_unreleased_parcel_fails(lot_with_parcels, driver, registry, accounts):
    lot, parcels = lot_with_parcels(3)
    records = _records(registry, parcels)
    tree = StandardMerkleTree.of(records, RELEASE_RECORD_TYPES)
    _release(registry, accounts, tree.root, [_entry(driver, lot, [0, 1], 4)])
    assert not registry.functions.verifyRelease(tree.root, records[2], tree.proof(2)).call()


def test_release_proof_against_an_unrecorded_root_fails(lot_with_parcels, driver, registry):
    _, parcels = lot_with_parcels(1)
    records = _records(registry, parcels)
    tree = StandardMerkleTree.of(records, RELEASE_RECORD_TYPES)
    assert not registry.functions.verifyRelease(tree.root, records[0], tree.proof(0)).call()


def test_manifest_of_1000_parcels_from_10_lots_stays_within_600000_gas(w3, driver, registry, accounts):
    # Only a lot's parcel count and split quantity bound a manifest (it reads no parcel record), so the lots
    # get 100 parcels each by a storage write instead of 1,000 split transactions; scripts/gas_report measures
    # the same manifest on anvil after real splits.
    lots = [driver.stored_lot(received=1_000) for _ in range(10)]
    for lot in lots:
        poke_lot_ledger(w3, registry.address, lot, split=100, parcels=100)
    entries = [_entry(driver, lot, range(100), 100) for lot in lots]
    receipt = _release(registry, accounts, fresh_hash(), entries)
    assert receipt["gasUsed"] <= 600_000, receipt["gasUsed"]
    assert [registry.functions.getLot(lot).call()[RELEASED] for lot in lots] == [100] * 10


@pytest.mark.parametrize("count", [1, 255, 256])
def test_manifest_counts_parcels_of_full_words(w3, driver, registry, accounts, count, expect_revert):
    lot = driver.stored_lot(received=1_000)
    poke_lot_ledger(w3, registry.address, lot, split=count, parcels=count)
    with expect_revert("TraceRegistryQuantityBelowParcels", lot, count - 1, count):
        _release(registry, accounts, fresh_hash(), [_entry(driver, lot, range(count), count - 1)])
