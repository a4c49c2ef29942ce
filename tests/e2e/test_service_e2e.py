"""The service as a user runs it: ``python -m api`` (what scripts/run starts) and ``scripts/demo``, on a
supervised anvil with one-second blocks, restarted cleanly and after hard kills."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tracer import identifiers
from tracer.chain.supervisor import free_port, port_in_use
from tracer.config import PROJECT_ROOT, Settings
from tracer.scan_cache import staleness_bound

pytestmark = pytest.mark.anvil

CAST = PROJECT_ROOT / "node_modules/@foundry-rs/cast-linux-amd64/bin/cast"
EVENT_SIGNATURE = (
    "EventRecorded(bytes32 indexed lotId,uint64 indexed seq,address indexed author,uint8 step,bytes32 subject,"
    "bytes32 eventHash,bytes32 head)"
)
SPLIT_SIGNATURE = (
    "ParcelsSplit(bytes32 indexed lotId,uint64 indexed firstSeq,address indexed author,uint32 firstIndex,"
    "bytes32 parcelsRoot,uint64 quantity,bytes32 priorHead,bytes32[] eventHashes)"
)


class Service:
    """One ``python -m api`` process with its own data dir and ports."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port, self.chain_port = free_port(), free_port()
        self.env = {
            **os.environ,
            "TRACER_DATA_DIR": str(data_dir),
            "TRACER_PORT": str(self.port),
            "TRACER_CHAIN_PORT": str(self.chain_port),
            "TRACER_API_URL": f"http://127.0.0.1:{self.port}",
        }
        for variable in ("TRACER_RPC_URL", "TRACER_DATABASE_URL", "TRACER_REGISTRY_ADDRESS", "TRACER_ADMIN_KEY"):
            self.env.pop(variable, None)
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"service-{data_dir.name}.log"

    def start(self) -> dict:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "api"], cwd=PROJECT_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                health = httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).json()
                if health["status"] == "ok":
                    return dict(health)
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"the service did not become healthy:\n{self.log.read_text()}")

    def interrupt(self) -> None:
        """Ctrl-C."""
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        assert self.process.wait(timeout=30) == 0

    def hard_kill(self, *, chain_too: bool) -> None:
        """kill -9 the service (and, for a power cut, its anvil too)."""
        assert self.process is not None
        anvil = _anvil_pid(self.chain_port)
        if chain_too and anvil is not None:
            os.kill(anvil, signal.SIGKILL)
        self.process.kill()
        self.process.wait(timeout=10)
        _wait_port_free(self.chain_port)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def scan(self, url: str) -> dict:
        response = httpx.get(url, headers={"Accept": "application/json"}, timeout=30)
        assert response.status_code == 200, response.text
        return dict(response.json())


def _anvil_pid(chain_port: int) -> int | None:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"anvil") and str(chain_port).encode() in argv:
            return int(proc.name)
    return None


def _wait_port_free(port: int) -> None:
    deadline = time.monotonic() + 15
    while port_in_use(port):
        assert time.monotonic() < deadline, f"port {port} still in use: the chain outlived the service"
        time.sleep(0.1)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    service = Service(tmp_path / "data")
    yield service
    service.stop()


def test_demo_verifies_survives_restarts_and_is_readable_by_cast(service: Service) -> None:
    health = service.start()
    demo = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts/demo.py")], env=service.env, capture_output=True, timeout=300
    )
    assert demo.returncode == 0, demo.stderr.decode()
    scan_url = demo.stdout.decode().strip().splitlines()[-1]
    assert scan_url.startswith(f"http://127.0.0.1:{service.port}/00/")
    scan = service.scan(scan_url)
    assert scan["verification"]["status"] == "verified"

    # An independent client reads the lot's events from the registry /healthz names: one per EventRecorded log,
    # one per event hash of a ParcelsSplit log (a split batch; its sixth data word is the number of hashes).
    lot_id = "0x" + identifiers.lot_id(scan["product"]["gtin"], scan["product"]["lot"]).hex()

    def cast_logs(signature: str) -> list[dict[str, str]]:
        command = [str(CAST), "logs", "--rpc-url", f"http://127.0.0.1:{service.chain_port}", "--address",
                   health["registry"], signature, lot_id, "--from-block", "0", "--json"]  # fmt: skip
        return list(json.loads(subprocess.run(command, capture_output=True, timeout=60, check=True).stdout))

    recorded = len(cast_logs(EVENT_SIGNATURE))
    split = sum(int(log["data"][2 + 5 * 64 : 2 + 6 * 64], 16) for log in cast_logs(SPLIT_SIGNATURE))
    assert recorded + split == scan["verification"]["events_checked"] == 24

    service.interrupt()  # Ctrl-C stops the chain too
    _wait_port_free(service.chain_port)
    assert service.start()["registry"] == health["registry"]
    assert service.scan(scan_url)["verification"]["status"] == "verified"

    service.hard_kill(chain_too=False)  # the chain must not outlive a kill -9 of the service
    assert service.start()["registry"] == health["registry"]
    assert service.scan(scan_url)["verification"]["status"] == "verified"
    assert service.log.read_text().count("deployed the registry") == 1


