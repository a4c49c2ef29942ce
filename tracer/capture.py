"""EPCIS 2.0 capture: a standard EPCISDocument becomes journey steps, through the same code path as the API.

A warehouse system that speaks only EPCIS 2.0 posts its events; each is validated against the standard
(event types, CBV bizSteps and dispositions, identifiers), recognised as a step of the bonded-import
journey by its type, bizStep and business transactions (docs/epcis-mapping.md), and handed to
``tracer.journey`` exactly as the journey endpoints do, with the event kept as captured. By default
(``rollback``) one bad event refuses the whole document and nothing of it is stored; with ``proceed``
the good events are kept and the bad ones listed in the capture job.

A document is applied in bulk (docs/performance.md, "Acceptance"): every event is hashed and read first, the
lots it names are locked in one statement, re-sends are looked up in one query, and the accepted events
reach the database in one multi-row INSERT at the end. Each event still goes through its journey step one by one, in
document order, so the rules, the hashes and the errors are those of one event at a time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from pydantic import BaseModel, ValidationError
from sqlmodel import Session

from tracer import identifiers, journey
from tracer.config import Settings
from tracer.epcis import event_hash
from tracer.epcis import vocabulary as vocab
from tracer.exceptions import DuplicateRecord, InvalidInput, TracerError
from tracer.journey import Captured, EventAccepted
from tracer.lifecycle import InspectionResult, Step
from tracer.store.models import Actor, CaptureJob, Event, Lot

ROLLBACK, PROCEED = "rollback", "proceed"
#: Events per capture document unless the caller passes its setting (``TRACER_CAPTURE_LIMIT``); advertised
#: in the ``GS1-EPCIS-Capture-Limit`` header.
CAPTURE_LIMIT: int = Settings.model_fields["capture_limit"].default

_OFFSET = re.compile(r"^[+-](0\d|1[0-4]):[0-5]\d$")
_ABSOLUTE_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:\S+$")
_ACTIONS = frozenset({"ADD", "OBSERVE", "DELETE"})
_WITH_ACTION = frozenset({"ObjectEvent", "AggregationEvent", "TransactionEvent", "AssociationEvent"})


class CaptureTooLarge(InvalidInput):
    """A capture document of more events than the capture limit (EPCIS 2.0: 413 Capture Payload Too Large)."""


class CaptureRejected(TracerError):
    """An event of a capture document broke a rule; ``cause`` says which, ``index`` which event."""

    title = "An event of the capture document was refused"

    def __init__(self, index: int, cause: TracerError) -> None:
        self.index = index
        self.cause = cause
        super().__init__(f"event {index}: {cause}")


@dataclass
class CaptureResult:
    """What a capture did: its job and the events it accepted."""

    job: CaptureJob
    accepted: list[EventAccepted] = field(default_factory=list)


# -- validation against the standard ---------------------------------------------------------------------


def validate_document(document: Any, *, limit: int = CAPTURE_LIMIT) -> list[dict[str, Any]]:
    """The events of an EPCISDocument, or InvalidInput naming the first malformed field (JSON pointer)."""
    if not isinstance(document, dict):
        raise InvalidInput("the body must be a JSON object (an EPCISDocument)", pointer="")
    if document.get("type") != "EPCISDocument":
        raise InvalidInput("must be EPCISDocument", pointer="/type")
    if not isinstance(document.get("@context"), str | dict | list):
        # JSON-LD: a context is an IRI, an object or a list of them (null would drop every term the events use).
        raise InvalidInput("an EPCIS 2.0 JSON-LD document needs its @context", pointer="/@context")
    body = document.get("epcisBody")
    events = body.get("eventList") if isinstance(body, dict) else None
    if not isinstance(events, list):
        raise InvalidInput("must be a list of events", pointer="/epcisBody/eventList")
    if len(events) > limit:
        raise CaptureTooLarge(f"{len(events)} events; at most {limit} per document", pointer="/epcisBody/eventList")
    for index, event in enumerate(events):
        _validate_event(event, f"/epcisBody/eventList/{index}")
    return events


def _validate_event(event: Any, at: str) -> None:
    if not isinstance(event, dict):
        raise InvalidInput("an event must be a JSON object", pointer=at)
    kind = event.get("type")
    # Strings are checked as strings first: a list is no member of a set, it cannot even be looked up in one.
    if not isinstance(kind, str) or kind not in vocab.EVENT_TYPES:
        raise InvalidInput(
            f"unknown event type {kind!r}; one of {', '.join(sorted(vocab.EVENT_TYPES))}", pointer=at + "/type"
        )
    _require_time(event.get("eventTime"), at + "/eventTime")
    offset = event.get("eventTimeZoneOffset")
    if not isinstance(offset, str) or not _OFFSET.match(offset):
        raise InvalidInput("must be a time zone offset like +08:00", pointer=at + "/eventTimeZoneOffset")
    action = event.get("action")
    if kind in _WITH_ACTION and not (isinstance(action, str) and action in _ACTIONS):
        raise InvalidInput("must be ADD, OBSERVE or DELETE", pointer=at + "/action")
    for name, check in (("bizStep", vocab.is_cbv_bizstep), ("disposition", vocab.is_cbv_disposition)):
        value = event.get(name)
        if value is not None and not check(value) and not (isinstance(value, str) and _is_uri(value)):
            raise InvalidInput(f"{value!r} is not a CBV 2.0 {name} nor an absolute URI", pointer=f"{at}/{name}")
    _validate_shapes(event, at)
    for name in ("epcList", "childEPCs", "inputEPCList", "outputEPCList"):
        for position, epc in enumerate(event.get(name) or []):
            if not isinstance(epc, str) or not _is_uri(epc):
                raise InvalidInput("must be an EPC URN or a Digital Link URI", pointer=f"{at}/{name}/{position}")
    for name in ("quantityList", "childQuantityList", "inputQuantityList", "outputQuantityList"):
        for position, element in enumerate(event.get(name) or []):
            where = f"{at}/{name}/{position}"
            if not isinstance(element, dict) or not isinstance(element.get("epcClass"), str):
                raise InvalidInput("a quantity element needs an epcClass", pointer=where + "/epcClass")
            quantity = element.get("quantity")
            if quantity is not None and (isinstance(quantity, bool) or not isinstance(quantity, int | float)):
                raise InvalidInput("must be a number", pointer=where + "/quantity")


# The JSON shapes of the standard's fields that this service reads (EPCIS 2.0 JSON schema): a list where a list
# belongs, an object with a URI "id" for a location, a URI for a parent. Without them a number where a list
# belongs would reach the code that walks the list.
_LIST_FIELDS = (
    "epcList",
    "childEPCs",
    "inputEPCList",
    "outputEPCList",
    "quantityList",
    "childQuantityList",
    "inputQuantityList",
    "outputQuantityList",
    "bizTransactionList",
    "sourceList",
    "destinationList",
    "sensorElementList",
)


def _validate_shapes(event: dict[str, Any], at: str) -> None:
    for name in _LIST_FIELDS:
        if name in event and not isinstance(event[name], list):
            raise InvalidInput("must be a list", pointer=f"{at}/{name}")
    for name in ("readPoint", "bizLocation"):
        if name in event:
            location = event[name]
            if not isinstance(location, dict) or not isinstance(location.get("id"), str) or not _is_uri(location["id"]):
                raise InvalidInput("must be an object whose id is a location URI", pointer=f"{at}/{name}")
    parent = event.get("parentID")
    if parent is not None and not (isinstance(parent, str) and _is_uri(parent)):
        raise InvalidInput("must be an EPC URN or a Digital Link URI", pointer=f"{at}/parentID")
    for position, entry in enumerate(event.get("bizTransactionList") or []):
        if not isinstance(entry, dict) or not isinstance(entry.get("bizTransaction"), str):
            raise InvalidInput("needs a bizTransaction URI", pointer=f"{at}/bizTransactionList/{position}")


def _require_time(value: Any, pointer: str) -> None:
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise InvalidInput("must be an ISO 8601 date-time with a time zone", pointer=pointer)


def _is_uri(value: str) -> bool:
    return bool(_ABSOLUTE_URI.match(value))


# -- recognising the journey step -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Reader:
    """Reads one captured event, resolving our extension fields through the document's @context."""

    event: dict[str, Any]
    prefixes: Mapping[str, str]
    at: str

    def ext(self, name: str, within: Mapping[str, Any] | None = None) -> Any:
        """Our extension field ``name`` (``tracer:name`` or any prefix the document binds to our namespace),
        of the event or of a nested object ``within`` it."""
        for key, value in (self.event if within is None else within).items():
            prefix, sep, local = key.partition(":")
            if (
                sep
                and local == name
                and (self.prefixes.get(prefix) == vocab.TRACER_NS or key == vocab.TRACER_NS + name)
            ):
                return value
        return None

    def transactions(self) -> dict[str, str]:
        """The event's business transactions by type URI, their ids unwrapped from ``urn:tracer:{kind}:``."""
        found = {}
        for entry in self.event.get("bizTransactionList") or []:
            if isinstance(entry, dict) and isinstance(entry.get("bizTransaction"), str):
                value = entry["bizTransaction"]
                parts = value.split(":", 3)
                if len(parts) == 4 and parts[:2] == ["urn", "tracer"]:
                    value = unquote(parts[3])
                found[str(entry.get("type", ""))] = value
        return found

    def bare(self, name: str) -> str | None:
        value = self.event.get(name)
        if not isinstance(value, str):
            return None
        return value.rsplit("-", 1)[-1] if value.startswith("https://ref.gs1.org/cbv/") else value

    def lot(self, list_name: str = "quantityList") -> identifiers.LotRef:
        elements = self.event.get(list_name) or []
        if not elements:
            raise InvalidInput("names no lot (a quantity element with a lot class)", pointer=f"{self.at}/{list_name}")
        ref = _parse_id(elements[0]["epcClass"], f"{self.at}/{list_name}/0/epcClass")
        if not isinstance(ref, identifiers.LotRef):
            raise InvalidInput("must be a lot class (GTIN and lot number)", pointer=f"{self.at}/{list_name}/0/epcClass")
        return ref

    def quantity(self, list_name: str = "quantityList") -> Any:
        elements = self.event.get(list_name) or []
        return elements[0].get("quantity") if elements else None

    def parcel(self, name: str = "epcList") -> str:
        value = self.event.get(name)
        epc = value[0] if isinstance(value, list) and value else value
        ref = _parse_id(epc, f"{self.at}/{name}") if isinstance(epc, str) else None
        if not isinstance(ref, identifiers.ParcelRef):
            raise InvalidInput("must name one parcel (SSCC)", pointer=f"{self.at}/{name}")
        return ref.sscc

    def units(self, lot: identifiers.LotRef) -> list[str]:
        """The serials of the units ``childEPCs`` names (SGTIN URNs or Digital Links), each of ``lot``'s GTIN
        (and of ``lot`` itself when the link names a lot too)."""
        serials = []
        for position, epc in enumerate(self.event.get("childEPCs") or []):
            pointer = f"{self.at}/childEPCs/{position}"
            ref = _parse_id(epc, pointer)
            if not isinstance(ref, identifiers.UnitRef) or ref.gtin != lot.gtin or ref.lot not in (None, lot.lot):
                raise InvalidInput(f"must be a serialised unit of GTIN {lot.gtin} and lot {lot.lot}", pointer=pointer)
            serials.append(ref.serial)
        return serials

    def location(self, name: str) -> Any:
        value = self.event.get(name)
        return value.get("id") if isinstance(value, dict) else None


