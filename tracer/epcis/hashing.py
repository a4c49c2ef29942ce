"""The GS1 canonical event hash (``ni:///sha-256;<hex>?ver=CBV2.0``), offline.

For now this wraps GS1's reference implementation, the PyPI package ``epcis-event-hash-generator``
1.9.3 (its JSON path: ``json_to_py`` then ``hash_generator``); an in-house hash replaces it later and the
package then becomes the test oracle. The wrapper adds what the release lacks or gets wrong for a
service:

* **No network, ever.** The package expands each document with PyLD to turn bare CBV values
  (``"receiving"``) into web URIs, and its document loader falls back to downloading any context it
  does not ship. While it runs we install our own loader, which serves the two EPCIS 2.0 contexts the
  package bundles (and maps the unversioned ``.../epcis/epcis-context.jsonld`` URL to the 2.0.0 file)
  and refuses every other remote context with :class:`~tracer.exceptions.InvalidInput`. PyLD's shared
  resolved-context cache is swapped for a private one too, so nothing another part of the process
  fetched can leak into a hash. Both are restored afterwards.
* **One event, one hash.** Each event is hashed inside a document of its own (the enclosing
  document's ``@context`` plus any event-level ``@context``), so an event hashes the same alone, in a
  capture document or in a query result. (The package's bare-string heuristic looks at every value of
  the document; per event, neighbours cannot change a hash. All fixture vectors agree.)
* **Query documents** (``EPCISQueryDocument``: ``epcisBody.queryResults.resultsBody.eventList``) and a
  single ``epcisBody.event`` are read as well as ``epcisBody.eventList``.
* **ignoreFields**: a document-level field whose name is ``ignoreFields`` under any prefix (e.g.
  ``repository-x:ignoreFields``; at the document's top level or in ``queryResults``) lists extension
  fields, as CURIEs or IRIs, that the hash leaves out; they are removed (at any depth) before hashing.
* **Thread safety.** The package keeps module-level state (namespace map, join string), so calls are
  serialised with a lock and the namespace map is reset for every event.
* **Failures are loud.** The package logs and skips an event it cannot parse; here that is an
  InvalidInput, never a silently missing hash.

Speed: about 2 ms per event (PyLD expansion dominates), measured in the tests.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.resources
import json
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from tracer.epcis.vocabulary import DEFAULT_CONTEXT, EVENT_TYPES
from tracer.exceptions import InvalidInput

__all__ = [
    "BUNDLED_CONTEXTS",
    "document_hashes",
    "event_hash",
    "event_hash_bytes",
    "event_hash_from_bytes",
    "prehash",
]

_HASH_RE = re.compile(r"ni:///sha-256;([0-9a-f]{64})\?ver=CBV2\.0")

#: Remote JSON-LD contexts served offline, from the files the reference package ships.
BUNDLED_CONTEXTS: dict[str, str] = {
    "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld": (
        "e532647e8eb371379b8b0e8602d8981c8566bc60f7351f22c76a5bc865962008.jsonld"
    ),
    # The unversioned URL points at the current 2.0.x context; we pin it to the 2.0.0 file so a hash
    # never depends on what a web server answers today.
    "https://ref.gs1.org/standards/epcis/epcis-context.jsonld": (
        "e532647e8eb371379b8b0e8602d8981c8566bc60f7351f22c76a5bc865962008.jsonld"
    ),
    "https://gs1.github.io/EPCIS/epcis-context.jsonld": (
        "14b10c9d3e92d35f577bfc610fe5ec15aa2941124987919389d7cd9998516861.jsonld"
    ),
}

_lock = threading.RLock()
_context_documents: dict[str, Any] = {}
# PyLD's cache of resolved contexts, private to the hash (holds only what _offline_loader served).
_private_cache: Any = None


class _RefusedContext(Exception):
    def __init__(self, url: str) -> None:
        self.url = url
        super().__init__(url)


def _offline_loader(url: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    name = BUNDLED_CONTEXTS.get(url)
    if name is None:
        raise _RefusedContext(url)
    document = _context_documents.get(url)
    if document is None:
        resource = importlib.resources.files("epcis_event_hash_generator").joinpath(name)
        document = json.loads(resource.read_text(encoding="utf-8"))
        _context_documents[url] = document
    return {
        "contentType": "application/ld+json",
        "contextUrl": None,
        "documentUrl": url,
        "document": copy.deepcopy(document),
        # PyLD keeps "static" remote contexts in its resolved-context cache: the bundled files never
        # change, so each is loaded and processed once per process instead of once per event.
        "tag": "static",
    }


def _refused_url(exc: BaseException) -> str | None:
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, _RefusedContext):
            return current.url
        if isinstance(current, BaseException):
            stack.extend([current.__cause__, current.__context__, getattr(current, "cause", None)])
    return None


@contextmanager
def _reference() -> Iterator[tuple[Any, Any]]:
    """The reference modules, with our offline loader and a private context cache installed."""
    from cachetools import LRUCache
    from epcis_event_hash_generator import hash_generator, json_to_py
    from pyld import jsonld

    with _lock:
        saved_loader = jsonld.get_document_loader()
        saved_cache = getattr(jsonld, "_resolved_context_cache", None)
        jsonld.set_document_loader(_offline_loader)
        if saved_cache is not None:
            global _private_cache
            if _private_cache is None:
                _private_cache = LRUCache(maxsize=100)
            jsonld._resolved_context_cache = _private_cache
        try:
            yield json_to_py, hash_generator
        finally:
            jsonld.set_document_loader(saved_loader)
            if saved_cache is not None:
                jsonld._resolved_context_cache = saved_cache


def _context_list(context: Any) -> list[Any]:
    if context is None:
        return list(DEFAULT_CONTEXT)
    if isinstance(context, (str, dict)):
        return [context]
    if isinstance(context, (list, tuple)):
        return list(context)
    raise InvalidInput("@context must be a string, an object or a list", pointer="/@context")


def _check_event(event: Any, pointer: str) -> None:
    if not isinstance(event, dict):
        raise InvalidInput("an EPCIS event must be a JSON object", pointer=pointer or None)
    kind = event.get("type")
    if kind not in EVENT_TYPES:
        raise InvalidInput(
            f"type must be one of {', '.join(sorted(EVENT_TYPES))}, got {kind!r}", pointer=pointer + "/type"
        )


def _prehash(event: Mapping[str, Any], context: Any, pointer: str) -> str:
    _check_event(event, pointer)
    ctx = _context_list(context)
    body = dict(event)
    if "@context" in body:
        ctx += _context_list(body.pop("@context"))
    document = {"@context": ctx, "type": "EPCISDocument", "epcisBody": {"eventList": [body]}}
    with _reference() as (json_to_py, hash_generator):
        # The package gathers prefixes into a module-level dict; start clean for every event.
        json_to_py._namespaces.clear()
        try:
            events = json_to_py.event_list_from_epcis_document_json(copy.deepcopy(document))
            prehashes = hash_generator.derive_prehashes_from_events(events)
        except Exception as exc:
            url = _refused_url(exc)
            if url is not None:
                raise InvalidInput(
                    f"JSON-LD context {url} is not available offline; use the EPCIS 2.0 context "
                    "and declare extension prefixes inline",
                    pointer="/@context",
                ) from exc
            raise InvalidInput(f"the event cannot be canonicalised: {exc}", pointer=pointer) from exc
        finally:
            json_to_py._namespaces.clear()
    if len(prehashes) != 1:
        raise InvalidInput("the event cannot be canonicalised", pointer=pointer)
    return str(prehashes[0])


def prehash(event: Mapping[str, Any], *, context: Any = None) -> str:
    """The canonical pre-hash string of one event (what :func:`event_hash` hashes); for debugging.

    Raises InvalidInput as :func:`event_hash` does.
    """
    return _prehash(event, context, "")


def event_hash(event: Mapping[str, Any], *, context: Any = None) -> str:
    """The GS1 canonical hash ``ni:///sha-256;<hex>?ver=CBV2.0`` of one EPCIS 2.0 JSON-LD event.

    ``context`` is the enclosing document's ``@context`` (for its namespace prefixes); ``None`` means
    ours, :data:`~tracer.epcis.vocabulary.DEFAULT_CONTEXT` (EPCIS 2.0 plus the ``tracer`` prefix).
    ``eventID``, ``recordTime`` and ``errorDeclaration`` do not enter the hash. Needs no network.
    Raises InvalidInput for something that is not an event of the five types, or for a remote context
    that is not available offline.
    """
    return _to_ni(_prehash(event, context, ""))


def _to_ni(prehash_string: str) -> str:
    return "ni:///sha-256;" + hashlib.sha256(prehash_string.encode("utf-8")).hexdigest() + "?ver=CBV2.0"


def event_hash_bytes(hash_str: str) -> bytes:
    """The 32 SHA-256 digest bytes of a ``ni:///sha-256;<hex>?ver=CBV2.0`` hash (what the chain holds).

    Raises InvalidInput for any other form (upper-case hex included: the hash is always lower case).
    """
    match = _HASH_RE.fullmatch(hash_str) if isinstance(hash_str, str) else None
    if match is None:
        raise InvalidInput(f"{hash_str!r} is not a ni:///sha-256;<64 hex>?ver=CBV2.0 event hash")
    return bytes.fromhex(match.group(1))


def event_hash_from_bytes(digest: bytes) -> str:
    """The ``ni:///sha-256;<hex>?ver=CBV2.0`` form of 32 digest bytes. Raises InvalidInput otherwise."""
    if not isinstance(digest, (bytes, bytearray)) or len(digest) != 32:
        raise InvalidInput("an event hash digest is exactly 32 bytes")
    return "ni:///sha-256;" + bytes(digest).hex() + "?ver=CBV2.0"


