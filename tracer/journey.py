"""The bonded-import journey as a service: each step validated, turned into an EPCIS event, and accepted.

Every step follows one path: check the role and the state (``tracer.lifecycle``), build the EPCIS 2.0
event, hash it with GS1's canonical hash, and append it to its lot's chain in the database with the next
sequence number, as a ``pending`` outbox row, in the caller's transaction. The outbox writer anchors it.
Personal data of the three documents goes to ``PersonalDatum`` only; events carry salted commitments.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import insert
from sqlmodel import Session, col, select

from tracer import commitments, identifiers
from tracer.epcis import event_hash, event_hash_bytes
from tracer.epcis import journey_events as build
from tracer.exceptions import (
    DocumentsMismatch,
    DuplicateRecord,
    InvalidInput,
    NotFound,
    PermissionDenied,
    SignatureRequired,
)
from tracer.lifecycle import (
    InspectionResult,
    LotState,
    ParcelState,
    Step,
    check_delivery,
    check_document,
    check_recall,
    check_release,
    check_role,
    check_split,
    lot_state_after,
)
from tracer.store.models import Actor, Document, Event, Lot, Parcel, PersonalDatum, Unit, utcnow

_QUANTITY = Field(gt=0, le=2**63 - 1)
MAX_UNITS_PER_PARCEL = 1000
"""Serials named per parcel: a parcel carries one consumer order, and its split event carries them all."""
_INSPECTION_CODE = {InspectionResult.CONFORMANT: 0, InspectionResult.NON_CONFORMANT: 1, InspectionResult.SAMPLED: 2}
_DOCUMENT_CODE = {Step.ORDER: 0, Step.PAYMENT: 1, Step.WAYBILL: 2}
# Values per ``IN (…)`` list: under SQLite's historic limit of 999 bound parameters per statement.
_IN_CHUNK = 900


# -- requests ------------------------------------------------------------------------------------------------


class DeclarationIn(BaseModel):
    """The advance declaration of a lot (enterprise)."""

    gtin: str = Field(description="GTIN-8/12/13/14 with a valid check digit")
    lot: str = Field(description="lot number (GS1 AI 10, up to 20 characters)")
    product_name: str = Field(min_length=1, max_length=200)
    hs_code: str = Field(pattern=r"^\d{6,10}$", description="HS code, 6 to 10 digits")
    origin_country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    manufacturer: str = Field(min_length=1, max_length=200)
    quantity: int = _QUANTITY
    expiry: date | None = None
    declaration_number: str = Field(min_length=1, max_length=64)


class EntryIn(BaseModel):
    """The count at bonded entry (warehouse)."""

    counted_quantity: int = _QUANTITY
    biz_location: str = Field(max_length=512, description="the bonded zone's location URI (SGLN or Digital Link)")


class InspectionIn(BaseModel):
    """The result of the entry inspection (customs)."""

    result: InspectionResult


class StorageIn(BaseModel):
    """Where the cleared lot is stored (warehouse)."""

    storage_location: str = Field(max_length=512, description="the storage location URI (SGLN or Digital Link)")


class ParcelIn(BaseModel):
    """One parcel to split off: its SSCC, how many units it holds, and the serials of those that have one."""

    sscc: str
    quantity: int = _QUANTITY
    units: list[str] = Field(
        default_factory=list,
        max_length=MAX_UNITS_PER_PARCEL,
        description="serial numbers (GS1 AI 21, up to 20 characters of set 82) of serialised units in the "
        "parcel, at most its quantity; each becomes /01/{gtin14}/21/{serial}",
    )


class SplitIn(BaseModel):
    """Parcels to split off a stored lot (warehouse)."""

    parcels: list[ParcelIn] = Field(min_length=1, max_length=500)


class Person(BaseModel):
    """Personal data: kept off chain and out of every event."""

    name: str = Field(min_length=1, max_length=200)
    id_number: str = Field(min_length=1, max_length=64, description="identity document number")
    phone: str | None = Field(default=None, max_length=64)
    address: str | None = Field(default=None, max_length=500)


class OrderItem(BaseModel):
    """A line of a consumer order."""

    gtin: str
    quantity: int = _QUANTITY
    unit_price: Decimal = Field(ge=0, max_digits=18, decimal_places=2)


class OrderIn(BaseModel):
    """The consumer order (enterprise)."""

    order_number: str = Field(min_length=1, max_length=64)
    items: list[OrderItem] = Field(min_length=1, max_length=100)
    total: Decimal = Field(ge=0, max_digits=18, decimal_places=2)
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    consignee: Person


class PaymentIn(BaseModel):
    """The payment of a consumer order (payment institution)."""

    payment_number: str = Field(min_length=1, max_length=64)
    order_number: str = Field(min_length=1, max_length=64)
    amount: Decimal = Field(ge=0, max_digits=18, decimal_places=2)
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    payer: Person


class WaybillIn(BaseModel):
    """The waybill of a parcel (carrier)."""

    waybill_number: str = Field(min_length=1, max_length=64)
    order_number: str = Field(min_length=1, max_length=64)
    consignee: Person


class RecallIn(BaseModel):
    """Why a lot is recalled (enterprise or customs)."""

    reason: str = Field(min_length=1, max_length=500)


@dataclass(frozen=True)
class Captured:
    """An EPCIS event as a client captured it: stored and hashed exactly as it came, never rebuilt."""

    event: dict[str, Any]
    context: Any = None  # the capture document's @context, for the event's namespace prefixes
    commitments: tuple[str, str] | None = None  # a document event's (person, document) commitments
    event_id: str | None = None  # its canonical hash, when the caller has computed it already


class EventAccepted(BaseModel):
    """An event accepted into the outbox; ``status`` becomes ``anchored`` once the chain holds it."""

    event_id: str
    step: str
    seq: int
    lot_id: str
    subject: str
    status: str


# -- lookups -------------------------------------------------------------------------------------------------


def get_lot(*, session: Session, lot_id: str, for_update: bool = False) -> Lot:
    """The lot with on-chain id ``lot_id`` (0x hex), locked for the transaction with ``for_update``; raises
    NotFound. Inside ``lots_locked`` a lot it locked is served from memory."""
    lot_id = lot_id.lower()
    if for_update and (locked := _locked_lots(session)) is not None and lot_id in locked.by_id:
        return locked.by_id[lot_id]
    query = select(Lot).where(Lot.lot_id == lot_id)
    if for_update:
        query = query.with_for_update()
    lot = session.exec(query).first()
    if lot is None:
        raise NotFound("lot", lot_id)
    return lot


@dataclass
class _LockedLots:
    by_id: dict[str, Lot] = dataclass_field(default_factory=dict)
    by_pk: dict[int, Lot] = dataclass_field(default_factory=dict)


_LOCKED_LOTS = "tracer.journey.locked_lots"


def _locked_lots(session: Session) -> _LockedLots | None:
    locked: _LockedLots | None = session.info.get(_LOCKED_LOTS)
    return locked


@contextmanager
def lots_locked(*, session: Session, lot_ids: Iterable[str]) -> Iterator[None]:
    """Locks the lots of ``lot_ids`` that exist, in one statement and in row order, and within the block has
    every step take them from memory instead of reading and locking them again.

    A capture document of hundreds of events on a few lots then costs one lock per lot, not a round trip per
    event; the fixed order keeps two documents naming the same lots from deadlocking. The locks are the
    caller's transaction's: call this outside any savepoint (rolling one back releases the row locks taken in
    it, on PostgreSQL) and end the block before that transaction ends. Lots not named here are read and
    locked by each step as outside the block.
    """
    wanted = sorted({lot_id.lower() for lot_id in lot_ids})
    locked = _LockedLots()
    for start in range(0, len(wanted), _IN_CHUNK):
        query = (
            select(Lot)
            .where(col(Lot.lot_id).in_(wanted[start : start + _IN_CHUNK]))
            .order_by(col(Lot.id))
            .with_for_update()
            # What a lock protects is the row as it is now, not a copy this session read before.
            .execution_options(populate_existing=True)
        )
        for lot in session.exec(query):
            assert lot.id is not None
            locked.by_id[lot.lot_id] = locked.by_pk[lot.id] = lot
    outer = _locked_lots(session)
    if outer is not None:  # nested blocks: the outer block's lots stay locked, and known
        locked.by_id = {**outer.by_id, **locked.by_id}
        locked.by_pk = {**outer.by_pk, **locked.by_pk}
    session.info[_LOCKED_LOTS] = locked
    try:
        yield
    finally:
        if outer is None:
            session.info.pop(_LOCKED_LOTS, None)
        else:
            session.info[_LOCKED_LOTS] = outer


_EVENT_ROWS = "tracer.journey.event_rows"


@contextmanager
def events_inserted_together(*, session: Session) -> Iterator[None]:
    """Within the block each accepted event is kept as a row, and all of them are written by one multi-row
    ``INSERT`` when the block ends (or when ``find_events`` must see them), instead of an ORM object each.

    For a document of hundreds of events the ORM's unit of work (an object, its state, an ``INSERT … RETURNING``
    to learn each id) costs about five times the CPU of the plain insert; nothing in a step needs an event's
    row id, except a correction of an event of the same block, which ``find_events`` covers. When the block
    ends by an exception its rows are not written: the caller rolls its transaction (or savepoint) back.
    """
    if _EVENT_ROWS in session.info:
        raise RuntimeError("events_inserted_together does not nest")
    session.info[_EVENT_ROWS] = []
    try:
        yield
        _write_event_rows(session)
    finally:
        session.info.pop(_EVENT_ROWS, None)


def _write_event_rows(session: Session) -> None:
    rows: list[dict[str, Any]] | None = session.info.get(_EVENT_ROWS)
    if rows:
        # An ORM bulk insert: one executemany (multi-row VALUES on PostgreSQL), after the pending lots and
        # parcels it refers to are flushed.
        session.execute(insert(Event), list(rows))
        rows.clear()


def find_lot(*, session: Session, gtin: str, lot_number: str) -> Lot:
    """The lot of GTIN ``gtin`` and number ``lot_number``; raises NotFound."""
    return get_lot(session=session, lot_id=_hex(identifiers.lot_id(gtin, lot_number)))


def get_parcel(*, session: Session, sscc: str) -> Parcel:
    """The parcel with SSCC ``sscc``; raises NotFound."""
    parcel = session.exec(select(Parcel).where(Parcel.sscc == sscc)).first()
    if parcel is None:
        raise NotFound("parcel", sscc)
    return parcel


def find_unit(*, session: Session, gtin: str, serial: str) -> tuple[Unit, Parcel, Lot]:
    """The unit of GTIN ``gtin`` and serial ``serial``, with its parcel and lot (one query); raises NotFound."""
    row = session.exec(
        select(Unit, Parcel, Lot)
        .join(Parcel, col(Parcel.id) == Unit.parcel_pk)
        .join(Lot, col(Lot.id) == Unit.lot_pk)
        .where(Unit.gtin == gtin, Unit.serial == serial)
    ).first()
    if row is None:
        raise NotFound("unit", identifiers.unit_path(gtin, serial))
    return row


def parcel_units(*, session: Session, parcel: Parcel) -> list[Unit]:
    """The serialised units packed into ``parcel``, in the order its split named them."""
    return list(session.exec(select(Unit).where(Unit.parcel_pk == parcel.id).order_by(col(Unit.id))))


def lot_events(*, session: Session, lot: Lot) -> list[Event]:
    """Every accepted event of ``lot``'s chain, in sequence order."""
    return list(session.exec(select(Event).where(Event.lot_pk == lot.id).order_by(col(Event.seq))))


