"""``python -m api`` (what scripts/run starts) logs JSON lines, each request's lines carrying its request id."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from test_service_e2e import Service

pytestmark = pytest.mark.anvil


def test_the_service_logs_json_lines_with_the_request_id_and_plain_text_on_request(tmp_path: Path, anvil: str) -> None:
    service = Service(tmp_path / "data")
    service.env["TRACER_RPC_URL"] = anvil
    try:
        service.start()
        base = f"http://127.0.0.1:{service.port}"
        ok = httpx.get(base + "/healthz", headers={"X-Request-ID": "e2e-health-1"}, timeout=10)
        refused = httpx.post(base + "/lots", json={}, timeout=10)
        assert ok.headers["X-Request-ID"] == "e2e-health-1"
        assert refused.status_code == 401 and len(refused.headers["X-Request-ID"]) == 32
        service.interrupt()

        lines = [json.loads(line) for line in service.log.read_text().splitlines() if line.strip()]
        assert {"time", "level", "logger", "message"} <= set(lines[0])
        assert any("deployed the registry" in line["message"] for line in lines)
        access = {line["request_id"]: line for line in lines if line["logger"] == "tracer.access"}
        assert access["e2e-health-1"]["route"] == "/healthz" and access["e2e-health-1"]["status"] == 200
        assert access[refused.headers["X-Request-ID"]]["status"] == 401
        assert not any(line["logger"] == "uvicorn.access" for line in lines)  # one access line per request, ours

        service.env["TRACER_LOG_FORMAT"] = "plain"
        written = len(service.log.read_text().splitlines())
        service.start()
        httpx.get(base + "/healthz", headers={"X-Request-ID": "e2e-health-2"}, timeout=10)
        service.interrupt()
        plain = service.log.read_text().splitlines()[written:]
        assert any("[e2e-health-2]: GET /healthz 200" in line for line in plain)
        assert not any(line.startswith("{") for line in plain)
    finally:
        service.stop()
