"""What readers see: a lot's ledger, and the scan document of a lot, parcel or unit (INTERFACES.md "scan")."""

from __future__ import annotations

import json
import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol, cast
from urllib.parse import unquote

from pydantic import BaseModel
from sqlalchemy import Connection, bindparam
from sqlalchemy import select as sql_select
from sqlmodel import Session, SQLModel, col, select

from tracer import identifiers
from tracer.chain.client import ChainClient
from tracer.chain.splits import bundle_proofs
from tracer.exceptions import NotFound
from tracer.journey import lot_events
from tracer.lifecycle import ParcelState
from tracer.scan_cache import ScanCache, block_times
from tracer.scans import ScanSummary
from tracer.store.models import Event, Lot, Parcel, Unit
from tracer.store.prepared import PreparedRead
from tracer.units import membership_public, packed_units
from tracer.verify import AnchoredEvent, Status, Verification, verify_events


class ParcelPublic(BaseModel):
    """A parcel as the database holds it."""

    sscc: str
    index: int
    quantity: int
    state: str
    units: list[str] = []  # serials of the serialised units packed into it, in the split's order


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
    serials: dict[int, list[str]] = {}
    for unit in session.exec(select(Unit).where(Unit.lot_pk == lot.id).order_by(col(Unit.id))):
        serials.setdefault(unit.parcel_pk, []).append(unit.serial)
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
        parcels=[
            ParcelPublic(
                sscc=p.sscc, index=p.index, quantity=p.quantity, state=p.state, units=serials.get(p.id or 0, [])
            )
            for p in parcels
        ],
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


class ShownEvent(AnchoredEvent, Protocol):
    """What a scan shows of a stored event (a ``tracer.store.models.Event``, or a row of ``scan_events``)."""

    step: str
    event_hash: str
    tx_hash: str | None
    block_hash: str | None
    log_index: int | None
    parcel_pk: int | None


def anchor(event: ShownEvent) -> dict[str, Any]:
    """The anchor of a stored event, in the field names of INTERFACES.md's ``tracer:anchors``.

    The place for a batched event's ``merkleRoot`` and ``proof`` (see ``proof_bundle``).
    """
    return {
        "status": event.status,
        "txHash": event.tx_hash,
        "blockNumber": event.block_number,
        "blockHash": event.block_hash,
        "logIndex": event.log_index,
    }


_EVENTS = SQLModel.metadata.tables[str(Event.__tablename__)]
# Built once, Core not ORM: a scan reads every event of its lot, and loading them as ORM objects was a fifth of
# a scan's CPU. Exactly the columns a scan shows or verifies.
_SCAN_EVENTS = PreparedRead(
    sql_select(
        _EVENTS.c.seq,
        _EVENTS.c.step,
        _EVENTS.c.payload,
        _EVENTS.c.context,
        _EVENTS.c.status,
        _EVENTS.c.event_hash,
        _EVENTS.c.tx_hash,
        _EVENTS.c.block_number,
        _EVENTS.c.block_hash,
        _EVENTS.c.log_index,
        _EVENTS.c.parcel_pk,
    )
    .where(_EVENTS.c.lot_pk == bindparam("lot_pk"))
    .order_by(_EVENTS.c.seq)
)


def scan_events(*, connection: Connection, lot: Lot) -> list[ShownEvent]:
    """Every accepted event of ``lot``'s chain in sequence order, as rows of the columns a scan needs."""
    return cast("list[ShownEvent]", _SCAN_EVENTS.rows(connection, lot_pk=lot.id))


# What a scanned code names, by kind: Core statements built once with bound parameters (a scan pays neither a
# statement's construction nor its cache key), one query each; their rows become model instances without the
# ORM's loading (model_construct: a tenth of its cost; the rows come from the database, valid already).
_LOTS = SQLModel.metadata.tables[str(Lot.__tablename__)]
_PARCELS = SQLModel.metadata.tables[str(Parcel.__tablename__)]
_UNITS = SQLModel.metadata.tables[str(Unit.__tablename__)]
_SCANNED_LOT = PreparedRead(sql_select(*_LOTS.c).where(_LOTS.c.lot_id == bindparam("lot_id")))
_SCANNED_PARCEL = PreparedRead(
    sql_select(*_PARCELS.c, *_LOTS.c)
    .join_from(_PARCELS, _LOTS, _LOTS.c.id == _PARCELS.c.lot_pk)
    .where(_PARCELS.c.sscc == bindparam("sscc"))
)
_SCANNED_UNIT = PreparedRead(
    sql_select(*_UNITS.c, *_PARCELS.c, *_LOTS.c)
    .join_from(_UNITS, _PARCELS, _PARCELS.c.id == _UNITS.c.parcel_pk)
    .join(_LOTS, _LOTS.c.id == _UNITS.c.lot_pk)
    .where(_UNITS.c.gtin == bindparam("gtin"), _UNITS.c.serial == bindparam("serial"))
)