# -- steps ---------------------------------------------------------------------------------------------------


def declare(
    *, session: Session, actor: Actor, declaration: DeclarationIn, captured: Captured | None = None
) -> EventAccepted:
    """Declares a lot before arrival; raises InvalidInput, PermissionDenied or DuplicateRecord."""
    check_role(step=Step.DECLARATION, actor=actor.name, role=actor.role)
    gtin = identifiers.normalize_gtin(declaration.gtin, pointer="/gtin")
    lot_number = identifiers.validate_lot(declaration.lot, pointer="/lot")
    lot_id = _hex(identifiers.lot_id(gtin, lot_number))
    if session.exec(select(Lot).where(Lot.lot_id == lot_id)).first() is not None:
        raise DuplicateRecord("lot", identifiers.lot_path(gtin, lot_number))
    assert actor.id is not None
    lot = Lot(
        lot_id=lot_id,
        gtin=gtin,
        lot_number=lot_number,
        product_name=declaration.product_name,
        hs_code=declaration.hs_code,
        origin_country=declaration.origin_country,
        manufacturer=declaration.manufacturer,
        expiry=declaration.expiry.isoformat() if declaration.expiry else None,
        declaration_number=declaration.declaration_number,
        declared_quantity=declaration.quantity,
        state=LotState.DECLARED,
        enterprise_id=actor.id,
    )
    session.add(lot)
    session.flush()
    return _append(
        captured=captured,
        session=session,
        lot=lot,
        actor=actor,
        step=Step.DECLARATION,
        payload=lambda: build.declaration_event(
            event_time=_now(),
            gtin=gtin,
            lot=lot_number,
            quantity=declaration.quantity,
            declaration_number=declaration.declaration_number,
            product_name=declaration.product_name,
            hs_code=declaration.hs_code,
            origin_country=declaration.origin_country,
            manufacturer=declaration.manufacturer,
            expiry_date=declaration.expiry,
        ),
        call=lambda seq, h: ("declareLot", [lot_id, declaration.quantity, h]),
    )


