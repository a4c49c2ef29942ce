"""What readers see: a lot's ledger, and the scan document of a lot or parcel (INTERFACES.md "scan")."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from sqlmodel import Session, col, select

from tracer import identifiers
from tracer.chain.client import ChainClient
from tracer.journey import lot_events
from tracer.store.models import Event, Lot, Parcel
from tracer.verify import Verification, verify_events


class ParcelPublic(BaseModel):
    """A parcel as the database holds it."""

    sscc: str
    index: int
    quantity: int
    state: str


class EventPublic(BaseModel):
    """An event's place in its lot's chain and its anchor."""

    seq: int
    step: str
    event_id: str
    status: str
    tx_hash: str | None
    block_number: int | None
    reason: str | None


class LotPublic(BaseModel):
    """A lot's ledger, parcels and events as the database holds them."""

    lot_id: str
    gtin: str
    lot: str
    path: str
    state: str
    recalled: bool
    declared_quantity: int
    received_quantity: int | None
    split_quantity: int
    released_quantity: int
    parcels: list[ParcelPublic]
    events: list[EventPublic]


def lot_public(*, session: Session, lot: Lot) -> LotPublic:
    """The ledger view of ``lot``."""
    parcels = session.exec(select(Parcel).where(Parcel.lot_pk == lot.id).order_by(col(Parcel.index))).all()
    return LotPublic(
        lot_id=lot.lot_id,
        gtin=lot.gtin,
        lot=lot.lot_number,
        path=identifiers.lot_path(lot.gtin, lot.lot_number),
        state=lot.state,
        recalled=lot.recalled,
        declared_quantity=lot.declared_quantity,
        received_quantity=lot.received_quantity,
        split_quantity=lot.split_quantity,
        released_quantity=lot.released_quantity,
        parcels=[ParcelPublic(sscc=p.sscc, index=p.index, quantity=p.quantity, state=p.state) for p in parcels],
        events=[
            EventPublic(
                seq=e.seq,
                step=e.step,
                event_id=e.event_hash,
                status=e.status,
                tx_hash=e.tx_hash,
                block_number=e.block_number,
                reason=e.reason,
            )
            for e in lot_events(session=session, lot=lot)
        ],
    )


def anchor(event: Event) -> dict[str, Any]:
    """The anchor of a stored event, in the field names of INTERFACES.md's ``tracer:anchors``."""
    return {
        "status": event.status,
        "txHash": event.tx_hash,
        "blockNumber": event.block_number,
        "blockHash": event.block_hash,
        "logIndex": event.log_index,
    }


def scan_document(
    *, session: Session, client: ChainClient, public_url: str, lot: Lot, parcel: Parcel | None = None
) -> tuple[dict[str, Any], Verification]:
    """The scan JSON of a lot (or of a parcel split from it), verified against the chain now."""
    path = identifiers.parcel_path(parcel.sscc) if parcel else identifiers.lot_path(lot.gtin, lot.lot_number)
    events = lot_events(session=session, lot=lot)
    verification = verify_events(client=client, lot_id=lot.lot_id, events=events)
    shown = [e for e in events if e.parcel_pk is None or (parcel is not None and e.parcel_pk == parcel.id)]
    recall_event = next((e for e in events if e.step == "recall"), None)
    recall: dict[str, Any] = {"recalled": lot.recalled}
    if recall_event is not None:
        payload = json.loads(recall_event.payload)
        recall.update(reason=payload.get("tracer:reason"), recalled_at=payload.get("eventTime"))
    document = {
        "id": public_url + path,
        "product": {
            "gtin": lot.gtin,
            "name": lot.product_name,
            "lot": lot.lot_number,
            "expiry": lot.expiry,
            "origin_country": lot.origin_country,
            "manufacturer": lot.manufacturer,
            "hs_code": lot.hs_code,
            **({"sscc": parcel.sscc, "quantity": parcel.quantity} if parcel else {}),
        },
        "events": [_event_summary(e) for e in shown],
        "verification": verification.public(),
        "recall": recall,
        "clone_warning": None,
        "links": {
            "qr_png": f"{public_url}/qr/png{path}",
            "qr_svg": f"{public_url}/qr/svg{path}",
            "proof": f"{public_url}/proof{path}",
        },
    }
    return document, verification


def _event_summary(event: Event) -> dict[str, Any]:
    payload = json.loads(event.payload)
    location = (payload.get("bizLocation") or payload.get("readPoint") or {}).get("id")
    return {
        "eventID": event.event_hash,
        "step": event.step,
        "bizStep": payload.get("bizStep"),
        "disposition": payload.get("disposition"),
        "eventTime": payload.get("eventTime"),
        "location": location,
        "anchor": anchor(event),
    }


def proof_bundle(*, session: Session, registry: str, chain_id: int, lot: Lot, path: str) -> dict[str, Any]:
    """Everything needed to check ``lot``'s chain against any node: events, hashes, anchors, registry.

    ``context`` is the capture document's ``@context`` of a captured event (None: the default one).
    """
    return {
        "format": "tracer-proof-bundle/1",
        "subject": path,
        "registry": registry,
        "chain_id": chain_id,
        "lot_id": lot.lot_id,
        "events": [
            {
                "seq": e.seq,
                "event": json.loads(e.payload),
                "context": json.loads(e.context) if e.context else None,
                "eventID": e.event_hash,
                "anchor": anchor(e),
            }
            for e in lot_events(session=session, lot=lot)
        ],
    }
