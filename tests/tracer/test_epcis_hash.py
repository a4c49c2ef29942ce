"""The canonical event hash: GS1's vectors, offline, per event, and the digest bytes the chain holds."""

from __future__ import annotations

import copy
import json
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from tracer.config import PROJECT_ROOT
from tracer.epcis import document_hashes, event_hash, event_hash_bytes, event_hash_from_bytes, prehash
from tracer.epcis.vocabulary import DEFAULT_CONTEXT, EPCIS_CONTEXT_URL
from tracer.exceptions import InvalidInput

FIXTURES = PROJECT_ROOT.parent / "shared" / "fixtures" / "epcis-hash" / "examples"
VECTORS = sorted(p for p in FIXTURES.glob("*.jsonld") if p.with_suffix(".hashes").exists())
needs_fixtures = pytest.mark.skipif(
    not VECTORS, reason=f"GS1 hash vectors not found: {FIXTURES} is absent (../shared/fixtures)"
)

OBJECT_EVENT: dict[str, Any] = {
    "type": "ObjectEvent",
    "eventTime": "2024-05-01T08:00:00.000Z",
    "eventTimeZoneOffset": "+00:00",
    "epcList": ["https://id.gs1.org/00/106141412345678908"],
    "action": "OBSERVE",
    "bizStep": "receiving",
    "disposition": "in_progress",
    "tracer:note": "x",
}


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every way out of the process raises, and is recorded."""
    attempts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise OSError("network access is disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def expected(path: Path) -> list[str]:
    return path.with_suffix(".hashes").read_text().split()


@needs_fixtures
@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_document_hashes_match_gs1_vectors_offline(path: Path, no_network: list[Any]) -> None:
    document = json.loads(path.read_text())
    assert document_hashes(document) == expected(path)
    assert no_network == []


@needs_fixtures
@pytest.mark.parametrize("path", [p for p in VECTORS if "ignoreFields" not in p.read_text()], ids=lambda p: p.stem)
def test_each_event_hashes_alone_as_in_its_document(path: Path, no_network: list[Any]) -> None:
    document = json.loads(path.read_text())
    body = document["epcisBody"]
    events = body.get("eventList") or body.get("queryResults", {}).get("resultsBody", {}).get("eventList")
    hashes = [event_hash(event, context=document["@context"]) for event in events]
    assert hashes == expected(path)


@needs_fixtures
def test_prehash_matches_the_vector_prehash() -> None:
    path = FIXTURES / "epcisDocWithSingleEvent.jsonld"
    document = json.loads(path.read_text())
    event = document["epcisBody"]["eventList"][0]
    assert prehash(event, context=document["@context"]) == path.with_suffix(".prehashes").read_text().strip()


@needs_fixtures
def test_ignore_fields_are_left_out_and_only_them() -> None:
    document = json.loads((FIXTURES / "epcisDocHavingEventWithIgnoreFields.jsonld").read_text())
    first, second = document_hashes(document)
    assert first == second
    del document["repository-x:ignoreFields"]
    first, second = document_hashes(document)
    assert first != second


def test_hash_needs_no_network(no_network: list[Any]) -> None:
    assert event_hash(OBJECT_EVENT).startswith("ni:///sha-256;")
    assert no_network == []


def test_unknown_remote_context_is_refused_without_a_download(no_network: list[Any]) -> None:
    with pytest.raises(InvalidInput, match="not available offline") as info:
        event_hash(OBJECT_EVENT, context=[EPCIS_CONTEXT_URL, "https://example.com/ctx.jsonld"])
    assert info.value.pointer == "/@context"
    assert no_network == []


def test_unversioned_epcis_context_url_hashes_like_the_pinned_one(no_network: list[Any]) -> None:
    unversioned = "https://ref.gs1.org/standards/epcis/epcis-context.jsonld"
    prefixes = {"tracer": "https://ns.tracer.dev/epcis/"}
    assert event_hash(OBJECT_EVENT, context=[unversioned, prefixes]) == event_hash(OBJECT_EVENT)


def test_default_context_declares_our_prefix() -> None:
    assert event_hash(OBJECT_EVENT) == event_hash(OBJECT_EVENT, context=list(DEFAULT_CONTEXT))
    # Without the prefix the field is a different (unexpanded) name, so the hash differs: documents we
    # emit must carry DEFAULT_CONTEXT.
    assert event_hash(OBJECT_EVENT, context=[EPCIS_CONTEXT_URL]) != event_hash(OBJECT_EVENT)


def test_event_level_context_is_honoured() -> None:
    event = dict(OBJECT_EVENT, **{"@context": [{"tracer": "https://ns.tracer.dev/epcis/"}]})
    assert event_hash(event, context=[EPCIS_CONTEXT_URL]) == event_hash(OBJECT_EVENT)


def test_event_id_record_time_and_key_order_do_not_change_the_hash() -> None:
    base = event_hash(OBJECT_EVENT)
    with_ids = dict(OBJECT_EVENT, eventID="ni:///sha-256;00?ver=CBV2.0", recordTime="2025-01-01T00:00:00Z")
    assert event_hash(with_ids) == base
    assert event_hash(dict(reversed(list(OBJECT_EVENT.items())))) == base


def test_bare_cbv_names_hash_like_their_uris() -> None:
    uris = dict(
        OBJECT_EVENT,
        bizStep="https://ref.gs1.org/cbv/BizStep-receiving",
        disposition="https://ref.gs1.org/cbv/Disp-in_progress",
    )
    assert event_hash(uris) == event_hash(OBJECT_EVENT)


def test_any_change_of_content_changes_the_hash() -> None:
    changed = dict(OBJECT_EVENT, bizStep="shipping")
    assert event_hash(changed) != event_hash(OBJECT_EVENT)


def test_event_hash_does_not_mutate_its_input() -> None:
    event = copy.deepcopy(OBJECT_EVENT)
    event_hash(event)
    assert event == OBJECT_EVENT


@pytest.mark.parametrize(
    ("event", "pointer"),
    [("not an event", None), ({"type": "Nonsense"}, "/type"), ({"eventTime": "x"}, "/type")],
)
def test_non_events_are_invalid_input(event: Any, pointer: str | None) -> None:
    with pytest.raises(InvalidInput) as info:
        event_hash(event)
    assert info.value.pointer == pointer


def test_document_errors_point_at_the_event() -> None:
    document = {
        "@context": list(DEFAULT_CONTEXT),
        "type": "EPCISDocument",
        "epcisBody": {"eventList": [OBJECT_EVENT, {"type": "Bogus"}]},
    }
    with pytest.raises(InvalidInput) as info:
        document_hashes(document)
    assert info.value.pointer == "/epcisBody/eventList/1/type"
    with pytest.raises(InvalidInput, match="EPCISDocument or EPCISQueryDocument"):
        document_hashes({"type": "Other", "epcisBody": {}})


def test_single_event_body_and_query_document_are_read() -> None:
    single = {"@context": list(DEFAULT_CONTEXT), "type": "EPCISDocument", "epcisBody": {"event": OBJECT_EVENT}}
    query = {
        "@context": list(DEFAULT_CONTEXT),
        "type": "EPCISQueryDocument",
        "epcisBody": {"queryResults": {"resultsBody": {"eventList": [OBJECT_EVENT]}}},
    }
    assert document_hashes(single) == document_hashes(query) == [event_hash(OBJECT_EVENT)]


def test_digest_bytes_roundtrip() -> None:
    ni = event_hash(OBJECT_EVENT)
    digest = event_hash_bytes(ni)
    assert len(digest) == 32
    assert event_hash_from_bytes(digest) == ni


@pytest.mark.parametrize(
    "bad",
    [
        "ni:///sha-256;" + "A" * 64 + "?ver=CBV2.0",
        "ni:///sha-256;" + "a" * 63 + "?ver=CBV2.0",
        "ni:///sha3-256;" + "a" * 64 + "?ver=CBV2.0",
        "a" * 64,
    ],
)
def test_digest_bytes_reject_other_forms(bad: str) -> None:
    with pytest.raises(InvalidInput):
        event_hash_bytes(bad)
    with pytest.raises(InvalidInput):
        event_hash_from_bytes(b"\x00" * 31)


def test_concurrent_hashing_gives_the_same_results() -> None:
    events = [dict(OBJECT_EVENT, **{"tracer:n": i}) for i in range(40)]
    serial = [event_hash(e) for e in events]
    results: dict[int, str] = {}

    def work(offset: int) -> None:
        for i in range(offset, len(events), 4):
            results[i] = event_hash(events[i])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(len(events))] == serial
