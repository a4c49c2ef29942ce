"""Rate limits on writes (POST): token buckets per API key and per client address, answered with 429.

The buckets live in the process: behind several worker processes each enforces its own limit, so the
effective limit is the configured one times the number of processes. The client address is the one the
ASGI server reports; behind a reverse proxy, run uvicorn with ``--proxy-headers`` and
``--forwarded-allow-ips`` so that it is the client's, not the proxy's.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from api.problems import problem
from tracer.config import Settings

_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Idle buckets are forgotten past this many identities: a bucket idle long enough is full again anyway,
# and an attacker sending random keys must not grow the process without bound.
MAX_TRACKED = 100_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """One token bucket per identity: ``burst`` tokens at most, refilled at ``rate`` per second.

    ``rate`` 0 turns the limit off. Pure but for the clock, which tests pass in.
    """

    def __init__(
        self, *, rate: float, burst: int, clock: Callable[[], float] = time.monotonic, max_tracked: int = MAX_TRACKED
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_tracked = max_tracked
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        """False when the limit is off (``rate`` 0)."""
        return self.rate > 0

    def wait(self, identity: str) -> float:
        """Seconds until ``identity`` may make one more request (0 when it may now); takes nothing."""
        bucket = self._refilled(identity)
        return 0.0 if bucket.tokens >= 1 else (1 - bucket.tokens) / self.rate

    def take(self, identity: str) -> None:
        """Spends one token of ``identity`` (call after ``wait`` said 0)."""
        self._refilled(identity).tokens -= 1

    def _refilled(self, identity: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(identity)
        if bucket is None:
            bucket = self._buckets[identity] = _Bucket(tokens=float(self.burst), updated=now)
            while len(self._buckets) > self._max_tracked:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(identity)
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        return bucket


class WriteRateLimit:
    """ASGI middleware: a write passes only if both its API key's and its address's buckets hold a token."""

    def __init__(self, app: ASGIApp, *, per_key: TokenBuckets, per_address: TokenBuckets) -> None:
        self.app = app
        self.limits = (("API key", per_key), ("client address", per_address))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WRITE_METHODS:
            await self.app(scope, receive, send)
            return
        checked: list[tuple[str, TokenBuckets, str]] = []
        for (what, buckets), identity in zip(
            self.limits, (_api_key_identity(scope), _client_address(scope)), strict=True
        ):
            if identity is not None and buckets.enabled:
                checked.append((what, buckets, identity))
        waits = [(buckets.wait(identity), what, buckets) for what, buckets, identity in checked]
        longest = max(waits, key=lambda wait: wait[0], default=None)
        if longest is not None and longest[0] > 0:
            seconds, what, buckets = longest
            retry_after = max(1, math.ceil(seconds))
            response = problem(
                429,
                "Too many requests",
                f"more than {buckets.rate:g} write requests per second (bursts of {buckets.burst}) from this {what}; "
                f"retry after {retry_after} s",
                kind="rate-limited",
                headers={"Retry-After": str(retry_after)},
            )
            await response(scope, receive, send)
            return
        for _, buckets, identity in checked:
            buckets.take(identity)
        await self.app(scope, receive, send)


def _api_key_identity(scope: Scope) -> str | None:
    """A digest of the request's bearer key (keys themselves are not kept in memory longer than the request)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, credentials = value.partition(b" ")
            if scheme.lower() == b"bearer" and credentials.strip():
                return hashlib.sha256(credentials.strip()).hexdigest()
    return None


def _client_address(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def install(app: FastAPI, settings: Settings) -> None:
    """Limits the writes of ``app`` as ``settings`` say (``TRACER_RATE_LIMIT_*``)."""
    app.add_middleware(
        WriteRateLimit,
        per_key=TokenBuckets(rate=settings.rate_limit_key_per_second, burst=settings.rate_limit_key_burst),
        per_address=TokenBuckets(rate=settings.rate_limit_address_per_second, burst=settings.rate_limit_address_burst),
    )