def _instances(row: Sequence[Any], *models: type[SQLModel]) -> list[Any]:
    """The model instances a joined row holds, its columns in the order of ``models``' tables."""
    made, start = [], 0
    for model in models:
        keys = model.__table__.columns.keys()  # type: ignore[attr-defined]
        made.append(model.model_construct(**dict(zip(keys, row[start : start + len(keys)], strict=True))))
        start += len(keys)
    return made


def find_scanned(
    *, connection: Connection, ref: identifiers.LotRef | identifiers.ParcelRef | identifiers.UnitRef
) -> tuple[Lot, Parcel | None, Unit | None]:
    """The lot, parcel (None for a lot's code) and unit (None unless a unit's) a parsed Digital Link names,
    as read now (in no session: to read, not to change); raises NotFound."""
    if isinstance(ref, identifiers.ParcelRef):
        row = _SCANNED_PARCEL.first(connection, sscc=ref.sscc)
        if row is None:
            raise NotFound("parcel", ref.sscc)
        parcel, lot = _instances(row, Parcel, Lot)
        return lot, parcel, None
    if isinstance(ref, identifiers.UnitRef):
        row = _SCANNED_UNIT.first(connection, gtin=ref.gtin, serial=ref.serial)
        if row is None:
            raise NotFound("unit", identifiers.unit_path(ref.gtin, ref.serial))
        unit, parcel, lot = _instances(row, Unit, Parcel, Lot)
        return lot, parcel, unit
    lot_id = "0x" + identifiers.lot_id(ref.gtin, ref.lot).hex()
    row = _SCANNED_LOT.first(connection, lot_id=lot_id)
    if row is None:
        raise NotFound("lot", lot_id)
    (lot,) = _instances(row, Lot)
    return lot, None, None


def scan_document(
    *,
    connection: Connection,
    client: ChainClient,
    public_url: str,
    lot: Lot,
    parcel: Parcel | None = None,
    unit: Unit | None = None,
    scans: ScanSummary | None = None,
    cache: ScanCache | None = None,
    may_block: bool = True,
) -> tuple[dict[str, Any], Verification]:
    """The scan JSON of a lot, of a parcel split from it, or of a unit packed into that parcel (its journey
    is its parcel's), verified against the chain now.

    ``connection`` is closed once the lot's events are read. ``scans`` (for a parcel or unit) adds the ``scans``
    object and fills ``clone_warning``; each event carries ``check``, its own verdict, and ``recordedAt``, the
    time of its block when the node answered. ``cache`` spares re-reading the chain and re-hashing unchanged
    events, and re-shaping a lot's events when neither their rows nor their verdicts changed
    (``tracer.scan_cache``). With ``may_block`` false it raises WouldBlock instead of asking the node anything:
    the caches must answer (the scan runs on the event loop).
    """
    path = subject_path(lot=lot, parcel=parcel, unit=unit)
    events = scan_events(connection=connection, lot=lot)
    # Done with the database before asking the node: a slow or absent node must hold neither the database's lock
    # nor a connection of the pool (scans waiting on a dead node would take them all, and everything waits).
    connection.close()
    verification = verify_events(client=client, lot_id=lot.lot_id, events=events, cache=cache, may_block=may_block)
    checks = {check.seq: check.status.value for check in verification.checks}
    reachable = verification.status is not Status.UNVERIFIABLE
    # Everything the lot's view is built from: the rows as read now (each row a tuple of its columns, compared by
    # value) and this scan's verdict on each.
    fingerprint: Hashable = (lot.recalled, reachable, tuple(checks.items()), tuple(events))
    view: _LotView | None = cache.views.get(lot.lot_id, fingerprint) if cache is not None else None
    if view is None:
        view = _lot_view(client, lot, events, checks, reachable=reachable, may_block=may_block)
        if cache is not None and view.complete:
            cache.views.put(lot.lot_id, fingerprint, view)
    links = {
        "qr_png": f"{public_url}/qr/png{path}",
        "qr_svg": f"{public_url}/qr/svg{path}",
        "proof": f"{public_url}/proof{path}",
    }
    document: dict[str, Any] = {
        "id": public_url + path,
        "product": {
            "gtin": lot.gtin,
            "name": lot.product_name,
            "lot": lot.lot_number,
            "expiry": lot.expiry,
            "origin_country": lot.origin_country,
            "manufacturer": lot.manufacturer,
            "hs_code": lot.hs_code,
            **({"sscc": parcel.sscc, "quantity": parcel.quantity} if parcel and not unit else {}),
            **({"sscc": parcel.sscc, "serial": unit.serial} if parcel and unit else {}),
        },
        # The view's dicts themselves, shared with later scans: nothing downstream changes them.
        "events": [shown for owner, shown in view.events if owner is None or (parcel and owner == parcel.id)],
        "verification": verification.public(),
        "recall": dict(view.recall),
        "clone_warning": scans.clone_warning() if scans else None,
        "links": links,
    }
    if parcel is not None and scans is not None:
        document["scans"] = scans.public(claimable=parcel.state == ParcelState.DELIVERED)
        links["claim"] = f"{public_url}/claim{path}"
    return document, verification