# --- documents ---------------------------------------------------------------------------------------


def _events_of(document: Mapping[str, Any]) -> tuple[list[Any], str, list[Mapping[str, Any]]]:
    """The events, the JSON pointer of their list, and the objects that may carry ignoreFields."""
    if not isinstance(document, dict):
        raise InvalidInput("an EPCIS document must be a JSON object")
    kind = document.get("type")
    body = document.get("epcisBody")
    if not isinstance(body, dict):
        raise InvalidInput("epcisBody must be an object", pointer="/epcisBody")
    holders: list[Mapping[str, Any]] = [document]
    if kind == "EPCISDocument":
        if "eventList" in body:
            events, pointer = body["eventList"], "/epcisBody/eventList"
        elif "event" in body:
            return [body["event"]], "/epcisBody/event", holders
        else:
            raise InvalidInput("epcisBody has no eventList", pointer="/epcisBody")
    elif kind == "EPCISQueryDocument":
        results = body.get("queryResults")
        if not isinstance(results, dict):
            raise InvalidInput("queryResults must be an object", pointer="/epcisBody/queryResults")
        holders.append(results)
        results_body = results.get("resultsBody")
        if not isinstance(results_body, dict):
            raise InvalidInput("resultsBody must be an object", pointer="/epcisBody/queryResults/resultsBody")
        events = results_body.get("eventList", [])
        pointer = "/epcisBody/queryResults/resultsBody/eventList"
    else:
        raise InvalidInput(f"type must be EPCISDocument or EPCISQueryDocument, got {kind!r}", pointer="/type")
    if not isinstance(events, list):
        raise InvalidInput("eventList must be a list", pointer=pointer)
    return events, pointer, holders


