"""Rate limits on writes: token buckets per API key and per client address, refused with 429 and Retry-After."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from api_support import Api, ProblemCheck
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from api.main import create_app
from api.ratelimit import TokenBuckets
from tracer.service import Service

# A malformed actor: the cheapest write there is (400 before anything is stored); what matters is it is not 429.
BAD_ACTOR = {"name": "", "role": "pirate"}


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@given(
    rate=st.floats(min_value=0.5, max_value=100),
    burst=st.integers(min_value=1, max_value=20),
    steps=st.lists(st.floats(min_value=0, max_value=2), min_size=1, max_size=200),
)
def test_a_bucket_never_allows_more_than_its_burst_plus_its_refill(rate: float, burst: int, steps: list[float]) -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=rate, burst=burst, clock=clock)
    start, allowed = clock.now, 0
    for step in steps:
        clock.now += step
        wait = buckets.wait("k")
        if wait == 0:
            buckets.take("k")
            allowed += 1
        else:
            clock.now += wait + 1e-9  # the promised wait is enough: one more request passes then
            assert buckets.wait("k") == 0
            buckets.take("k")
            allowed += 1
        assert allowed <= burst + rate * (clock.now - start) + 1e-6


def test_a_bucket_forgets_the_oldest_identities_past_its_bound() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=1, burst=1, clock=clock, max_tracked=2)
    for identity in ("a", "b", "c"):
        buckets.take(identity)
    assert buckets.wait("b") > 0 and buckets.wait("c") > 0
    assert buckets.wait("a") == 0  # forgotten: as if idle long enough to be full again


@pytest.fixture
def limited(api: Api) -> Iterator[Any]:
    """``limited(**settings)``: a client of the same service with other rate limits."""
    clients: list[TestClient] = []

    def make(**limits: float) -> TestClient:
        settings = api.service.settings.model_copy(update=limits)
        service: Service = dataclasses.replace(api.service, settings=settings)
        client = TestClient(create_app(service, run_writer=False))
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def _post(client: TestClient, key: str | None, path: str = "/actors") -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.post(path, json=BAD_ACTOR, headers=headers)


def test_a_key_past_its_burst_is_refused_with_429_and_retry_after(
    api: Api, limited: Any, problem: ProblemCheck
) -> None:
    client = limited(rate_limit_key_per_second=0.5, rate_limit_key_burst=3)
    assert [_post(client, api.admin_key).status_code for _ in range(3)] == [400, 400, 400]
    refused = _post(client, api.admin_key)
    body = problem(refused, 429)
    assert body["type"].endswith("/rate-limited") and "API key" in body["detail"]
    assert refused.headers["retry-after"] == "2"  # one token at 0.5/s
    assert refused.headers["x-content-type-options"] == "nosniff"
    assert _post(client, api.customs_admin_key).status_code == 400  # another key has its own bucket
    assert client.get("/healthz").status_code == 200  # reads are not limited
    headers = {"Authorization": f"Bearer {api.admin_key}"}
    assert client.get("/events", headers=headers).status_code == 200


def test_a_client_address_past_its_burst_is_refused_whatever_key_it_sends(
    api: Api, limited: Any, problem: ProblemCheck
) -> None:
    client = limited(rate_limit_address_per_second=0.01, rate_limit_address_burst=2)
    assert _post(client, api.admin_key).status_code == 400
    assert _post(client, None).status_code == 401
    body = problem(_post(client, api.customs_admin_key), 429)
    assert "client address" in body["detail"]
    assert int(_post(client, None, "/claim/00/095212340000000017").headers["retry-after"]) == 100


def test_a_refused_write_spends_nothing(api: Api, limited: Any) -> None:
    client = limited(
        rate_limit_key_per_second=0.001,
        rate_limit_key_burst=1,
        rate_limit_address_per_second=0.001,
        rate_limit_address_burst=2,
    )
    assert _post(client, api.admin_key).status_code == 400
    for _ in range(5):
        assert _post(client, api.admin_key).status_code == 429  # refused by its key: the address keeps its token
    assert _post(client, api.customs_admin_key).status_code == 400


def test_zero_turns_a_limit_off(api: Api, limited: Any) -> None:
    client = limited(rate_limit_key_per_second=0, rate_limit_key_burst=1)
    assert {_post(client, api.admin_key).status_code for _ in range(20)} == {400}