def record_entry(
    *, session: Session, actor: Actor, lot_id: str, entry: EntryIn, captured: Captured | None = None
) -> EventAccepted:
    """Records the count at bonded entry; a difference from the declaration is kept, never fixed."""
    check_role(step=Step.ENTRY, actor=actor.name, role=actor.role)
    lot = get_lot(session=session, lot_id=lot_id, for_update=True)
    lot.state = lot_state_after(state=LotState(lot.state), step=Step.ENTRY, subject=_lot_name(lot))
    lot.received_quantity = entry.counted_quantity
    return _append(
        captured=captured,
        session=session,
        lot=lot,
        actor=actor,
        step=Step.ENTRY,
        payload=lambda: build.entry_event(
            event_time=_now(),
            gtin=lot.gtin,
            lot=lot.lot_number,
            counted_quantity=entry.counted_quantity,
            declared_quantity=lot.declared_quantity,
            biz_location=entry.biz_location,
        ),
        call=lambda seq, h: ("recordEntry", [lot.lot_id, seq, entry.counted_quantity, h]),
    )


def record_inspection(
    *, session: Session, actor: Actor, lot_id: str, inspection: InspectionIn, captured: Captured | None = None
) -> EventAccepted:
    """Records customs' inspection result: conformant or sampled clears the lot, non-conformant holds it."""
    check_role(step=Step.INSPECTION, actor=actor.name, role=actor.role)
    lot = get_lot(session=session, lot_id=lot_id, for_update=True)
    lot.state = lot_state_after(
        state=LotState(lot.state), step=Step.INSPECTION, subject=_lot_name(lot), result=inspection.result
    )
    code = _INSPECTION_CODE[inspection.result]
    return _append(
        captured=captured,
        session=session,
        lot=lot,
        actor=actor,
        step=Step.INSPECTION,
        payload=lambda: build.inspection_event(
            event_time=_now(), gtin=lot.gtin, lot=lot.lot_number, result=inspection.result.value
        ),
        call=lambda seq, h: ("recordInspection", [lot.lot_id, seq, code, h]),
    )


