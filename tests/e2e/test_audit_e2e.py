"""``tracer audit`` against a real service on anvil: the chain alone reproduces the service's ledger, the
service's own configuration audits clean, and an edit of its database is caught (exit codes 0 / 1 / 2)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_service_e2e import Service

from tracer import identifiers
from tracer.config import PROJECT_ROOT

pytestmark = pytest.mark.anvil

TRACER = [sys.executable, "-m", "tracer.cli"]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    service = Service(tmp_path / "data")
    yield service
    service.stop()


def _audit(service: Service, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TRACER, "audit", *args], env=env or service.env, capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT
    )


def test_audit_from_the_chain_alone_matches_the_service_and_catches_an_edited_database(
    service: Service, tmp_path: Path
) -> None:
    health = service.start()
    demo = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts/demo.py")], env=service.env, capture_output=True, timeout=300
    )
    assert demo.returncode == 0, demo.stderr.decode()
    scan = service.scan(demo.stdout.decode().strip().splitlines()[-1])
    lot_id = "0x" + identifiers.lot_id(scan["product"]["gtin"], scan["product"]["lot"]).hex()
    rpc = f"http://127.0.0.1:{service.chain_port}"

    # The chain alone: a node URL and the registry address, an empty environment (no data dir, no database).
    bare = {"PATH": "/usr/bin:/bin", "TRACER_DATA_DIR": str(tmp_path / "nothing-here")}
    chain_only = _audit(service, "--rpc", rpc, "--registry", health["registry"], env=bare)
    assert chain_only.returncode == 0, chain_only.stderr
    report = json.loads(chain_only.stdout)
    assert report["status"] == "clean" and report["summary"]["with_database"] is False
    row = next(r for r in report["reconciliation"] if r["lot"] == lot_id)

    admin_key = (service.data_dir / "admin-api-key").read_text().strip()
    view = httpx.get(
        f"http://127.0.0.1:{service.port}/lots/{lot_id}", headers={"Authorization": f"Bearer {admin_key}"}, timeout=10
    ).json()
    for field in ("declared", "received", "split", "released"):
        assert row[field] == view[f"{field}_quantity"], field
    assert row["events"] == len(view["events"])

    # The service's own configuration: its node, registry and database.
    own = _audit(service, "--lot", f"{scan['product']['gtin']}/{scan['product']['lot']}", "--format", "html")
    assert own.returncode == 0, own.stderr
    assert "<svg" in own.stdout and "clean" in own.stdout

    # An edited payload in the operator's database.
    service.stop()
    database = sqlite3.connect(service.data_dir / "tracer.db")
    with database:
        edited = database.execute(
            'UPDATE event SET payload = replace(payload, \'"eventTime": "2\', \'"eventTime": "1\') WHERE seq = 0'
        )
        assert edited.rowcount >= 1
    database.close()
    tampered = _audit(service, "--rpc", rpc, "--registry", health["registry"], "--database",
                      f"sqlite:///{service.data_dir / 'tracer.db'}")  # fmt: skip
    # The chain went away with the service: an error, exit 2 ...
    assert tampered.returncode == 2 and "unavailable" in tampered.stderr
    service.start()
    tampered = _audit(service, "--format", "json")
    assert tampered.returncode == 1, tampered.stderr
    assert "altered" in {f["kind"] for f in json.loads(tampered.stdout)["findings"]}
