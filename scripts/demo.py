"""One journey through the HTTP API of a running tracer (``scripts/demo``).

1,000 cans of infant formula from New Zealand: declared, entered into the bonded zone, inspected,
stored, split into five parcels of two serialised tins each, three of them released against their three
documents and delivered.
Fresh actor names, lot number and SSCCs on every run. Progress goes to stderr; the last line of
stdout is the scan URL of one delivered parcel.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

ROOT = Path(__file__).resolve().parent.parent
GTIN = "09421902960055"
ZONE = "https://id.gs1.org/414/9521234000006"
SHELF = "https://id.gs1.org/414/9521234000006/254/A-01-03"
CONSIGNEE = {
    "name": "李娜",
    "id_number": "110101199003074518",
    "phone": "13800138000",
    "address": "北京市朝阳区建国路 1 号",
}
ANCHOR_TIMEOUT_SECONDS = 180

console = Console(stderr=True)


def _key(variable: str, file_name: str) -> str:
    if os.environ.get(variable):
        return os.environ[variable]
    data_dir = Path(os.environ.get("TRACER_DATA_DIR", ROOT / "data"))
    path = data_dir / file_name
    if not path.exists():
        sys.exit(f"demo: no {variable} and no {path}; start the service first with scripts/run")
    return path.read_text().strip()


def _sscc(prefix: str = "9521234") -> str:
    body = "0" + prefix + f"{secrets.randbelow(10**9):09d}"
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return body + str((10 - total % 10) % 10)


class Client:
    """The API, failing loudly with the problem document on any unexpected answer."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)

    def call(self, method: str, path: str, key: str | None, body: Any = None, expect: int = 202) -> Any:
        headers = {"Accept": "application/json"}  # the scan URL answers HTML to browsers
        if key:
            headers["Authorization"] = f"Bearer {key}"
        try:
            response = self.http.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            sys.exit(f"demo: cannot reach the API at {self.http.base_url} ({exc}); is scripts/run running?")
        if response.status_code != expect:
            sys.exit(f"demo: {method} {path} answered {response.status_code}: {response.text}")
        return response.json()


def main() -> int:
    base_url = os.environ.get("TRACER_API_URL") or f"http://127.0.0.1:{os.environ.get('TRACER_PORT', '8000')}"
    api = Client(base_url)
    admin, customs_admin = (
        _key("TRACER_ADMIN_KEY", "admin-api-key"),
        _key("TRACER_CUSTOMS_ADMIN_KEY", "customs-admin-api-key"),
    )
    run = time.strftime("%Y%m%d%H%M%S") + secrets.token_hex(2)
    keys = {}
    for role in ("enterprise", "warehouse", "customs", "carrier", "payment"):
        creator = customs_admin if role == "customs" else admin
        keys[role] = api.call("POST", "/actors", creator, {"name": f"demo-{role}-{run}", "role": role}, 201)["api_key"]
    console.print(f"[bold]demo[/bold] actors created for run {run}")

    lot_number = f"NZ{run[2:8]}-{secrets.token_hex(3).upper()}"
    lot = api.call(
        "POST",
        "/lots",
        keys["enterprise"],
        {
            "gtin": GTIN,
            "lot": lot_number,
            "product_name": "婴儿配方奶粉 1 段 900 g / Infant formula stage 1",
            "hs_code": "190110",
            "origin_country": "NZ",
            "manufacturer": "Waikato Dairy Ltd",
            "quantity": 1000,
            "expiry": "2028-06-30",
            "declaration_number": f"DEC-{run}",
        },
    )["lot_id"]
    api.call("POST", f"/lots/{lot}/entry", keys["warehouse"], {"counted_quantity": 1000, "biz_location": ZONE})
    api.call("POST", f"/lots/{lot}/inspection", keys["customs"], {"result": "conformant"})
    api.call("POST", f"/lots/{lot}/storage", keys["warehouse"], {"storage_location": SHELF})
    parcels = [_sscc() for _ in range(5)]
    # Each parcel holds two tins with serial numbers of their own (GS1 AI 21), each a scannable unit.
    units = {p: [f"S{run[2:].upper()}{index}{tin}" for tin in "AB"] for index, p in enumerate(parcels)}
    api.call(
        "POST",
        f"/lots/{lot}/parcels",
        keys["warehouse"],
        {"parcels": [{"sscc": p, "quantity": 2, "units": units[p]} for p in parcels]},
    )
    console.print(
        f"[bold]demo[/bold] lot {lot_number}: declared, entered, inspected, stored, split into 5 parcels "
        "of 2 serialised tins"
    )

    for parcel in parcels[:3]:
        order_number = f"ORD-{parcel[-8:]}"
        api.call(
            "POST",
            f"/parcels/{parcel}/order",
            keys["enterprise"],
            {
                "order_number": order_number,
                "items": [{"gtin": GTIN, "quantity": 2, "unit_price": "199.00"}],
                "total": "398.00",
                "consignee": CONSIGNEE,
            },
        )
        api.call(
            "POST",
            f"/parcels/{parcel}/payment",
            keys["payment"],
            {
                "payment_number": f"PAY-{parcel[-8:]}",
                "order_number": order_number,
                "amount": "398.00",
                "payer": {"name": CONSIGNEE["name"], "id_number": CONSIGNEE["id_number"]},
            },
        )
        api.call(
            "POST",
            f"/parcels/{parcel}/waybill",
            keys["carrier"],
            {
                "waybill_number": f"WB-{parcel[-8:]}",
                "order_number": order_number,
                "consignee": CONSIGNEE,
            },
        )
        api.call("POST", f"/parcels/{parcel}/release", keys["customs"])
        api.call("POST", f"/parcels/{parcel}/delivery", keys["carrier"])
    console.print("[bold]demo[/bold] three parcels released against their three documents and delivered")

    _wait_anchored(api, lot, keys["enterprise"])
    scan = api.call("GET", f"/00/{parcels[0]}", None, expect=200)
    console.print(
        f"[bold]demo[/bold] verification: {scan['verification']['status']} ({scan['verification']['reason']})"
    )
    tin = api.call("GET", f"/01/{GTIN}/21/{units[parcels[0]][0]}", None, expect=200)
    console.print(f"[bold]demo[/bold] one tin of that parcel: {tin['id']} ({tin['verification']['status']})")
    print(scan["id"])
    return 0


def _wait_anchored(api: Client, lot: str, key: str) -> None:
    """Waits, with a progress bar, until every event of the lot is anchored; fails on a rejected one."""
    columns = (TextColumn("anchoring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("anchoring", total=None)
        deadline = time.monotonic() + ANCHOR_TIMEOUT_SECONDS
        while True:
            events = api.call("GET", f"/lots/{lot}", key, expect=200)["events"]
            rejected = [e for e in events if e["status"] == "rejected"]
            if rejected:
                sys.exit(f"demo: the chain rejected event {rejected[0]['seq']}: {rejected[0]['reason']}")
            done = sum(e["status"] == "anchored" for e in events)
            progress.update(task, total=len(events), completed=done)
            if done == len(events):
                return
            if time.monotonic() > deadline:
                sys.exit(
                    f"demo: {len(events) - done} events still pending after {ANCHOR_TIMEOUT_SECONDS}s; "
                    "is the chain running? see data/chain/anvil.log"
                )
            time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
