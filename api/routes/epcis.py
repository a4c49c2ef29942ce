"""EPCIS 2.0 capture and query (JSON / JSON-LD binding)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import ActorDep, ServiceDep, SessionDep
from api.limits import is_json
from api.problems import problem
from tracer import capture as epcis_capture
from tracer import query as epcis_query
from tracer.config import Settings
from tracer.exceptions import InvalidInput, NotFound
from tracer.store.models import CaptureJob

router = APIRouter(tags=["EPCIS 2.0"])

# What the capture endpoint takes, as far as a schema can say it: the rest (event types, CBV vocabulary,
# identifiers, the journey's rules) is checked event by event and refused with a pointer.
_EPCIS_DOCUMENT = {
    "type": "object",
    "required": ["@context", "type", "epcisBody"],
    "properties": {
        "@context": {"anyOf": [{"type": "string"}, {"type": "object"}, {"type": "array"}]},
        "type": {"const": "EPCISDocument"},
        "schemaVersion": {"type": "string"},
        "creationDate": {"type": "string"},
        "epcisBody": {
            "type": "object",
            "required": ["eventList"],
            "properties": {"eventList": {"type": "array", "items": {"type": "object"}}},
        },
    },
}
_CAPTURE_LIMIT_HEADERS = {
    "GS1-EPCIS-Capture-Limit": {"description": "events per capture document", "schema": {"type": "integer"}},
    "GS1-EPCIS-Capture-File-Size-Limit": {"description": "bytes per capture document", "schema": {"type": "integer"}},
}


def _query_parameter(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


_WHEN = {"type": "string", "format": "date-time"}
_QUERY_PARAMETERS = [
    _query_parameter("eventType", "event types, comma-separated"),
    _query_parameter("EQ_action", "ADD, OBSERVE or DELETE, comma-separated"),
    _query_parameter("EQ_bizStep", "CBV bizSteps, bare or as URIs, comma-separated"),
    _query_parameter("EQ_disposition", "CBV dispositions, bare or as URIs, comma-separated"),
    _query_parameter("MATCH_epc", "EPCs (URN or Digital Link) in the EPC lists"),
    _query_parameter("MATCH_anyEPC", "EPCs in the EPC lists or as parentID"),
    _query_parameter("MATCH_parentID", "parent EPCs"),
    _query_parameter("MATCH_epcClass", "classes (lots) in the quantity lists"),
    _query_parameter("GE_eventTime", "events at or after, with a time zone", _WHEN),
    _query_parameter("LT_eventTime", "events before, with a time zone", _WHEN),
    _query_parameter("EQ_bizLocation", "business location ids"),
    _query_parameter("EQ_readPoint", "read point ids"),
    _query_parameter(
        "perPage",
        "events per page",
        {"type": "integer", "minimum": 1, "maximum": epcis_query.MAX_PER_PAGE, "default": epcis_query.DEFAULT_PER_PAGE},
    ),
    _query_parameter("nextPageToken", "the token of the previous page's Link header"),
]


def limit_headers(settings: Settings) -> dict[str, str]:
    """The EPCIS 2.0 headers that tell a capture client what it may send."""
    return {
        "GS1-EPCIS-Capture-Limit": str(settings.capture_limit),
        "GS1-EPCIS-Capture-File-Size-Limit": str(settings.max_body_bytes),
        "GS1-EPCIS-Version": "2.0.0",
    }


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidInput(f"the body is not JSON: {exc}", pointer="") from exc


@router.post(
    "/capture",
    status_code=202,
    summary="Capture an EPCISDocument",
    response_class=Response,
    responses={
        202: {
            "description": "Stored; the capture job is at Location",
            "headers": {"Location": {"schema": {"type": "string"}}, **_CAPTURE_LIMIT_HEADERS},
        }
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _EPCIS_DOCUMENT},
                "application/ld+json": {"schema": _EPCIS_DOCUMENT},
            },
        }
    },
)
async def capture(
    request: Request,
    actor: ActorDep,
    session: SessionDep,
    service: ServiceDep,
    error_behaviour: Annotated[
        Literal["rollback", "proceed"], Header(alias="GS1-Capture-Error-Behaviour")
    ] = "rollback",
) -> Response:
    """Validate, apply and commit a capture document before answering 202 with the job's Location."""
    if not is_json(request.headers):
        # Only JSON bodies pass the JSON limits (api.limits); this binding reads nothing else (no XML).
        return problem(
            415,
            "Unsupported media type",
            f"{request.headers['content-type']}: send application/json or application/ld+json",
            kind="unsupported-media-type",
        )
    document = await _json_body(request)
    limit = service.settings.capture_limit

    def store() -> epcis_capture.CaptureResult:
        result = epcis_capture.capture(
            session=session, actor=actor, document=document, error_behaviour=error_behaviour, limit=limit
        )
        session.commit()
        return result

    # The capture is blocking database work: off the event loop, so other requests are not queued behind it.
    result = await run_in_threadpool(store)
    service.writer.notify()
    headers = {"Location": f"/capture/{result.job.id}", **limit_headers(service.settings)}
    return Response(status_code=202, headers=headers)


@router.get("/capture/{capture_id}", summary="A capture job")
def capture_job(capture_id: str, _actor: ActorDep, session: SessionDep, service: ServiceDep) -> JSONResponse:
    """The EPCIS 2.0 CaptureJob: `success` means stored; anchoring shows per event in queries."""
    job = session.get(CaptureJob, capture_id)
    if job is None:
        raise NotFound("capture job", capture_id)
    return JSONResponse(epcis_capture.job_public(job), headers=limit_headers(service.settings))


@router.get(
    "/events",
    summary="Query events (EPCIS 2.0 SimpleEventQuery parameters)",
    openapi_extra={"parameters": _QUERY_PARAMETERS},
)
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