@dataclass(frozen=True)
class _LotView:
    """A lot's events as scans show them (with the parcel each belongs to, None: the lot's own), its recall."""

    events: list[tuple[int | None, dict[str, Any]]]
    recall: dict[str, Any]
    complete: bool  # every verified event has its block's time: worth keeping


def _lot_view(
    client: ChainClient,
    lot: Lot,
    events: list[ShownEvent],
    checks: dict[int, str],
    *,
    reachable: bool,
    may_block: bool = True,
) -> _LotView:
    verified = [e.block_hash for e in events if checks.get(e.seq) == "verified"]
    times = block_times(client, verified, may_block=may_block) if reachable else {}
    recall_event = next((e for e in events if e.step == "recall"), None)
    recall: dict[str, Any] = {"recalled": lot.recalled}
    if recall_event is not None:
        payload = json.loads(recall_event.payload)
        recall.update(reason=payload.get("tracer:reason"), recalled_at=payload.get("eventTime"))
    return _LotView(
        events=[(e.parcel_pk, _event_summary(e, checks.get(e.seq, "unverifiable"), times)) for e in events],
        recall=recall,
        complete=reachable and all(h in times for h in verified if h),
    )


def subject_path(*, lot: Lot, parcel: Parcel | None = None, unit: Unit | None = None) -> str:
    """The canonical Digital Link path of what was scanned: the unit, else the parcel, else the lot."""
    if unit is not None:
        return identifiers.unit_path(unit.gtin, unit.serial)
    if parcel is not None:
        return identifiers.parcel_path(parcel.sscc)
    return identifiers.lot_path(lot.gtin, lot.lot_number)


def _event_summary(event: ShownEvent, check: str, times: dict[str, str]) -> dict[str, Any]:
    payload = json.loads(event.payload)
    location = (payload.get("bizLocation") or payload.get("readPoint") or {}).get("id")
    return {
        "eventID": event.event_hash,
        "step": event.step,
        "bizStep": payload.get("bizStep"),
        "disposition": payload.get("disposition"),
        **({"sampled": True} if payload.get("tracer:sampled") else {}),
        "eventTime": payload.get("eventTime"),
        "location": location,
        "anchor": anchor(event),
        "check": check,
        "recordedAt": times.get(event.block_hash) if event.block_hash else None,
    }


def proof_bundle(*, session: Session, registry: str, chain_id: int, lot: Lot, path: str) -> dict[str, Any]:
    """Everything needed to check ``lot``'s chain against any node: events, hashes, anchors, registry.

    ``context`` is the capture document's ``@context`` of a captured event (None: the default one).

    Batches: an event anchored as a leaf of a Merkle batch (not yet built) is to carry its root and path in
    its ``anchor`` as ``merkleRoot`` and ``proof`` (INTERFACES.md ``tracer:anchors``), added by ``anchor()``
    from the batch tables; ``tracer.verify.verify_bundle`` then checks the path up to the root the registry
    logged. Until then every event is anchored by its own log, and ``anchor()`` has no proof to add.

    Each anchored split event carries ``splitProof``: its parcel's leaf and the leaf's proof under the parcels
    root its split batch logged (``tracer.chain.splits.bundle_proofs``).
    """
    split_proofs = bundle_proofs(session, lot)
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
                **({"splitProof": split_proofs[e.seq]} if e.seq in split_proofs else {}),
            }
            for e in lot_events(session=session, lot=lot)
        ],
    }