def record_storage(
    *, session: Session, actor: Actor, lot_id: str, storage: StorageIn, captured: Captured | None = None
) -> EventAccepted:
    """Records where a cleared lot is stored in the bonded warehouse."""
    check_role(step=Step.STORAGE, actor=actor.name, role=actor.role)
    lot = get_lot(session=session, lot_id=lot_id, for_update=True)
    lot.state = lot_state_after(state=LotState(lot.state), step=Step.STORAGE, subject=_lot_name(lot))
    return _append(
        captured=captured,
        session=session,
        lot=lot,
        actor=actor,
        step=Step.STORAGE,
        payload=lambda: build.storage_event(
            event_time=_now(),
            gtin=lot.gtin,
            lot=lot.lot_number,
            storage_location=storage.storage_location,
            quantity=lot.received_quantity or lot.declared_quantity,
        ),
        call=lambda seq, h: ("recordStorage", [lot.lot_id, seq, h]),
    )


def split(
    *, session: Session, actor: Actor, lot_id: str, request: SplitIn, captured: Captured | None = None
) -> list[EventAccepted]:
    """Splits parcels off a stored lot, one event each naming the serials of its units; never more than the
    lot received. Raises InvalidInput, DuplicateRecord (an SSCC, or a serial of the lot's GTIN, seen before)
    or StepOutOfOrder."""
    check_role(step=Step.SPLIT, actor=actor.name, role=actor.role)
    if captured is not None and len(request.parcels) != 1:
        raise InvalidInput("a captured split event packs exactly one parcel", pointer="/parentID")
    lot = get_lot(session=session, lot_id=lot_id, for_update=True)
    serials = _new_serials(session=session, gtin=lot.gtin, request=request)
    accepted = []
    seen: set[str] = set()
    for index, parcel_in in enumerate(request.parcels):
        sscc = identifiers.validate_sscc(parcel_in.sscc, pointer=f"/parcels/{index}/sscc")
        if sscc in seen or session.exec(select(Parcel).where(Parcel.sscc == sscc)).first() is not None:
            raise DuplicateRecord("parcel", sscc)
        seen.add(sscc)
        check_split(
            state=LotState(lot.state),
            recalled=lot.recalled,
            subject=_lot_name(lot),
            received=lot.received_quantity or 0,
            split=lot.split_quantity,
            quantity=parcel_in.quantity,
        )
        parcel_index = session.exec(select(Parcel.id).where(Parcel.lot_pk == lot.id)).all()
        assert lot.id is not None
        parcel = Parcel(
            sscc=sscc,
            parcel_id=_hex(identifiers.parcel_id(sscc)),
            lot_pk=lot.id,
            index=len(parcel_index),
            quantity=parcel_in.quantity,
            state=ParcelState.SPLIT,
        )
        session.add(parcel)
        session.flush()
        assert parcel.id is not None
        session.add_all(Unit(gtin=lot.gtin, serial=s, parcel_pk=parcel.id, lot_pk=lot.id) for s in serials[index])
        lot.split_quantity += parcel_in.quantity

        # Defaults bind this iteration's values (ruff B023); named functions so mypy can check them.
        def split_payload(
            code: str = sscc, quantity: int = parcel_in.quantity, units: list[str] = serials[index]
        ) -> dict[str, Any]:
            return build.split_event(
                event_time=_now(), gtin=lot.gtin, lot=lot.lot_number, sscc=code, quantity=quantity, serials=units
            )

        def split_call(seq: int, h: str, p: Parcel = parcel) -> tuple[str, list[Any]]:
            return "splitParcel", [lot.lot_id, seq, p.parcel_id, p.quantity, h]

        accepted.append(
            _append(
                session=session,
                lot=lot,
                actor=actor,
                step=Step.SPLIT,
                payload=split_payload,
                captured=captured,
                parcel=parcel,
                call=split_call,
            )
        )
    return accepted


