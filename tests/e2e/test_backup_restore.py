"""Backup and restore, as docs/operations.md tells an operator to do it: a journey on PostgreSQL over anvil,
``pg_dump`` of the live database, ``pg_restore`` into a fresh database, then ``tracer reindex`` and
``tracer audit`` against the restored one (clean), and the service started anew on it, on another data dir
that holds only the backed-up secrets, verifies the old scans and signs new journeys."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from postgres_support import POSTGRES_URL
from test_faults import postgres_url  # noqa: F401 - a fresh schema, skipped without a server
from test_service_e2e import Service

from tracer.config import PROJECT_ROOT

pytestmark = [pytest.mark.anvil, pytest.mark.postgres]

TRACER = [sys.executable, "-m", "tracer.cli"]


def _schema(url: str) -> str:
    """The schema a test database URL puts first on the search path (``options=-csearch_path=NAME``)."""
    options = parse_qs(urlsplit(url).query)["options"][0]
    return options.removeprefix("-csearch_path=")


@pytest.fixture
def fresh_database(postgres_url: str) -> Iterator[str]:  # noqa: F811 - the fixture imported above
    """The URL of a new, empty database on the test server, dropped afterwards."""
    name = "tracer_restored_" + uuid.uuid4().hex[:12]
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlsplit(POSTGRES_URL)._replace(path="/" + name).geturl()
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run(command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT)


def _demo(service: Service) -> str:
    demo = _run([sys.executable, str(PROJECT_ROOT / "scripts/demo.py")], env=service.env)
    assert demo.returncode == 0, demo.stderr
    return demo.stdout.strip().splitlines()[-1]


def test_a_restored_backup_reindexes_and_audits_clean_and_the_service_runs_on_it(
    tmp_path: Path,
    anvil: str,
    postgres_url: str,  # noqa: F811
    fresh_database: str,
) -> None:
    for tool in ("pg_dump", "pg_restore"):
        assert shutil.which(tool), f"{tool} is missing: apt-get install postgresql-client"
    service = Service(tmp_path / "data")
    service.env.update(TRACER_RPC_URL=anvil, TRACER_DATABASE_URL=postgres_url)
    try:
        registry = service.start()["registry"]
        scan_url = _demo(service)
        events = service.scan(scan_url)["verification"]["events_checked"]
        # A hot backup: the service keeps running; pg_dump reads one consistent snapshot.
        backup = tmp_path / "tracer.dump"
        dump = _run(["pg_dump", "--format=custom", f"--schema={_schema(postgres_url)}", f"--file={backup}",
                     POSTGRES_URL])  # fmt: skip
        assert dump.returncode == 0, dump.stderr
    finally:
        service.stop()

    restore = _run(["pg_restore", "--no-owner", f"--dbname={fresh_database}", str(backup)])
    assert restore.returncode == 0, restore.stderr
    restored_url = f"{fresh_database}?options=-csearch_path%3D{_schema(postgres_url)}"
    on_restored = {**service.env, "TRACER_DATABASE_URL": restored_url}

    reindex = _run([*TRACER, "reindex"], env=on_restored)
    assert reindex.returncode == 0, reindex.stderr
    report = json.loads(reindex.stdout)
    assert report["logs"] == events > 0  # the demo's journey: every event logged by the registry was read again
    assert report["reopened"] == report["mismatched"] == report["missing_from_database"] == []

    audit = _run([*TRACER, "audit", "--format", "json"], env=on_restored)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    audited = json.loads(audit.stdout)
    assert audited["status"] == "clean" and audited["findings"] == []
    assert audited["summary"]["with_database"] is True and len(audited["reconciliation"]) == 1

    # Another machine: a new data dir with only the backed-up secrets (keys of the key store, API key files).
    moved = Service(tmp_path / "moved")
    moved.data_dir.mkdir(mode=0o700)
    for secret in service.data_dir.iterdir():
        if secret.is_file():
            shutil.copy2(secret, moved.data_dir / secret.name)
    moved.env.update(TRACER_RPC_URL=anvil, TRACER_DATABASE_URL=restored_url)
    try:
        assert moved.start()["registry"] == registry
        old_scan = moved.scan(scan_url.replace(f":{service.port}/", f":{moved.port}/"))
        assert old_scan["verification"]["status"] == "verified"
        # New actors granted by the restored platform admin, whose custodial key decrypts: a whole new journey.
        assert moved.scan(_demo(moved))["verification"]["status"] == "verified"
    finally:
        moved.stop()
    again = _run([*TRACER, "audit", "--format", "json"], env={**moved.env})
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(json.loads(again.stdout)["reconciliation"]) == 2
