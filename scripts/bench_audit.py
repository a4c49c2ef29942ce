"""Benchmark of ``tracer audit`` from the chain alone, over a registry history of many events.

Starts its own anvil (automine, a large block gas limit), deploys the registry, and writes whole bonded-import
journeys through the EIP-712 signed batch path (``recordSigned``): per lot a declaration, entry count,
inspection, storage, ``--parcels`` parcels split off, each with its order, payment and waybill, released and
delivered, plus ``--observations`` warehouse observations; every actor signs its own batches, one relayer
submits. Then it runs ``tracer audit --rpc … --registry … --format json`` (the CLI, a new process: what an
auditor runs) and reports the wall time, checking the report is clean and counts every event.

Usage: scripts/bench_audit [--events N] [--parcels P] [--observations O] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eth_account import Account  # noqa: E402
from eth_account.messages import encode_typed_data  # noqa: E402
from eth_utils.crypto import keccak  # noqa: E402

from tracer.chain.anvil import find_anvil_binary  # noqa: E402
from tracer.chain.client import ChainClient  # noqa: E402
from tracer.chain.compiler import load_artifact  # noqa: E402
from tracer.chain.supervisor import free_port  # noqa: E402
from tracer.chain.typed_data import DOMAIN_NAME, DOMAIN_VERSION, Action, LotOps, SignedOp, typed_data  # noqa: E402
from tracer.config import DEV_DEPLOYER_KEY  # noqa: E402

OP_TYPE = "Op(uint8 action,bytes32 subject,uint64 amount,bytes32 data,bytes32 eventHash)"
LOT_OPS_TYPE = "LotOps(bytes32 lotId,uint64 seq,Op[] ops)"
BATCH_TYPE = "Batch(address signer,uint64 deadline,LotOps[] lots)"
OP_TYPEHASH = keccak(text=OP_TYPE)
LOT_OPS_TYPEHASH = keccak(text=LOT_OPS_TYPE + OP_TYPE)
BATCH_TYPEHASH = keccak(text=BATCH_TYPE + LOT_OPS_TYPE + OP_TYPE)
DEADLINE = 2**63
OPS_PER_TX = 150


def word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def batch_digest(domain: bytes, signer: str, groups: list[LotOps]) -> bytes:
    """EIP-712 digest of a Batch, hashed in one pass (eth-account's generic encoder is slow for big batches)."""
    group_hashes = []
    for group in groups:
        op_hashes = b"".join(
            keccak(OP_TYPEHASH + word(int(op.action)) + op.subject + word(op.amount) + op.data + op.event_hash)
            for op in group.ops
        )
        group_hashes.append(keccak(LOT_OPS_TYPEHASH + group.lot_id + word(group.seq) + keccak(op_hashes)))
    struct = keccak(
        BATCH_TYPEHASH + bytes.fromhex(signer[2:]).rjust(32, b"\0") + word(DEADLINE) + keccak(b"".join(group_hashes))
    )
    return keccak(b"\x19\x01" + domain + struct)


def domain_separator(chain_id: int, registry: str) -> bytes:
    type_hash = keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
    return keccak(
        type_hash + keccak(text=DOMAIN_NAME) + keccak(text=DOMAIN_VERSION) + word(chain_id)
        + bytes.fromhex(registry[2:]).rjust(32, b"\0")
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000, help="events to write (rounded up to whole lots)")
    parser.add_argument("--parcels", type=int, default=4, help="parcels split off each lot")
    parser.add_argument("--observations", type=int, default=12, help="warehouse observations per lot")
    parser.add_argument("--keep", action="store_true", help="leave anvil running and print its URL and registry")
    args = parser.parse_args()

    per_lot = 4 + 6 * args.parcels + args.observations
    lots = -(-args.events // per_lot)
    workdir = Path(tempfile.mkdtemp(prefix="bench-audit-"))
    port = free_port()
    with open(workdir / "anvil.log", "wb") as anvil_log:
        anvil = subprocess.Popen(
            [str(find_anvil_binary()), "--port", str(port), "--gas-limit", "3000000000", "--silent",
             "--balance", "1000000000"],
            stdout=subprocess.DEVNULL, stderr=anvil_log, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        client = ChainClient.connect(url, timeout=120)
        deadline = time.monotonic() + 30
        while not client.is_reachable():
            if time.monotonic() > deadline:
                raise SystemExit("anvil did not start")
            time.sleep(0.1)
        deployer = Account.from_key(DEV_DEPLOYER_KEY)
        customs_admin = Account.create()
        artifact = load_artifact()
        registry, _ = client.deploy(deployer=deployer, admin=deployer.address, customs_admin=customs_admin.address,
                                    bytecode=artifact.bytecode, abi=artifact.abi)  # fmt: skip
        actors = {role: Account.create() for role in ("enterprise", "warehouse", "customs", "carrier", "payment")}
        client.wait_receipt(client.transfer(sender=deployer, to=customs_admin.address, value_wei=10**20))
        for role, account in actors.items():
            granter = customs_admin if role == "customs" else deployer
            client.wait_receipt(client.grant_role(sender=granter, role_name=role, address=account.address))
        chain_id = client.chain_id
        domain = domain_separator(chain_id, registry)
        # The one-pass digest must be the EIP-712 digest eth-account computes.
        probe = [LotOps(lot_id=b"\1" * 32, seq=3, ops=[SignedOp(Action.OBSERVE, b"\2" * 32)])]
        full = typed_data(chain_id=chain_id, registry=registry, signer=deployer.address, deadline=DEADLINE, lots=probe)
        signed_probe = Account.unsafe_sign_hash(batch_digest(domain, deployer.address, probe), deployer.key)
        assert signed_probe.signature == deployer.sign_message(encode_typed_data(full_message=full)).signature

        counter = iter(range(1, 10**12))

        def h() -> bytes:
            return keccak(next(counter).to_bytes(8, "big") + b"bench")

        lot_ids = [keccak(text=f"010942190296005510BENCH-{i}") for i in range(lots)]
        parcels = {lot: [keccak(text=f"00{lot.hex()}{p}") for p in range(args.parcels)] for lot in lot_ids}
        seqs = dict.fromkeys(lot_ids, 0)
        quantity = 100

        def stage(role: str, ops_of: Any) -> list[tuple[str, LotOps]]:
            groups = []
            for lot in lot_ids:
                ops = ops_of(lot)
                groups.append((role, LotOps(lot_id=lot, seq=seqs[lot], ops=ops)))
                seqs[lot] += len(ops)
            return groups

        S = SignedOp

        def documents(kind: int) -> Any:
            return lambda lot: [S(Action.DOCUMENT, h(), subject=p, amount=kind, data=h()) for p in parcels[lot]]

        stages = [
            stage("enterprise", lambda lot: [S(Action.DECLARE, h(), amount=quantity)]),
            stage("warehouse", lambda lot: [S(Action.ENTRY, h(), amount=quantity)]),
            stage("customs", lambda lot: [S(Action.INSPECTION, h(), amount=0)]),
            stage("warehouse", lambda lot: [S(Action.STORAGE, h())]
                  + [S(Action.SPLIT, h(), subject=p, amount=2) for p in parcels[lot]]
                  + [S(Action.OBSERVE, h()) for _ in range(args.observations)]),
            stage("enterprise", documents(0)),
            stage("payment", documents(1)),
            stage("carrier", documents(2)),
            stage("customs", lambda lot: [S(Action.RELEASE, h(), subject=p) for p in parcels[lot]]),
            stage("carrier", lambda lot: [S(Action.DELIVERY, h(), subject=p) for p in parcels[lot]]),
        ]  # fmt: skip
        events = sum(len(g.ops) for groups in stages for _, g in groups)
        print(f"writing {events} events of {lots} lots ({per_lot} per lot) through recordSigned …", file=sys.stderr)
        relayer = deployer
        nonce = client.pending_nonce(relayer.address)
        sent: list[str] = []
        started = time.perf_counter()
        for groups in stages:
            batch: list[LotOps] = []
            size = 0
            role = groups[0][0]
            for _, group in groups + [("", LotOps(b"", 0, ()))]:
                if group.ops and size + len(group.ops) <= OPS_PER_TX:
                    batch.append(group)
                    size += len(group.ops)
                    continue
                if batch:
                    actor = actors[role]
                    signature = Account.unsafe_sign_hash(
                        batch_digest(domain, actor.address, batch), actor.key
                    ).signature
                    call = ((actor.address, DEADLINE, [g.as_tuple() for g in batch]), bytes(signature), [], [])
                    # Estimated: a transaction's gas is capped (EIP-7825, 2^24), so batches stay ~OPS_PER_TX ops.
                    sent.append(client.send_call(sender=relayer, function="recordSigned", args=list(call),
                                                 nonce=nonce))  # fmt: skip
                    nonce += 1
                batch, size = ([group], len(group.ops)) if group.ops else ([], 0)
            client.wait_receipt(sent[-1], timeout=600)  # the next stage needs this one mined
        for tx in sent:
            client.wait_receipt(tx, timeout=600)  # raises on any failed batch
        written = time.perf_counter() - started
        latest = client.latest_block()
        print(f"wrote {events} events in {len(sent)} transactions, {latest} blocks, in {written:.1f} s "
              f"({events / written:.0f} events/s)", file=sys.stderr)  # fmt: skip

        report_path = workdir / "audit.json"
        command = [str(ROOT / ".venv/bin/tracer"), "audit", "--rpc", url, "--registry", registry,
                   "--format", "json", "--output", str(report_path)]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRACER_")}
        env["TRACER_DATA_DIR"] = str(workdir / "no-service")
        started = time.perf_counter()
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"audit exited {result.returncode}: {result.stderr[-2000:]}")
        report = json.loads(report_path.read_text())
        audited = report["summary"]["events"]
        assert report["status"] == "clean" and audited == events, (report["status"], audited, report["findings"][:3])
        released = sum(row["released"] for row in report["reconciliation"])
        print(json.dumps({
            "events": audited, "lots": report["summary"]["lots"], "transactions": len(sent), "blocks": latest,
            "audit_seconds": round(elapsed, 2), "events_per_second": round(audited / elapsed),
            "write_seconds": round(written, 1), "released_units": released, "status": report["status"],
            "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "command": " ".join(command[:1] + ["audit", "--rpc", "URL", "--registry", "0x…", "--format", "json"]),
        }, indent=2))  # fmt: skip
        if args.keep:
            print(f"anvil at {url}, registry {registry} (pid {anvil.pid}); stop it with: kill -- -{anvil.pid}")
    finally:
        if not args.keep:
            os.killpg(anvil.pid, 15)
            anvil.wait(timeout=10)


if __name__ == "__main__":
    main()
