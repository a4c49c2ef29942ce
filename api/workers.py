"""Several HTTP worker processes over one service: the writer and the indexer run once, in the parent.

One Python process runs on one core whatever the machine has (the GIL): at ~1.2 ms of CPU per cached scan, some
800 scans a second (docs/performance.md, "Scan").
So ``python -m api`` with ``--workers N`` (``TRACER_WEB_WORKERS``) > 1 opens the service in the parent (deploys,
reconciles, starts the outbox writer and the indexer there, once: two writers would sign with the same nonces),
binds the port, and has uvicorn's process supervisor spawn N workers that share the listening socket. Each
worker attaches to the opened service (``tracer.service.open_service(attach=True)``: the same database and
registry, nothing deployed or re-sent) and serves every route; a worker that dies is replaced.

What is per process, and what is not:

- the scan caches (``tracer.scan_cache``) are per worker: each is honest on its own, they need nothing shared;
- the write rate limits (``api.ratelimit``) are per worker: the effective limit is N times the configured one;
- ``/metrics`` stays whole: the outbox, lag and height figures come from the database and the node at each
  scrape, and the request-latency histogram is shared through prometheus_client's multiprocess mode (a
  directory of memory-mapped files per service run, ``PROMETHEUS_MULTIPROC_DIR``), so any worker answers with
  every worker's requests;
- a write wakes the writer at once only in the single-process mode; behind workers the writer finds new work
  within ``TRACER_WRITER_IDLE_SECONDS`` (0.2 s).

The workers die with the parent, even by ``kill -9`` (``PR_SET_PDEATHSIG``, as the supervised anvil does), so
no orphan keeps the port.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from api.main import create_app, tune_garbage_collector
from api.observability import METRICS_DIR_ENV, configure_logging
from tracer.chain.supervisor import _terminate_with_parent  # the anvil's guard: SIGTERM when the parent dies
from tracer.config import Settings
from tracer.service import Service, open_service

WORKERS_ENV = "TRACER_WEB_WORKERS"
_PARENT_ENV = "TRACER_SERVICE_PID"  # the parent a worker must die with
_LOG_FORMAT_ENV = "TRACER_LOG_FORMAT"

log = logging.getLogger(__name__)


def default_workers() -> int:
    """One worker per core (the writer and indexer mostly wait on the node), at most 8; 1 on one core."""
    return max(1, min(os.cpu_count() or 1, 8))


def serve(service: Service, *, workers: int, host: str, port: int, json_logs: bool) -> None:
    """Serves the API of the opened ``service`` from ``workers`` processes until SIGINT or SIGTERM; the writer
    and indexer run in this process meanwhile."""
    metrics_dir = tempfile.mkdtemp(prefix="tracer-metrics-")
    # Inherited by the spawned workers (uvicorn spawns, never forks: no thread or connection of ours crosses).
    os.environ[METRICS_DIR_ENV] = metrics_dir
    os.environ[_PARENT_ENV] = str(os.getpid())
    os.environ[_LOG_FORMAT_ENV] = "json" if json_logs else "plain"
    config = uvicorn.Config(
        "api.workers:worker_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        log_config=None,
        access_log=False,
    )
    sock = config.bind_socket()
    service.writer.start()
    service.indexer.start()
    try:
        log.info("serving from %d worker processes; writer and indexer in process %d", workers, os.getpid())
        Multiprocess(config, sockets=[sock]).run()  # returns on SIGINT/SIGTERM, its workers stopped
    finally:
        service.writer.stop()
        service.indexer.stop()
        sock.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)


def worker_app() -> FastAPI:
    """The app of one worker process (uvicorn's factory, called in the spawned worker)."""
    parent = int(os.environ[_PARENT_ENV])
    _terminate_with_parent()
    if os.getppid() != parent:  # the parent died before the line above took effect
        raise SystemExit(f"the service process {parent} is gone")
    configure_logging(json_lines=os.environ.get(_LOG_FORMAT_ENV, "json") == "json")
    # As in the single process: the request middleware writes the access line, not uvicorn (whose set-up of the
    # worker's logging ran before this one and would otherwise be undone by it).
    logging.getLogger("uvicorn.access").propagate = False
    service = open_service(Settings(), attach=True)
    app = create_app(service, run_writer=False)
    tune_garbage_collector()
    return app