# A document names its few lots and parcels hundreds of times: each identifier is parsed (check digits, Digital
# Link decoding) once, and each lot id hashed once. Bounded, since the strings are the sender's to choose; the
# results are immutable, so sharing them is safe.
_parse_identifier = functools.lru_cache(maxsize=4096)(identifiers.parse_identifier)


def _parse_id(value: str, pointer: str) -> identifiers.LotRef | identifiers.ParcelRef | identifiers.UnitRef:
    try:
        return _parse_identifier(value)
    except InvalidInput as exc:
        raise InvalidInput(f"{value!r}: {exc.message}", pointer=pointer) from exc


def _model(model: type[BaseModel], data: dict[str, Any], at: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        field_name = "/".join(str(part) for part in error.get("loc", ()))
        raise InvalidInput(f"{field_name}: {error.get('msg')}", pointer=at) from exc


_Apply = Callable[[Session, Actor, Captured], EventAccepted | list[EventAccepted]]


def _journey_step(event: dict[str, Any], *, prefixes: Mapping[str, str], at: str) -> tuple[Step, _Apply] | None:
    """The journey step an event is and how to apply it, None when it is none; InvalidInput when it lacks a field."""
    read = _Reader(event, prefixes, at)
    kind, biz_step, btt = event["type"], read.bare("bizStep"), read.transactions()
    if kind == "TransactionEvent" and vocab.BTT_DECLARATION in btt:
        ref = read.lot()
        declaration = _model(
            journey.DeclarationIn,
            {
                "gtin": ref.gtin,
                "lot": ref.lot,
                "quantity": read.quantity(),
                "declaration_number": btt[vocab.BTT_DECLARATION],
                "product_name": read.ext("productName"),
                "hs_code": read.ext("hsCode"),
                "origin_country": read.ext("originCountry"),
                "manufacturer": read.ext("manufacturer"),
                "expiry": read.ext("itemExpirationDate"),
            },
            at,
        )
        return Step.DECLARATION, lambda s, a, c: journey.declare(
            session=s, actor=a, declaration=declaration, captured=c
        )
    if kind == "TransactionEvent" and (documents := _document_step(read, btt)) is not None:
        return documents
    if kind == "AggregationEvent" and biz_step == "packing":
        ref = read.lot("childQuantityList")
        parcel = {
            "sscc": read.parcel("parentID"),
            "quantity": read.quantity("childQuantityList"),
            "units": read.units(ref),
        }
        request = _model(journey.SplitIn, {"parcels": [parcel]}, at)
        return Step.SPLIT, lambda s, a, c: journey.split(
            session=s, actor=a, lot_id=_lot_id(ref), request=request, captured=c
        )
    if kind == "ObjectEvent":
        return _object_step(read, biz_step, btt)
    return None


def _object_step(read: _Reader, biz_step: str | None, btt: dict[str, str]) -> tuple[Step, _Apply] | None:
    at = read.at
    if biz_step == "receiving":
        ref = read.lot()
        entry = _model(
            journey.EntryIn, {"counted_quantity": read.quantity(), "biz_location": read.location("bizLocation")}, at
        )
        return Step.ENTRY, lambda s, a, c: journey.record_entry(
            session=s, actor=a, lot_id=_lot_id(ref), entry=entry, captured=c
        )
    if biz_step == "inspecting":
        ref = read.lot()
        disposition = read.bare("disposition")
        result = (
            InspectionResult.NON_CONFORMANT
            if disposition == "non_conformant"
            else InspectionResult.SAMPLED
            if read.ext("sampled") is True
            else InspectionResult.CONFORMANT
        )
        inspection = journey.InspectionIn(result=result)
        return Step.INSPECTION, lambda s, a, c: journey.record_inspection(
            session=s, actor=a, lot_id=_lot_id(ref), inspection=inspection, captured=c
        )
    if biz_step == "storing":
        ref = read.lot()
        storage = _model(journey.StorageIn, {"storage_location": read.location("bizLocation")}, at)
        return Step.STORAGE, lambda s, a, c: journey.record_storage(
            session=s, actor=a, lot_id=_lot_id(ref), storage=storage, captured=c
        )
    if biz_step == "departing" and vocab.BTT_CUSTOMS_RELEASE in btt:
        sscc = read.parcel()
        return Step.RELEASE, lambda s, a, c: journey.release(session=s, actor=a, sscc=sscc, captured=c)
    if biz_step == "accepting":
        sscc = read.parcel()
        return Step.DELIVERY, lambda s, a, c: journey.record_delivery(session=s, actor=a, sscc=sscc, captured=c)
    if biz_step == "holding" and read.bare("disposition") == "recalled":
        ref = read.lot()
        recall = _model(journey.RecallIn, {"reason": read.ext("reason") or "recall"}, at)
        return Step.RECALL, lambda s, a, c: journey.recall(
            session=s, actor=a, lot_id=_lot_id(ref), request=recall, captured=c
        )
    return None


def interpret(event: dict[str, Any], *, prefixes: Mapping[str, str], at: str) -> tuple[Step, _Apply]:
    """The journey step an event is, else an observation of the lot, parcel or unit it names; InvalidInput when
    it names none, or lacks a field its step needs."""
    step = _journey_step(event, prefixes=prefixes, at=at)
    if step is not None:
        return step
    subject = _observed_subject(_Reader(event, prefixes, at))
    if subject is None:
        raise InvalidInput(
            "neither a step of the bonded-import journey (docs/epcis-mapping.md) nor an observation of a lot, "
            "parcel or unit: it names no lot class and no parcel, nor a serialised unit",
            pointer=at,
        )

    def apply(session: Session, actor: Actor, captured: Captured) -> EventAccepted:
        sscc = None
        if isinstance(subject, identifiers.LotRef):
            lot_id = _lot_id(subject)
        elif isinstance(subject, identifiers.ParcelRef):
            sscc, lot_id = subject.sscc, _lot_id_of_parcel(session, subject.sscc)
        else:  # a unit is observed on its parcel's place in the lot's chain
            _, parcel, lot = journey.find_unit(session=session, gtin=subject.gtin, serial=subject.serial)
            sscc, lot_id = parcel.sscc, lot.lot_id
        return journey.record_observation(session=session, actor=actor, lot_id=lot_id, sscc=sscc, captured=captured)

    return Step.OBSERVATION, apply


def _observed_subject(read: _Reader) -> identifiers.LotRef | identifiers.ParcelRef | identifiers.UnitRef | None:
    """What an observation names: the first lot class, else the first parcel, else the first unit."""
    for element in _elements(
        read.event, ("quantityList", "childQuantityList", "inputQuantityList", "outputQuantityList")
    ):
        ref = _try_parse(element.get("epcClass") if isinstance(element, dict) else None)
        if isinstance(ref, identifiers.LotRef):
            return ref
    refs = [
        _try_parse(epc)
        for epc in _elements(read.event, ("parentID", "epcList", "childEPCs", "inputEPCList", "outputEPCList"))
    ]
    parcel = next((ref for ref in refs if isinstance(ref, identifiers.ParcelRef)), None)
    return parcel or next((ref for ref in refs if isinstance(ref, identifiers.UnitRef)), None)


def _elements(event: dict[str, Any], names: tuple[str, ...]) -> list[Any]:
    found: list[Any] = []
    for name in names:
        value = event.get(name)
        found.extend(value if isinstance(value, list) else [value] if value is not None else [])
    return found


def _try_parse(value: Any) -> identifiers.LotRef | identifiers.ParcelRef | identifiers.UnitRef | None:
    if not isinstance(value, str):
        return None
    try:
        return _parse_identifier(value)
    except InvalidInput:
        return None


def _lot_id_of_parcel(session: Session, sscc: str) -> str:
    parcel = journey.get_parcel(session=session, sscc=sscc)
    lot = session.get(Lot, parcel.lot_pk)
    assert lot is not None
    return lot.lot_id


def _document_step(read: _Reader, btt: dict[str, str]) -> tuple[Step, _Apply] | None:
    """An order, payment or waybill event: its commitments come with it, its people do not."""
    at = read.at
    found = next(((step, uri, person) for step, uri, person in _DOCUMENT_KINDS if uri in btt), None)
    if found is None:
        return None
    step, type_uri, person_field = found
    sscc = read.parcel()
    person, document = read.ext(person_field), read.ext("documentCommitment")
    for name, value in ((person_field, person), ("documentCommitment", document)):
        if not (isinstance(value, str) and re.fullmatch(r"0x[0-9a-f]{64}", value)):
            raise InvalidInput(f"tracer:{name} must be a salted commitment (0x + 64 hex)", pointer=at)
    commitments = (person, document)
    order_number = btt.get(vocab.BTT_ORDER, "")
    model: type[BaseModel]
    if step is Step.ORDER:
        items = [
            {
                "gtin": read.ext("gtin", i),
                "quantity": read.ext("quantity", i),
                "unit_price": read.ext("unitPrice", i),
            }
            for i in read.ext("items") or []
            if isinstance(i, dict)
        ]
        data = {
            "order_number": btt[type_uri],
            "items": items,
            "total": read.ext("orderTotal"),
            "currency": read.ext("currency") or "CNY",
        }
        model = journey.OrderIn
    elif step is Step.PAYMENT:
        data = {
            "payment_number": btt[type_uri],
            "order_number": order_number,
            "amount": read.ext("paidAmount"),
            "currency": read.ext("currency") or "CNY",
        }
        model = journey.PaymentIn
    else:
        data = {"waybill_number": btt[type_uri], "order_number": order_number}
        model = journey.WaybillIn
    request = _model_without_person(model, data, at)
    apply = _DOCUMENT_APPLY[step]
    return step, lambda s, a, c: apply(s, a, sscc, request, dataclasses.replace(c, commitments=commitments))


# A payment and a waybill name their order too: the most specific business transaction decides.
_DOCUMENT_KINDS = (
    (Step.PAYMENT, vocab.BTT_PAYMENT, "payerCommitment"),
    (Step.WAYBILL, vocab.BTT_WAYBILL, "consigneeCommitment"),
    (Step.ORDER, vocab.BTT_ORDER, "consigneeCommitment"),
)


def _model_without_person(model: type[BaseModel], data: dict[str, Any], at: str) -> BaseModel:
    """The document request without its person: a captured document carries commitments, not people."""
    person_field = next(name for name in ("consignee", "payer") if name in model.model_fields)
    placeholder = {"name": "-", "id_number": "-"}
    validated = _model(model, {**data, person_field: placeholder}, at)
    return validated  # type: ignore[no-any-return]


_DOCUMENT_APPLY: dict[Step, Callable[[Session, Actor, str, Any, Captured], EventAccepted]] = {
    Step.ORDER: lambda s, a, sscc, r, c: journey.attach_order(session=s, actor=a, sscc=sscc, order=r, captured=c),
    Step.PAYMENT: lambda s, a, sscc, r, c: journey.attach_payment(session=s, actor=a, sscc=sscc, payment=r, captured=c),
    Step.WAYBILL: lambda s, a, sscc, r, c: journey.attach_waybill(session=s, actor=a, sscc=sscc, waybill=r, captured=c),
}


@functools.lru_cache(maxsize=4096)
def _lot_id(ref: identifiers.LotRef) -> str:
    return "0x" + identifiers.lot_id(ref.gtin, ref.lot).hex()


def context_prefixes(context: Any) -> dict[str, str]:
    """The namespace prefixes a document's @context binds (``{"tracer": "https://ns.tracer.dev/epcis/"}``)."""
    entries = context if isinstance(context, list) else [context]
    return {k: v for entry in entries if isinstance(entry, dict) for k, v in entry.items() if isinstance(v, str)}


# -- the capture ------------------------------------------------------------------------------------------


def capture(
    *, session: Session, actor: Actor, document: Any, error_behaviour: str = ROLLBACK, limit: int = CAPTURE_LIMIT
) -> CaptureResult:
    """Validates and applies a capture document in the caller's transaction (the caller commits).

    ``rollback``: the first bad event raises CaptureRejected (or InvalidInput for a malformed document)
    and nothing is applied. ``proceed``: bad events are skipped and listed in the job's errors.
    """
    if error_behaviour not in (ROLLBACK, PROCEED):
        raise InvalidInput("must be rollback or proceed", pointer="/GS1-Capture-Error-Behaviour")
    events = validate_document(document, limit=limit)
    context = document["@context"]
    prefixes = context_prefixes(context)
    planned = [_plan(event, context=context, prefixes=prefixes, index=index) for index, event in enumerate(events)]
    with journey.lots_locked(session=session, lot_ids={p.lot_id for p in planned if p.lot_id}):
        # After the locks: a document on the same lots committed meanwhile is seen here, not re-accepted.
        stored = journey.find_events(session=session, event_ids={p.event_id for p in planned if p.event_id})
        if error_behaviour == ROLLBACK:
            accepted, errors = _apply_all(session, actor, planned, stored, context=context, isolated=False)
        else:
            try:
                # Most documents have no bad event: try the whole document in one savepoint first, and only
                # when an event fails apply it again with a savepoint per event (each costs round trips).
                with session.begin_nested():
                    accepted, errors = _apply_all(session, actor, planned, stored, context=context, isolated=False)
            except CaptureRejected:
                accepted, errors = _apply_all(session, actor, planned, stored, context=context, isolated=True)
    job = CaptureJob(
        id=uuid.uuid4().hex,
        actor_id=actor.id or 0,
        error_behaviour=error_behaviour,
        success=not errors,
        errors=json.dumps(errors, ensure_ascii=False),
        event_ids=json.dumps([a.event_id for a in accepted]),
    )
    session.add(job)
    return CaptureResult(job=job, accepted=accepted)


@dataclass(frozen=True)
class _Planned:
    """One event of a document as read before any is applied: its hash, its step, the lot it names, or the
    error reading it raised (kept, and raised in the event's turn, so the first bad event is still the one
    reported)."""

    index: int
    event: dict[str, Any]
    event_id: str | None = None
    step: tuple[Step, _Apply] | None = None
    lot_id: str | None = None
    error: TracerError | None = None

    @property
    def at(self) -> str:
        return f"/epcisBody/eventList/{self.index}"


def _plan(event: dict[str, Any], *, context: Any, prefixes: Mapping[str, str], index: int) -> _Planned:
    at = f"/epcisBody/eventList/{index}"
    try:
        event_id = event_hash(event, context=context)
    except TracerError as exc:
        return _Planned(index, event, error=exc)
    # The lot to lock up front: the first lot class the event names (the one a lot's step or an observation
    # acts on). Events naming only a parcel or a unit lock their lot when applied.
    subject = _observed_subject(_Reader(event, prefixes, at))
    lot_id = _lot_id(subject) if isinstance(subject, identifiers.LotRef) else None
    if "errorDeclaration" in event:  # a correction is no step of its own: it is never interpreted
        return _Planned(index, event, event_id, lot_id=lot_id)
    try:
        step = interpret(event, prefixes=prefixes, at=at)
    except TracerError as exc:
        return _Planned(index, event, event_id, lot_id=lot_id, error=exc)
    return _Planned(index, event, event_id, step, lot_id)


def _apply_all(
    session: Session,
    actor: Actor,
    planned: list[_Planned],
    stored: dict[str, Event],
    *,
    context: Any,
    isolated: bool,
) -> tuple[list[EventAccepted], list[dict[str, Any]]]:
    """Applies the events in document order, with ``stored`` the originals the database already held by hash.

    Not ``isolated``: the first bad event raises CaptureRejected. ``isolated``: each event in a savepoint of its
    own, a bad one rolled back and listed in the errors.
    """
    accepted: list[EventAccepted] = []
    errors: list[dict[str, Any]] = []
    originals: set[str] = set()  # hashes of the originals accepted from this document so far
    # One INSERT for the whole document, unless each event has a savepoint of its own to be rolled back to.
    with contextlib.nullcontext() if isolated else journey.events_inserted_together(session=session):
        for item in planned:
            try:
                with session.begin_nested() if isolated else contextlib.nullcontext():
                    result = _apply(session, actor, item, stored, originals, context=context)
            except TracerError as exc:
                if not isolated:
                    raise CaptureRejected(item.index, exc) from exc
                errors.append({"eventIndex": item.index, "type": type(exc).__name__, "detail": str(exc)})
                continue
            if "errorDeclaration" not in item.event:
                assert item.event_id is not None
                originals.add(item.event_id)
            accepted.extend(result if isinstance(result, list) else [result])
    return accepted, errors


def _apply(
    session: Session,
    actor: Actor,
    item: _Planned,
    stored: dict[str, Event],
    originals: set[str],
    *,
    context: Any,
) -> EventAccepted | list[EventAccepted]:
    """Applies one captured event: a correction, a re-send (refused), a journey step or an observation."""
    if item.event_id is None:
        assert item.error is not None
        raise item.error
    event_id = item.event_id
    original = stored.get(event_id)
    if "errorDeclaration" in item.event:
        # GS1's hash ignores errorDeclaration: a correction hashes like the event it corrects.
        if original is None and event_id in originals:
            # It corrects an event of this very document: the query flushes it, so the correction can name its row.
            original = journey.find_event(session=session, event_id=event_id)
        if original is None:
            raise InvalidInput(
                "corrects no event captured here (no event has this hash)", pointer=item.at + "/errorDeclaration"
            )
        lot = session.get(Lot, original.lot_pk)
        assert lot is not None
        captured = Captured(item.event, context, event_id=event_id)
        return journey.record_observation(
            session=session, actor=actor, lot_id=lot.lot_id, captured=captured, corrects=original
        )
    if original is not None or event_id in originals:
        raise DuplicateRecord("event", event_id)
    if item.error is not None:
        raise item.error
    assert item.step is not None
    _, apply = item.step
    return apply(session, actor, Captured(item.event, context, event_id=event_id))


def job_public(job: CaptureJob) -> dict[str, Any]:
    """The EPCIS 2.0 CaptureJob of ``job``."""
    return {
        "captureID": job.id,
        "createdAt": job.created_at.isoformat().replace("+00:00", "Z"),
        "finishedAt": job.created_at.isoformat().replace("+00:00", "Z"),
        "running": False,
        "success": job.success,
        "captureErrorBehaviour": job.error_behaviour,
        "errors": json.loads(job.errors),
        "tracer:eventIDs": json.loads(job.event_ids),
    }
