"""GS1's reference implementation as a test oracle: ``epcis-event-hash-generator`` 1.9.3, offline.

**Tests and benchmarks only.** The service hashes with :mod:`tracer.epcis.canonical` (through
:func:`tracer.epcis.event_hash`); nothing under ``tracer/`` or ``api/`` imports this module, and the
package is in the ``test`` extra, not in the runtime dependencies (a static test checks both). The
property test ``tests/tracer/test_epcis_hash_oracle.py`` and ``scripts/bench_hash`` compare the two.

What the wrapper adds to the package (its JSON path: ``json_to_py`` then ``hash_generator``):

* **No network, ever.** The package expands each document with PyLD to turn bare CBV values
  (``"receiving"``) into web URIs, and its document loader falls back to downloading any context it
  does not ship. While it runs we install our own loader, which serves the two EPCIS 2.0 contexts the
  package bundles (and maps the unversioned ``.../epcis/epcis-context.jsonld`` URL to the 2.0.0 file)
  and refuses every other remote context with :class:`~tracer.exceptions.InvalidInput`. PyLD's shared
  resolved-context cache is swapped for a private one too. Both are restored afterwards.
* **One event, one hash.** Each event is hashed inside a document of its own (the enclosing
  document's ``@context`` plus any event-level ``@context``), as :func:`tracer.epcis.event_hash` does.
* **Query documents, a single ``epcisBody.event`` and ``ignoreFields``** are read by the same document
  code as the in-house hash (:func:`tracer.epcis.hashing.document_hashes_with`).
* **Thread safety.** The package keeps module-level state (namespace map, join string), so calls are
  serialised with a lock and the namespace map is reset for every event.
* **Failures are loud.** The package logs and skips an event it cannot parse; here that is an
  InvalidInput, never a silently missing hash.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from tracer.epcis.hashing import check_event, context_list, document_hashes_with, ni_hash
from tracer.exceptions import InvalidInput

__all__ = ["BUNDLED_CONTEXTS", "reference_document_hashes", "reference_event_hash", "reference_prehash"]

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


def _reference_prehash(event: Mapping[str, Any], context: Any, pointer: str) -> str:
    check_event(event, pointer)
    ctx = context_list(context)
    body = dict(event)
    if "@context" in body:
        ctx += context_list(body.pop("@context"))
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


def reference_prehash(event: Mapping[str, Any], *, context: Any = None) -> str:
    """The reference package's pre-hash string of one event (``context`` as for ``event_hash``).

    Raises InvalidInput where the package fails or would need the network.
    """
    return _reference_prehash(event, context, "")


def reference_event_hash(event: Mapping[str, Any], *, context: Any = None) -> str:
    """The reference package's ``ni:///sha-256;…?ver=CBV2.0`` of one event. Raises as :func:`reference_prehash`."""
    return ni_hash(_reference_prehash(event, context, ""))


def reference_document_hashes(document: Mapping[str, Any]) -> list[str]:
    """The reference package's hashes of every event of a document, read as ``document_hashes`` reads it."""
    return document_hashes_with(document, _reference_prehash)
