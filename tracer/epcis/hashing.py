"""The GS1 canonical event hash (``ni:///sha-256;<hex>?ver=CBV2.0``), offline and in-house.

The pre-hash string comes from :mod:`tracer.epcis.canonical` (pure Python, no JSON-LD processor, no
network), which reproduces GS1's reference package ``epcis-event-hash-generator`` result for result;
the package is a test-only oracle now (:mod:`tracer.epcis.reference`). This module adds the document
level and the service's guarantees:

* **No network, ever.** A ``@context`` may name only the EPCIS 2.0 context by URL
  (:data:`KNOWN_CONTEXTS`); any other remote context is refused with InvalidInput, since its terms
  could change a hash and we never download one. Prefixes are declared inline.
* **One event, one hash.** An event hashes the same alone, in a capture document or in a query result:
  the enclosing document's ``@context`` plus any event-level ``@context`` is all that counts.
* **Query documents** (``EPCISQueryDocument``: ``epcisBody.queryResults.resultsBody.eventList``) and a
  single ``epcisBody.event`` are read as well as ``epcisBody.eventList``.
* **ignoreFields**: a document-level field whose name is ``ignoreFields`` under any prefix (e.g.
  ``repository-x:ignoreFields``; at the document's top level or in ``queryResults``) lists extension
  fields, as CURIEs or IRIs, that the hash leaves out; they are removed (at any depth) before hashing.
* **Failures are loud**: an event the algorithm cannot read is an InvalidInput, never a missing hash.

Speed: tens of microseconds per event; ``scripts/bench_hash`` measures it against the reference
(docs/performance.md).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from tracer.epcis.native import prehash_string
from tracer.epcis.vocabulary import DEFAULT_CONTEXT, EVENT_TYPES
from tracer.exceptions import InvalidInput

__all__ = [
    "KNOWN_CONTEXTS",
    "check_event",
    "context_list",
    "document_hashes",
    "document_hashes_with",
    "event_hash",
    "event_hash_bytes",
    "event_hash_from_bytes",
    "ni_hash",
    "prehash",
]

_HASH_RE = re.compile(r"ni:///sha-256;([0-9a-f]{64})\?ver=CBV2\.0")

#: The remote JSON-LD contexts a document may name by URL: the EPCIS 2.0 context (pinned, unversioned and
#: GitHub URLs). Their terms are built into :mod:`tracer.epcis.canonical`.
KNOWN_CONTEXTS: Final = frozenset(
    {
        "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
        "https://ref.gs1.org/standards/epcis/epcis-context.jsonld",
        "https://gs1.github.io/EPCIS/epcis-context.jsonld",
    }
)


def context_list(context: Any) -> list[Any]:
    """A ``@context`` as a list of entries (``None`` means :data:`DEFAULT_CONTEXT`). Raises InvalidInput."""
    if context is None:
        return list(DEFAULT_CONTEXT)
    if isinstance(context, (str, dict)):
        return [context]
    if isinstance(context, (list, tuple)):
        return list(context)
    raise InvalidInput("@context must be a string, an object or a list", pointer="/@context")


def check_event(event: Any, pointer: str) -> None:
    """Raise InvalidInput (at ``pointer``) unless ``event`` is an object of one of the five event types."""
    if not isinstance(event, dict):
        raise InvalidInput("an EPCIS event must be a JSON object", pointer=pointer or None)
    kind = event.get("type")
    if kind not in EVENT_TYPES:
        raise InvalidInput(
            f"type must be one of {', '.join(sorted(EVENT_TYPES))}, got {kind!r}", pointer=pointer + "/type"
        )


def _prehash(event: Mapping[str, Any], context: Any, pointer: str) -> str:
    check_event(event, pointer)
    ctx = context_list(context)
    body: Mapping[str, Any] = event
    if "@context" in event:
        body = {key: value for key, value in event.items() if key != "@context"}
        ctx += context_list(event["@context"])
    for item in ctx:
        if isinstance(item, str) and item not in KNOWN_CONTEXTS:
            raise InvalidInput(
                f"JSON-LD context {item} is not available offline; use the EPCIS 2.0 context "
                "and declare extension prefixes inline",
                pointer="/@context",
            )
    try:
        return prehash_string(body, ctx)
    except (TypeError, AttributeError, ValueError, IndexError, RecursionError) as exc:
        raise InvalidInput(f"the event cannot be canonicalised: {exc}", pointer=pointer or None) from exc


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
    return ni_hash(_prehash(event, context, ""))


def ni_hash(prehash: str) -> str:
    """``ni:///sha-256;<hex>?ver=CBV2.0`` of a pre-hash string (SHA-256 of its UTF-8)."""
    return "ni:///sha-256;" + hashlib.sha256(prehash.encode("utf-8")).hexdigest() + "?ver=CBV2.0"


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


def document_hashes_with(
    document: Mapping[str, Any], prehash_of: Callable[[Mapping[str, Any], Any, str], str]
) -> list[str]:
    """:func:`document_hashes` with another pre-hash function ``(event, context, pointer) -> str`` (for
    the test oracle: both read documents the same way)."""
    events, pointer, holders = _events_of(document)
    context = context_list(document.get("@context", list(DEFAULT_CONTEXT)))
    prefixes = _prefixes(context)
    ignored = _ignored_fields(holders, prefixes)
    hashes = []
    for index, event in enumerate(events):
        event_pointer = f"{pointer}/{index}" if not pointer.endswith("/event") else pointer
        if ignored and isinstance(event, dict):
            event = _without(event, ignored, prefixes)
        hashes.append(ni_hash(prehash_of(event, context, event_pointer)))
    return hashes


def document_hashes(document: Mapping[str, Any]) -> list[str]:
    """The canonical hash of every event of an EPCISDocument or EPCISQueryDocument, in document order.

    Honours the document's ``@context`` (namespace prefixes) and a document-level ``…:ignoreFields``.
    Raises InvalidInput (with a JSON pointer) for a malformed document or event.
    """
    return document_hashes_with(document, _prehash)
