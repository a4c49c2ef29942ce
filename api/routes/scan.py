"""The consumer's scan: GS1 Digital Link paths of lots, parcels and units, as HTML or JSON, QR codes, proofs,
the receipt claim (clone detection) and printable label sheets.

Lot numbers and serials may contain "/" and other reserved characters, percent-encoded in the path, so these routes
parse the raw path rather than FastAPI's decoded one.

Two first-party cookies, both functional: ``tracer_device`` (a random identifier, so that scans and a
claim from one phone are recognised as one device; stored only as a salted hash, see tracer.scans) and
``tracer_lang`` (the language picked with the switch).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import Connection

from api.deps import ActorDep, ServiceDep, SessionDep
from tracer import identifiers, labels, scans
from tracer.exceptions import Conflict, InvalidInput, NotFound, PermissionDenied, WouldBlock
from tracer.lifecycle import ParcelState
from tracer.qr import qr_png, qr_svg
from tracer.scan_cache import ScanCache
from tracer.service import Service
from tracer.store.database import read_only
from tracer.store.models import Lot, Parcel, Unit
from tracer.views import find_scanned, page_context, proof_bundle, scan_document, unit_membership

router = APIRouter(tags=["scan"])
templates = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "templates")
# Inlined into the page: one round trip on a slow phone, and nothing fetched from anywhere else.
_CSS = (Path(__file__).resolve().parent.parent / "static" / "scan.css").read_text(encoding="utf-8")
DEVICE_COOKIE = "tracer_device"
LANG_COOKIE = "tracer_lang"
_COOKIE_AGE = 2 * 365 * 24 * 3600
LABEL_ROLES = ("admin", "enterprise", "warehouse")


@dataclass(frozen=True)
class _Scanned:
    """What a Digital Link path names: a lot, a parcel of it, or a unit in such a parcel; and its canonical path."""

    lot: Lot
    parcel: Parcel | None
    unit: Unit | None
    path: str


def _resolve(
    connection: Connection, raw_path: str | identifiers.LotRef | identifiers.ParcelRef | identifiers.UnitRef
) -> _Scanned:
    """The lot, parcel or unit a raw Digital Link path (or its parse) names (InvalidInput for a malformed one,
    NotFound)."""
    ref = identifiers.parse_digital_link_path(raw_path) if isinstance(raw_path, str) else raw_path
    lot, parcel, unit = find_scanned(connection=connection, ref=ref)
    if isinstance(ref, identifiers.UnitRef) and ref.lot is not None and ref.lot != lot.lot_number:
        raise NotFound("unit", f"{ref.path} of lot {ref.lot} (it belongs to lot {lot.lot_number})")
    return _Scanned(lot, parcel, unit, ref.path)


def _raw_path(request: Request, prefix: str = "") -> str:
    raw = request.scope.get("raw_path") or request.url.path.encode()
    path = raw.decode("latin-1").split("?", 1)[0]
    return path.removeprefix(prefix)


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def _language(request: Request) -> str:
    """``?lang=`` (the switch), else the remembered choice, else the first zh or en of Accept-Language."""
    for chosen in (request.query_params.get("lang"), request.cookies.get(LANG_COOKIE)):
        if chosen in ("zh", "en"):
            return chosen
    for part in request.headers.get("accept-language", "").lower().split(","):
        tag = part.split(";", 1)[0].strip()
        if tag.startswith(("zh", "en")):
            return tag[:2]
    return "en"


def _device(request: Request, connection: Connection, *, may_block: bool = True) -> tuple[str, str | None]:
    """The device hash of the request, and the device cookie to set (None when it has one already)."""
    cookie = request.cookies.get(DEVICE_COOKIE)
    issued = None
    if cookie and len(cookie) <= 64:
        fingerprint = f"cookie|{cookie}"
    elif _wants_json(request):
        # An app or script that keeps no cookies is known by its user agent and language alone: fewer
        # distinct devices, never more, so polling cannot raise a false "many devices" alarm.
        agent = request.headers.get("user-agent", "")
        language = request.headers.get("accept-language", "")
        fingerprint = f"agent|{agent}|{language}"
    else:
        issued = secrets.token_urlsafe(16)  # a browser's first scan: this is its device from now on
        fingerprint = f"cookie|{issued}"
    return scans.device_hash(connection=connection, fingerprint=fingerprint, may_block=may_block), issued


def _scan_cache(request: Request, service: Service) -> ScanCache | None:
    """The process's scan caches over the service's current client (None when turned off); a client swapped
    for another node starts with empty ones."""
    if service.settings.scan_check_seconds <= 0:
        return None
    cache: ScanCache | None = getattr(request.app.state, "scan_cache", None)
    if cache is None or cache.chain.client is not service.client:
        cache = ScanCache.for_client(service.client, check_seconds=service.settings.scan_check_seconds)
        request.app.state.scan_cache = cache
    return cache


def _set_cookie(response: Response, request: Request, name: str, value: str) -> None:
    response.set_cookie(
        name, value, max_age=_COOKIE_AGE, httponly=True, samesite="lax", secure=request.url.scheme == "https"
    )


async def _scan(request: Request) -> Response:
    # A scan only reads (its record is written by the scan log's thread), and a cached one needs nothing of the
    # node: on SQLite, whose reads are local and never wait for the write lock, it is answered right here on
    # the event loop, told not to block. The moment it would (the node must be asked, the chain's head is due
    # for a check, a record of this code is still being written) it gives up, having changed nothing, and runs
    # again in the thread pool, where waiting is harmless: one hop for the whole scan, its connection opened
    # there (FastAPI would hop per sync dependency too). The hop costs more CPU than a cached scan's work.
    lat, lon = _coordinates(request)  # a bad one is refused before anything is read
    service: Service = request.app.state.service
    cache = _scan_cache(request, service)
    if cache is not None and service.engine.dialect.name == "sqlite":
        try:
            return _answer_scan(request, service, cache, lat, lon, may_block=False)
        except WouldBlock:
            pass
    return await run_in_threadpool(_answer_scan, request, service, cache, lat, lon)


def _answer_scan(
    request: Request,
    service: Service,
    cache: ScanCache | None,
    lat: float | None,
    lon: float | None,
    *,
    may_block: bool = True,
) -> Response:
    ref = identifiers.parse_digital_link_path(_raw_path(request))
    if not isinstance(ref, identifiers.LotRef):  # before the snapshot: this process's earlier scans of it count
        if may_block:
            service.scan_log.settle(ref.path)
        elif not service.scan_log.settled(ref.path):
            raise WouldBlock(f"a scan of {ref.path} is still being recorded")
    # Only reads: on SQLite it never waits for the write lock (tracer.store.database.read_only). Core on a plain
    # connection: a session's unit of work costs more than the scan's queries.
    with read_only(service.engine).connect() as connection:
        scanned = _resolve(connection, ref)
        return _answer(request, connection, service, cache, scanned, lat, lon, may_block=may_block)


def _answer(
    request: Request,
    connection: Connection,
    service: Service,
    cache: ScanCache | None,
    scanned: _Scanned,
    lat: float | None,
    lon: float | None,
    *,
    may_block: bool,
) -> Response:
    path = scanned.path
    summary, pending, issued = None, None, None
    if scanned.parcel is not None:
        device, issued = _device(request, connection, may_block=may_block)
        summary, pending = service.scan_log.summarise_scan(
            connection=connection, subject=path, device=device, latitude=lat, longitude=lon
        )
    document, verification = scan_document(
        connection=connection,
        client=service.client,
        public_url=service.settings.public_url or "",
        lot=scanned.lot,
        parcel=scanned.parcel,
        unit=scanned.unit,
        scans=summary,
        cache=cache,
        may_block=may_block,
    )
    response: Response
    if _wants_json(request):
        response = Response(orjson.dumps(document), media_type="application/json")  # ~5x json.dumps
    else:
        lang = _language(request)
        context = {
            "doc": document,
            "page": page_context(document, today=datetime.now(UTC).date()),
            "lang": lang,
            "status": verification.status.value,
            "css": _CSS,
            "claim_action": f"/claim{path}",
        }
        response = templates.TemplateResponse(request, "scan.html", context)
        if request.query_params.get("lang") in ("zh", "en"):
            _set_cookie(response, request, LANG_COOKIE, lang)
    response.headers["Cache-Control"] = "no-store"  # a scan is a fresh verdict, and it is counted
    if issued:
        _set_cookie(response, request, DEVICE_COOKIE, issued)
    if pending is not None:
        service.scan_log.record(pending, may_block=may_block)  # last: a scan given up on is not counted
    return response


# The scans' query parameters, read by _coordinates rather than declared in the signatures: FastAPI's solving of
# declared parameters was a tenth of a cached scan's CPU. Documented here instead, as FastAPI would have.
_COORDINATES = {"lat": ("latitude", 90), "lon": ("longitude", 180)}
_SCAN_PARAMETERS = {
    "parameters": [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": f"Coarse {what}, if the client offers it",
            "schema": {"type": "number", "minimum": -bound, "maximum": bound, "title": name.capitalize()},
        }
        for name, (what, bound) in _COORDINATES.items()
    ]
}


def _coordinates(request: Request) -> tuple[float | None, float | None]:
    """``lat`` and ``lon`` of the query (None when absent); InvalidInput names one that is not a number in range."""
    found: list[float | None] = []
    for name, (what, bound) in _COORDINATES.items():
        raw = request.query_params.get(name)
        if raw is None:
            found.append(None)
            continue
        try:
            value = float(raw)
        except ValueError:
            raise InvalidInput(f"{what} must be a number, not {raw[:40]!r}", pointer=f"/{name}") from None
        if not -bound <= value <= bound:  # NaN fails too
            raise InvalidInput(f"{what} must be within ±{bound}, not {raw[:40]}", pointer=f"/{name}")
        found.append(value)
    return found[0], found[1]


@router.get(
    "/01/{rest:path}",
    response_class=HTMLResponse,
    summary="Scan a lot or a unit (GS1 Digital Link)",
    openapi_extra=_SCAN_PARAMETERS,
)
async def scan_lot(request: Request) -> Response:
    """A lot's (``/01/{gtin}/10/{lot}``) or a unit's (``/01/{gtin}/21/{serial}``) journey and its verification
    against the chain (HTML; JSON with Accept: application/json). A unit's scan is recorded for its clone check,
    as a parcel's is; a lot's code is shared by every tin of the lot, so its scans are not counted."""
    return await _scan(request)


@router.get(
    "/00/{rest:path}",
    response_class=HTMLResponse,
    summary="Scan a parcel (GS1 Digital Link)",
    openapi_extra=_SCAN_PARAMETERS,
)
async def scan_parcel(request: Request) -> Response:
    """A parcel's journey, its verification against the chain and its clone check (HTML; JSON with
    Accept: application/json). The scan is recorded; ``lat``/``lon`` are kept rounded to about 11 km."""
    return await _scan(request)


@router.post("/claim/{rest:path}", summary="Confirm receipt of a delivered parcel or unit (first scanner)")
def claim_parcel(request: Request, session: SessionDep) -> Response:
    """The first scanner of a delivered parcel (or of a unit in it) confirms receipt; later scans by other
    devices then warn.

    Needs the device cookie the scan page sets. A form post is answered with a redirect to the page,
    JSON with 201 (made), 200 (already this device's) or a 409 problem.
    """
    scanned = _resolve(session.connection(), _raw_path(request, "/claim"))
    parcel, path = scanned.parcel, scanned.path
    if parcel is None:
        raise InvalidInput("only a parcel's or a unit's code can be claimed, not a lot's", pointer="/10")
    if not request.cookies.get(DEVICE_COOKIE):
        raise InvalidInput(f"open the scan page first: a claim comes from the device that scanned {path}")
    device, _ = _device(request, session.connection())
    try:
        made, new = scans.claim(
            session=session, subject=path, device=device, delivered=parcel.state == ParcelState.DELIVERED
        )
        session.commit()
    except Conflict:
        if _wants_json(request):
            raise
        return RedirectResponse(path, status_code=303)  # the page tells who claimed it and when
    if not _wants_json(request):
        return RedirectResponse(path, status_code=303)
    body = {"subject": path, "claimed_at": made.claimed_at.isoformat().replace("+00:00", "Z")}
    return JSONResponse(body, status_code=201 if new else 200)


@router.get("/labels/{rest:path}", summary="Printable A4 label sheet of a lot's parcels or a parcel's units (SVG)")
def label_sheet(
    request: Request,
    actor: ActorDep,
    session: SessionDep,
    service: ServiceDep,
    page: Annotated[int, Query(ge=1, description="Sheet number: 21 labels per A4 sheet")] = 1,
) -> Response:
    """``/labels/01/{gtin}/10/{lot}.svg``: the QR codes of the lot's parcels with GTIN, lot and SSCC under
    each; ``/labels/00/{sscc}.svg``: those of the parcel's serialised units with GTIN, serial and lot (admin,
    enterprise or warehouse). Further sheets by ``?page=``, announced in a ``Link`` header."""
    if actor.role not in LABEL_ROLES:
        raise PermissionDenied(actor.name, actor.role, " or ".join(LABEL_ROLES))
    raw = _raw_path(request, "/labels")
    if not raw.endswith(".svg"):
        raise InvalidInput(
            "label sheets are SVG: /labels/01/{gtin}/10/{lot}.svg or /labels/00/{sscc}.svg", pointer="/labels"
        )
    scanned = _resolve(session.connection(), raw.removesuffix(".svg"))
    public_url = service.settings.public_url or ""
    if scanned.unit is not None:
        raise InvalidInput("label sheets are made for a lot or a parcel, not a unit", pointer="/21")
    if scanned.parcel is not None:
        sheet = labels.parcel_units_sheet(
            session=session, lot=scanned.lot, parcel=scanned.parcel, public_url=public_url, page=page
        )
        name = f"labels-{scanned.parcel.sscc}-page{page}.svg"
    else:
        sheet = labels.lot_sheet(session=session, lot=scanned.lot, public_url=public_url, page=page)
        name = f"labels-{scanned.lot.gtin}-page{page}.svg"
    headers = {"Content-Disposition": f'inline; filename="{name}"'}
    if sheet.pages > page:
        headers["Link"] = f'<{request.url.path}?page={page + 1}>; rel="next"'
    headers["X-Total-Pages"] = str(sheet.pages)
    return Response(sheet.svg, media_type="image/svg+xml", headers=headers)


@router.get("/qr/{kind}/{rest:path}", summary="QR code of a lot, parcel or unit")
def qr_code(kind: str, request: Request, session: SessionDep, service: ServiceDep) -> Response:
    """The QR code (png or svg) that encodes the Digital Link URL of a lot, parcel or unit."""
    if kind not in ("png", "svg"):
        raise InvalidInput("must be png or svg", pointer="/kind")
    url = (service.settings.public_url or "") + _resolve(session.connection(), _raw_path(request, f"/qr/{kind}")).path
    if kind == "png":
        return Response(qr_png(url), media_type="image/png")
    return Response(qr_svg(url), media_type="image/svg+xml")


@router.get("/proof/{rest:path}", summary="Proof bundle of a lot, parcel or unit")
def proof(request: Request, session: SessionDep, service: ServiceDep) -> JSONResponse:
    """The events of the lot's chain with their hashes and anchors, to check against any node; a unit's adds
    ``unit``, the split event that packs it into its parcel."""
    scanned = _resolve(session.connection(), _raw_path(request, "/proof"))
    bundle = proof_bundle(
        session=session, registry=service.registry, chain_id=service.chain_id, lot=scanned.lot, path=scanned.path
    )
    if scanned.unit is not None and scanned.parcel is not None:
        bundle["unit"] = unit_membership(session=session, unit=scanned.unit, parcel=scanned.parcel)
    return JSONResponse(bundle)