def test_a_power_cut_right_after_the_first_start_deploys_nothing_twice(service: Service) -> None:
    first = service.start()
    service.hard_kill(chain_too=True)
    again = service.start()
    assert again["registry"] == first["registry"]
    assert service.log.read_text().count("deployed the registry") == 1


def test_the_node_stopping_scans_unverifiable(service: Service) -> None:
    service.start()
    demo = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts/demo.py")], env=service.env, capture_output=True, timeout=300
    )
    assert demo.returncode == 0, demo.stderr.decode()
    scan_url = demo.stdout.decode().strip().splitlines()[-1]
    anvil = _anvil_pid(service.chain_port)
    assert anvil is not None
    os.kill(anvil, signal.SIGKILL)
    _wait_port_free(service.chain_port)
    # The scan caches answer from a chain head at most staleness_bound old (docs/scan.md, "Verification caches"):
    # past that bound a node that went away must read unverifiable, never a cached verified.
    time.sleep(staleness_bound(Settings.model_fields["scan_check_seconds"].default) + 0.1)
    assert service.scan(scan_url)["verification"]["status"] == "unverifiable"
    health = httpx.get(f"http://127.0.0.1:{service.port}/healthz", timeout=5)
    assert health.status_code == 200 and health.json()["status"] == "degraded"


def test_a_saved_bundle_verifies_with_the_api_stopped_against_a_node_by_url(tmp_path: Path, anvil: str) -> None:
    service = Service(tmp_path / "data-url")
    service.env["TRACER_RPC_URL"] = anvil  # any node by URL: no embedded chain
    try:
        health = service.start()
        demo = subprocess.run(
            [sys.executable, str(PROJECT_ROOT / "scripts/demo.py")], env=service.env, capture_output=True, timeout=300
        )
        assert demo.returncode == 0, demo.stderr.decode()
        scan = service.scan(demo.stdout.decode().strip().splitlines()[-1])
        bundle = httpx.get(scan["links"]["proof"], timeout=30).json()
    finally:
        service.stop()
    saved = tmp_path / "bundle.json"
    saved.write_text(json.dumps(bundle))
    verify = [
        sys.executable,
        "-m",
        "tracer.cli",
        "verify",
        str(saved),
        "--rpc",
        anvil,
        "--registry",
        health["registry"],
    ]
    honest = subprocess.run(verify, capture_output=True, timeout=120, env=service.env)
    assert honest.returncode == 0, honest.stdout.decode() + honest.stderr.decode()
    assert honest.stdout.decode().startswith("verified")

    bundle["events"][3]["event"]["eventTime"] = "2020-01-01T00:00:00.000Z"
    saved.write_text(json.dumps(bundle))
    edited = subprocess.run(verify, capture_output=True, timeout=120, env=service.env)
    assert edited.returncode == 1 and "event 3" in edited.stdout.decode()

    missing = subprocess.run([*verify[:4], str(tmp_path / "nope.json"), *verify[5:]], capture_output=True, timeout=60)
    assert missing.returncode == 2


def test_a_reorg_on_anvil_is_repaired_and_every_event_ends_anchored_once(service: Service) -> None:
    service.start()
    demo = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts/demo.py")], env=service.env, capture_output=True, timeout=300
    )
    assert demo.returncode == 0, demo.stderr.decode()
    scan_url = demo.stdout.decode().strip().splitlines()[-1]
    rpc = f"http://127.0.0.1:{service.chain_port}"
    anchors = [e["anchor"]["blockNumber"] for e in service.scan(scan_url)["events"]]
    latest = int(httpx.post(rpc, json={"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber"}).json()["result"], 16)
    depth = latest - max(anchors) + 2  # the last two blocks that hold events are replaced by empty ones
    reorg = httpx.post(rpc, json={"jsonrpc": "2.0", "id": 2, "method": "anvil_reorg", "params": [depth, []]}).json()
    assert "error" not in reorg, reorg
    deadline = time.monotonic() + 60
    while True:
        scan = service.scan(scan_url)
        blocks = [e["anchor"]["blockNumber"] for e in scan["events"]]
        if scan["verification"]["status"] == "verified" and blocks != anchors:
            break
        assert time.monotonic() < deadline, scan["verification"]
        time.sleep(0.5)
    assert all(e["anchor"]["status"] == "anchored" for e in scan["events"])
    assert "rewinding the index" in service.log.read_text()