def _prefixes(context: Sequence[Any]) -> dict[str, str]:
    prefixes: dict[str, str] = {}
    for item in context:
        if isinstance(item, dict):
            prefixes.update({k: v for k, v in item.items() if isinstance(v, str)})
    return prefixes


def _expand_name(name: str, prefixes: Mapping[str, str]) -> str:
    prefix, sep, rest = name.partition(":")
    if sep and prefix in prefixes and not rest.startswith("//"):
        return prefixes[prefix] + rest
    return name


def _ignored_fields(holders: Sequence[Mapping[str, Any]], prefixes: Mapping[str, str]) -> frozenset[str]:
    ignored: set[str] = set()
    for holder in holders:
        for key, value in holder.items():
            if key == "ignoreFields" or key.endswith(":ignoreFields"):
                names = value if isinstance(value, list) else [value]
                ignored.update(_expand_name(n, prefixes) for n in names if isinstance(n, str))
    return frozenset(ignored)


def _without(value: Any, ignored: frozenset[str], prefixes: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _without(v, ignored, prefixes) for k, v in value.items() if _expand_name(k, prefixes) not in ignored}
    if isinstance(value, list):
        return [_without(v, ignored, prefixes) for v in value]
    return value


def document_hashes(document: Mapping[str, Any]) -> list[str]:
    """The canonical hash of every event of an EPCISDocument or EPCISQueryDocument, in document order.

    Honours the document's ``@context`` (namespace prefixes) and a document-level ``…:ignoreFields``.
    Raises InvalidInput (with a JSON pointer) for a malformed document or event.
    """
    events, pointer, holders = _events_of(document)
    context = _context_list(document.get("@context", list(DEFAULT_CONTEXT)))
    prefixes = _prefixes(context)
    ignored = _ignored_fields(holders, prefixes)
    hashes = []
    for index, event in enumerate(events):
        event_pointer = f"{pointer}/{index}" if not pointer.endswith("/event") else pointer
        if ignored and isinstance(event, dict):
            event = _without(event, ignored, prefixes)
        hashes.append(_to_ni(_prehash(event, context, event_pointer)))
    return hashes
