"""The consumer's page as a person sees it: a real ``python -m api`` and Debian's Chromium driven by Playwright.

No browser is downloaded: Playwright launches ``/usr/bin/chromium`` (``scripts/_setup.sh`` installs it with
``fonts-noto-cjk``, so Chinese renders). The service runs on a node by URL (the session's anvil), so it
starts in seconds; screenshots of each state go to ``$TRACER_SCREENSHOT_DIR`` or the test's tmp folder.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tracer import identifiers
from tracer.chain.supervisor import free_port
from tracer.config import PROJECT_ROOT

CHROMIUM = os.environ.get("TRACER_CHROMIUM", "/usr/bin/chromium")
# The flags of the machine notes: headless, as root, and no background traffic to a closed network.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 1, "is_mobile": True, "has_touch": True}

GTIN = "09421902960055"
ZONE = "https://id.gs1.org/414/9521234000006"
SHELF = "https://id.gs1.org/414/9521234000006/254/A-01-03"
CONSIGNEE = {"name": "李娜", "id_number": "110101199003074518", "phone": "13800138000", "address": "北京市朝阳区"}


def sscc() -> str:
    """A fresh valid SSCC (company prefix 9521234)."""
    body = "09521234" + f"{secrets.randbelow(10**9):09d}"
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return body + str((10 - total % 10) % 10)


class RunningService:
    """One ``python -m api`` on free ports, against the node at ``rpc_url``."""

    def __init__(self, data_dir: Path, rpc_url: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "TRACER_DATA_DIR": str(data_dir),
            "TRACER_PORT": str(self.port),
            "TRACER_RPC_URL": rpc_url,
            "TRACER_PUBLIC_URL": self.url,
            "TRACER_KEY_PASSPHRASE": "browser tests",
        }
        for variable in ("TRACER_DATABASE_URL", "TRACER_REGISTRY_ADDRESS", "TRACER_ADMIN_KEY"):
            self.env.pop(variable, None)
        self.log = data_dir.parent / f"service-{data_dir.name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "api"], cwd=PROJECT_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if self.http.get("/healthz", timeout=1).json()["status"] == "ok":
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the service did not become healthy:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.http.close()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def key(self, name: str) -> str:
        return (self.data_dir / name).read_text().strip()

    def call(self, method: str, path: str, key: str | None = None, body: Any = None, expect: int = 202) -> Any:
        headers = {"Accept": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
        response = self.http.request(method, path, json=body, headers=headers)
        assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()


@dataclass
class Lot:
    """A lot taken through the journey on a running service, with the keys of its parties."""

    service: RunningService
    keys: dict[str, str]
    lot_id: str
    parcels: list[str] = field(default_factory=list)
    units: dict[str, list[str]] = field(default_factory=dict)  # each parcel's serials

    def scan_url(self, parcel: str) -> str:
        return f"{self.service.url}/00/{parcel}"

    def unit_url(self, serial: str) -> str:
        return self.service.url + identifiers.unit_path(GTIN, serial)

    def wait_anchored(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            events = self.service.call("GET", f"/lots/{self.lot_id}", self.keys["enterprise"], expect=200)["events"]
            assert not [e for e in events if e["status"] == "rejected"], events
            if all(e["status"] == "anchored" for e in events):
                return
            assert time.monotonic() < deadline, f"events still pending: {events}"
            time.sleep(0.1)

    def recall(self, reason: str) -> None:
        self.service.call("POST", f"/lots/{self.lot_id}/recall", self.keys["customs"], {"reason": reason})
        self.wait_anchored()


def delivered_lot(service: RunningService, *, parcels: int = 2, delivered: int = 1) -> Lot:
    """A fresh lot of infant formula, declared to delivered, every event anchored; ``parcels`` parcels of
    which the first ``delivered`` are released and delivered."""
    admin, customs_admin = service.key("admin-api-key"), service.key("customs-admin-api-key")
    run = secrets.token_hex(4)
    keys = {}
    for role in ("enterprise", "warehouse", "customs", "carrier", "payment"):
        creator = customs_admin if role == "customs" else admin
        keys[role] = service.call("POST", "/actors", creator, {"name": f"{role}-{run}", "role": role}, 201)["api_key"]
    declaration = {
        "gtin": GTIN,
        "lot": f"NZ-{run[:6].upper()}/11",
        "product_name": "婴儿配方奶粉 1 段 900 g / Infant formula stage 1",
        "hs_code": "190110",
        "origin_country": "NZ",
        "manufacturer": "Waikato Dairy Ltd",
        "quantity": 1000,
        "expiry": "2028-06-30",
        "declaration_number": f"DEC-{run}",
    }
    lot = Lot(service, keys, service.call("POST", "/lots", keys["enterprise"], declaration)["lot_id"])
    entry = {"counted_quantity": 1000, "biz_location": ZONE}
    service.call("POST", f"/lots/{lot.lot_id}/entry", keys["warehouse"], entry)
    service.call("POST", f"/lots/{lot.lot_id}/inspection", keys["customs"], {"result": "conformant"})
    service.call("POST", f"/lots/{lot.lot_id}/storage", keys["warehouse"], {"storage_location": SHELF})
    lot.parcels = [sscc() for _ in range(parcels)]
    # Two serialised tins a parcel; the "/" travels percent-encoded in the unit's link.
    lot.units = {code: [f"SN-{run}-{index}/{tin}" for tin in (1, 2)] for index, code in enumerate(lot.parcels)}
    body = {"parcels": [{"sscc": code, "quantity": 2, "units": lot.units[code]} for code in lot.parcels]}
    service.call("POST", f"/lots/{lot.lot_id}/parcels", keys["warehouse"], body)
    for code in lot.parcels[:delivered]:
        number = f"ORD-{code[-8:]}"
        order = {
            "order_number": number,
            "items": [{"gtin": GTIN, "quantity": 2, "unit_price": "199.00"}],
            "total": "398.00",
            "consignee": CONSIGNEE,
        }
        payment = {
            "payment_number": f"PAY-{code[-8:]}",
            "order_number": number,
            "amount": "398.00",
            "payer": {"name": CONSIGNEE["name"], "id_number": CONSIGNEE["id_number"]},
        }
        waybill = {"waybill_number": f"WB-{code[-8:]}", "order_number": number, "consignee": CONSIGNEE}
        service.call("POST", f"/parcels/{code}/order", keys["enterprise"], order)
        service.call("POST", f"/parcels/{code}/payment", keys["payment"], payment)
        service.call("POST", f"/parcels/{code}/waybill", keys["carrier"], waybill)
        service.call("POST", f"/parcels/{code}/release", keys["customs"])
        service.call("POST", f"/parcels/{code}/delivery", keys["carrier"])
    lot.wait_anchored()
    return lot


def run_service(directory: Path, rpc_url: str) -> Iterator[RunningService]:
    """A started service in ``directory`` (a fixture body), stopped afterwards."""
    service = RunningService(directory / "data", rpc_url)
    try:
        service.start()
        yield service
    finally:
        service.stop()


def chromium_missing_reason() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        return f"Debian's chromium is not installed ({CHROMIUM}); scripts/_setup.sh installs it"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is missing; install the project's test extra"
    return None


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots of each state go: ``$TRACER_SCREENSHOT_DIR`` or a tmp folder (printed)."""
    chosen = os.environ.get("TRACER_SCREENSHOT_DIR")
    directory = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory
