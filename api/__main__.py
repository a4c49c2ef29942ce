"""``python -m api``: the service as ``scripts/run`` starts it: the chain, the registry, the API.

``--workers N`` (``TRACER_WEB_WORKERS``; one per core by default) serves HTTP from N worker processes, the
writer and indexer running once in this one (``api.workers``); 1 runs everything in one process.

Logs go to stderr as JSON lines (one object per line, with the request id while a request is served), ready
for a log shipper; ``--log-format plain`` or ``TRACER_LOG_FORMAT=plain`` gives readable text in a terminal.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

import uvicorn

from api.main import create_app, tune_garbage_collector
from api.observability import configure_logging
from api.workers import WORKERS_ENV, default_workers, serve
from tracer.chain.anvil import AnvilSupervisor
from tracer.config import Settings
from tracer.exceptions import TracerError
from tracer.service import describe, open_service


def main(argv: list[str] | None = None) -> int:
    """Runs until Ctrl-C; the supervised anvil stops with it."""
    parser = argparse.ArgumentParser(prog="python -m api", description="the tracer service: chain, registry, API")
    parser.add_argument(
        "--log-format",
        choices=("json", "plain"),
        default=os.environ.get("TRACER_LOG_FORMAT", "json"),
        help="JSON lines (default, or TRACER_LOG_FORMAT) or plain text",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help=f"HTTP worker processes (default {WORKERS_ENV}, else one per core); 1: one process for everything",
    )
    args = parser.parse_args(argv)
    if args.workers is None:
        configured = os.environ.get(WORKERS_ENV) or str(default_workers())
        if not configured.isdigit():
            parser.error(f"{WORKERS_ENV} must be a whole number of worker processes, not {configured!r}")
        args.workers = int(configured)
    if args.workers < 1:
        parser.error(f"--workers ({WORKERS_ENV}) must be at least 1")
    json_logs = args.log_format == "json"
    configure_logging(json_lines=json_logs)
    log = logging.getLogger("tracer")
    settings = Settings()
    supervisor: AnvilSupervisor | None = None
    try:
        if settings.embedded_chain:
            chain_dir = settings.data_dir / "chain"
            chain_dir.mkdir(parents=True, exist_ok=True)
            supervisor = AnvilSupervisor.in_directory(chain_dir, port=settings.chain_port)
            supervisor.start()
        service = open_service(settings)
        if supervisor is not None and service.deployed_now:
            # A hard kill right after the first start must not lose the deployment: wait for a state dump
            # that began after the deployment was mined.
            supervisor.wait_for_state_dump(after=time.time())
        for key, value in describe(service).items():
            log.info("%s: %s", key, value)
        if args.workers > 1:
            serve(service, workers=args.workers, host="127.0.0.1", port=settings.port, json_logs=json_logs)
            return 0
        app = create_app(service)
        tune_garbage_collector()
        # Our logging, not uvicorn's: its lines go through the same handler, and the request middleware writes
        # the access line (with the request id, route and duration) instead of uvicorn's.
        uvicorn.run(app, host="127.0.0.1", port=settings.port, log_level="info", log_config=None, access_log=False)
        return 0
    except TracerError as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if supervisor is not None:
            supervisor.stop()


if __name__ == "__main__":
    sys.exit(main())
