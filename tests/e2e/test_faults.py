"""Fault tests of the chain runtime: a real service (``python -m api``) on an anvil we supervise ourselves
(``TRACER_RPC_URL``, one-second blocks, state dumped every second), fed by several WMS clients posting
EPCIS capture documents of observations from threads, while the node or the service is killed.

When the system is quiet again, every accepted event must be on its lot's chain exactly once, at the
sequence number the database gave it, with the hash the database holds, and the lots' scans verify.
PostgreSQL (a fresh schema per test) carries the full runs; SQLite a smaller smoke run.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from postgres_support import postgres_schema_url
from sqlmodel import Session, col, select
from test_service_e2e import Service

from tracer import identifiers
from tracer.chain.anvil import AnvilSupervisor
from tracer.chain.client import ChainClient
from tracer.epcis import document_hashes, event_hash_bytes
from tracer.store.database import create_db_engine
from tracer.store.models import ChainTask, Event, Lot

pytestmark = pytest.mark.anvil

GTIN = "09421902960055"
CONTEXT = ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"]
QUIET_TIMEOUT = 180.0
#: Seconds between the node's state dumps: short, as the service runs it, yet long enough that a kill loses blocks.
STATE_INTERVAL = 3


# -- the pieces: a node we can kill, a service on it, WMS clients --------------------------------------------


@pytest.fixture
def node(tmp_path: Path) -> Iterator[AnvilSupervisor]:
    """An anvil with one-second blocks and its state dumped every second, on a port that stays the same."""
    supervisor = AnvilSupervisor.in_directory(tmp_path / "chain", block_time=1, state_interval=STATE_INTERVAL)
    supervisor.start()
    yield supervisor
    supervisor.stop()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from postgres_schema_url("tracer_faults_")


@dataclass
class Zone:
    """A running service on ``node`` with three warehouses, each observing lots of its own."""

    service: Service
    node: AnvilSupervisor
    database_url: str
    registry: str = ""
    warehouses: list[str] = field(default_factory=list)
    lots: list[list[str]] = field(default_factory=list)  # per warehouse, lot numbers

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.service.port}"

    def post(self, path: str, key: str, body: Any) -> httpx.Response:
        return httpx.post(self.url + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def _open_zone(tmp_path: Path, node: AnvilSupervisor, database_url: str, *, lots_per_warehouse: int) -> Zone:
    service = Service(tmp_path / "data")
    service.env["TRACER_RPC_URL"] = node.rpc_url
    service.env["TRACER_DATABASE_URL"] = database_url
    zone = Zone(service=service, node=node, database_url=database_url)
    zone.registry = service.start()["registry"]
    admin = (service.data_dir / "admin-api-key").read_text().strip()
    keys = {}
    for name, role in [("enterprise-1", "enterprise")] + [(f"wms-{i}", "warehouse") for i in range(3)]:
        response = zone.post("/actors", admin, {"name": name, "role": role})
        assert response.status_code == 201, response.text
        keys[name] = response.json()["api_key"]
    zone.warehouses = [keys[f"wms-{i}"] for i in range(3)]
    run = uuid.uuid4().hex[:6]
    for i in range(3):
        zone.lots.append([f"F{run}-{i}-{n}" for n in range(lots_per_warehouse)])
        for lot in zone.lots[-1]:
            response = zone.post("/lots", keys["enterprise-1"], _declaration(lot))
            assert response.status_code == 202, response.text
    _wait_quiet(zone)  # grants, funding and declarations on chain ...
    node.wait_for_state_dump(after=time.time())  # ... and in the node's state file
    return zone


def _declaration(lot: str) -> dict[str, Any]:
    return {
        "gtin": GTIN,
        "lot": lot,
        "product_name": "Infant formula stage 1, 900 g",
        "hs_code": "190110",
        "origin_country": "NZ",
        "manufacturer": "Waikato Dairy Ltd",
        "quantity": 1000,
        "expiry": "2028-06-30",
        "declaration_number": f"DEC-{lot}",
    }


def _observations(lot: str, *, client: int, document: int, count: int) -> dict[str, Any]:
    """A capture document of ``count`` temperature readings of ``lot``, each event distinct."""
    lot_class = f"https://id.gs1.org/01/{GTIN}/10/{lot}"
    events = [
        {
            "type": "ObjectEvent",
            "eventTime": f"2026-11-27T08:{document % 60:02d}:{n % 60:02d}.{client:01d}{n // 60:02d}+08:00",
            "eventTimeZoneOffset": "+08:00",
            "action": "OBSERVE",
            "bizStep": "sensor_reporting",
            "quantityList": [{"epcClass": lot_class}],
            "sensorElementList": [
                {"sensorReport": [{"type": "Temperature", "value": 4 + (document * count + n) / 1000, "uom": "CEL"}]}
            ],
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


class Wms(threading.Thread):
    """One warehouse system posting ``documents`` capture documents over its lots, retrying through outages.

    A document whose answer was lost (the service died after committing) comes back 409 on its re-send:
    it counts as accepted, as the WMS would learn from the capture job.
    """

    def __init__(self, zone: Zone, index: int, *, documents: int, per_document: int) -> None:
        super().__init__(name=f"wms-{index}", daemon=True)
        self.zone, self.index = zone, index
        self.documents, self.per_document = documents, per_document
        self.accepted: list[str] = []  # eventIDs
        self.statuses: list[int] = []
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            key, lots = self.zone.warehouses[self.index], self.zone.lots[self.index]
            for number in range(self.documents):
                if self.stop.is_set():
                    return
                document = _observations(
                    lots[number % len(lots)], client=self.index, document=number, count=self.per_document
                )
                self._send(key, document)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def _send(self, key: str, document: dict[str, Any]) -> None:
        deadline = time.monotonic() + 120
        retried = False
        while time.monotonic() < deadline:
            try:
                response = self.zone.post("/capture", key, document)
            except httpx.HTTPError:
                retried = True
                time.sleep(0.3)
                continue
            self.statuses.append(response.status_code)
            if response.status_code == 202 or (retried and response.status_code == 409):
                self.accepted += document_hashes(document)
                return
            raise AssertionError(f"capture answered {response.status_code}: {response.text[:500]}")
        raise AssertionError("the service did not come back within 120 s")


def _start_load(zone: Zone, *, documents: int, per_document: int) -> list[Wms]:
    clients = [Wms(zone, i, documents=documents, per_document=per_document) for i in range(3)]
    for client in clients:
        client.start()
    return clients


def _join(clients: list[Wms]) -> list[str]:
    for client in clients:
        client.join(timeout=300)
        assert not client.is_alive(), "a WMS client hung"
        assert client.error is None, client.error
    return [event for client in clients for event in client.accepted]


def _counts(zone: Zone) -> dict[str, int]:
    engine = create_db_engine(zone.database_url)
    try:
        with Session(engine) as session:
            statuses = session.exec(select(Event.status, Event.indexed)).all()
            tasks = session.exec(select(ChainTask.status)).all()
    finally:
        engine.dispose()
    counts: dict[str, int] = {"unindexed": 0}
    for status, indexed in statuses:
        counts[status] = counts.get(status, 0) + 1
        # An anchor taken from a receipt is only sure once the indexer read its log: until then a node restored
        # from an older state may have dropped its block, and the indexer will put it back into the outbox.
        counts["unindexed"] += status == "anchored" and not indexed
    counts["tasks_pending"] = sum(1 for status in tasks if status == "pending")
    return counts


def _wait_quiet(zone: Zone, timeout: float = QUIET_TIMEOUT) -> dict[str, int]:
    """Waits until nothing is pending (events, grants, funding) or unconfirmed by the index; returns the counts."""
    deadline = time.monotonic() + timeout
    while True:
        counts = _counts(zone)
        if not counts.get("pending") and not counts["tasks_pending"] and not counts["unindexed"]:
            return counts
        assert time.monotonic() < deadline, f"still not quiet after {timeout:g} s: {counts}"
        time.sleep(0.5)


def _wait_processed(clients: list[Wms], events: int) -> None:
    """Until the clients together had ``events`` events accepted."""
    deadline = time.monotonic() + 120
    while sum(len(c.accepted) for c in clients) < events:
        assert time.monotonic() < deadline, "the load did not get going"
        assert all(c.error is None for c in clients), [c.error for c in clients]
        time.sleep(0.05)


def _assert_anchored_exactly_once(zone: Zone, accepted: list[str]) -> None:
    """Per lot, the chain's log == the database's events: same sequence, same hash, one log each; scans verify."""
    assert _counts(zone).get("rejected", 0) == 0
    client = ChainClient.connect(zone.node.rpc_url, address=zone.registry, timeout=30)
    engine = create_db_engine(zone.database_url)
    try:
        with Session(engine) as session:
            stored = set(session.exec(select(Event.event_hash)).all())
            missing = [event_id for event_id in accepted if event_id not in stored]
            assert not missing, f"{len(missing)} accepted events are not in the database"
            lots = session.exec(select(Lot)).all()
            for lot in lots:
                events = session.exec(select(Event).where(Event.lot_pk == lot.id).order_by(col(Event.seq))).all()
                logged = client.lot_events(lot.lot_id)
                assert [(r.seq, r.event_hash) for r in logged] == [
                    (e.seq, event_hash_bytes(e.event_hash)) for e in events
                ], f"lot {lot.lot_number}: the chain's log differs from the database"
                assert client.get_lot(lot.lot_id)["nextSeq"] == lot.next_seq == len(events)
                assert [(e.status, e.tx_hash, e.log_index) for e in events] == [
                    ("anchored", r.tx_hash, r.log_index) for r in logged
                ]
    finally:
        engine.dispose()
    for lot_number in {lot for lots in zone.lots for lot in lots[:2]}:
        scan = httpx.get(
            zone.url + identifiers.lot_path(GTIN, lot_number), headers={"Accept": "application/json"}, timeout=120
        )
        assert scan.status_code == 200, scan.text
        assert scan.json()["verification"]["status"] == "verified", scan.json()["verification"]


def _kill_node_mid_ingest(tmp_path: Path, node: AnvilSupervisor, database_url: str, *, per_document: int) -> None:
    started = time.monotonic()
    zone = _open_zone(tmp_path, node, database_url, lots_per_warehouse=4)
    try:
        opened = time.monotonic()
        clients = _start_load(zone, documents=8, per_document=per_document)
        _wait_processed(clients, 3 * per_document * 3)
        # Kill between two dumps (never while one is written: anvil would refuse the torn file), late enough
        # that blocks holding anchors are lost: the node comes back a few blocks earlier, as after a crash.
        node.wait_for_state_dump(after=time.time())
        time.sleep(0.6 * node.state_interval)
        before = _latest_block(node.rpc_url)
        node.kill()
        node.start()
        after = _latest_block(node.rpc_url)
        assert after < before, "no block was lost: the kill came right after a dump"
        accepted = _join(clients)
        loaded = time.monotonic()
        counts = _wait_quiet(zone)
        quiet = time.monotonic()
        assert counts["anchored"] >= len(accepted), f"{counts}; service log:\n{_log_tail(zone)}"
        _assert_anchored_exactly_once(zone, accepted)
        print(
            f"\nnode killed at block {before}, came back at block {after}; {len(accepted)} events anchored once; "
            f"set-up {opened - started:.1f} s, load {loaded - opened:.1f} s, quiet after {quiet - loaded:.1f} s, "
            f"checks {time.monotonic() - quiet:.1f} s"
        )
    finally:
        zone.service.stop()


def _log_tail(zone: Zone, lines: int = 60) -> str:
    return "\n".join(zone.service.log.read_text(errors="replace").splitlines()[-lines:])


def _latest_block(rpc_url: str) -> int:
    response = httpx.post(rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber"}, timeout=10)
    return int(response.json()["result"], 16)


# -- the tests ------------------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_kill_9_of_the_node_mid_ingest_loses_and_duplicates_nothing(
    tmp_path: Path, node: AnvilSupervisor, postgres_url: str
) -> None:
    _kill_node_mid_ingest(tmp_path, node, postgres_url, per_document=120)


def test_kill_9_of_the_node_mid_ingest_on_sqlite(tmp_path: Path, node: AnvilSupervisor) -> None:
    _kill_node_mid_ingest(tmp_path, node, f"sqlite:///{tmp_path / 'tracer.db'}", per_document=60)


@pytest.mark.postgres
def test_kill_9_of_the_service_mid_ingest_loses_and_duplicates_nothing(
    tmp_path: Path, node: AnvilSupervisor, postgres_url: str
) -> None:
    zone = _open_zone(tmp_path, node, postgres_url, lots_per_warehouse=4)
    try:
        clients = _start_load(zone, documents=8, per_document=120)
        _wait_processed(clients, 3 * 120 * 3)
        assert zone.service.process is not None
        os.kill(zone.service.process.pid, signal.SIGKILL)  # the writer dies with it, mid-round
        zone.service.process.wait(timeout=10)
        time.sleep(1)
        zone.service.start()
        accepted = _join(clients)
        _wait_quiet(zone)
        _assert_anchored_exactly_once(zone, accepted)
    finally:
        zone.service.stop()


@pytest.mark.postgres
def test_the_node_down_for_30_seconds_the_api_keeps_accepting_and_anchors_after(
    tmp_path: Path, node: AnvilSupervisor, postgres_url: str
) -> None:
    zone = _open_zone(tmp_path, node, postgres_url, lots_per_warehouse=4)
    try:
        node.stop()  # a clean stop: the node's state is whole, it is only away
        down_since = time.monotonic()
        clients = _start_load(zone, documents=6, per_document=150)
        accepted = _join(clients)
        assert len(accepted) == 3 * 6 * 150
        health = httpx.get(zone.url + "/healthz", timeout=10).json()
        assert health["status"] == "degraded"
        assert _counts(zone)["pending"] == len(accepted)  # accepted, and said to be pending
        lot = "0x" + identifiers.lot_id(GTIN, zone.lots[0][0]).hex()
        shown = httpx.get(
            f"{zone.url}/lots/{lot}", headers={"Authorization": f"Bearer {zone.warehouses[0]}"}, timeout=30
        ).json()
        assert shown["events"][-1]["status"] == "pending"
        time.sleep(max(0.0, 30 - (time.monotonic() - down_since)))
        node.start()
        _wait_quiet(zone)
        _assert_anchored_exactly_once(zone, accepted)
    finally:
        zone.service.stop()
