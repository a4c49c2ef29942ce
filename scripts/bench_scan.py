"""Scan benchmark: scans per second and p50/p99 latency of the scan JSON and the scan page, cached and uncached.

One invocation starts everything it measures: an anvil with one-second blocks and ``python -m api`` on it
(``TRACER_RPC_URL``; one uvicorn process, its writer and indexer threads inside), over SQLite or the PostgreSQL
of ``--database``. It fills the store through the API, stage by stage: ``--lots`` lots declared (one client),
then entered, inspected and stored (eight client threads each), each split into ``--parcels`` parcels of two
serialised units; the writer anchors them all in EIP-712 signed batches before any scan.

Then ``wrk`` (Debian's, installed when missing) drives the scans from a separate process, its Lua script
rotating over every code in shuffled order (lots ``/01/{gtin}/10/{lot}``, parcels ``/00/{sscc}``, units
``/01/{gtin}/21/{serial}``), first with ``Accept: application/json``, then as the page (``text/html``). While it
runs the chain stays live: one-second blocks, the writer running, and a warehouse system capturing an
observation of a random lot every 100 ms (new logs, so the scan caches see lots change under them).

Each mode runs on the same store and chain in the same invocation: the service with its scan caches (the
default ``TRACER_SCAN_CHECK_SECONDS``), then restarted with ``TRACER_SCAN_CHECK_SECONDS=0`` (no caches: every
scan reads the lot's logs and hashes its events afresh, the baseline). Each measurement follows a warm-up of
the same load, after a first JSON scan of every lot (which fills the caches). Figures go to stdout, progress
to stderr; "service CPU" is the service process's CPU time (all its threads) per scan.

``--workers N`` sets the service's HTTP worker processes (``TRACER_WEB_WORKERS``; the writer and indexer run in
its parent process); "service CPU" then sums the parent and its workers. ``--workdir DIR`` keeps the store and the
chain in DIR and reuses them on the next invocation (no filling); ``--modes`` and ``--runs`` pick what is measured.

The ``json`` and ``html`` runs are closed loops (each connection sends its next request when answered): their
throughput is the most the service answers, and their latency is mostly the queue that load builds (16
connections at 1,000 scans/s wait 16 ms on average). The ``json-paced`` run offers a fixed ``--rate`` instead, on
many mostly idle connections: its p50/p99 are the latency a scan sees at that rate.

Usage: scripts/bench_scan [--lots N] [--parcels P] [--seconds S] [--connections C] [--workers N] [--database URL]
                          [--rate R] [--paced-connections C] [--modes cached,uncached]
                          [--runs json,json-paced,html,json-light] [--workdir DIR] [--keep]
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
from bench_ingest import GTIN, SHELF, ZONE, Deployment, _declare, log, observations  # noqa: E402

from tracer import identifiers  # noqa: E402

WRK_THREADS = 2
CACHED = {"TRACER_SCAN_CHECK_SECONDS": "0.25"}
UNCACHED = {"TRACER_SCAN_CHECK_SECONDS": "0"}
WRK_SCRIPT = """
local paths = {}
for line in io.lines(os.getenv("SCAN_PATHS")) do paths[#paths + 1] = line end
local accept = os.getenv("SCAN_ACCEPT")
local rate = tonumber(os.getenv("SCAN_RATE") or "0")  -- requests per second offered in all; 0: as fast as answered
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("position", math.floor(#paths * (threads - 1) / 4))
  if rate > 0 then
    thread:set("interval", tonumber(os.getenv("SCAN_THREADS")) * 1000 / rate)  -- ms between this thread's sends
  end
end

-- The paced run: each thread sends on a fixed schedule (one request every `interval` ms, on whichever of its
-- connections is free), whatever the answers' latency, so that latency is measured at the offered rate and not
-- at the rate the server's answers allow (which is what a closed loop measures). wrk calls delay() before each
-- request after a connection's first; LuaJIT's ffi reads the monotonic clock.
local ffi = require("ffi")
ffi.cdef[[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clock, bench_timespec *now);
]]
local clock = ffi.new("bench_timespec")
local due = nil

function delay()
  if interval == nil then return 0 end
  ffi.C.clock_gettime(1, clock)  -- CLOCK_MONOTONIC
  local now = tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
  due = math.max(due or now, now - 1000) + interval  -- never more than a second of sends owed at once
  return math.max(0, due - now)
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

    def __init__(self, workdir: Path, database_url: str | None, *, env: dict[str, str]) -> None:
        super().__init__(workdir, database_url)
        self.env.update(env)

    def __enter__(self) -> ScanDeployment:
        # Not the ingest deployment's start: a reused store's start-up reconciles every lot with the chain (one
        # eth_call each), longer than its deadline.
        self.node.start()
        try:
            self.restart({})
        except BaseException:
            self.__exit__()
            raise
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
        deadline = time.monotonic() + 900  # start-up reconciles every lot with the chain: one eth_call each
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
    started = time.perf_counter()
    ids = _declare(deployment, keys["enterprise"], numbers)  # the ingest benchmark's declarations, one client
    log(f"  {lots} declarations accepted in {time.perf_counter() - started:.1f} s")
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


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process ``pid`` and its descendants (the service's workers) have used so far,
    the descendants counted while alive (Linux ``/proc``)."""
    total = 0.0
    for each in [pid, *descendants(pid)]:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (its children's children too)."""
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            frontier += children
    return found


def run_wrk(
    wrk: str, deployment: ScanDeployment, accept: str, seconds: int, connections: int, rate: int = 0
) -> dict[str, Any]:
    """One wrk run of ``seconds`` over the shuffled codes in the work directory (``rate`` > 0: offered at that many
    requests a second); its figures, with the CPU time the service process spent per scan."""
    workdir, url = deployment.workdir, deployment.url
    assert deployment.process is not None
    cpu_before = cpu_seconds(deployment.process.pid)
    script = workdir / "scan.lua"
    script.write_text(WRK_SCRIPT)
    env = {**os.environ, "SCAN_PATHS": str(workdir / "paths.txt"), "SCAN_ACCEPT": accept}
    env.update(SCAN_RATE=str(rate), SCAN_THREADS=str(WRK_THREADS))
    command = [wrk, f"-t{WRK_THREADS}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), url]
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    line = next(line for line in output.splitlines() if line.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    result["per_s"] = result["requests"] / (result["duration_us"] / 1e6)
    result["cpu_ms"] = 1000 * (cpu_seconds(deployment.process.pid) - cpu_before) / max(1, result["requests"])
    return result


def background_writes(url: str, key: str, numbers: list[str], stop: threading.Event) -> None:
    """A warehouse system capturing one observation of a random lot every 100 ms, until ``stop``."""
    with httpx.Client(base_url=url, timeout=60) as client:
        document = 0
        while not stop.wait(0.1):
            document += 1
            body = observations(random.choice(numbers), client=7, document=document, count=1)
            client.post("/capture", json=body, headers={"Authorization": f"Bearer {key}"})


def first_scans(url: str, numbers: list[str], threads: int = 8) -> float:
    """Scans every lot's code once (JSON, ``threads`` clients), as the first scans after a start do; returns
    scans per second. Afterwards each lot's log and events are in the scan caches (when they are on)."""
    local = threading.local()

    def scan(number: str) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=120, headers={"Accept": "application/json"})
        response = local.client.get(identifiers.lot_path(GTIN, number))
        if response.status_code != 200:
            raise RuntimeError(f"{number}: {response.status_code} {response.text[:300]}")

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(scan, number) for number in numbers]:
            future.result()
    return len(numbers) / (time.perf_counter() - started)


def measure(
    deployment: ScanDeployment, wrk: str, args: argparse.Namespace, numbers: list[str], key: str
) -> dict[str, dict[str, Any]]:
    stop = threading.Event()
    writer = threading.Thread(target=background_writes, args=(deployment.url, key, numbers, stop), daemon=True)
    writer.start()
    figures: dict[str, dict[str, Any]] = {}
    try:
        figures["first"] = {"per_s": first_scans(deployment.url, numbers)}
        log(f"  first scan of every lot: {figures['first']['per_s']:.0f} scans/s")
        runs = (("json", "application/json", args.connections, 0), ("html", "text/html", args.connections, 0),
                ("json-light", "application/json", 2, 0),
                ("json-paced", "application/json", args.paced_connections, args.rate))  # fmt: skip
        for kind, accept, connections, rate in (run for run in runs if run[0] in args.runs):
            run_wrk(wrk, deployment, accept, args.warmup, connections, rate)
            figures[kind] = run_wrk(wrk, deployment, accept, args.seconds, connections, rate)
            log(f"  {kind}: {figures[kind]['per_s']:.0f} scans/s, p99 {figures[kind]['p99_us'] / 1000:.1f} ms")
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
    parser.add_argument("--rate", type=int, default=1000, help="scans per second the paced run offers")
    parser.add_argument(
        "--paced-connections", type=int, default=64, help="wrk's open connections in the paced run (mostly idle)"
    )
    parser.add_argument("--database", default=None, help="TRACER_DATABASE_URL of the service (default SQLite)")
    parser.add_argument("--workers", type=int, default=None, help="the service's TRACER_WEB_WORKERS (its default)")
    parser.add_argument("--modes", default="cached,uncached", help="which of cached,uncached to measure")
    parser.add_argument(
        "--runs", default="json,json-paced,html,json-light", help="which of json,json-paced,html,json-light to measure"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="keep the store here and reuse it when filled")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, database)")
    args = parser.parse_args()
    args.runs = args.runs.split(",")
    modes = [(mode, env) for mode, env in (("cached", CACHED), ("uncached", UNCACHED)) if mode in args.modes]
    wrk = ensure_wrk()
    workdir = args.workdir.resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="bench-scan-"))
    filled_marker = workdir / "filled.json"
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"database: {'PostgreSQL' if args.database else 'SQLite'}; work directory {workdir}")
    workers = {} if args.workers is None else {"TRACER_WEB_WORKERS": str(args.workers)}
    results: dict[str, dict[str, dict[str, Any]]] = {}
    try:
        with ScanDeployment(workdir, args.database, env=workers) as deployment:
            if filled_marker.exists():
                numbers = json.loads(filled_marker.read_text())["numbers"]
                print(f"store: reused from {workdir} ({len(numbers)} lots)")
            else:
                log(f"filling the store: {args.lots} lots, {args.parcels} parcels each ...")
                started = time.perf_counter()
                numbers, paths, events = fill(deployment, args.lots, args.parcels)
                deployment.wait_anchored(events, timeout=3600)
                filled = time.perf_counter() - started
                print(
                    f"store: {args.lots} lots, {args.lots * args.parcels} parcels, {args.lots * args.parcels * 2} "
                    f"units, {events} events anchored in {filled:.0f} s; {len(paths)} codes scanned in shuffled order"
                )
                random.Random(8).shuffle(paths)
                (workdir / "paths.txt").write_text("\n".join(paths) + "\n")
                filled_marker.write_text(json.dumps({"numbers": numbers}))
            key = deployment.actor(f"wms-background-{time.time_ns()}", "warehouse")
            for mode, env in modes:
                log(f"{mode} scans ...")
                deployment.restart(env)
                results[mode] = measure(deployment, wrk, args, numbers, key)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"service: TRACER_WEB_WORKERS={args.workers if args.workers is not None else 'default'}")
    for mode, _ in modes:
        print(
            f"first JSON scan of each of the {len(numbers)} lots, {mode}: {results[mode]['first']['per_s']:.0f} scans/s"
        )
    print(
        f"wrk -t{WRK_THREADS} -c{args.connections} (light: -c2; paced: -c{args.paced_connections} offering "
        f"{args.rate} scans/s), {args.seconds} s per run after {args.warmup} s of warm-up; a capture every 100 ms "
        "meanwhile"
    )
    print(
        f"{'':28} {'scans/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'non-2xx':>8} {'socket err':>10} "
        f"{'service CPU ms/scan':>20}"
    )
    for kind in args.runs:
        for mode, _ in modes:
            r = results[mode][kind]
            label = f"{kind.upper()} {mode}" + (" (baseline)" if mode == "uncached" else "")
            print(
                f"{label:28} {r['per_s']:9.0f} {r['p50_us'] / 1000:8.1f} {r['p99_us'] / 1000:8.1f} "
                f"{r['max_us'] / 1000:8.1f} {r['status_errors']:8d} {r['socket_errors']:10d} {r['cpu_ms']:20.1f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
