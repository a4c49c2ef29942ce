"""Scan benchmark: scans per second and p50/p99 latency of the scan JSON and the scan page, cached and uncached.

One invocation starts everything it measures: an anvil with one-second blocks and ``python -m api`` on it
(``TRACER_RPC_URL``; one uvicorn process, its writer and indexer threads inside), over SQLite or the PostgreSQL
of ``--database``. It fills the store through the API, eight client threads, stage by stage: ``--lots`` lots
declared, entered, inspected and stored, each split into ``--parcels`` parcels of two serialised units; the
writer anchors them all in EIP-712 signed batches before any scan.

Then ``wrk`` (Debian's, installed when missing) drives the scans from a separate process, its Lua script
rotating over every code in shuffled order (lots ``/01/{gtin}/10/{lot}``, parcels ``/00/{sscc}``, units
``/01/{gtin}/21/{serial}``), first with ``Accept: application/json``, then as the page (``text/html``). While it
runs the chain stays live: one-second blocks, the writer running, and a warehouse system capturing an
observation of a random lot every 100 ms (new logs, so the scan caches see lots change under them).

Each mode runs on the same store and chain in the same invocation: the service with its scan caches (the
default ``TRACER_SCAN_CHECK_SECONDS``), then restarted with ``TRACER_SCAN_CHECK_SECONDS=0`` (no caches: every
scan reads the lot's logs and hashes its events afresh, the baseline). Each measurement follows a warm-up of
the same load. Figures go to stdout, progress to stderr.

Usage: scripts/bench_scan [--lots N] [--parcels P] [--seconds S] [--connections C] [--database URL] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import httpx  # noqa: E402
from bench_ingest import GTIN, SHELF, ZONE, Deployment, log, observations  # noqa: E402

from tracer import identifiers  # noqa: E402

CACHED = {"TRACER_SCAN_CHECK_SECONDS": "0.25"}
UNCACHED = {"TRACER_SCAN_CHECK_SECONDS": "0"}
WRK_SCRIPT = """
local paths = {}
for line in io.lines(os.getenv("SCAN_PATHS")) do paths[#paths + 1] = line end
local accept = os.getenv("SCAN_ACCEPT")
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("position", math.floor(#paths * (threads - 1) / 4))
end

function request()
  position = position % #paths + 1
  return wrk.format("GET", paths[position], {["Accept"] = accept})
end

function done(summary, latency, requests)
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, "status_errors": %d, '
      .. '"socket_errors": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.timeout))
end
"""


def sscc(serial: int) -> str:
    """A valid SSCC with extension digit 0 and company prefix 9521234."""
    body = f"0{9521234}{serial:09d}"
    return body + str(identifiers.gs1_check_digit(body))


class ScanDeployment(Deployment):
    """The ingest benchmark's deployment, whose service can be restarted with other settings on the same store."""

    def __enter__(self) -> ScanDeployment:
        super().__enter__()
        return self

    def restart(self, env: dict[str, str]) -> None:
        """Stops the service, then starts it again with ``env`` added to its environment."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=60)
        self.env.update(env)
        with open(self.workdir / "service.log", "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "api"], cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 90
        while self.process.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).json()["status"] == "ok":
                    return
            except (httpx.HTTPError, ValueError):
                time.sleep(0.2)
        raise SystemExit(f"the service did not come back; see {self.workdir / 'service.log'}")


# -- filling the store -----------------------------------------------------------------------------------------


def post_all(url: str, requests: Iterable[tuple[str, str, Any]], threads: int = 8) -> None:
    """Posts ``(path, key, body)`` requests from ``threads`` clients; each must be accepted."""

    local = threading.local()

    def post(request: tuple[str, str, Any]) -> None:
        path, key, body = request
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=120)
        response = local.client.post(path, json=body, headers={"Authorization": f"Bearer {key}"})
        if response.status_code not in (201, 202):
            raise RuntimeError(f"{path}: {response.status_code} {response.text[:300]}")

    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(post, request) for request in requests]:
            future.result()


def fill(deployment: ScanDeployment, lots: int, parcels: int) -> tuple[list[str], list[str], int]:
    """Declares ``lots`` lots and takes them to parcels of serialised units; returns (lot numbers, scan paths,
    events)."""
    keys = {role: deployment.actor(f"{role}-bench", role) for role in ("enterprise", "warehouse", "customs")}
    numbers = [f"SCAN-{n:05d}" for n in range(lots)]
    declarations = [
        {
            "gtin": GTIN,
            "lot": number,
            "product_name": "Infant formula stage 1, 900 g",
            "hs_code": "190110",
            "origin_country": "NZ",
            "manufacturer": "Waikato Dairy Ltd",
            "quantity": 1000,
            "expiry": "2028-06-30",
            "declaration_number": f"DEC-{number}",
        }
        for number in numbers
    ]
    ids = ["0x" + identifiers.lot_id(GTIN, number).hex() for number in numbers]
    paths = [identifiers.lot_path(GTIN, number) for number in numbers]
    splits = []
    for n, lot_id in enumerate(ids):
        codes = [sscc(n * parcels + p + 1) for p in range(parcels)]
        units = {code: [f"S{n:05d}P{p}U{u}" for u in range(2)] for p, code in enumerate(codes)}
        splits.append((lot_id, {"parcels": [{"sscc": c, "quantity": 2, "units": units[c]} for c in codes]}))
        paths += [identifiers.parcel_path(c) for c in codes]
        paths += [identifiers.unit_path(GTIN, s) for c in codes for s in units[c]]
    entry = {"counted_quantity": 1000, "biz_location": ZONE}
    stages: list[tuple[str, Callable[[int], tuple[str, str, Any]]]] = [
        ("declarations", lambda n: ("/lots", keys["enterprise"], declarations[n])),
        ("entries", lambda n: (f"/lots/{ids[n]}/entry", keys["warehouse"], entry)),
        ("inspections", lambda n: (f"/lots/{ids[n]}/inspection", keys["customs"], {"result": "conformant"})),
        ("storage", lambda n: (f"/lots/{ids[n]}/storage", keys["warehouse"], {"storage_location": SHELF})),
        ("splits", lambda n: (f"/lots/{splits[n][0]}/parcels", keys["warehouse"], splits[n][1])),
    ]  # fmt: skip
    for name, request in stages:
        started = time.perf_counter()
        post_all(deployment.url, (request(n) for n in range(lots)))
        log(f"  {lots} {name} accepted in {time.perf_counter() - started:.1f} s")
    return numbers, paths, lots * (4 + parcels)


# -- the load ------------------------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    """The path of ``wrk``, installed from Debian when missing (as scripts/_setup.sh installs chromium)."""
    found = shutil.which("wrk")
    if found:
        return found
    log("installing wrk (Debian package) for the load ...")
    apt = ["apt-get"] if os.geteuid() == 0 else ["sudo", "apt-get"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*apt, "install", "-y", "--no-install-recommends", "wrk"]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run([*apt, "update", "-qq"], env=env, capture_output=True)
        subprocess.run(install, env=env, check=True, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is missing and could not be installed: apt-get install wrk")
    return found


def run_wrk(wrk: str, url: str, workdir: Path, accept: str, seconds: int, connections: int) -> dict[str, Any]:
    """One wrk run of ``seconds`` over the shuffled codes in ``workdir``; its figures."""
    script = workdir / "scan.lua"
    script.write_text(WRK_SCRIPT)
    env = {**os.environ, "SCAN_PATHS": str(workdir / "paths.txt"), "SCAN_ACCEPT": accept}
    command = [wrk, "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), url]
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    line = next(line for line in output.splitlines() if line.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    result["per_s"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def background_writes(url: str, key: str, numbers: list[str], stop: threading.Event) -> None:
    """A warehouse system capturing one observation of a random lot every 100 ms, until ``stop``."""
    with httpx.Client(base_url=url, timeout=60) as client:
        document = 0
        while not stop.wait(0.1):
            document += 1
            body = observations(random.choice(numbers), client=7, document=document, count=1)
            client.post("/capture", json=body, headers={"Authorization": f"Bearer {key}"})


def measure(
    deployment: ScanDeployment, wrk: str, args: argparse.Namespace, numbers: list[str], key: str
) -> dict[str, dict[str, Any]]:
    stop = threading.Event()
    writer = threading.Thread(target=background_writes, args=(deployment.url, key, numbers, stop), daemon=True)
    writer.start()
    figures = {}
    try:
        for kind, accept in (("json", "application/json"), ("html", "text/html")):
            run_wrk(wrk, deployment.url, deployment.workdir, accept, args.warmup, args.connections)
            figures[kind] = run_wrk(wrk, deployment.url, deployment.workdir, accept, args.seconds, args.connections)
            log(f"  {kind}: {figures[kind]['per_s']:.0f} scans/s")
    finally:
        stop.set()
        writer.join()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lots", type=int, default=2000, help="lots in the store")
    parser.add_argument("--parcels", type=int, default=2, help="parcels per lot, two serialised units each")
    parser.add_argument("--seconds", type=int, default=20, help="length of each measured wrk run")
    parser.add_argument("--warmup", type=int, default=5, help="length of the wrk run before each measured one")
    parser.add_argument("--connections", type=int, default=16, help="wrk's open connections")
    parser.add_argument("--database", default=None, help="TRACER_DATABASE_URL of the service (default SQLite)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, database)")
    args = parser.parse_args()
    wrk = ensure_wrk()
    workdir = Path(tempfile.mkdtemp(prefix="bench-scan-"))
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"database: {'PostgreSQL' if args.database else 'SQLite'}; work directory {workdir}")
    results: dict[str, dict[str, dict[str, Any]]] = {}
    try:
        with ScanDeployment(workdir, args.database) as deployment:
            log(f"filling the store: {args.lots} lots, {args.parcels} parcels each ...")
            started = time.perf_counter()
            numbers, paths, events = fill(deployment, args.lots, args.parcels)
            deployment.wait_anchored(events, timeout=3600)
            filled = time.perf_counter() - started
            print(
                f"store: {args.lots} lots, {args.lots * args.parcels} parcels, {args.lots * args.parcels * 2} units, "
                f"{events} events anchored in {filled:.0f} s; {len(paths)} codes scanned in shuffled order"
            )
            random.Random(8).shuffle(paths)
            (workdir / "paths.txt").write_text("\n".join(paths) + "\n")
            key = deployment.actor("wms-background", "warehouse")
            for mode, env in (("cached", CACHED), ("uncached", UNCACHED)):
                log(f"{mode} scans ...")
                deployment.restart(env)
                results[mode] = measure(deployment, wrk, args, numbers, key)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"wrk -t2 -c{args.connections}, {args.seconds} s per run after {args.warmup} s of warm-up; "
        "a capture every 100 ms meanwhile"
    )
    print(f"{'':28} {'scans/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'non-2xx':>8} {'socket err':>10}")
    for kind in ("json", "html"):
        for mode in ("cached", "uncached"):
            r = results[mode][kind]
            label = f"{kind.upper()} {mode}" + (" (baseline)" if mode == "uncached" else "")
            print(
                f"{label:28} {r['per_s']:9.0f} {r['p50_us'] / 1000:8.1f} {r['p99_us'] / 1000:8.1f} "
                f"{r['max_us'] / 1000:8.1f} {r['status_errors']:8d} {r['socket_errors']:10d}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
