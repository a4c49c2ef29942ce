"""The FastAPI application: routers over the tracer core, one error mapping."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import hardening, observability, problems, ratelimit, security
from api.routes import actors, audit, epcis, health, journey, scan
from tracer import __version__
from tracer.service import Service


def create_app(service: Service, *, run_writer: bool = True) -> FastAPI:
    """The API over an opened ``service``; with ``run_writer`` its outbox writer and indexer run while the app does."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        workers = (service.writer, service.indexer) if run_writer else ()
        for worker in workers:
            worker.start()
        try:
            yield
        finally:
            for worker in workers:
                worker.stop()
            service.scan_log.close()  # the scans' records still queued

    app = FastAPI(
        title="tracer",
        version=__version__,
        summary="Blockchain-backed goods traceability for cross-border e-commerce bonded imports",
        lifespan=lifespan,
    )
    app.state.service = service
    problems.install(app)
    hardening.install(app)  # inside observability: refused requests are logged and counted too
    ratelimit.install(app, service.settings)  # outside the request limits: a throttled client costs no parsing
    observability.install(app)
    security.install(app)
    # The scans first: the busiest routes, and routing tries each route in turn (their paths, /01/ and /00/,
    # are no other route's).
    app.include_router(scan.router)
    app.include_router(health.router)
    app.include_router(actors.router)
    app.include_router(journey.router)
    app.include_router(epcis.router)
    app.include_router(audit.router)
    return app


GC_THRESHOLDS = (10_000, 50, 100)
"""The cyclic collector's thresholds while serving (Python's default: 700, 10, 10)."""


def tune_garbage_collector() -> None:
    """Fewer, shorter pauses of the cyclic garbage collector in a process that serves (``python -m api`` and its
    workers call it once the app is built; not the tests, whose many apps would stay frozen).

    A full collection walks every live object: with the scan caches filled, 137 ms in one measured run, during
    which the process answers nothing (at 500 scans/s a worker, some 70 of them late by that much). The objects
    of the start-up (modules, schemas, the contract's ABI) are frozen out of the collections, and the young
    generations are collected less often, so that a full collection is rare; a request's reference cycles die
    in the young generations, as before.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