def _new_serials(*, session: Session, gtin: str, request: SplitIn) -> list[list[str]]:
    """The validated serials of each parcel of ``request``; InvalidInput for a malformed serial or more serials
    than the parcel holds, DuplicateRecord for a serial of ``gtin`` named twice or already packed."""
    serials: list[list[str]] = []
    seen: set[str] = set()
    for index, parcel_in in enumerate(request.parcels):
        pointer = f"/parcels/{index}/units"
        if len(parcel_in.units) > parcel_in.quantity:
            raise InvalidInput(
                f"{len(parcel_in.units)} serials for a parcel of {parcel_in.quantity} units", pointer=pointer
            )
        for position, serial in enumerate(parcel_in.units):
            identifiers.validate_serial(serial, pointer=f"{pointer}/{position}")
            if serial in seen:
                raise DuplicateRecord("unit", identifiers.unit_path(gtin, serial))
            seen.add(serial)
        serials.append(list(parcel_in.units))
    if seen:
        # One query for the whole request, in chunks a database's parameter limit allows.
        wanted = sorted(seen)
        for start in range(0, len(wanted), _IN_CHUNK):
            chunk = wanted[start : start + _IN_CHUNK]
            taken = session.exec(select(Unit.serial).where(Unit.gtin == gtin, col(Unit.serial).in_(chunk))).first()
            if taken is not None:
                raise DuplicateRecord("unit", identifiers.unit_path(gtin, taken))
    return serials


def attach_order(
    *, session: Session, actor: Actor, sscc: str, order: OrderIn, captured: Captured | None = None
) -> EventAccepted:
    """Attaches the consumer order to a parcel (the lot's own enterprise)."""
    items = [
        {
            "gtin": identifiers.normalize_gtin(item.gtin, pointer=f"/items/{index}/gtin"),
            "quantity": item.quantity,
            "unit_price": str(item.unit_price),
        }
        for index, item in enumerate(order.items)
    ]
    public = {"order_number": order.order_number, "items": items, "total": str(order.total), "currency": order.currency}
    return _attach_document(
        session=session,
        actor=actor,
        sscc=sscc,
        step=Step.ORDER,
        number=order.order_number,
        order_number=order.order_number,
        public=public,
        person=("consignee", order.consignee),
        captured=captured,
        make_event=lambda person_commitment, document_commitment: build.order_event(
            event_time=_now(),
            sscc=sscc,
            order_number=order.order_number,
            total=order.total,
            currency=order.currency,
            items=items,
            consignee_commitment=person_commitment,
            document_commitment=document_commitment,
        ),
    )


def attach_payment(
    *, session: Session, actor: Actor, sscc: str, payment: PaymentIn, captured: Captured | None = None
) -> EventAccepted:
    """Attaches the payment of the parcel's order (a payment institution)."""
    public = {
        "payment_number": payment.payment_number,
        "order_number": payment.order_number,
        "amount": str(payment.amount),
        "currency": payment.currency,
    }
    return _attach_document(
        session=session,
        actor=actor,
        sscc=sscc,
        step=Step.PAYMENT,
        number=payment.payment_number,
        order_number=payment.order_number,
        public=public,
        person=("payer", payment.payer),
        captured=captured,
        make_event=lambda person_commitment, document_commitment: build.payment_event(
            event_time=_now(),
            sscc=sscc,
            payment_number=payment.payment_number,
            order_number=payment.order_number,
            amount=payment.amount,
            currency=payment.currency,
            payer_commitment=person_commitment,
            document_commitment=document_commitment,
        ),
    )


