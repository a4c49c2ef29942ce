"""Liveness and the deployment's coordinates."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from api.deps import ServiceDep
from tracer.exceptions import ChainUnavailable

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(service: ServiceDep) -> JSONResponse:
    """200 while the database answers (503 otherwise); `degraded` when the node does not answer."""
    try:
        with Session(service.engine) as session:
            session.exec(text("SELECT 1"))  # type: ignore[call-overload]
        database = "ok"
    except SQLAlchemyError:
        database = "error"
    try:
        latest: int | None = service.client.latest_block()
    except ChainUnavailable:
        latest = None
    body: dict[str, Any] = {
        "status": "ok" if latest is not None and database == "ok" else "degraded",
        "chain_id": service.chain_id,
        "rpc_url": service.client.rpc_url,  # redacted by the client
        "registry": service.registry,
        "latest_block": latest,
        "database": database,
    }
    return JSONResponse(body, status_code=200 if database == "ok" else 503)
