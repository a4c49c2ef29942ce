"""The consumer's scan: GS1 Digital Link paths of lots and parcels, as HTML or JSON, QR codes and proofs.

Lot numbers may contain "/" and other reserved characters, percent-encoded in the path, so these routes
parse the raw path rather than FastAPI's decoded one.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates
from sqlmodel import Session

from api.deps import ServiceDep, SessionDep
from tracer import identifiers, journey
from tracer.exceptions import InvalidInput, NotFound
from tracer.qr import qr_png, qr_svg
from tracer.store.models import Lot, Parcel
from tracer.views import proof_bundle, scan_document

router = APIRouter(tags=["scan"])
templates = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "templates")


def _resolve(session: Session, raw_path: str) -> tuple[Lot, Parcel | None, str]:
    """The lot (and parcel) a raw Digital Link path names, and its canonical path."""
    ref = identifiers.parse_digital_link_path(raw_path)
    if isinstance(ref, identifiers.ParcelRef):
        parcel = journey.get_parcel(session=session, sscc=ref.sscc)
        lot = session.get(Lot, parcel.lot_pk)
        assert lot is not None
        return lot, parcel, identifiers.parcel_path(ref.sscc)
    if isinstance(ref, identifiers.LotRef):
        return (
            journey.find_lot(session=session, gtin=ref.gtin, lot_number=ref.lot),
            None,
            identifiers.lot_path(ref.gtin, ref.lot),
        )
    raise NotFound("unit", raw_path)  # units come with serialisation, in a later version


def _raw_path(request: Request, prefix: str = "") -> str:
    raw = request.scope.get("raw_path") or request.url.path.encode()
    path = raw.decode("latin-1").split("?", 1)[0]
    return path.removeprefix(prefix)


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def _language(request: Request) -> str:
    chosen = request.query_params.get("lang")
    if chosen in ("zh", "en"):
        return chosen
    accept = request.headers.get("accept-language", "").lower()
    return "zh" if accept.startswith("zh") or (accept and "zh" in accept.split(",")[0]) else "en"


def _scan(request: Request, session: SessionDep, service: ServiceDep) -> Response:
    lot, parcel, _ = _resolve(session, _raw_path(request))
    document, verification = scan_document(
        session=session, client=service.client, public_url=service.settings.public_url or "", lot=lot, parcel=parcel
    )
    if _wants_json(request):
        return JSONResponse(document)
    return templates.TemplateResponse(
        request, "scan.html", {"doc": document, "lang": _language(request), "status": verification.status.value}
    )


@router.get("/01/{rest:path}", response_class=HTMLResponse, summary="Scan a lot (GS1 Digital Link)")
def scan_lot(request: Request, session: SessionDep, service: ServiceDep) -> Response:
    """A lot's journey and its verification against the chain (HTML; JSON with Accept: application/json)."""
    return _scan(request, session, service)


@router.get("/00/{rest:path}", response_class=HTMLResponse, summary="Scan a parcel (GS1 Digital Link)")
def scan_parcel(request: Request, session: SessionDep, service: ServiceDep) -> Response:
    """A parcel's journey and its verification against the chain (HTML; JSON with Accept: application/json)."""
    return _scan(request, session, service)


@router.get("/qr/{kind}/{rest:path}", summary="QR code of a lot or parcel")
def qr_code(kind: str, request: Request, session: SessionDep, service: ServiceDep) -> Response:
    """The QR code (png or svg) that encodes the Digital Link URL of a lot or parcel."""
    if kind not in ("png", "svg"):
        raise InvalidInput("must be png or svg", pointer="/kind")
    _, _, path = _resolve(session, _raw_path(request, f"/qr/{kind}"))
    url = (service.settings.public_url or "") + path
    if kind == "png":
        return Response(qr_png(url), media_type="image/png")
    return Response(qr_svg(url), media_type="image/svg+xml")


@router.get("/proof/{rest:path}", summary="Proof bundle of a lot or parcel")
def proof(request: Request, session: SessionDep, service: ServiceDep) -> JSONResponse:
    """The events of the lot's chain with their hashes and anchors, to check against any node."""
    lot, _, path = _resolve(session, _raw_path(request, "/proof"))
    return JSONResponse(
        proof_bundle(session=session, registry=service.registry, chain_id=service.chain_id, lot=lot, path=path)
    )
