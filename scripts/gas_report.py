"""Gas per registry operation, measured on a real anvil that this script starts (and stops).

Usage: scripts/gas_report [--hardfork prague] [--markdown]

Anvil runs with the named hardfork (default: prague, the first with EIP-7623's calldata floor: a transaction
pays at least 21,000 + 10 gas per calldata token, where a zero byte is 1 token and any other byte 4). Every
figure is the ``gasUsed`` of a mined transaction's receipt, the 21,000 base included. Batches are signed with
EIP-712 by a self-custody key and relayed by an account that holds no role.
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_utils import keccak
from web3 import Web3

from tracer.chain.anvil import find_anvil_binary
from tracer.chain.compiler import load_artifact
from tracer.chain.supervisor import free_port
from tracer.chain.typed_data import Action, LotOps, SignedOp, sign_batch, split_hashes
from tracer.merkle import RELEASE_RECORD_TYPES, SPLIT_PARCEL_TYPES, StandardMerkleTree

_counter = itertools.count(1)
ZERO = b"\x00" * 32


def fresh(prefix: str) -> bytes:
    return keccak(text=f"{prefix}-{next(_counter)}-{time.time_ns()}")


class Bench:
    """A registry on anvil, one unlocked dev account per role, and a self-custody key per role for batches."""

    def __init__(self, w3: Web3) -> None:
        self.w3 = w3
        artifact = load_artifact()
        (self.admin, self.customs_admin, self.enterprise, self.warehouse, self.customs, self.carrier, self.payment,
         self.relayer) = w3.eth.accounts[:8]  # fmt: skip
        factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        receipt = self.wait(factory.constructor(self.admin, self.customs_admin).transact({"from": self.admin}))
        self.deploy_gas = receipt["gasUsed"]
        self.registry = w3.eth.contract(address=receipt["contractAddress"], abi=artifact.abi)
        self.keys = {name: Account.create() for name in ("warehouse", "carrier")}
        fns = self.registry.functions
        for name in ("enterprise", "warehouse", "carrier", "payment"):
            self.wait(fns.grantRole(keccak(text=name), getattr(self, name)).transact({"from": self.admin}))
        for name, key in self.keys.items():
            self.wait(fns.grantRole(keccak(text=name), key.address).transact({"from": self.admin}))
        self.wait(fns.grantRole(keccak(text="customs"), self.customs).transact({"from": self.customs_admin}))

    def wait(self, tx_hash: Any) -> Any:
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
        if receipt["status"] != 1:
            raise RuntimeError(f"transaction {tx_hash.hex()} reverted")
        return receipt

    def send(self, fn: Any, sender: str) -> int:
        return int(self.wait(fn.transact({"from": sender}))["gasUsed"])

    def seq(self, lot: bytes) -> int:
        return int(self.registry.functions.getLot(lot).call()[7])

    def signed(self, key_name: str, lots: list[LotOps]) -> int:
        batch, signature = sign_batch(
            self.keys[key_name], chain_id=self.w3.eth.chain_id, registry=self.registry.address,
            deadline=2**63, lots=lots,
        )  # fmt: skip
        return self.send(self.registry.functions.recordSigned(batch, signature, [], split_hashes(lots)), self.relayer)

    def stored_lot(self, received: int = 100_000) -> bytes:
        fns, lot = self.registry.functions, fresh("lot")
        self.send(fns.declareLot(lot, received, fresh("e")), self.enterprise)
        self.send(fns.recordEntry(lot, 1, received, fresh("e")), self.warehouse)
        self.send(fns.recordInspection(lot, 2, 0, fresh("e")), self.customs)
        self.send(fns.recordStorage(lot, 3, fresh("e")), self.warehouse)
        return lot

    def split_tree(self, lot: bytes, count: int, quantity: int = 1) -> tuple[list[bytes], StandardMerkleTree, int]:
        """``count`` new parcels of ``quantity`` each, their leaves' tree and their first index in ``lot``."""
        first_index = int(self.registry.functions.getLot(lot).call()[8])
        parcels = [fresh("parcel") for _ in range(count)]
        leaves = [(p, first_index + i, quantity) for i, p in enumerate(parcels)]
        return parcels, StandardMerkleTree.of(leaves, SPLIT_PARCEL_TYPES), first_index

    def split_many(self, lot: bytes, count: int, quantity: int = 1) -> tuple[list[bytes], StandardMerkleTree, int]:
        """Splits ``count`` parcels off ``lot`` in one signed SplitBatch op; returns them, their tree and the gas."""
        parcels, tree, _ = self.split_tree(lot, count, quantity)
        op = SignedOp.split_batch(tree.root, count * quantity, [fresh("e") for _ in parcels])
        return parcels, tree, self.signed("warehouse", [LotOps(lot, self.seq(lot), [op])])