def attach_waybill(
    *, session: Session, actor: Actor, sscc: str, waybill: WaybillIn, captured: Captured | None = None
) -> EventAccepted:
    """Attaches the waybill that names the parcel (a carrier)."""
    public = {"waybill_number": waybill.waybill_number, "order_number": waybill.order_number, "sscc": sscc}
    return _attach_document(
        session=session,
        actor=actor,
        sscc=sscc,
        step=Step.WAYBILL,
        number=waybill.waybill_number,
        order_number=waybill.order_number,
        public=public,
        person=("consignee", waybill.consignee),
        captured=captured,
        make_event=lambda person_commitment, document_commitment: build.waybill_event(
            event_time=_now(),
            sscc=sscc,
            waybill_number=waybill.waybill_number,
            order_number=waybill.order_number,
            consignee_commitment=person_commitment,
            document_commitment=document_commitment,
        ),
    )


def release(*, session: Session, actor: Actor, sscc: str, captured: Captured | None = None) -> EventAccepted:
    """Releases a parcel from the bonded zone against its three matching documents (customs).

    Raises DocumentsMismatch (the three documents disagree), StepOutOfOrder or OverRelease.
    """
    check_role(step=Step.RELEASE, actor=actor.name, role=actor.role)
    parcel = get_parcel(session=session, sscc=sscc)
    lot = _lot_of(session, parcel, for_update=True)
    documents = _documents(session, parcel)
    check_release(
        parcel_state=ParcelState(parcel.state),
        recalled=lot.recalled,
        subject=f"parcel {sscc}",
        present=set(documents),
        received=lot.received_quantity or 0,
        released=lot.released_quantity,
        quantity=parcel.quantity,
        lot=_lot_name(lot),
    )
    problems = match_documents(session=session, lot=lot, parcel=parcel, documents=documents)
    if problems:
        raise DocumentsMismatch(sscc, problems)
    parcel.state = ParcelState.RELEASED
    lot.released_quantity += parcel.quantity
    return _append(
        captured=captured,
        session=session,
        lot=lot,
        actor=actor,
        step=Step.RELEASE,
        payload=lambda: build.customs_release_event(
            event_time=_now(),
            sscc=sscc,
            order_number=documents["order"].number,
            waybill_number=documents["waybill"].number,
            release_number=f"{lot.declaration_number}/{parcel.index}",
        ),
        parcel=parcel,
        call=lambda seq, h: ("releaseParcel", [parcel.parcel_id, seq, h]),
    )


def record_delivery(*, session: Session, actor: Actor, sscc: str, captured: Captured | None = None) -> EventAccepted:
    """Records that a released parcel reached its consignee (a carrier)."""
    check_role(step=Step.DELIVERY, actor=actor.name, role=actor.role)
    parcel = get_parcel(session=session, sscc=sscc)
    lot = _lot_of(session, parcel, for_update=True)
    check_delivery(parcel_state=ParcelState(parcel.state), subject=f"parcel {sscc}")
    parcel.state = ParcelState.DELIVERED
    return _append(
        captured=captured,
        session=session,
        lot=lot,
        actor=actor,
        step=Step.DELIVERY,
        payload=lambda: build.delivery_event(event_time=_now(), sscc=sscc),
        parcel=parcel,
        call=lambda seq, h: ("recordDelivery", [parcel.parcel_id, seq, h]),
    )


def recall(
    *, session: Session, actor: Actor, lot_id: str, request: RecallIn, captured: Captured | None = None
) -> EventAccepted:
    """Recalls a lot and with it every parcel split from it (its enterprise or customs)."""
    check_role(step=Step.RECALL, actor=actor.name, role=actor.role)
    lot = get_lot(session=session, lot_id=lot_id, for_update=True)
    if actor.role == "enterprise" and actor.id != lot.enterprise_id:
        raise PermissionDenied(actor.name, actor.role, "the lot's own enterprise or customs")
    check_recall(recalled=lot.recalled, subject=_lot_name(lot))
    lot.recalled = True
    return _append(
        captured=captured,
        session=session,
        lot=lot,
        actor=actor,
        step=Step.RECALL,
        payload=lambda: build.recall_event(event_time=_now(), gtin=lot.gtin, lot=lot.lot_number, reason=request.reason),
        call=lambda seq, h: ("recall", [lot.lot_id, seq, h]),
    )


def record_observation(
    *,
    session: Session,
    actor: Actor,
    lot_id: str,
    captured: Captured,
    sscc: str | None = None,
    corrects: Event | None = None,
) -> EventAccepted:
    """Records a captured event that changes no state on the lot's chain: an observation, or the
    correction (``errorDeclaration``) of the event ``corrects``."""
    step = Step.CORRECTION if corrects is not None else Step.OBSERVATION
    check_role(step=step, actor=actor.name, role=actor.role)
    lot = get_lot(session=session, lot_id=lot_id, for_update=True)
    parcel = get_parcel(session=session, sscc=sscc) if sscc else None
    if parcel is not None and parcel.lot_pk != lot.id:
        raise InvalidInput(f"parcel {sscc} was not split from this lot", pointer="/epcList")
    subject = parcel.parcel_id if parcel else "0x" + "00" * 32
    return _append(
        session=session,
        lot=lot,
        actor=actor,
        step=step,
        payload=lambda: captured.event,
        parcel=parcel,
        call=lambda seq, h: ("recordObservation", [lot.lot_id, seq, subject, h]),
        captured=captured,
        corrects=corrects,
    )