def unit_membership(*, session: Session, unit: Unit, parcel: Parcel) -> dict[str, Any]:
    """The ``unit`` object of a unit's proof bundle (``tracer.units``): the split event of ``parcel``, which
    names ``unit`` among its ``childEPCs``. Raises NotFound when no accepted split event of the parcel does."""
    splits = session.exec(
        select(Event)
        .where(Event.parcel_pk == parcel.id, Event.step == "split", col(Event.corrects).is_(None))
        .order_by(col(Event.seq))
    ).all()
    for event in splits:
        if any((ref.gtin, ref.serial) == (unit.gtin, unit.serial) for ref in packed_units(json.loads(event.payload))):
            return membership_public(
                gtin=unit.gtin, serial=unit.serial, sscc=parcel.sscc, seq=event.seq, event_id=event.event_hash
            )
    raise NotFound("split event", f"naming unit {identifiers.unit_path(unit.gtin, unit.serial)}")


# -- the consumer's page ---------------------------------------------------------------------------------

DISPLAY_OFFSET = timedelta(hours=8)
"""Times on the page are shown in China Standard Time (UTC+8), where the pilot zone's consumers are."""

EXPIRY_SOON_DAYS = 30
"""The page warns when the lot expires within this many days."""

_GLN_LOCATION = re.compile(r"/414/(?P<gln>\d{13})(?:/254/(?P<ext>[^/?#]+))?")


def display_time(value: str | None) -> str | None:
    """An ISO time as ``YYYY-MM-DD HH:MM`` in UTC+8, or None when absent or unreadable."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment.astimezone(UTC) + DISPLAY_OFFSET).strftime("%Y-%m-%d %H:%M")


def display_place(location: str | None) -> str | None:
    """A readable place: ``GLN 9521234000006 · A-01-03`` for a GS1 location link, else the identifier."""
    if not location:
        return None
    match = _GLN_LOCATION.search(location)
    if match is None:
        return location
    ext = match.group("ext")
    return f"GLN {match.group('gln')}" + (f" · {unquote(ext)}" if ext else "")


def expiry_state(expiry: str | None, *, today: date) -> dict[str, Any] | None:
    """``{"date", "state": "expired"|"soon"|"ok", "days_left"}`` of a ``YYYY-MM-DD`` expiry, or None."""
    if not expiry:
        return None
    try:
        day = date.fromisoformat(expiry)
    except ValueError:
        return None
    left = (day - today).days
    state = "expired" if left < 0 else "soon" if left <= EXPIRY_SOON_DAYS else "ok"
    return {"date": expiry, "state": state, "days_left": left}


def page_context(document: dict[str, Any], *, today: date) -> dict[str, Any]:
    """What the scan page shows beyond the scan JSON: the timeline in display form, the expiry state and
    the per-status counts behind the verification badge (pure: the template only translates)."""
    timeline = []
    for event in document["events"]:
        timeline.append(
            {
                "step": event["step"],
                "bizStep": event.get("bizStep"),
                "result": _inspection_result(event),
                "when": display_time(event.get("eventTime")),
                "place": display_place(event.get("location")),
                "check": event.get("check"),
                "block": event["anchor"].get("blockNumber"),
                "recorded": display_time(event.get("recordedAt")),
            }
        )
    checks = [event.get("check") for event in document["events"]]
    recorded = [t["recorded"] for t in timeline if t["recorded"]]
    blocks = [t["block"] for t in timeline if t["block"] is not None and t["check"] == "verified"]
    return {
        "timeline": timeline,
        "expiry": expiry_state(document["product"].get("expiry"), today=today),
        "counts": {status: checks.count(status) for status in ("verified", "pending", "tampered")},
        "first_block": min(blocks) if blocks else None,
        "last_block": max(blocks) if blocks else None,
        "last_recorded": max(recorded) if recorded else None,
        "recalled_at": display_time(document["recall"].get("recalled_at")),
        "checked_at": display_time(document["verification"].get("checked_at")),
        "first_scan": display_time((document.get("scans") or {}).get("first_scan_at")),
        "claimed_at": display_time((document.get("scans") or {}).get("claimed_at")),
    }


def _inspection_result(event: dict[str, Any]) -> str | None:
    if event["step"] != "inspection":
        return None
    if event.get("sampled"):
        return "sampled"
    disposition = str(event.get("disposition") or "")
    return disposition.rsplit("Disp-", 1)[-1].rsplit(":", 1)[-1] or None
