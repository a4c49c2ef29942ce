"""Submission benchmark: the writer's way of sending (one JSON-RPC batch of raw transactions, receipts polled in
batches) against one request per transaction, on a fresh anvil with one-second blocks.

Each mode signs ``--txs`` registry calls (``recordObservation`` on lots of their own, each from the deployer key,
fixed gas limit, signed locally with eth-account) and times three parts: signing, sending, and waiting until every
receipt is in. "one by one" sends each transaction with its own ``eth_sendRawTransaction`` request and waits with
one ``eth_getTransactionReceipt`` per transaction per poll; "batched" is ``ChainClient.send_raw`` and
``ChainClient.wait_receipts``, what the writer does.

Usage: scripts/bench_submit [--txs N] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eth_account import Account  # noqa: E402
from eth_account.signers.local import LocalAccount  # noqa: E402
from eth_utils.crypto import keccak  # noqa: E402

from tracer.chain.anvil import AnvilSupervisor  # noqa: E402
from tracer.chain.client import ChainClient, SignedTx  # noqa: E402
from tracer.chain.compiler import load_artifact  # noqa: E402
from tracer.config import DEV_DEPLOYER_KEY  # noqa: E402

OBSERVATION_GAS = 80_000


def _prepare(client: ChainClient, deployer: LocalAccount, count: int, tag: str) -> list[bytes]:
    """Declares ``count`` lots (in batches, not timed); returns their ids."""
    lots = [keccak(text=f"{tag}-{n}") for n in range(count)]
    nonce = client.pending_nonce(deployer.address)
    signed = [
        client.sign(
            client.call_request(sender=deployer, function="declareLot", args=[lot, 1000, keccak(lot)]), nonce=nonce + n
        )
        for n, lot in enumerate(lots)
    ]
    for start in range(0, len(signed), 500):
        client.send_raw(signed[start : start + 500])
    client.wait_receipts([tx.tx_hash for tx in signed], timeout=120)
    return lots


def _sign(client: ChainClient, deployer: LocalAccount, lots: list[bytes]) -> list[SignedTx]:
    nonce = client.pending_nonce(deployer.address)
    return [
        client.sign(
            client.call_request(
                sender=deployer,
                function="recordObservation",
                args=[lot, 1, bytes(32), keccak(text=f"reading {n}")],
                gas=OBSERVATION_GAS,
            ),
            nonce=nonce + n,
        )
        for n, lot in enumerate(lots)
    ]


def run(client: ChainClient, deployer: LocalAccount, txs: int, batched: bool, tag: str) -> dict[str, float]:
    lots = _prepare(client, deployer, txs, tag)
    started = time.perf_counter()
    signed = _sign(client, deployer, lots)
    signed_at = time.perf_counter()
    hashes = client.send_raw(signed) if batched else [client.send_raw([tx])[0] for tx in signed]
    sent_at = time.perf_counter()
    assert all(isinstance(h, str) for h in hashes), [h for h in hashes if not isinstance(h, str)][:3]
    if batched:
        outcomes = client.wait_receipts([tx.tx_hash for tx in signed], timeout=120).outcomes
        assert all(not isinstance(outcome, Exception) for outcome in outcomes.values())
    else:
        for tx in signed:
            client.wait_receipt(tx.tx_hash, timeout=120)
    done = time.perf_counter()
    return {
        "sign": signed_at - started,
        "send": sent_at - signed_at,
        "receipts": done - sent_at,
        "total": done - started,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--txs", type=int, default=300, help="transactions per run")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each mode, alternating")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-submit-"))
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    deployer: LocalAccount = Account.from_key(DEV_DEPLOYER_KEY)
    try:
        with AnvilSupervisor.in_directory(workdir / "chain", block_time=1) as node:
            client = ChainClient.connect(node.rpc_url, timeout=60)
            artifact = load_artifact()
            client.deploy(deployer=deployer, admin=deployer.address, customs_admin=deployer.address,
                          bytecode=artifact.bytecode, abi=artifact.abi)  # fmt: skip
            for role in ("enterprise", "warehouse"):
                client.wait_receipt(client.grant_role(sender=deployer, role_name=role, address=deployer.address))
            for round_ in range(args.rounds):
                for batched in (False, True):
                    r = run(client, deployer, args.txs, batched, f"r{round_}-{batched}")
                    mode = "batched   " if batched else "one by one"
                    print(
                        f"{mode}: {args.txs} txs signed in {1000 * r['sign']:.0f} ms, "
                        f"sent in {1000 * r['send']:.0f} ms ({args.txs / r['send']:.0f} txs/s), "
                        f"all receipts {1000 * r['receipts']:.0f} ms later; "
                        f"total {r['total']:.2f} s"
                    )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
