"""The registry v2 rules on Ganache 7 (Shanghai): signed batches, manifests with Merkle proofs, rule clearance,
disposal and re-send recognition behave there as on anvil and eth-tester."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
from eth_account import Account
from eth_utils import keccak
from web3 import Web3

from tracer.chain.compiler import RegistryArtifact
from tracer.chain.typed_data import Action, LotOps, SignedOp, sign_batch, split_hashes
from tracer.merkle import RELEASE_RECORD_TYPES, SPLIT_PARCEL_TYPES, StandardMerkleTree

pytestmark = pytest.mark.ganache

_counter = itertools.count(1)
ZERO = b"\x00" * 32


def _fresh(prefix: str) -> bytes:
    return keccak(text=f"ganache-{prefix}-{next(_counter)}")


@pytest.fixture(scope="module")
def chain(ganache: str, artifact: RegistryArtifact) -> SimpleNamespace:
    """A registry deployed on the session Ganache by its unlocked dev accounts, one per role."""
    w3 = Web3(Web3.HTTPProvider(ganache))
    names = ("admin", "customs_admin", "enterprise", "warehouse", "customs", "carrier", "payment", "relayer")
    accounts = dict(zip(names, w3.eth.accounts[:8], strict=True))
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    tx = factory.constructor(accounts["admin"], accounts["customs_admin"]).transact({"from": accounts["admin"]})
    registry = w3.eth.contract(address=w3.eth.wait_for_transaction_receipt(tx)["contractAddress"], abi=artifact.abi)
    for name in ("enterprise", "warehouse", "carrier", "payment"):
        registry.functions.grantRole(keccak(text=name), accounts[name]).transact({"from": accounts["admin"]})
    registry.functions.grantRole(keccak(text="customs"), accounts["customs"]).transact(
        {"from": accounts["customs_admin"]}
    )
    signer = Account.create()
    registry.functions.grantRole(keccak(text="warehouse"), signer.address).transact({"from": accounts["admin"]})
    return SimpleNamespace(w3=w3, registry=registry, signer=signer, **accounts)


def _send(chain: SimpleNamespace, fn, sender: str):
    receipt = chain.w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender}))
    assert receipt["status"] == 1
    return receipt


def _seq(chain: SimpleNamespace, lot: bytes) -> int:
    return chain.registry.functions.getLot(lot).call()[7]


def _stored_lot(chain: SimpleNamespace, received: int = 100) -> bytes:
    fns, lot = chain.registry.functions, _fresh("lot")
    _send(chain, fns.declareLot(lot, received, _fresh("e")), chain.enterprise)
    _send(chain, fns.recordEntry(lot, 1, received, _fresh("e")), chain.warehouse)
    _send(chain, fns.recordInspection(lot, 2, 0, _fresh("e")), chain.customs)
    _send(chain, fns.recordStorage(lot, 3, _fresh("e")), chain.warehouse)
    return lot


def _signed(chain: SimpleNamespace, lots: list[LotOps], prior_heads: list[bytes] | None = None):
    batch, signature = sign_batch(
        chain.signer, chain_id=chain.w3.eth.chain_id, registry=chain.registry.address, deadline=2**63, lots=lots
    )
    call = chain.registry.functions.recordSigned(batch, signature, prior_heads or [], split_hashes(lots))
    return _send(chain, call, chain.relayer)


def test_signed_batch_is_authored_by_the_signer_on_ganache(chain):
    lot = _stored_lot(chain)
    receipt = _signed(chain, [LotOps(lot, 4, [SignedOp(Action.OBSERVE, _fresh("e")) for _ in range(3)])])
    events = chain.registry.events.EventRecorded().process_receipt(receipt)
    assert [e.args.author for e in events] == [chain.signer.address] * 3


def test_resent_signed_batch_is_recognised_on_ganache(chain):
    lot = _stored_lot(chain)
    prior = chain.registry.functions.getLot(lot).call()[9]
    lots = [LotOps(lot, 4, [SignedOp(Action.OBSERVE, _fresh("e"))])]
    _signed(chain, lots)
    receipt = _signed(chain, lots, [prior])
    assert chain.registry.events.EventsAlreadyRecorded().process_receipt(receipt)[0].args.count == 1
    assert _seq(chain, lot) == 5


def test_split_batch_and_manifest_release_are_provable_on_ganache(chain):
    lot = _stored_lot(chain)
    parcels = [_fresh("parcel") for _ in range(4)]
    split_tree = StandardMerkleTree.of([(p, i, 2) for i, p in enumerate(parcels)], SPLIT_PARCEL_TYPES)
    op = SignedOp.split_batch(split_tree.root, 8, [_fresh("e") for _ in parcels])
    receipt = _signed(chain, [LotOps(lot, 4, [op])])
    (split,) = chain.registry.events.ParcelsSplit().process_receipt(receipt)
    assert (split.args.firstSeq, split.args.author, len(split.args.eventHashes)) == (4, chain.signer.address, 4)
    records = [(p, lot, i, 2, _fresh("o"), _fresh("p"), _fresh("w")) for i, p in enumerate(parcels)]
    tree = StandardMerkleTree.of(records, RELEASE_RECORD_TYPES)
    entry = (lot, _seq(chain, lot), 8, 0, [0b1111], _fresh("e"))
    _send(chain, chain.registry.functions.releaseManifest(tree.root, [entry]), chain.customs)
    assert chain.registry.functions.getLot(lot).call()[6] == 8
    register = chain.registry.functions.registerParcel(lot, 0, 4, parcels[2], 2, 2, split_tree.proof(2))
    _send(chain, register, chain.relayer)
    assert chain.registry.functions.getParcel(parcels[2]).call()[1] == 2  # Released, by the manifest's bitmap
    assert chain.registry.functions.verifyRelease(tree.root, records[2], tree.proof(2)).call()


def test_low_risk_lot_is_cleared_by_rule_on_ganache(chain):
    fns, lot = chain.registry.functions, _fresh("lot")
    _send(chain, fns.setCreditLevel(chain.enterprise, 2), chain.customs)
    add_range = fns.addLowRiskRange(401_000_000, 406_999_999, 2)
    range_id = add_range.call({"from": chain.customs})
    _send(chain, add_range, chain.customs)
    _send(chain, fns.declareLotClassified(lot, 10, 402_210_000, range_id, _fresh("e")), chain.enterprise)
    _send(chain, fns.recordEntry(lot, 1, 10, _fresh("e")), chain.warehouse)
    _send(chain, fns.clearByRule(lot, 2, _fresh("e")), chain.warehouse)
    assert fns.getLot(lot).call()[0] == 3  # Cleared


def test_disposal_keeps_the_ledger_conserved_on_ganache(chain):
    fns, lot = chain.registry.functions, _fresh("lot")
    _send(chain, fns.declareLot(lot, 50, _fresh("e")), chain.enterprise)
    _send(chain, fns.recordEntry(lot, 1, 50, _fresh("e")), chain.warehouse)
    _send(chain, fns.recordInspection(lot, 2, 1, _fresh("e")), chain.customs)
    _send(chain, fns.recordDisposal(lot, 3, 1, 20, _fresh("e")), chain.customs)
    _send(chain, fns.recordDisposal(lot, 4, 0, 30, _fresh("e")), chain.customs)
    _, received, _, released, destroyed, returned, remaining, _ = fns.getLedger(lot).call()
    assert (released, destroyed, returned, remaining) == (0, 20, 30, 0)
    assert released + destroyed + returned + remaining == received
    assert fns.getLot(lot).call()[0] == 6  # Closed
