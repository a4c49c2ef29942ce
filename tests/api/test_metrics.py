"""``/metrics`` (Prometheus text format) and the request id: scraped around a small journey, the figures move."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from api_support import Api, Journey, sscc
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session, select

from api.main import create_app
from api.observability import REQUEST_ID_HEADER, accepted_request_id, log_handler
from tracer.chain.client import ChainClient
from tracer.service import Service
from tracer.store.models import Actor

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _scrape(api: Api) -> Samples:
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _requests(samples: Samples, method: str, route: str, status: int) -> float:
    return _value(samples, "tracer_http_request_duration_seconds_count", method=method, route=route, status=str(status))


def _mine(api: Api, blocks: int) -> None:
    w3 = api.service.client.w3
    for _ in range(blocks):
        w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": w3.eth.accounts[1], "value": 1})


def test_metrics_follow_a_journey_through_the_outbox_the_writer_and_the_indexer(api: Api, journey: Journey) -> None:
    before = _scrape(api)
    assert _value(before, "tracer_events", status="pending") == 0
    assert _value(before, "tracer_database_up") == _value(before, "tracer_chain_up") == 1
    assert _value(before, "tracer_info", registry=api.service.registry, chain_id=str(api.service.chain_id),
                  version="0.1.0") == 1  # fmt: skip

    journey.to_stored()  # four events, accepted and pending
    refused = api.post("/lots", journey.parties.enterprise, {"gtin": "123"})
    assert refused.status_code == 400
    pending = _scrape(api)
    assert _value(pending, "tracer_events", status="pending") == 4
    assert _value(pending, "tracer_events_accepted") == 4
    assert _value(pending, "tracer_oldest_pending_event_age_seconds") > 0
    assert _requests(pending, "POST", "/lots", 202) == 1
    assert _requests(pending, "POST", "/lots", 400) == 1
    assert _requests(pending, "POST", "/lots/{lot_id}/entry", 202) == 1
    assert _requests(pending, "GET", "/metrics", 200) == _requests(before, "GET", "/metrics", 200) + 1
    assert _value(pending, "tracer_http_request_duration_seconds_bucket", method="POST", route="/lots",
                  status="202", le="+Inf") == 1  # fmt: skip

    # The chain grows while the writer is held back: the lag counts the blocks since the last anchor.
    _mine(api, 3)
    lagging = _scrape(api)
    assert _value(lagging, "tracer_writer_lag_blocks") == _value(lagging, "tracer_chain_head_block") - _value(
        lagging, "tracer_newest_anchor_block"
    )
    assert _value(lagging, "tracer_writer_lag_blocks") >= 3

    api.anchor()
    api.service.indexer.run_once()
    anchored = _scrape(api)
    assert _value(anchored, "tracer_events", status="pending") == 0
    assert _value(anchored, "tracer_events", status="anchored") == 4
    assert _value(anchored, "tracer_writer_lag_blocks") == 0
    assert _value(anchored, "tracer_oldest_pending_event_age_seconds") == 0
    assert _value(anchored, "tracer_indexer_height") == _value(anchored, "tracer_chain_head_block")
    assert _value(anchored, "tracer_indexer_height") > _value(pending, "tracer_indexer_height")
    assert _value(anchored, "tracer_indexer_lag_blocks") == 0

    # An event the registry refuses (the registry paused by its admin) is counted rejected.
    service = api.service
    with Session(service.engine) as session:
        admin = session.exec(select(Actor).where(Actor.role == "admin")).one()
        assert admin.encrypted_key is not None
        sender = service.keystore.open(admin.encrypted_key)
    service.client.wait_receipt(service.client.send_call(sender=sender, function="pause", args=[]))
    split = journey.split((sscc(1), 2))
    assert split.status_code == 202, split.text
    api.anchor()
    rejected = _scrape(api)
    assert _value(rejected, "tracer_events", status="rejected") == 1
    assert _value(rejected, "tracer_events_accepted") == 5


def test_a_node_that_does_not_answer_shows_as_down_without_lags(service: Service) -> None:
    service.client = ChainClient.connect("http://127.0.0.1:9", address=service.registry, timeout=1)
    with TestClient(create_app(service, run_writer=False)) as http:
        response = http.get("/metrics")
    assert response.status_code == 200
    names = {sample.name: sample.value for f in text_string_to_metric_families(response.text) for sample in f.samples}
    assert names["tracer_chain_up"] == 0 and names["tracer_database_up"] == 1
    assert "tracer_writer_lag_blocks" not in names and "tracer_chain_head_block" not in names


def test_unknown_paths_share_one_route_label(api: Api) -> None:
    for n in range(3):
        assert api.get(f"/no-such-{n}").status_code == 404
    samples = _scrape(api)
    assert _requests(samples, "GET", "unmatched", 404) == 3
    assert not any("no-such" in str(labels) for _, labels in samples)


# -- the request id ------------------------------------------------------------------------------------------


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The JSON lines the service's log handler writes while the test runs, parsed (the test client's own left out)."""
    stream = io.StringIO()
    handler, root = log_handler(stream), logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)

    def read() -> list[dict[str, Any]]:
        lines = stream.getvalue().splitlines()
        stream.seek(0)
        stream.truncate()
        parsed = [json.loads(line) for line in lines]
        return [line for line in parsed if not line["logger"].startswith("httpx")]

    yield read
    root.removeHandler(handler)
    root.setLevel(level)


