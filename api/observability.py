"""What an operator sees of the running service: ``/metrics`` for Prometheus, JSON log lines with a request id.

Every request gets an id: the caller's ``X-Request-ID`` when it is a sane token (a proxy or a client may
have logged it already), a fresh one otherwise. It is answered in the response header and rides in a
context variable, so every log line emitted while the request is served — in the event loop or in the
thread pool that runs sync handlers, which copies the context — carries it. A 500 answers a problem
document that names it, so a user's report finds its traceback.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import problem
from tracer import __version__
from tracer.metrics import snapshot
from tracer.service import Service

REQUEST_ID_HEADER = "X-Request-ID"
#: An incoming id is kept only when it cannot forge or break a log line: a short token of safe characters.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
#: Latency buckets (seconds) from a cached scan (~1 ms) to a bulk capture or an audit (seconds).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: prometheus_client's multiprocess directory (its own variable, read when the library is imported).
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED_ROUTE = "unmatched"  # one label for every unknown path: a scanner probing URLs must not add series

_request_id: ContextVar[str | None] = ContextVar("tracer_request_id", default=None)
access_log = logging.getLogger("tracer.access")
log = logging.getLogger(__name__)


def current_request_id() -> str | None:
    """The id of the request being served in this context, or None outside a request."""
    return _request_id.get()


def accepted_request_id(incoming: str | None) -> str:
    """The caller's id when it is sane, a fresh random one otherwise."""
    if incoming is not None and _SANE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


# -- logs --------------------------------------------------------------------------------------------------


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request id (``-`` outside a request), for any formatter."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get() or "-"
        return True


# The attributes every LogRecord has; anything else on a record came through ``extra=`` and is logged as a field.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, request_id, ``extra`` fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or _request_id.get()
        if request_id and request_id != "-":
            line["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key != "request_id" and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()  # UTF-8 as is; a line per request: json's ~4x cost


PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


def log_handler(stream: IO[str], *, json_lines: bool = True) -> logging.Handler:
    """A handler writing to ``stream`` whose every line carries the request id: JSON lines, or plain text."""
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(PLAIN_FORMAT))
    return handler


def configure_logging(*, json_lines: bool = True, level: int = logging.INFO, stream: IO[str] | None = None) -> None:
    """Sends every logger (uvicorn's too) to one handler on ``stream`` (stderr by default)."""
    root = logging.getLogger()
    root.handlers[:] = [log_handler(stream or sys.stderr, json_lines=json_lines)]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


# -- requests ------------------------------------------------------------------------------------------------


class RequestObserver:
    """ASGI middleware: the request id, one access log line and one latency observation per request."""

    def __init__(self, app: ASGIApp, *, latency: Histogram) -> None:
        self._app = app
        self._latency = latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        incoming = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        request_id = accepted_request_id(incoming.decode("latin-1") if incoming is not None else None)
        token = _request_id.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            await send(message)

        try:
            await self._app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error serving %s %s", scope["method"], scope["path"])
            if not response_started:
                answer = problem(500, "Internal error", f"quote request id {request_id}", kind="internal")
                await answer(scope, receive, send_with_id)
            raise  # the server's own handling (and a test client) still sees it
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", UNMATCHED_ROUTE)
            self._latency.labels(scope["method"], route, str(status)).observe(elapsed)
            access_log.info(
                "%s %s %d",
                scope["method"],
                scope["path"],
                status,
                extra={"method": scope["method"], "route": route, "status": status, "duration_ms": elapsed * 1000},
            )
            _request_id.reset(token)


# -- metrics -------------------------------------------------------------------------------------------------


class ServiceCollector(Collector):
    """The outbox, the writer's lag and the indexer's height, read at each scrape (``tracer.metrics``)."""

    def __init__(self, service: Callable[[], Service]) -> None:
        self._service = service

    def collect(self) -> Iterator[Metric]:
        service = self._service()
        info = InfoMetricFamily("tracer", "The deployment this service writes to")
        info.add_metric([], {"version": __version__, "registry": service.registry, "chain_id": str(service.chain_id)})
        yield info
        try:
            now = snapshot(engine=service.engine, client=service.client)
        except SQLAlchemyError:
            log.exception("metrics: the database does not answer")
            yield GaugeMetricFamily("tracer_database_up", "1 while the database answers", value=0)
            return
        yield GaugeMetricFamily("tracer_database_up", "1 while the database answers", value=1)
        yield GaugeMetricFamily("tracer_chain_up", "1 while the node answers", value=now.chain_head is not None)
        events = GaugeMetricFamily("tracer_events", "Events the service holds, by outbox status", labels=["status"])
        for status, number in now.events.items():
            events.add_metric([status], number)
        yield events
        yield GaugeMetricFamily("tracer_events_accepted", "Events accepted (committed) in all", value=now.accepted)
        tasks = GaugeMetricFamily("tracer_chain_tasks", "Role grants and fundings, by status", labels=["status"])
        tasks.add_metric(["pending"], now.tasks_pending)
        tasks.add_metric(["rejected"], now.tasks_rejected)
        yield tasks
        yield GaugeMetricFamily(
            "tracer_oldest_pending_event_age_seconds",
            "Age of the oldest event waiting to be anchored (0 when none waits)",
            value=now.oldest_pending_seconds,
        )
        yield GaugeMetricFamily("tracer_indexer_height", "The last block the indexer read", value=now.indexer_height)
        yield GaugeMetricFamily(
            "tracer_newest_anchor_block", "The block of the newest anchored event", value=now.newest_anchor_block
        )
        if now.chain_head is None:
            return  # lags against a head nobody knows are absent, not zero
        yield GaugeMetricFamily("tracer_chain_head_block", "The node's latest block", value=now.chain_head)
        yield GaugeMetricFamily(
            "tracer_writer_lag_blocks",
            "Blocks the chain grew since the last anchor while work waits in the outbox (0 when idle)",
            value=now.writer_lag_blocks,
        )
        yield GaugeMetricFamily(
            "tracer_indexer_lag_blocks", "Blocks the indexer has not read yet", value=now.indexer_lag_blocks
        )


def install(app: FastAPI) -> None:
    """Adds the request id and access-log middleware and ``GET /metrics`` (Prometheus text format) to ``app``.

    Behind several worker processes (``api.workers`` sets ``PROMETHEUS_MULTIPROC_DIR``) each worker's latencies
    go to files in that directory and a scrape of any worker sums them all; the service figures are read from
    the database and the node at the scrape either way.
    """
    registry = CollectorRegistry()
    registry.register(ServiceCollector(lambda: app.state.service))
    shared = os.environ.get(METRICS_DIR_ENV)
    if shared:
        MultiProcessCollector(registry, path=shared)  # type: ignore[no-untyped-call]
    latency = Histogram(
        "tracer_http_request_duration_seconds",
        "Time to answer a request, by method, route template and status",
        ["method", "route", "status"],
        buckets=LATENCY_BUCKETS,
        # In multiprocess mode the collector above reports it (from this process's file too): not twice.
        registry=None if shared else registry,
    )
    app.add_middleware(RequestObserver, latency=latency)

    def metrics(request: Request) -> Response:
        # The client library's own negotiation: OpenMetrics when the scraper asks for it, the text format otherwise.
        encode, media_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encode(registry), media_type=media_type)

    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