def find_event(*, session: Session, event_id: str) -> Event | None:
    """The first accepted event with canonical hash ``event_id`` (the original, not a correction)."""
    return find_events(session=session, event_ids=[event_id]).get(event_id)


def find_events(*, session: Session, event_ids: Iterable[str]) -> dict[str, Event]:
    """The first accepted event (the original, not a correction) of each canonical hash of ``event_ids`` that
    has one, by hash: one query per 900 hashes, however many there are."""
    _write_event_rows(session)  # the events of an ``events_inserted_together`` block count too
    wanted = sorted(set(event_ids))
    found: dict[str, Event] = {}
    for start in range(0, len(wanted), _IN_CHUNK):
        query = (
            select(Event)
            .where(col(Event.event_hash).in_(wanted[start : start + _IN_CHUNK]), col(Event.corrects).is_(None))
            .order_by(col(Event.id))
        )
        for event in session.exec(query):
            found.setdefault(event.event_hash, event)
    return found


# -- the three documents -------------------------------------------------------------------------------------


def match_documents(*, session: Session, lot: Lot, parcel: Parcel, documents: dict[str, Document]) -> list[str]:
    """Why the order, payment and waybill of ``parcel`` do not match (MISSION.md 三单比对); empty if they do."""
    order, payment, waybill = documents["order"], documents["payment"], documents["waybill"]
    order_public, payment_public = json.loads(order.public), json.loads(payment.public)
    problems = []
    for document in (payment, waybill):
        if document.order_number != order.number:
            problems.append(f"the {document.kind} names order {document.order_number}, not {order.number}")
    if (Decimal(payment_public["amount"]), payment_public["currency"]) != (
        Decimal(order_public["total"]),
        order_public["currency"],
    ):
        problems.append(
            f"paid {payment_public['amount']} {payment_public['currency']}, "
            f"the order totals {order_public['total']} {order_public['currency']}"
        )
    # Documents captured as EPCIS events carry commitments only; who paid and who receives is then
    # compared by whoever holds the personal data, not here (docs/epcis-mapping.md).
    consignee = _person(session, order, "consignee")
    payer, receiver = _person(session, payment, "payer"), _person(session, waybill, "consignee")
    if consignee and payer and not commitments.same_person(consignee, payer):
        problems.append("the payer is not the order's consignee")
    if consignee and receiver and not commitments.same_person(consignee, receiver):
        problems.append("the waybill's consignee is not the order's consignee")
    ordered = sum(item["quantity"] for item in order_public["items"] if item["gtin"] == lot.gtin)
    if parcel.quantity > ordered:
        problems.append(f"the parcel holds {parcel.quantity} of GTIN {lot.gtin}; the order has {ordered}")
    return problems


def _person(session: Session, document: Document, role: str) -> dict[str, str]:
    rows = session.exec(select(PersonalDatum).where(PersonalDatum.document_pk == document.id)).all()
    prefix = role + "."
    return {row.field.removeprefix(prefix): row.value or "" for row in rows if row.field.startswith(prefix)}


def _documents(session: Session, parcel: Parcel) -> dict[str, Document]:
    return {d.kind: d for d in session.exec(select(Document).where(Document.parcel_pk == parcel.id))}


