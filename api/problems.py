"""RFC 7807 problem documents: the one place where errors become HTTP status codes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tracer.capture import CaptureRejected
from tracer.exceptions import (
    AuthenticationFailed,
    ChainUnavailable,
    ConfigurationError,
    Conflict,
    ContractReverted,
    DocumentsMismatch,
    InvalidInput,
    NotFound,
    PermissionDenied,
    TracerError,
)

PROBLEM_TYPE_BASE = "https://ns.tracer.dev/problems/"

# Most specific first: the first matching class decides the status.
_STATUS: list[tuple[type[TracerError], int, str]] = [
    (InvalidInput, 400, "invalid-input"),
    (AuthenticationFailed, 401, "unauthenticated"),
    (PermissionDenied, 403, "forbidden"),
    (NotFound, 404, "not-found"),
    (Conflict, 409, "conflict"),
    (ContractReverted, 409, "chain-refused"),
    (DocumentsMismatch, 422, "documents-mismatch"),
    (ChainUnavailable, 503, "chain-unavailable"),
    (ConfigurationError, 503, "misconfigured"),
]


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    kind: str,
    errors: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A problem+json response."""
    body: dict[str, Any] = {"type": PROBLEM_TYPE_BASE + kind, "title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type="application/problem+json", headers=headers)


def _status_of(exc: Exception) -> tuple[int, str]:
    return next(((status, kind) for cls, status, kind in _STATUS if isinstance(exc, cls)), (500, "internal"))


def _capture_rejected(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CaptureRejected)
    status, kind = _status_of(exc.cause)
    at = f"/epcisBody/eventList/{exc.index}"
    pointer = getattr(exc.cause, "pointer", None) or ""
    message = getattr(exc.cause, "message", None) or str(exc.cause)
    if not pointer.startswith("/epcisBody"):
        pointer = at + pointer
    title = "The capture document breaks the bonded-import rules" if status in (409, 422) else "Capture refused"
    return problem(status, title, str(exc), kind=kind, errors=[{"pointer": pointer, "message": message}])


def _tracer_error(_request: Request, exc: Exception) -> JSONResponse:
    status, kind = _status_of(exc)
    errors = None
    if isinstance(exc, InvalidInput) and exc.pointer:
        errors = [{"pointer": exc.pointer, "message": exc.message}]
    elif isinstance(exc, DocumentsMismatch):
        errors = [{"pointer": "", "message": message} for message in exc.problems]
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    doc = type(exc).__doc__
    title = getattr(exc, "title", None) or (doc.strip().splitlines()[0] if doc else type(exc).__name__)
    return problem(status, title, str(exc), kind=kind, errors=errors, headers=headers)


def _pointer(location: tuple[Any, ...]) -> str:
    # FastAPI locations start with where the value came from ("body", "query", "path", "header").
    parts = [str(part).replace("~", "~0").replace("/", "~1") for part in location[1:]]
    return "/" + "/".join(parts) if parts else "/"


def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"pointer": _pointer(tuple(err.get("loc", ()))), "message": str(err.get("msg", "invalid"))}
        for err in exc.errors()
    ]
    detail = "; ".join(f"{e['pointer']}: {e['message']}" for e in errors)
    return problem(400, InvalidInput.title, detail, kind="invalid-input", errors=errors)


def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return problem(exc.status_code, str(exc.detail), str(exc.detail), kind="http", headers=exc.headers)


def _integrity_error(_request: Request, _exc: Exception) -> JSONResponse:
    # Two requests raced for the same lot sequence number or the same unique key; the loser wrote nothing.
    return problem(409, "Concurrent write", "another request changed the same record first; retry", kind="conflict")


def install(app: FastAPI) -> None:
    """Registers the error mapping on ``app``."""
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(CaptureRejected, _capture_rejected)
    app.add_exception_handler(TracerError, _tracer_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
