"""EPCIS 2.0 event queries: the standard's SimpleEventQuery parameters over the stored events.

Each event comes back exactly as it was captured (or built), with its ``eventID`` set to its GS1
canonical hash; where it stands on chain is reported beside the events, in the query document's
``tracer:anchors``, so every event still re-hashes to its eventID.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from tracer import identifiers
from tracer.capture import context_prefixes
from tracer.epcis import vocabulary as vocab
from tracer.exceptions import InvalidInput
from tracer.store.models import Event

DEFAULT_PER_PAGE = 100
MAX_PER_PAGE = 1000
_SCAN_CHUNK = 500

_EPC_LISTS = ("epcList", "childEPCs", "inputEPCList", "outputEPCList")
_QUANTITY_LISTS = ("quantityList", "childQuantityList", "inputQuantityList", "outputQuantityList")

Predicate = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True)
class Page:
    """One page of results: the EPCISQueryDocument and the token of the next page, if any."""

    document: dict[str, Any]
    next_token: str | None


def query(*, session: Session, params: Iterable[tuple[str, str]]) -> Page:
    """Runs a SimpleEventQuery; raises InvalidInput naming an unknown or malformed parameter."""
    predicates: list[Predicate] = []
    per_page, after = DEFAULT_PER_PAGE, 0
    for name, value in params:
        if name == "perPage":
            per_page = _int(value, name, low=1, high=MAX_PER_PAGE)
        elif name == "nextPageToken":
            after = _decode_token(value)
        else:
            predicates.append(_predicate(name, value))
    found: list[Event] = []
    last_seen = after
    more = False
    while not more:
        chunk = session.exec(
            select(Event).where(col(Event.id) > last_seen).order_by(col(Event.id)).limit(_SCAN_CHUNK)
        ).all()
        if not chunk:
            break
        for event in chunk:
            if len(found) == per_page:
                more = True
                break
            last_seen = event.id or last_seen
            payload = json.loads(event.payload)
            if all(predicate(payload) for predicate in predicates):
                found.append(event)
    token = _encode_token(found[-1].id or 0) if more and found else None
    return Page(document=_document(found), next_token=token)


def _document(events: list[Event]) -> dict[str, Any]:
    context: list[Any] = [vocab.EPCIS_CONTEXT_URL]
    prefixes = {vocab.TRACER_PREFIX: vocab.TRACER_NS}
    for event in events:
        if event.context:
            for prefix, iri in context_prefixes(json.loads(event.context)).items():
                prefixes.setdefault(prefix, iri)
    context.append(prefixes)
    listed = []
    anchors: dict[str, dict[str, Any]] = {}
    corrections: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        payload = {
            "eventID": event.event_hash,
            **{k: v for k, v in json.loads(event.payload).items() if k != "eventID"},
        }
        listed.append(payload)
        anchor = {
            "status": event.status,
            "txHash": event.tx_hash,
            "blockNumber": event.block_number,
            "blockHash": event.block_hash,
            "logIndex": event.log_index,
        }
        # A correction shares its original's eventID (GS1's hash ignores errorDeclaration).
        if event.corrects is None:
            anchors[event.event_hash] = anchor
        else:
            corrections.setdefault(event.event_hash, []).append(anchor)
    extra = {"tracer:correctionAnchors": corrections} if corrections else {}
    return {
        "@context": context,
        "type": "EPCISQueryDocument",
        "schemaVersion": "2.0",
        "creationDate": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "epcisBody": {
            "queryResults": {"queryName": "SimpleEventQuery", "resultsBody": {"eventList": listed}},
        },
        "tracer:anchors": anchors,
        **extra,
    }


# -- parameters -------------------------------------------------------------------------------------------


def _predicate(name: str, value: str) -> Predicate:
    values = _values(value)
    if name == "eventType":
        return lambda e: e.get("type") in values
    if name == "EQ_action":
        return lambda e: e.get("action") in values
    if name == "EQ_bizStep":
        wanted = {_bare(v) for v in values}
        return lambda e: _bare(e.get("bizStep")) in wanted
    if name == "EQ_disposition":
        wanted = {_bare(v) for v in values}
        return lambda e: _bare(e.get("disposition")) in wanted
    if name in ("MATCH_epc", "MATCH_anyEPC"):
        wanted = {_normal_id(v) for v in values}
        fields = _EPC_LISTS + (("parentID",) if name == "MATCH_anyEPC" else ())
        return lambda e: bool(wanted & {_normal_id(x) for x in _ids(e, fields)})
    if name == "MATCH_parentID":
        wanted = {_normal_id(v) for v in values}
        return lambda e: _normal_id(e.get("parentID")) in wanted
    if name == "MATCH_epcClass":
        wanted = {_normal_id(v) for v in values}
        return lambda e: bool(wanted & {_normal_id(q.get("epcClass")) for q in _quantities(e)})
    if name in ("GE_eventTime", "LT_eventTime"):
        bound = _time(value, name)
        if name == "GE_eventTime":
            return lambda e: (t := _event_time(e)) is not None and t >= bound
        return lambda e: (t := _event_time(e)) is not None and t < bound
    if name in ("EQ_bizLocation", "EQ_readPoint"):
        field_name = "bizLocation" if name == "EQ_bizLocation" else "readPoint"
        return lambda e: isinstance(e.get(field_name), dict) and e[field_name].get("id") in values
    if name.startswith("EQ_bizTransaction_"):
        wanted_type = name.removeprefix("EQ_bizTransaction_")
        return lambda e: any(
            _bare(t.get("type")) == _bare(wanted_type) and t.get("bizTransaction") in values
            for t in e.get("bizTransactionList") or []
            if isinstance(t, dict)
        )
    raise InvalidInput(f"unknown or unsupported query parameter {name!r}", pointer=f"/{name}")


def _values(value: str) -> set[str]:
    # The REST binding separates alternatives with "|"; a comma is accepted too.
    return {part.strip() for part in value.replace(",", "|").split("|") if part.strip()}


def _bare(value: Any) -> str | None:
    """A CBV value without its URI prefix, so bare and URI forms compare equal."""
    if not isinstance(value, str):
        return None
    for prefix in ("https://ref.gs1.org/cbv/", "urn:epcglobal:cbv:"):
        if value.startswith(prefix):
            return value.rsplit("-", 1)[-1].rsplit(":", 1)[-1]
    return value


def _normal_id(value: Any) -> str | None:
    """EPC URNs and Digital Link URIs on any host compare by their GS1 path; other identifiers as they are."""
    if not isinstance(value, str):
        return None
    try:
        return identifiers.parse_identifier(value).path
    except InvalidInput:
        return value


def _ids(event: dict[str, Any], fields: tuple[str, ...]) -> list[Any]:
    found = []
    for name in fields:
        value = event.get(name)
        found.extend(value if isinstance(value, list) else [value] if value else [])
    return found


def _quantities(event: dict[str, Any]) -> list[dict[str, Any]]:
    return [q for name in _QUANTITY_LISTS for q in event.get(name) or [] if isinstance(q, dict)]


def _event_time(event: dict[str, Any]) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(event.get("eventTime")))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def _time(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace(" ", "+"))  # a "+" in a query string arrives as a space
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise InvalidInput("must be an ISO 8601 date-time with a time zone", pointer=f"/{name}")
    return parsed


def _int(value: str, name: str, *, low: int, high: int) -> int:
    # ASCII digits only, and few of them: "²" is a digit to str.isdigit but not to int(), and int() refuses
    # thousands of digits with a ValueError of its own.
    if not (value.isascii() and value.isdigit() and len(value) <= 18) or not low <= int(value) <= high:
        raise InvalidInput(f"must be a whole number from {low} to {high}", pointer=f"/{name}")
    return int(value)


def _encode_token(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"after:{last_id}".encode()).decode().rstrip("=")


def _decode_token(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        prefix, _, number = text.partition(":")
        if prefix == "after" and number.isdigit():
            return int(number)
    except ValueError:
        pass
    raise InvalidInput("not a token this server issued", pointer="/nextPageToken")