def _attach_document(
    *,
    session: Session,
    actor: Actor,
    sscc: str,
    step: Step,
    number: str,
    order_number: str,
    public: dict[str, Any],
    person: tuple[str, Person],
    make_event: Callable[[str, str], dict[str, Any]],
    captured: Captured | None,
) -> EventAccepted:
    """Stores a document (its personal data apart, behind salted commitments) and appends its event.

    A captured document event brings its own commitments and no personal data.
    """
    check_role(step=step, actor=actor.name, role=actor.role)
    sscc = identifiers.validate_sscc(sscc, pointer="/sscc")
    parcel = get_parcel(session=session, sscc=sscc)
    lot = _lot_of(session, parcel, for_update=True)
    if step is Step.ORDER and actor.id != lot.enterprise_id:
        raise PermissionDenied(actor.name, actor.role, "the enterprise that declared the lot")
    check_document(
        parcel_state=ParcelState(parcel.state),
        subject=f"parcel {sscc}",
        step=step,
        present=set(_documents(session, parcel)),
    )
    role, who = person
    fields: dict[str, str] = {}
    salt = person_salt = None
    if captured is not None and captured.commitments is not None:
        person_commitment, document_commitment = captured.commitments
    else:
        fields = {key: value for key, value in who.model_dump().items() if value is not None}
        person_salt = commitments.new_salt()
        person_commitment = commitments.document_commitment(fields, person_salt)
        salt = commitments.new_salt()
        document_commitment = commitments.document_commitment({**public, role: person_commitment}, salt)
    assert parcel.id is not None
    document = Document(
        parcel_pk=parcel.id,
        kind=step.value,
        number=number,
        order_number=order_number,
        public=json.dumps(public, sort_keys=True),
        commitment=document_commitment,
        salt=None if salt is None else "0x" + salt.hex(),
        person_salt=None if person_salt is None else "0x" + person_salt.hex(),
    )
    session.add(document)
    session.flush()
    assert document.id is not None
    for field, value in fields.items():
        field_salt = commitments.new_salt()
        session.add(
            PersonalDatum(
                document_pk=document.id,
                field=f"{role}.{field}",
                value=value,
                salt="0x" + field_salt.hex(),
                commitment=commitments.commit(value, field_salt),
            )
        )
    code = _DOCUMENT_CODE[step]
    return _append(
        captured=captured,
        session=session,
        lot=lot,
        actor=actor,
        step=step,
        payload=lambda: make_event(person_commitment, document_commitment),
        parcel=parcel,
        call=lambda seq, h: ("attachDocument", [parcel.parcel_id, seq, code, document_commitment, h]),
    )


# -- the chain of a lot --------------------------------------------------------------------------------------


def _append(
    *,
    session: Session,
    lot: Lot,
    actor: Actor,
    step: Step,
    payload: Callable[[], dict[str, Any]],
    call: Callable[[int, str], tuple[str, list[Any]]],
    captured: Captured | None,
    parcel: Parcel | None = None,
    corrects: Event | None = None,
) -> EventAccepted:
    """Appends an event to ``lot``'s chain with the next sequence number, as a pending outbox row.

    The event is the one a client captured, kept exactly as it came, or else ``payload()`` builds it.
    """
    if actor.encrypted_key is None:
        raise SignatureRequired(actor.name)
    event = captured.event if captured else payload()
    context = captured.context if captured else None
    hash_ = captured.event_id if captured and captured.event_id else event_hash(event, context=context)
    seq = lot.next_seq
    lot.next_seq += 1
    function, args = call(seq, "0x" + event_hash_bytes(hash_).hex())
    assert lot.id is not None and actor.id is not None
    # Both are normally this session's already; adding them again walks their cascades, per event of a bulk capture.
    for changed in (lot, parcel):
        if changed is not None and changed not in session:
            session.add(changed)
    row: dict[str, Any] = {
        "lot_pk": lot.id,
        "seq": seq,
        "parcel_pk": parcel.id if parcel else None,
        "step": step.value,
        "actor_id": actor.id,
        "payload": _TEXT_JSON.encode(event),
        "context": None if context is None else _TEXT_JSON.encode(context),
        "event_hash": hash_,
        "corrects": corrects.id if corrects is not None else None,
        "chain_function": function,
        "chain_args": json.dumps(args),
        "status": "pending",
        "created_at": utcnow(),
    }
    rows: list[dict[str, Any]] | None = session.info.get(_EVENT_ROWS)
    if rows is None:
        session.add(Event(**row))
    else:
        rows.append(row)
    subject = identifiers.parcel_path(parcel.sscc) if parcel else _lot_path(lot.gtin, lot.lot_number)
    return EventAccepted(event_id=hash_, step=step.value, seq=seq, lot_id=lot.lot_id, subject=subject, status="pending")


def _lot_of(session: Session, parcel: Parcel, *, for_update: bool = False) -> Lot:
    if for_update and (locked := _locked_lots(session)) is not None and parcel.lot_pk in locked.by_pk:
        return locked.by_pk[parcel.lot_pk]
    query = select(Lot).where(Lot.id == parcel.lot_pk)
    if for_update:
        query = query.with_for_update()
    lot = session.exec(query).one()
    return lot


# json.dumps(…, ensure_ascii=False) builds an encoder per call: one, reused, for the events of a bulk capture.
_TEXT_JSON = json.JSONEncoder(ensure_ascii=False)

# A lot's path re-validates its GTIN and number: once per lot, not once per event of a bulk capture. Bounded.
_lot_path = functools.lru_cache(maxsize=4096)(identifiers.lot_path)


def _lot_name(lot: Lot) -> str:
    return "lot " + identifiers.lot_path(lot.gtin, lot.lot_number)


def _hex(raw: bytes) -> str:
    return "0x" + raw.hex()


def _now() -> datetime:
    return datetime.now(UTC)
