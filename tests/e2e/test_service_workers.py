"""``python -m api --workers N``: HTTP from N worker processes, the writer and indexer once in the parent; the
metrics whole from any worker; nothing left behind by Ctrl-C or ``kill -9``."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import httpx
import pytest
from test_service_e2e import Service, _anvil_pid, _wait_port_free

from tracer.chain.supervisor import port_in_use

pytestmark = pytest.mark.anvil


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _workers(pid: int) -> list[int]:
    """The service's spawned worker processes (not its anvil, nor multiprocessing's resource tracker)."""
    workers = []
    for child in _children(pid):
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in argv:
            workers.append(child)
    return workers


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def service(tmp_path: Path) -> Service:
    service = Service(tmp_path / "data")
    service.env["TRACER_WEB_WORKERS"] = "2"
    return service


def test_two_workers_serve_one_service_and_the_metrics_count_every_request(service: Service) -> None:
    try:
        service.start()
        assert service.process is not None
        assert len(_workers(service.process.pid)) == 2
        base = f"http://127.0.0.1:{service.port}"
        before = _health_count(httpx.get(base + "/metrics", timeout=10).text)
        for _ in range(40):  # fresh connections: the kernel hands them to either worker
            assert httpx.get(base + "/healthz", timeout=10).status_code == 200
        # Whichever worker answers the scrape, it counts the other's requests too (one more from the start-up wait).
        for _ in range(3):
            assert _health_count(httpx.get(base + "/metrics", timeout=10).text) == before + 40
        # The writer runs in the parent: an actor's funding (an outbox task) is sent and the chain has the registry.
        admin = (service.data_dir / "admin-api-key").read_text().strip()
        created = httpx.post(
            base + "/actors",
            json={"name": "wms", "role": "warehouse"},
            headers={"Authorization": f"Bearer {admin}"},
            timeout=30,
        )
        assert created.status_code == 201, created.text
        deadline = time.monotonic() + 30
        while "tracer_chain_tasks" not in (text := httpx.get(base + "/metrics", timeout=10).text) or not re.search(
            r'^tracer_chain_tasks\{status="pending"\} 0\.0$', text, re.M
        ):
            assert time.monotonic() < deadline, text
            time.sleep(0.2)
        service.interrupt()  # Ctrl-C: exit 0, workers and chain stopped
        assert not port_in_use(service.port)
        assert _anvil_pid(service.chain_port) is None
    finally:
        service.stop()


def test_kill_9_of_the_service_leaves_no_worker_and_no_chain(service: Service) -> None:
    try:
        service.start()
        assert service.process is not None
        workers = _workers(service.process.pid)
        assert len(workers) == 2 and _anvil_pid(service.chain_port) is not None
        os.kill(service.process.pid, signal.SIGKILL)
        service.process.wait(timeout=10)
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in workers):
            assert time.monotonic() < deadline, "a worker outlived the service"
            time.sleep(0.1)
        _wait_port_free(service.chain_port)
        deadline = time.monotonic() + 15
        while port_in_use(service.port):
            assert time.monotonic() < deadline, "the API port is still held after the service died"
            time.sleep(0.1)
        service.start()  # and the next start finds everything as it was
    finally:
        service.stop()


def _health_count(metrics: str) -> float:
    match = re.search(
        r'^tracer_http_request_duration_seconds_count\{method="GET",route="/healthz",status="200"\} (\S+)$',
        metrics,
        re.M,
    )
    return float(match.group(1)) if match else 0.0
