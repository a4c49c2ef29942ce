"""EPCIS 2.0 capture and query (JSON / JSON-LD binding)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import ActorDep, ServiceDep, SessionDep
from tracer import capture as epcis_capture
from tracer import query as epcis_query
from tracer.exceptions import InvalidInput, NotFound
from tracer.store.models import CaptureJob

router = APIRouter(tags=["EPCIS 2.0"])
LIMIT_HEADERS = {"GS1-EPCIS-Capture-Limit": str(epcis_capture.CAPTURE_LIMIT), "GS1-EPCIS-Version": "2.0.0"}


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"the body is not JSON: {exc}", pointer="") from exc


@router.post("/capture", status_code=202, summary="Capture an EPCISDocument")
async def capture(
    request: Request,
    actor: ActorDep,
    session: SessionDep,
    service: ServiceDep,
    error_behaviour: Annotated[str, Header(alias="GS1-Capture-Error-Behaviour")] = epcis_capture.ROLLBACK,
) -> Response:
    """Validate, apply and commit a capture document before answering 202 with the job's Location."""
    document = await _json_body(request)

    def store() -> epcis_capture.CaptureResult:
        result = epcis_capture.capture(session=session, actor=actor, document=document, error_behaviour=error_behaviour)
        session.commit()
        return result

    # The capture is blocking database work: off the event loop, so other requests are not queued behind it.
    result = await run_in_threadpool(store)
    service.writer.notify()
    return Response(status_code=202, headers={"Location": f"/capture/{result.job.id}", **LIMIT_HEADERS})


@router.get("/capture/{capture_id}", summary="A capture job")
def capture_job(capture_id: str, _actor: ActorDep, session: SessionDep) -> JSONResponse:
    """The EPCIS 2.0 CaptureJob: `success` means stored; anchoring shows per event in queries."""
    job = session.get(CaptureJob, capture_id)
    if job is None:
        raise NotFound("capture job", capture_id)
    return JSONResponse(epcis_capture.job_public(job), headers=LIMIT_HEADERS)


@router.get("/events", summary="Query events (EPCIS 2.0 SimpleEventQuery parameters)")
def events(request: Request, _actor: ActorDep, session: SessionDep) -> JSONResponse:
    """An EPCISQueryDocument; each eventID is the event's canonical hash, anchors in `tracer:anchors`."""
    page = epcis_query.query(session=session, params=list(request.query_params.multi_items()))
    return _page(request, page)


@router.get("/epcs/{epc:path}/events", summary="Events of one EPC")
def epc_events(epc: str, request: Request, _actor: ActorDep, session: SessionDep) -> JSONResponse:
    """Events naming `epc` anywhere (MATCH_anyEPC), as an EPCISQueryDocument."""
    params = [("MATCH_anyEPC", epc), *request.query_params.multi_items()]
    return _page(request, epcis_query.query(session=session, params=params))


def _page(request: Request, page: epcis_query.Page) -> JSONResponse:
    headers = {"GS1-EPCIS-Version": "2.0.0"}
    if page.next_token:
        url = request.url.include_query_params(nextPageToken=page.next_token)
        headers["Link"] = f'<{url}>; rel="next"'
    return JSONResponse(page.document, headers=headers)
