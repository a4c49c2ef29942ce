"""One endpoint per journey step; each answers 202 once the event is committed to the outbox."""

from __future__ import annotations

from fastapi import APIRouter, Depends, status

from api.deps import ActorDep, ServiceDep, SessionDep, reject_unknown_query_parameters
from tracer import journey
from tracer.journey import (
    DeclarationIn,
    EntryIn,
    EventAccepted,
    InspectionIn,
    OrderIn,
    PaymentIn,
    RecallIn,
    SplitIn,
    StorageIn,
    WaybillIn,
)
from tracer.service import Service
from tracer.views import LotPublic, lot_public

router = APIRouter(tags=["journey"], dependencies=[Depends(reject_unknown_query_parameters)])
ACCEPTED = status.HTTP_202_ACCEPTED


def _commit(session: SessionDep, service: Service) -> None:
    session.commit()
    service.writer.notify()


@router.post("/lots", status_code=ACCEPTED)
def declare_lot(body: DeclarationIn, actor: ActorDep, session: SessionDep, service: ServiceDep) -> EventAccepted:
    """Declare a lot before it arrives (enterprise)."""
    accepted = journey.declare(session=session, actor=actor, declaration=body)
    _commit(session, service)
    return accepted


@router.get("/lots/{lot_id}")
def get_lot(lot_id: str, _actor: ActorDep, session: SessionDep) -> LotPublic:
    """A lot's ledger, parcels and events as the database holds them."""
    return lot_public(session=session, lot=journey.get_lot(session=session, lot_id=lot_id))


@router.post("/lots/{lot_id}/entry", status_code=ACCEPTED)
def record_entry(
    lot_id: str, body: EntryIn, actor: ActorDep, session: SessionDep, service: ServiceDep
) -> EventAccepted:
    """Record the count at bonded entry (warehouse)."""
    accepted = journey.record_entry(session=session, actor=actor, lot_id=lot_id, entry=body)
    _commit(session, service)
    return accepted


@router.post("/lots/{lot_id}/inspection", status_code=ACCEPTED)
def record_inspection(
    lot_id: str, body: InspectionIn, actor: ActorDep, session: SessionDep, service: ServiceDep
) -> EventAccepted:
    """Record the inspection result (customs)."""
    accepted = journey.record_inspection(session=session, actor=actor, lot_id=lot_id, inspection=body)
    _commit(session, service)
    return accepted


@router.post("/lots/{lot_id}/storage", status_code=ACCEPTED)
def record_storage(
    lot_id: str, body: StorageIn, actor: ActorDep, session: SessionDep, service: ServiceDep
) -> EventAccepted:
    """Record where the cleared lot is stored (warehouse)."""
    accepted = journey.record_storage(session=session, actor=actor, lot_id=lot_id, storage=body)
    _commit(session, service)
    return accepted


@router.post("/lots/{lot_id}/parcels", status_code=ACCEPTED)
def split_lot(
    lot_id: str, body: SplitIn, actor: ActorDep, session: SessionDep, service: ServiceDep
) -> list[EventAccepted]:
    """Split parcels (SSCCs) off a stored lot (warehouse)."""
    accepted = journey.split(session=session, actor=actor, lot_id=lot_id, request=body)
    _commit(session, service)
    return accepted


@router.post("/lots/{lot_id}/recall", status_code=ACCEPTED)
def recall_lot(lot_id: str, body: RecallIn, actor: ActorDep, session: SessionDep, service: ServiceDep) -> EventAccepted:
    """Recall a lot and every parcel split from it (its enterprise or customs)."""
    accepted = journey.recall(session=session, actor=actor, lot_id=lot_id, request=body)
    _commit(session, service)
    return accepted


@router.post("/parcels/{sscc}/order", status_code=ACCEPTED)
def attach_order(sscc: str, body: OrderIn, actor: ActorDep, session: SessionDep, service: ServiceDep) -> EventAccepted:
    """Attach the consumer order (the lot's enterprise)."""
    accepted = journey.attach_order(session=session, actor=actor, sscc=sscc, order=body)
    _commit(session, service)
    return accepted


@router.post("/parcels/{sscc}/payment", status_code=ACCEPTED)
def attach_payment(
    sscc: str, body: PaymentIn, actor: ActorDep, session: SessionDep, service: ServiceDep
) -> EventAccepted:
    """Attach the order's payment (payment institution)."""
    accepted = journey.attach_payment(session=session, actor=actor, sscc=sscc, payment=body)
    _commit(session, service)
    return accepted


@router.post("/parcels/{sscc}/waybill", status_code=ACCEPTED)
def attach_waybill(
    sscc: str, body: WaybillIn, actor: ActorDep, session: SessionDep, service: ServiceDep
) -> EventAccepted:
    """Attach the parcel's waybill (carrier)."""
    accepted = journey.attach_waybill(session=session, actor=actor, sscc=sscc, waybill=body)
    _commit(session, service)
    return accepted


@router.post("/parcels/{sscc}/release", status_code=ACCEPTED)
def release_parcel(sscc: str, actor: ActorDep, session: SessionDep, service: ServiceDep) -> EventAccepted:
    """Release the parcel against its three matching documents, writing off the lot (customs)."""
    accepted = journey.release(session=session, actor=actor, sscc=sscc)
    _commit(session, service)
    return accepted


@router.post("/parcels/{sscc}/delivery", status_code=ACCEPTED)
def record_delivery(sscc: str, actor: ActorDep, session: SessionDep, service: ServiceDep) -> EventAccepted:
    """Record the parcel's delivery to its consignee (carrier)."""
    accepted = journey.record_delivery(session=session, actor=actor, sscc=sscc)
    _commit(session, service)
    return accepted
