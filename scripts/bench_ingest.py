"""Ingest benchmark: events per second from accepted to anchored, and amortised gas per event, per path.

One invocation starts everything it measures, each path on a fresh anvil:

(a) naive: one web3 ``transact`` + wait-for-receipt per event (``recordObservation``) from an unlocked anvil
    account, on an anvil that mines each transaction at once (automine): a simple integration's best case;
(b) journey: lots taken through declaration, entry, inspection and storage, one HTTP request per event, to a
    real service (``python -m api`` on ``TRACER_RPC_URL``, one-second blocks) whose writer sends each actor's
    pending runs in EIP-712 signed batches (``recordSigned``);
(c) bulk: warehouse systems post EPCIS capture documents of observations (500 events each); they are
    anchored the same way, as ``Observe`` ops of signed batches (the registry has no root-anchoring function
    yet: see docs/performance.md);
(d) while (c) runs, a single-event capture every 100 ms: its acceptance latency;
(e) accept (``--only accept``): acceptance alone, in this process, no HTTP, no chain, no writer: capture
    documents of observations applied by ``tracer.capture.capture`` and committed one after another, under
    ``rollback`` and ``proceed``, with the database statements each document costs.

The load comes from a separate process. Events/s runs from the first accepted request to the moment the
database holds every event anchored; gas per event is the gas of the distinct transactions that anchored
them (from their receipts) divided by the events.

Usage: scripts/bench_ingest [--naive N] [--lots L] [--bulk N] [--clients C] [--database URL] [--lanes K] [--keep]
                            [--documents D] [--no-anchoring] [--only naive|journey|bulk|accept]...
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import event as sa_event  # noqa: E402
from sqlmodel import Session, select  # noqa: E402
from web3 import Web3  # noqa: E402

from tracer import capture, journey  # noqa: E402
from tracer.actors import create_actor  # noqa: E402
from tracer.chain.anvil import AnvilSupervisor  # noqa: E402
from tracer.chain.compiler import load_artifact  # noqa: E402
from tracer.chain.supervisor import free_port  # noqa: E402
from tracer.config import Settings  # noqa: E402
from tracer.service import open_store  # noqa: E402
from tracer.store.database import create_db_engine  # noqa: E402
from tracer.store.models import Event  # noqa: E402

GTIN = "09421902960055"
CONTEXT = ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"]
ZONE = "https://id.gs1.org/414/9521234000006"
SHELF = "https://id.gs1.org/414/9521234000006/254/A-01-03"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- (a) the naive path --------------------------------------------------------------------------------------


def bench_naive(workdir: Path, events: int) -> dict[str, Any]:
    node = AnvilSupervisor.in_directory(workdir / "naive", block_time=None)
    with node:
        w3 = Web3(Web3.HTTPProvider(node.rpc_url, request_kwargs={"timeout": 30}))
        account = w3.eth.accounts[0]  # unlocked: anvil signs, as a simple integration would let the node do
        artifact = load_artifact()
        factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        receipt = w3.eth.wait_for_transaction_receipt(factory.constructor(account, account).transact({"from": account}))
        registry = w3.eth.contract(address=receipt["contractAddress"], abi=artifact.abi)
        for role in (b"enterprise", b"warehouse"):
            role_id = Web3.keccak(role)
            w3.eth.wait_for_transaction_receipt(
                registry.functions.grantRole(role_id, account).transact({"from": account})
            )
        lot = Web3.keccak(text=f"naive-{uuid.uuid4()}")
        w3.eth.wait_for_transaction_receipt(
            registry.functions.declareLot(lot, 1000, Web3.keccak(text="declaration")).transact({"from": account})
        )
        gas = 0
        started = time.perf_counter()
        for seq in range(1, events + 1):
            tx = registry.functions.recordObservation(lot, seq, bytes(32), Web3.keccak(text=f"reading {seq}"))
            gas += w3.eth.wait_for_transaction_receipt(tx.transact({"from": account}))["gasUsed"]
        elapsed = time.perf_counter() - started
    return {"events": events, "seconds": elapsed, "events_per_s": events / elapsed, "gas_per_event": gas / events}


# -- the service under test ------------------------------------------------------------------------------------


class Deployment:
    """An anvil (one-second blocks, state on disk) and ``python -m api`` on it with its own data dir."""

    def __init__(self, workdir: Path, database_url: str | None) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.node = AnvilSupervisor.in_directory(workdir / "chain")
        self.port = free_port()
        self.database_url = database_url or f"sqlite:///{workdir / 'tracer.db'}"
        self.env = {
            **os.environ,
            "TRACER_DATA_DIR": str(workdir / "data"),
            "TRACER_PORT": str(self.port),
            "TRACER_RPC_URL": self.node.rpc_url,
            "TRACER_DATABASE_URL": self.database_url,
        }
        for variable in ("TRACER_REGISTRY_ADDRESS", "TRACER_ADMIN_KEY"):
            self.env.pop(variable, None)
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Deployment:
        self.node.start()
        with open(self.workdir / "service.log", "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "api"], cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the service exited; see {self.workdir / 'service.log'}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).json()["status"] == "ok":
                    return self
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        raise SystemExit(f"the service did not become healthy; see {self.workdir / 'service.log'}")

    def __exit__(self, *_: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.node.stop()

    def actor(self, name: str, role: str) -> str:
        admin = self.workdir / "data" / ("customs-admin-api-key" if role == "customs" else "admin-api-key")
        response = httpx.post(
            self.url + "/actors",
            json={"name": name, "role": role},
            headers={"Authorization": f"Bearer {admin.read_text().strip()}"},
            timeout=30,
        )
        response.raise_for_status()
        return str(response.json()["api_key"])

    def statuses(self) -> dict[str, int]:
        engine = create_db_engine(self.database_url)
        try:
            with Session(engine) as session:
                counts: dict[str, int] = {}
                for status in session.exec(select(Event.status)).all():
                    counts[status] = counts.get(status, 0) + 1
                return counts
        finally:
            engine.dispose()

    def wait_anchored(self, total: int, timeout: float = 900) -> float:
        """Waits until ``total`` events are anchored and none is pending; returns the time (perf_counter)."""
        deadline = time.monotonic() + timeout
        while True:
            counts = self.statuses()
            if counts.get("anchored", 0) >= total and not counts.get("pending"):
                return time.perf_counter()
            if time.monotonic() > deadline:
                raise SystemExit(f"not anchored after {timeout:g} s: {counts}")
            time.sleep(0.1)

    def gas_of(self, steps: set[str]) -> tuple[int, int, int]:
        """(events, transactions, gas used) of the anchored events of ``steps``, from the receipts."""
        engine = create_db_engine(self.database_url)
        with Session(engine) as session:
            rows = session.exec(select(Event.tx_hash).where(Event.status == "anchored", Event.step.in_(steps))).all()  # type: ignore[attr-defined]
        engine.dispose()
        w3 = Web3(Web3.HTTPProvider(self.node.rpc_url, request_kwargs={"timeout": 30}))
        hashes = {h for h in rows if h}
        gas = 0
        for tx_hash in hashes:
            gas += int(w3.eth.get_transaction_receipt(tx_hash)["gasUsed"])  # type: ignore[arg-type]
        return len(rows), len(hashes), gas


# -- load generators (run in a separate process) ------------------------------------------------------------


def _post(client: httpx.Client, path: str, key: str, body: Any) -> float:
    started = time.perf_counter()
    response = client.post(path, json=body, headers={"Authorization": f"Bearer {key}"})
    if response.status_code != 202:
        raise RuntimeError(f"{path}: {response.status_code} {response.text[:300]}")
    return started


def journey_load(url: str, keys: dict[str, str], lots: list[str], threads: int, out: Any) -> None:
    """Takes each lot through declaration, entry, inspection, storage: one request per event."""
    first: list[float] = []

    def work(part: list[str]) -> None:
        with httpx.Client(base_url=url, timeout=120) as client:
            for lot in part:
                response = client.post(
                    "/lots",
                    json={
                        "gtin": GTIN,
                        "lot": lot,
                        "product_name": "Infant formula stage 1, 900 g",
                        "hs_code": "190110",
                        "origin_country": "NZ",
                        "manufacturer": "Waikato Dairy Ltd",
                        "quantity": 1000,
                        "expiry": "2028-06-30",
                        "declaration_number": f"DEC-{lot}",
                    },
                    headers={"Authorization": f"Bearer {keys['enterprise']}"},
                )
                first.append(time.perf_counter())
                lot_id = response.json()["lot_id"]
                _post(
                    client, f"/lots/{lot_id}/entry", keys["warehouse"], {"counted_quantity": 1000, "biz_location": ZONE}
                )
                _post(client, f"/lots/{lot_id}/inspection", keys["customs"], {"result": "conformant"})
                _post(client, f"/lots/{lot_id}/storage", keys["warehouse"], {"storage_location": SHELF})

    workers = [threading.Thread(target=work, args=(lots[i::threads],)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    out.put({"first_accepted": min(first), "last_accepted": time.perf_counter()})


def observations(lot: str, *, client: int, document: int, count: int) -> dict[str, Any]:
    lot_class = f"https://id.gs1.org/01/{GTIN}/10/{lot}"
    events = [
        {
            "type": "ObjectEvent",
            "eventTime": f"2026-11-27T{client:02d}:{document % 60:02d}:{n % 60:02d}.{n // 60:03d}+08:00",
            "eventTimeZoneOffset": "+08:00",
            "action": "OBSERVE",
            "bizStep": "sensor_reporting",
            "quantityList": [{"epcClass": lot_class}],
            "sensorElementList": [{"sensorReport": [{"type": "Temperature", "value": 4 + n / 1000, "uom": "CEL"}]}],
        }
        for n in range(count)
    ]
    return {
        "@context": CONTEXT,
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-11-27T08:00:00Z",
        "epcisBody": {"eventList": events},
    }


def bulk_load(url: str, keys: list[str], lots: list[list[str]], documents: int, per_document: int, out: Any) -> None:
    """Each warehouse system posts ``documents`` capture documents of observations of its own lots."""
    first: list[float] = []

    def work(index: int) -> None:
        with httpx.Client(base_url=url, timeout=300) as client:
            for number in range(documents):
                lot = lots[index][number % len(lots[index])]
                document = observations(lot, client=index, document=number, count=per_document)
                first.append(_post(client, "/capture", keys[index], document))

    workers = [threading.Thread(target=work, args=(i,)) for i in range(len(keys))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    out.put({"first_accepted": min(first), "last_accepted": time.perf_counter()})


# -- (b), (c), (d) -----------------------------------------------------------------------------------------------


def _declare(deployment: Deployment, key: str, lots: list[str]) -> list[str]:
    ids = []
    with httpx.Client(base_url=deployment.url, timeout=60) as client:
        for lot in lots:
            response = client.post(
                "/lots",
                json={
                    "gtin": GTIN,
                    "lot": lot,
                    "product_name": "Infant formula stage 1, 900 g",
                    "hs_code": "190110",
                    "origin_country": "NZ",
                    "manufacturer": "Waikato Dairy Ltd",
                    "quantity": 1000,
                    "expiry": "2028-06-30",
                    "declaration_number": f"DEC-{lot}",
                },
                headers={"Authorization": f"Bearer {key}"},
            )
            response.raise_for_status()
            ids.append(response.json()["lot_id"])
    return ids


def bench_journey(workdir: Path, lots: int, database_url: str | None) -> dict[str, Any]:
    with Deployment(workdir / "journey", database_url) as deployment:
        keys = {role: deployment.actor(f"{role}-1", role) for role in ("enterprise", "warehouse", "customs")}
        deployment.wait_anchored(0)
        run = uuid.uuid4().hex[:6]
        names = [f"J{run}-{n}" for n in range(lots)]
        context = multiprocessing.get_context("spawn")
        out = context.Queue()
        loader = context.Process(target=journey_load, args=(deployment.url, keys, names, 8, out))
        loader.start()
        marks = out.get(timeout=900)
        loader.join()
        done = deployment.wait_anchored(4 * lots)
        events, txs, gas = deployment.gas_of({"declaration", "entry", "inspection", "storage"})
    seconds = done - marks["first_accepted"]
    return {
        "events": 4 * lots,
        "seconds": seconds,
        "events_per_s": 4 * lots / seconds,
        "accept_per_s": 4 * lots / (marks["last_accepted"] - marks["first_accepted"]),
        "gas_per_event": gas / events,
        "transactions": txs,
    }


def bench_bulk(
    workdir: Path, total: int, clients: int, database_url: str | None, *, anchoring: bool = True
) -> dict[str, Any]:
    per_document = 500
    documents = max(1, total // (per_document * clients))
    total = documents * per_document * clients
    with Deployment(workdir / "bulk", database_url) as deployment:
        enterprise = deployment.actor("enterprise-1", "enterprise")
        keys = [deployment.actor(f"wms-{i}", "warehouse") for i in range(clients)]
        single_key = deployment.actor("wms-single", "warehouse")
        run = uuid.uuid4().hex[:6]
        lots = [[f"B{run}-{i}-{n}" for n in range(4)] for i in range(clients)]
        _declare(deployment, enterprise, [lot for group in lots for lot in group])
        single_lots = [f"S{run}-{n}" for n in range(200)]
        _declare(deployment, enterprise, single_lots)
        deployment.wait_anchored(len(lots) * 4 + 200)
        context = multiprocessing.get_context("spawn")
        out = context.Queue()
        loader = context.Process(target=bulk_load, args=(deployment.url, keys, lots, documents, per_document, out))
        loader.start()
        latencies = _single_requests_while(deployment, single_key, single_lots, loader)
        marks = out.get(timeout=900)
        loader.join()
        if anchoring:
            done = deployment.wait_anchored(total + len(lots) * 4 + 200 + len(latencies))
            events, txs, gas = deployment.gas_of({"observation"})
    latencies.sort()
    anchored = {}
    if anchoring:
        seconds = done - marks["first_accepted"]
        anchored = {"seconds": seconds, "events_per_s": total / seconds, "gas_per_event": gas / events}
    return {
        "events": total,
        **anchored,
        "accept_per_s": total / (marks["last_accepted"] - marks["first_accepted"]),
        "transactions": txs if anchoring else 0,
        "single_requests": len(latencies),
        "single_p50_ms": 1000 * statistics.median(latencies),
        "single_p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "single_max_ms": 1000 * latencies[-1],
    }


def _single_requests_while(deployment: Deployment, key: str, lots: list[str], loader: Any) -> list[float]:
    """(d): a one-event capture every 100 ms, on lots of their own, while the bulk load runs; their latencies."""
    latencies: list[float] = []
    time.sleep(1.0)  # let the bulk load get going
    with httpx.Client(base_url=deployment.url, timeout=60) as client:
        for number, lot in enumerate(lots):
            if not loader.is_alive():
                break
            document = observations(lot, client=23, document=number, count=1)
            started = time.perf_counter()
            response = client.post("/capture", json=document, headers={"Authorization": f"Bearer {key}"})
            latencies.append(time.perf_counter() - started)
            if response.status_code != 202:
                raise SystemExit(f"single request: {response.status_code} {response.text[:300]}")
            time.sleep(0.1)
    return latencies


# -- (e) acceptance alone -----------------------------------------------------------------------------------------


def bench_accept(workdir: Path, documents: int, database_url: str | None) -> list[dict[str, Any]]:
    """Captures ``documents`` documents of 500 observations (spread over 4 lots) under each error behaviour, in
    this process: the time ``capture`` plus the commit take, and the statements each document sends."""
    settings = Settings(
        data_dir=workdir / "accept",
        database_url=database_url or f"sqlite:///{workdir / 'accept.db'}",
        key_passphrase="bench passphrase",
    )
    engine, keystore = open_store(settings)
    statements = [0]
    sa_event.listen(engine, "before_cursor_execute", lambda *_: statements.__setitem__(0, statements[0] + 1))
    run = uuid.uuid4().hex[:6]
    with Session(engine, expire_on_commit=False) as session:
        enterprise = create_actor(session=session, keystore=keystore, name=f"e-{run}", role="enterprise").actor
        warehouse = create_actor(session=session, keystore=keystore, name=f"w-{run}", role="warehouse").actor
        lots = [f"A{run}-{n}" for n in range(4)]
        for lot in lots:
            declaration = journey.DeclarationIn(
                gtin=GTIN,
                lot=lot,
                product_name="Infant formula stage 1, 900 g",
                hs_code="190110",
                origin_country="NZ",
                manufacturer="Waikato Dairy Ltd",
                quantity=1000,
                declaration_number=f"DEC-{lot}",
            )
            journey.declare(session=session, actor=enterprise, declaration=declaration)
        session.commit()
    results: list[dict[str, Any]] = []
    for behaviour in (capture.ROLLBACK, capture.PROCEED):
        seconds, sent = 0.0, 0
        for number in range(documents):
            lot = lots[number % len(lots)]
            document = observations(lot, client=20 + len(results), document=number, count=500)
            # The four lots in one document, as a WMS reporting a whole cold room would send them.
            for n, event in enumerate(document["epcisBody"]["eventList"]):
                event["quantityList"] = [{"epcClass": f"https://id.gs1.org/01/{GTIN}/10/{lots[n % len(lots)]}"}]
            before = statements[0]
            started = time.perf_counter()
            with Session(engine, expire_on_commit=False) as session:
                result = capture.capture(session=session, actor=warehouse, document=document, error_behaviour=behaviour)
                session.commit()
            seconds += time.perf_counter() - started
            sent += statements[0] - before
            if len(result.accepted) != 500:
                raise SystemExit(f"accept: {len(result.accepted)} of 500 accepted; errors {result.job.errors[:300]}")
        results.append(
            {
                "behaviour": behaviour,
                "events": 500 * documents,
                "events_per_s": 500 * documents / seconds,
                "ms_per_document": 1000 * seconds / documents,
                "statements_per_document": sent / documents,
            }
        )
    engine.dispose()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--naive", type=int, default=300, help="events of the naive path (a)")
    parser.add_argument("--lots", type=int, default=500, help="lots of the journey path (b), 4 events each")
    parser.add_argument("--bulk", type=int, default=10_000, help="observations of the bulk path (c)")
    parser.add_argument("--clients", type=int, default=4, help="warehouse systems posting in (c)")
    parser.add_argument("--database", default=None, help="TRACER_DATABASE_URL of the service (default SQLite)")
    parser.add_argument("--lanes", type=int, default=None, help="TRACER_WRITER_LANES of the service (default 1)")
    parser.add_argument("--documents", type=int, default=20, help="documents of 500 events per behaviour in (e)")
    parser.add_argument("--no-anchoring", action="store_true", help="(c), (d): acceptance only, anchors not awaited")
    parser.add_argument("--only", choices=["naive", "journey", "bulk", "accept"], action="append")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, databases)")
    args = parser.parse_args()
    if args.lanes is not None:
        os.environ["TRACER_WRITER_LANES"] = str(args.lanes)  # the services inherit the environment
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    paths = args.only or ["naive", "journey", "bulk", "accept"]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"database: {args.database or 'SQLite'}; work directory {workdir}")
    try:
        if "naive" in paths:
            log("(a) naive path ...")
            r = bench_naive(workdir, args.naive)
            print(
                f"(a) naive transact+wait, automine: {r['events']} events in {r['seconds']:.1f} s = "
                f"{r['events_per_s']:.0f} events/s, {r['gas_per_event']:,.0f} gas/event"
            )
        if "journey" in paths:
            log("(b) journey steps through the service ...")
            r = bench_journey(workdir, args.lots, args.database)
            print(
                f"(b) journey steps one request each, signed batches: {r['events']} events accepted->anchored in "
                f"{r['seconds']:.1f} s = {r['events_per_s']:.0f} events/s (accepted at {r['accept_per_s']:.0f}/s), "
                f"{r['gas_per_event']:,.0f} gas/event over {r['transactions']} transactions"
            )
        if "bulk" in paths:
            log("(c)+(d) bulk capture of observations, single requests meanwhile ...")
            r = bench_bulk(workdir, args.bulk, args.clients, args.database, anchoring=not args.no_anchoring)
            if args.no_anchoring:
                accepted = f"{r['events']} events accepted at {r['accept_per_s']:.0f}/s"
                print(f"(c) bulk EPCIS capture of observations: {accepted}")
            else:
                print(
                    f"(c) bulk EPCIS capture of observations: {r['events']} events accepted->anchored in "
                    f"{r['seconds']:.1f} s = {r['events_per_s']:.0f} events/s (accepted at "
                    f"{r['accept_per_s']:.0f}/s), {r['gas_per_event']:,.0f} gas/event over {r['transactions']} "
                    "transactions"
                )
            print(
                f"(d) single-event capture during (c): {r['single_requests']} requests, p50 "
                f"{r['single_p50_ms']:.0f} ms, p99 {r['single_p99_ms']:.0f} ms, max {r['single_max_ms']:.0f} ms"
            )
        if "accept" in paths:
            log("(e) acceptance alone, in process ...")
            for r in bench_accept(workdir, args.documents, args.database):
                print(
                    f"(e) accept, {r['behaviour']}: {r['events']} events in documents of 500 = "
                    f"{r['events_per_s']:.0f} events/s, {r['ms_per_document']:.0f} ms and "
                    f"{r['statements_per_document']:.0f} statements per document"
                )
    except BaseException:
        # A failed run keeps its work directory: the message names the service's log in it.
        print(f"the work directory {workdir} is kept for its logs", file=sys.stderr)
        raise
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