def measure(bench: Bench) -> list[tuple[str, int, str, str]]:
    """Rows of (operation, gas, per-unit note, budget)."""
    fns, rows = bench.registry.functions, []

    def row(name: str, gas: int, note: str = "", budget: str = "") -> None:
        rows.append((name, gas, note, budget))

    row("deploy", bench.deploy_gas)
    lot, parcel = fresh("lot"), fresh("parcel")
    row("declareLot", bench.send(fns.declareLot(lot, 1000, fresh("e")), bench.enterprise), budget="≤ 120,000")
    row("recordEntry", bench.send(fns.recordEntry(lot, 1, 1000, fresh("e")), bench.warehouse), budget="≤ 80,000")
    row("recordObservation", bench.send(fns.recordObservation(lot, 2, ZERO, fresh("e")), bench.warehouse),
        budget="≤ 80,000")  # fmt: skip
    row("recordInspection", bench.send(fns.recordInspection(lot, 3, 0, fresh("e")), bench.customs), budget="≤ 80,000")
    row("recordStorage", bench.send(fns.recordStorage(lot, 4, fresh("e")), bench.warehouse), budget="≤ 80,000")
    row("splitParcel", bench.send(fns.splitParcel(lot, 5, parcel, 10, fresh("e")), bench.warehouse),
        budget="≤ 80,000")  # fmt: skip
    for kind, (name, sender) in enumerate((("order", bench.enterprise), ("payment", bench.payment),
                                           ("waybill", bench.carrier))):  # fmt: skip
        gas = bench.send(fns.attachDocument(parcel, 6 + kind, kind, fresh("c"), fresh("e")), sender)
        row(f"attachDocument ({name})", gas, budget="≤ 80,000")
    row("releaseParcel", bench.send(fns.releaseParcel(parcel, 9, fresh("e")), bench.customs), budget="≤ 80,000")
    row("recordDelivery", bench.send(fns.recordDelivery(parcel, 10, fresh("e")), bench.carrier), budget="≤ 80,000")
    row("recall", bench.send(fns.recall(lot, 11, fresh("e")), bench.customs), budget="≤ 80,000")

    # Risk-based clearance.
    row("setCreditLevel", bench.send(fns.setCreditLevel(bench.enterprise, 2), bench.customs), budget="≤ 80,000")
    row("addLowRiskRange", bench.send(fns.addLowRiskRange(401_000_000, 406_999_999, 2), bench.customs),
        budget="≤ 80,000")  # fmt: skip
    lot = fresh("lot")
    row("declareLotClassified", bench.send(fns.declareLotClassified(lot, 100, 402_210_000, 1, fresh("e")),
                                            bench.enterprise), budget="≤ 120,000")  # fmt: skip
    bench.send(fns.recordEntry(lot, 1, 100, fresh("e")), bench.warehouse)
    row("clearByRule", bench.send(fns.clearByRule(lot, 2, fresh("e")), bench.warehouse), budget="≤ 80,000")

    # Non-conformant goods.
    lot = fresh("lot")
    bench.send(fns.declareLot(lot, 100, fresh("e")), bench.enterprise)
    bench.send(fns.recordEntry(lot, 1, 100, fresh("e")), bench.warehouse)
    bench.send(fns.recordInspection(lot, 2, 1, fresh("e")), bench.customs)
    row("recordDisposal (destroy part)", bench.send(fns.recordDisposal(lot, 3, 1, 30, fresh("e")), bench.customs),
        budget="≤ 80,000")  # fmt: skip
    row("recordDisposal (return part)", bench.send(fns.recordDisposal(lot, 4, 0, 20, fresh("e")), bench.customs),
        budget="≤ 80,000")  # fmt: skip
    row("liftHold", bench.send(fns.liftHold(lot, 5, fresh("e")), bench.customs), budget="≤ 80,000")

    # Signed batches.
    lot = bench.stored_lot()
    ops = [SignedOp(Action.OBSERVE, fresh("e")) for _ in range(100)]
    gas = bench.signed("warehouse", [LotOps(lot, bench.seq(lot), ops)])
    row("recordSigned: 100 observations, 1 lot", gas, f"{gas / 100:,.0f} per event", "≤ 6,000 per event")
    lots = [bench.stored_lot() for _ in range(100)]
    gas = bench.signed("warehouse", [LotOps(lot, 4, [SignedOp(Action.OBSERVE, fresh("e"))]) for lot in lots])
    row("recordSigned: 100 observations, 100 lots", gas, f"{gas / 100:,.0f} per event", "≤ 20,000 per event")
    lot = bench.stored_lot()
    _, _, gas = bench.split_many(lot, 100)
    row("recordSigned: split 100 parcels (SplitBatch), 1 lot", gas, f"{gas / 100:,.0f} per parcel",
        f"≤ {80_000 + 2_000 * 100:,}")  # fmt: skip

    # Split batches: one root slot and one log per call, then a parcel's record on demand.
    for count in (1, 10, 100, 500):
        lot = bench.stored_lot()
        parcels, tree, first_index = bench.split_tree(lot, count)
        call = fns.splitParcels(lot, bench.seq(lot), tree.root, count, [fresh("e") for _ in parcels])
        gas = bench.send(call, bench.warehouse)
        row(f"splitParcels, N = {count}", gas, f"{gas / count:,.0f} per parcel", f"≤ {80_000 + 2_000 * count:,}")
    position = count // 2
    gas = bench.send(fns.registerParcel(lot, first_index, count, parcels[position], first_index + position, 1,
                                        tree.proof(position)), bench.relayer)  # fmt: skip
    row(f"registerParcel ({len(tree.proof(position))}-level proof)", gas, "once per parcel, by anyone", "≤ 80,000")
    lots = [bench.stored_lot() for _ in range(100)]
    gas = bench.signed("carrier", [LotOps(lot, 4, [SignedOp(Action.OBSERVE, fresh("e"))]) for lot in lots])
    row("recordSigned: 100 transit scans (carrier), 100 lots", gas, f"{gas / 100:,.0f} per event",
        "≤ 20,000 per event")  # fmt: skip

    # A release manifest of 1,000 parcels from 10 lots, after real splits.
    lots, records, split_trees = [], [], []
    for _ in range(10):
        lot = bench.stored_lot()
        parcels, split_tree, _ = bench.split_many(lot, 100)
        lots.append(lot)
        split_trees.append((lot, parcels, split_tree))
        records += [(p, lot, i, 1, fresh("o"), fresh("p"), fresh("w")) for i, p in enumerate(parcels)]
    tree = StandardMerkleTree.of(records, RELEASE_RECORD_TYPES)
    entries = [(lot, bench.seq(lot), 100, 0, [(1 << 100) - 1], fresh("e")) for lot in lots]
    gas = bench.send(fns.releaseManifest(tree.root, entries), bench.customs)
    row("releaseManifest: 1,000 parcels, 10 lots", gas, f"{gas / 1000:,.0f} per parcel", "≤ 600,000 total")
    # A parcel proves its release once it has its record (registered from its split batch's tree).
    lot, parcels, split_tree = split_trees[1]
    bench.send(fns.registerParcel(lot, 0, 100, parcels[23], 23, 1, split_tree.proof(23)), bench.relayer)
    ok = fns.verifyRelease(tree.root, records[123], tree.proof(123)).call()
    row("verifyRelease (eth_call, 10-level proof)", int(fns.verifyRelease(tree.root, records[123],
        tree.proof(123)).estimate_gas()), "proof checks" if ok else "PROOF FAILED", "view")  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/gas_report", description=__doc__.splitlines()[0])
    parser.add_argument("--hardfork", default="prague", help="anvil --hardfork (default: prague)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table (for docs/contracts.md)")
    args = parser.parse_args(argv)
    binary = find_anvil_binary()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log = open(Path(tmp) / "anvil.log", "wb")  # noqa: SIM115 - closed after anvil stops
        node = subprocess.Popen(
            [str(binary), "--port", str(port), "--hardfork", args.hardfork, "--gas-limit", "30000000",
             "--accounts", "10", "--silent"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            w3 = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{port}", request_kwargs={"timeout": 120}))
            deadline = time.monotonic() + 20
            while not w3.is_connected():
                if time.monotonic() > deadline or node.poll() is not None:
                    print("gas_report: anvil did not start", file=sys.stderr)
                    return 2
                time.sleep(0.1)
            version = w3.client_version
            print(f"gas_report: measuring on {version}, --hardfork {args.hardfork}", file=sys.stderr)
            rows = measure(Bench(w3))
        finally:
            node.terminate()
            node.wait(timeout=10)
            log.close()
    print(f"node: {version}, hardfork {args.hardfork} (EIP-7623 calldata floor applies); gasUsed of receipts")
    if args.markdown:
        print("\n| operation | gas | per unit | budget |\n|---|---:|---|---|")
        for name, gas, note, budget in rows:
            print(f"| {name} | {gas:,} | {note} | {budget} |")
    else:
        width = max(len(name) for name, *_ in rows)
        print(f"{'operation':<{width}}  {'gas':>10}  {'per unit':<22}  budget")
        for name, gas, note, budget in rows:
            print(f"{name:<{width}}  {gas:>10,}  {note:<22}  {budget}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