def test_each_response_carries_a_fresh_request_id_and_a_sane_incoming_one_is_kept(api: Api) -> None:
    first, second = api.get("/healthz"), api.get("/healthz")
    assert first.headers[REQUEST_ID_HEADER] != second.headers[REQUEST_ID_HEADER]
    assert len(first.headers[REQUEST_ID_HEADER]) == 32
    kept = api.get("/healthz", headers={REQUEST_ID_HEADER: "lb-7f3a:0042"})
    assert kept.headers[REQUEST_ID_HEADER] == "lb-7f3a:0042"


@pytest.mark.parametrize("incoming", ['a"b', "x" * 129, "", "-leading", "id with spaces", "\u674e"])
def test_an_incoming_request_id_that_could_break_a_log_line_is_replaced(incoming: str) -> None:
    replaced = accepted_request_id(incoming)
    assert replaced != incoming and len(replaced) == 32 and replaced.isalnum()


def test_every_log_line_of_a_request_carries_its_id(api: Api, log_lines: Callable[[], list[dict[str, Any]]]) -> None:
    app = api.http.app
    logger = logging.getLogger("tracer.test")

    def sync_handler() -> dict[str, str]:  # runs in the thread pool
        logger.info("in a worker thread")
        return {}

    async def async_handler() -> dict[str, str]:  # runs on the event loop
        logger.warning("on the event loop", extra={"lot": "NZ-1"})
        return {}

    def failing_handler() -> None:
        raise RuntimeError("boom")

    app.add_api_route("/_test/sync", sync_handler)  # type: ignore[attr-defined]
    app.add_api_route("/_test/async", async_handler)  # type: ignore[attr-defined]
    app.add_api_route("/_test/fail", failing_handler)  # type: ignore[attr-defined]
    log_lines()
    for path, level in (("/_test/sync", "INFO"), ("/_test/async", "WARNING")):
        request_id = api.get(path).headers[REQUEST_ID_HEADER]
        handler_line, access_line = log_lines()
        assert handler_line["logger"] == "tracer.test" and handler_line["level"] == level
        assert handler_line["request_id"] == access_line["request_id"] == request_id
        assert access_line["logger"] == "tracer.access" and access_line["route"] == path
        assert access_line["status"] == 200 and access_line["duration_ms"] > 0
        assert access_line["time"].endswith("Z")
    assert handler_line["lot"] == "NZ-1"  # extra= fields become fields of the line

    with pytest.raises(RuntimeError):
        api.get("/_test/fail", headers={REQUEST_ID_HEADER: "report-me"})
    failure, access_line = log_lines()
    assert failure["request_id"] == access_line["request_id"] == "report-me"
    assert "RuntimeError: boom" in failure["exception"] and access_line["status"] == 500
    quiet = TestClient(app, raise_server_exceptions=False)
    answer = quiet.get("/_test/fail", headers={REQUEST_ID_HEADER: "report-me-too"})
    assert answer.status_code == 500 and answer.headers[REQUEST_ID_HEADER] == "report-me-too"
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert "report-me-too" in answer.json()["detail"]
    logging.getLogger("tracer.test").info("after the request")
    assert "request_id" not in log_lines()[-1]
