"""Hostile capture documents: malformed by the standard, or built to hurt; each is refused with its 4xx, quickly,
and leaves every table of the store as it was.

The malformed kinds are of the sort GS1's reference implementations keep as invalid capture documents (our own
documents, written for this service); the hurtful ones aim at the parser, the memory, the columns and the
pages: a 10 MB body, 100,000 events, 1,000-deep and 100,000-deep nesting, a 10,000-character lot number,
control characters, SQL and HTML in every text field, broken UTF-8.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from api_support import GTIN, Api, ProblemCheck
from api_support import declaration as lot_declaration
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select
from sqlmodel import Session, SQLModel

from api.limits import Limits, RequestLimits
from api.main import create_app
from tracer.config import Settings

LOT_CLASS = f"https://id.gs1.org/01/{GTIN}/10/HOSTILE-1"
NS = "https://ns.tracer.dev/epcis/"
CONTEXT = ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld", {"tracer": NS}]
DEFAULTS = Settings()
_LIMIT_FIELDS = ("capture_limit", "max_body_bytes", "max_json_depth", "max_string_length")
MB = 1024 * 1024
#: A hang guard, not a speed figure (speed belongs in benchmarks): a refusal takes milliseconds here, but on a
#: loaded 2-core machine a request may wait seconds for its turn (a 1,000-deep document once took 2.5 s in the
#: full suite); only a document parsed or applied at length would take this long.
REFUSED_WITHIN_SECONDS = 15.0
# The capture fuzzing below shares the schema fuzzing's knobs (tests/api/test_fuzz_schema.py).
EXAMPLES = int(os.environ.get("TRACER_FUZZ_EXAMPLES", "20"))
SEED = int(os.environ.get("TRACER_FUZZ_SEED", "8"))


def declaration(**changes: Any) -> dict[str, Any]:
    """A valid advance declaration as a TransactionEvent; ``changes`` replace its fields (None removes one)."""
    event: dict[str, Any] = {
        "type": "TransactionEvent",
        "eventTime": "2026-11-27T08:00:00.000+08:00",
        "eventTimeZoneOffset": "+08:00",
        "action": "ADD",
        "bizStep": "other",
        "disposition": "in_transit",
        "bizTransactionList": [
            {"type": "https://ns.tracer.dev/btt/declaration", "bizTransaction": "urn:tracer:declaration:DEC-H-1"}
        ],
        "quantityList": [{"epcClass": LOT_CLASS, "quantity": 100}],
        "tracer:productName": "Infant formula",
        "tracer:hsCode": "190110",
        "tracer:originCountry": "NZ",
        "tracer:manufacturer": "Waikato Dairy Ltd",
    }
    event.update(changes)
    return {key: value for key, value in event.items() if value is not None}


def document(*events: dict[str, Any], **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "@context": CONTEXT,
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-11-27T08:00:00Z",
        "epcisBody": {"eventList": list(events)},
    }
    doc.update(changes)
    return {key: value for key, value in doc.items() if value is not None}


def _encoded(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def _nested(depth: int) -> bytes:
    """A declaration whose extension field nests ``depth`` arrays, written out without recursing."""
    head, tail = _encoded(document(declaration(**{"tracer:note": "HOLE"}))).split(b'"HOLE"')
    return head + b"[" * depth + b"]" * depth + tail


def _poisoned(text: str) -> dict[str, Any]:
    """A declaration with ``text`` in every text field, keys and structure left alone."""

    def poison(value: Any) -> Any:
        if isinstance(value, str):
            return text
        if isinstance(value, list):
            return [poison(item) for item in value]
        if isinstance(value, dict):
            return {key: poison(item) for key, item in value.items()}
        return value

    return document(poison(declaration()))


def _ten_megabytes_streamed() -> Iterator[bytes]:
    yield b'{"type": "EPCISDocument", "pad": "'
    for _ in range(10 * 16):
        yield b"x" * (64 * 1024)
    yield b'"}'


@dataclass(frozen=True)
class Hostile:
    name: str
    body: Callable[[], bytes | Iterator[bytes]]
    status: int
    pointer: str | None = None


_EVENT = "/epcisBody/eventList/0"
MALFORMED = [
    Hostile("missing @context", lambda: _encoded(document(declaration(), **{"@context": None})), 400, "/@context"),
    Hostile("not an EPCISDocument", lambda: _encoded(document(declaration(), type="EPCISQueryDocument")), 400, "/type"),
    Hostile("no eventList", lambda: _encoded(document(declaration(), epcisBody={})), 400, "/epcisBody/eventList"),
    Hostile("an event that is no object", lambda: _encoded(document("ObjectEvent")), 400, _EVENT),
    Hostile(
        "an unknown event type", lambda: _encoded(document(declaration(type="ShipmentEvent"))), 400, _EVENT + "/type"
    ),
    Hostile("a wrong action", lambda: _encoded(document(declaration(action="MODIFY"))), 400, _EVENT + "/action"),
    Hostile("no action", lambda: _encoded(document(declaration(action=None))), 400, _EVENT + "/action"),
    Hostile(
        "quantity as text",
        lambda: _encoded(document(declaration(quantityList=[{"epcClass": LOT_CLASS, "quantity": "100"}]))),
        400,
        _EVENT + "/quantityList/0/quantity",
    ),
    Hostile(
        "a non-standard bizStep",
        lambda: _encoded(document(declaration(bizStep="unloading_the_truck"))),
        400,
        _EVENT + "/bizStep",
    ),
    Hostile(
        "a non-standard disposition",
        lambda: _encoded(document(declaration(disposition="wet"))),
        400,
        _EVENT + "/disposition",
    ),
    Hostile(
        "an eventTime without zone",
        lambda: _encoded(document(declaration(eventTime="2026-11-27T08:00:00"))),
        400,
        _EVENT + "/eventTime",
    ),
    Hostile(
        "an impossible time zone offset",
        lambda: _encoded(document(declaration(eventTimeZoneOffset="+25:00"))),
        400,
        _EVENT + "/eventTimeZoneOffset",
    ),
    Hostile(
        "an EPC that is no URI",
        lambda: _encoded(document(declaration(epcList=["just some text"]))),
        400,
        _EVENT + "/epcList/0",
    ),
    Hostile(
        "a bad event after a good one (rollback: the good one is not kept either)",
        lambda: _encoded(document(declaration(), declaration(action="MODIFY"))),
        400,
        "/epcisBody/eventList/1/action",
    ),
]
HURTFUL = [
    Hostile("10 MB body", lambda: _encoded(document(declaration(**{"tracer:pad": "x" * (10 * MB)}))), 413),
    Hostile("10 MB body streamed without Content-Length", _ten_megabytes_streamed, 413),
    Hostile("100,000 events of 25 MB", lambda: _encoded(document(*[declaration()] * 100_000)), 413),
    Hostile(
        "100,000 small events",
        lambda: _encoded(document(*[{"type": "ObjectEvent"}] * 100_000)),
        413,
        "/epcisBody/eventList",
    ),
    Hostile("1,000-deep nesting", lambda: _nested(1_000), 400),
    Hostile("100,000-deep nesting", lambda: _nested(100_000), 400),
    Hostile(
        "a lot number of 10,000 characters",
        lambda: _encoded(
            document(
                declaration(quantityList=[{"epcClass": LOT_CLASS.replace("HOSTILE-1", "L" * 10_000), "quantity": 1}])
            )
        ),
        400,
        _EVENT + "/quantityList/0/epcClass",
    ),
    Hostile(
        "a lot number of 40 characters (past GS1's 20)",
        lambda: _encoded(
            document(declaration(quantityList=[{"epcClass": LOT_CLASS.replace("HOSTILE-1", "L" * 40), "quantity": 1}]))
        ),
        400,
        _EVENT + "/quantityList/0/epcClass",
    ),
    Hostile(
        "a NUL in a text field",
        lambda: _encoded(document(declaration(**{"tracer:productName": "Formula\x00"}))),
        400,
        _EVENT + "/tracer:productName",
    ),
    Hostile(
        "an escape sequence in a text field",
        lambda: _encoded(document(declaration(**{"tracer:manufacturer": "\x1b[2J"}))),
        400,
        _EVENT + "/tracer:manufacturer",
    ),
    Hostile("a control character in a key", lambda: _encoded(document(declaration(**{"tracer:\x07bell": 1}))), 400),
    Hostile("SQL in every text field", lambda: _encoded(_poisoned("x'); DROP TABLE lots; --")), 400),
    Hostile("HTML in every text field", lambda: _encoded(_poisoned('<script>alert("x")</script>')), 400),
    Hostile("broken UTF-8", lambda: b'{"type": "EPCISDocument", "@context": "\xff\xfe"}', 400),
    Hostile("a lone surrogate", lambda: b'{"type": "EPCISDocument", "@context": "\\ud800"}', 400),
    Hostile("NaN", lambda: b'{"type": "EPCISDocument", "@context": [], "epcisBody": {"eventList": [NaN]}}', 400),
    Hostile("a number past any float", lambda: b'{"type": "EPCISDocument", "n": 1e999}', 400),
    Hostile("not JSON at all", lambda: b"<EPCISDocument/>", 400),
]


@pytest.fixture
def enterprise(api: Api) -> str:
    """The key of an enterprise: all a capture of declarations needs (its role is granted on chain later)."""
    return api.actor("enterprise-1", "enterprise")


def row_counts(engine: Engine) -> dict[str, int]:
    """The number of rows of every table of the store."""
    with Session(engine) as session:
        return {
            table.name: session.execute(select(func.count()).select_from(table)).scalar_one()
            for table in SQLModel.metadata.sorted_tables
        }


def _post(api: Api, key: str, body: bytes | Iterator[bytes]) -> tuple[Any, float]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/ld+json"}
    started = time.perf_counter()
    response = api.http.post("/capture", content=body, headers=headers)
    return response, time.perf_counter() - started


def _assert_refused_quickly_storing_nothing(api: Api, key: str, hostile: Hostile, problem: ProblemCheck) -> None:
    body = hostile.body()
    before = row_counts(api.service.engine)
    response, seconds = _post(api, key, body)
    problem(response, hostile.status, pointer=hostile.pointer)
    assert seconds < REFUSED_WITHIN_SECONDS, f"{hostile.name}: refused in {seconds:.2f} s"
    assert row_counts(api.service.engine) == before


# One store per kind on SQLite; PostgreSQL (whose text columns refuse NUL outright) gets them all in one store.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("hostile", MALFORMED + HURTFUL, ids=lambda hostile: hostile.name)
def test_a_hostile_capture_is_refused_quickly_and_stores_nothing(
    hostile: Hostile, api: Api, enterprise: str, problem: ProblemCheck
) -> None:
    _assert_refused_quickly_storing_nothing(api, enterprise, hostile, problem)


@pytest.mark.parametrize("database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_every_hostile_capture_is_refused_on_postgresql_too(api: Api, enterprise: str, problem: ProblemCheck) -> None:
    for hostile in MALFORMED + HURTFUL:
        _assert_refused_quickly_storing_nothing(api, enterprise, hostile, problem)


@pytest.mark.parametrize("media_type", ["text/plain", "application/xml", "application/x-www-form-urlencoded"])
def test_a_capture_in_another_media_type_is_415_so_no_limit_is_sidestepped(
    media_type: str, api: Api, enterprise: str, problem: ProblemCheck
) -> None:
    before = row_counts(api.service.engine)
    poisoned = _encoded(document(declaration(**{"tracer:productName": "Formula\x00"})))
    for body in (poisoned, _nested(100_000)):
        headers = {"Authorization": f"Bearer {enterprise}", "Content-Type": media_type}
        problem(api.http.post("/capture", content=body, headers=headers), 415)
    assert row_counts(api.service.engine) == before


def test_the_valid_declaration_the_hostile_ones_are_made_of_is_captured(api: Api, enterprise: str) -> None:
    """The control: without its poison each hostile document would have been stored."""
    response, _ = _post(api, enterprise, _encoded(document(declaration())))
    assert response.status_code == 202, response.text


def test_sql_and_html_in_free_text_are_stored_as_text_and_harm_nothing(api: Api, enterprise: str) -> None:
    sql, html = "x'); DROP TABLE lots; --", '<img src=x onerror="alert(1)">'
    doc = document(declaration(**{"tracer:productName": sql, "tracer:manufacturer": html}))
    response, _ = _post(api, enterprise, _encoded(doc))
    assert response.status_code == 202, response.text
    assert api.get(response.headers["Location"], enterprise).json()["success"] is True
    events = api.get("/events", enterprise, params={"MATCH_epcClass": LOT_CLASS}).json()
    stored = events["epcisBody"]["queryResults"]["resultsBody"]["eventList"][0]
    assert (stored["tracer:productName"], stored["tracer:manufacturer"]) == (sql, html)
    assert row_counts(api.service.engine)["lot"] == 1  # the table the SQL names is there, with the new lot


def test_the_limits_are_advertised_on_capture_responses(api: Api, enterprise: str) -> None:
    response, _ = _post(api, enterprise, _encoded(document(declaration())))
    assert response.headers["GS1-EPCIS-Capture-Limit"] == str(DEFAULTS.capture_limit)
    assert response.headers["GS1-EPCIS-Capture-File-Size-Limit"] == str(DEFAULTS.max_body_bytes)


@pytest.mark.parametrize(
    "path", ["/lots", "/lots/0x" + "ab" * 32 + "/entry", "/parcels/095212340000000012/order", "/actors"]
)
def test_every_json_endpoint_refuses_deep_nesting_and_nul_with_400(
    path: str, api: Api, enterprise: str, problem: ProblemCheck
) -> None:
    headers = {"Authorization": f"Bearer {enterprise}", "Content-Type": "application/json"}
    before = row_counts(api.service.engine)
    # A declaration whose only fault is a NUL in its product name: PostgreSQL would refuse to store it (a 500).
    nul = json.dumps(lot_declaration(product_name="Infant formula\x00")).encode()
    for body in (b"[" * 100_000 + b"]" * 100_000, nul):
        problem(api.http.post(path, content=body, headers=headers), 400)
    assert row_counts(api.service.engine) == before


# -- the middleware itself: a large body is refused without being read ------------------------------------


async def _answer_to(limits: Limits, headers: list[tuple[bytes, bytes]], chunks: Iterator[bytes]) -> tuple[int, int]:
    """The status RequestLimits answers and how many body chunks it read, for an app that must never be called."""
    read = 0

    async def receive() -> dict[str, Any]:
        nonlocal read
        read += 1
        chunk = next(chunks, None)
        return {"type": "http.request", "body": chunk or b"", "more_body": chunk is not None}

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def app(_scope: Any, _receive: Any, _send: Any) -> None:
        raise AssertionError("the app was called with a body past the limit")

    scope = {"type": "http", "method": "POST", "path": "/capture", "headers": headers, "query_string": b""}
    await RequestLimits(app, limits)(scope, receive, send)  # type: ignore[arg-type]
    return statuses[0], read


def _endless() -> Iterator[bytes]:
    while True:
        yield b"x" * 65_536


def test_a_declared_length_past_the_limit_is_refused_before_a_byte_is_read() -> None:
    limits = Limits(max_body_bytes=MB, max_depth=32, max_string_length=2048)
    status, read = asyncio.run(_answer_to(limits, [(b"content-length", str(10 * MB).encode())], _endless()))
    assert (status, read) == (413, 0)


def test_a_streamed_body_is_counted_and_refused_once_past_the_limit() -> None:
    limits = Limits(max_body_bytes=MB, max_depth=32, max_string_length=2048)
    status, read = asyncio.run(_answer_to(limits, [(b"transfer-encoding", b"chunked")], _endless()))
    assert status == 413
    assert read == MB // 65_536 + 1  # the chunk that crossed the limit is the last one read


# -- anything at all in the standard's fields ---------------------------------------------------------------

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10,
)
_STANDARD_FIELDS = [
    "readPoint",
    "bizLocation",
    "sensorElementList",
    "ilmd",
    "sourceList",
    "destinationList",
    "bizTransactionList",
    "persistentDisposition",
    "certificationInfo",
    "errorDeclaration",
    "epcList",
    "quantityList",
    "childQuantityList",
    "parentID",
    "childEPCs",
    "eventID",
    "recordTime",
    "disposition",
    "bizStep",
    "action",
    "tracer:productName",
]
_EVENT_TYPES = ["ObjectEvent", "AggregationEvent", "TransactionEvent", "TransformationEvent", "AssociationEvent"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_any_json_in_the_standard_fields_is_answered_without_a_5xx(api: Api) -> None:
    """An event valid up to its type, time and zone, with anything in the other fields the standard names: a
    4xx or a 202, never a 5xx (this found lists given as numbers, tests/api/test_fuzz_findings.py)."""
    key = api.actor("warehouse-1", "warehouse")

    @given(st.sampled_from(_EVENT_TYPES), st.dictionaries(st.sampled_from(_STANDARD_FIELDS), _json_values, max_size=4))
    @seed(SEED)
    @settings(
        max_examples=5 * EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    def capture(kind: str, fields: dict[str, Any]) -> None:
        event = {
            "type": kind,
            "eventTime": "2026-11-27T08:00:00+08:00",
            "eventTimeZoneOffset": "+08:00",
            "action": "OBSERVE",
            "quantityList": [{"epcClass": LOT_CLASS, "quantity": 1}],
            **fields,
        }
        response, _ = _post(api, key, _encoded(document(event)))
        assert response.status_code < 500, response.text

    capture()


def test_a_request_framing_no_body_reaches_the_route_untouched() -> None:
    limits = Limits(max_body_bytes=MB, max_depth=32, max_string_length=2048)
    handed: list[Any] = []

    async def receive() -> dict[str, Any]:
        raise AssertionError("the middleware read a body the request does not have")

    async def app(_scope: Any, route_receive: Any, _send: Any) -> None:
        handed.append(route_receive)

    scope = {"type": "http", "method": "GET", "path": "/00/095212340000000012", "headers": [], "query_string": b""}
    asyncio.run(RequestLimits(app, limits)(scope, receive, receive))  # type: ignore[arg-type]
    assert handed == [receive]


# -- the limits are settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_limits_are_read_from_the_environment_and_enforced(
    api: Api, enterprise: str, problem: ProblemCheck, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in (
        ("CAPTURE_LIMIT", "2"),
        ("MAX_BODY_BYTES", "4096"),
        ("MAX_JSON_DEPTH", "8"),
        ("MAX_STRING_LENGTH", "64"),
    ):
        monkeypatch.setenv(f"TRACER_{name}", value)
    service = dataclasses.replace(
        api.service, settings=Settings(**api.service.settings.model_dump(exclude={*_LIMIT_FIELDS}))
    )
    with TestClient(create_app(service, run_writer=False)) as http:
        headers = {"Authorization": f"Bearer {enterprise}", "Content-Type": "application/json"}

        def post(body: bytes) -> Any:
            return http.post("/capture", content=body, headers=headers)

        problem(post(_encoded(document(*[declaration()] * 3))), 413, pointer="/epcisBody/eventList")
        problem(post(_encoded(document(declaration(**{"tracer:pad": "x" * 4096})))), 413)
        problem(post(_nested(8)), 400)
        problem(
            post(_encoded(document(declaration(**{"tracer:note": "n" * 65})))), 400, pointer=_EVENT + "/tracer:note"
        )
        accepted = post(_encoded(document(declaration())))
        assert accepted.status_code == 202, accepted.text
        assert accepted.headers["GS1-EPCIS-Capture-Limit"] == "2"
        assert accepted.headers["GS1-EPCIS-Capture-File-Size-Limit"] == "4096"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_real_server_answers_a_declared_10_mb_body_at_once_without_waiting_for_it(api: Api, enterprise: str) -> None:
    """Over uvicorn and a socket: the headers announce 10 MB, no byte of it is ever sent, the 413 comes anyway."""
    server = uvicorn.Server(uvicorn.Config(api.http.app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        request = (
            f"POST /capture HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {enterprise}\r\n"
            f"Content-Type: application/ld+json\r\nContent-Length: {10 * MB}\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", port), timeout=REFUSED_WITHIN_SECONDS) as connection:
            started = time.perf_counter()
            connection.sendall(request.encode())
            status_line = connection.recv(4096).split(b"\r\n", 1)[0]
            seconds = time.perf_counter() - started
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert status_line.split()[:2] == [b"HTTP/1.1", b"413"], status_line
    assert seconds < REFUSED_WITHIN_SECONDS
