"""Read-only endpoints of the auditor (role ``auditor``): the audit report of ``tracer audit`` over HTTP."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response

from api.deps import ActorDep, ServiceDep, SessionDep, reject_unknown_query_parameters
from tracer.audit import DEFAULT_LATE_ANCHOR_SECONDS, Scope, lot_scope, render_csv, render_html, run_audit
from tracer.exceptions import InvalidInput, PermissionDenied

router = APIRouter(tags=["audit"], dependencies=[Depends(reject_unknown_query_parameters)])
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


class Format(StrEnum):
    """The report's format."""

    json = "json"
    csv = "csv"
    html = "html"


@router.get("/audit", response_model=None)
def audit(
    actor: ActorDep,
    service: ServiceDep,
    session: SessionDep,
    lot: Annotated[str | None, Query(description="GTIN14/LOT or a 0x lot id")] = None,
    enterprise: Annotated[
        str | None, Query(description="the enterprise's 0x address", pattern=r"^0x[0-9a-fA-F]{40}$")
    ] = None,
    from_block: Annotated[int | None, Query(ge=0)] = None,
    to_block: Annotated[int | None, Query(ge=0)] = None,
    format: Annotated[Format, Query(description="json, csv (events) or html (the printable report)")] = Format.json,  # noqa: A002
    chain_only: Annotated[bool, Query(description="audit the chain alone, without the database")] = False,
    late_anchor_seconds: Annotated[int, Query(ge=0)] = DEFAULT_LATE_ANCHOR_SECONDS,
) -> Response:
    """The audit of one lot, one enterprise, a block range or everything (auditor): findings and reconciliation.

    Findings are a result (200, ``status: findings``), not an error."""
    if actor.role != "auditor":
        raise PermissionDenied(actor.name, actor.role, "the auditor role")
    session.close()  # the audit reads the database on its own connection; SQLite must not see a writer here
    report = run_audit(
        w3=service.client.w3,
        registry=service.registry,
        scope=_scope(lot, enterprise, from_block, to_block),
        engine=None if chain_only else service.engine,
        deploy_block=service.deploy_block,
        late_anchor_seconds=late_anchor_seconds,
    )
    if format is Format.csv:
        return Response(render_csv(report), media_type="text/csv; charset=utf-8")
    if format is Format.html:
        return HTMLResponse(render_html(report, template_dir=TEMPLATES))
    body: dict[str, Any] = report.public()
    return JSONResponse(body)


def _scope(lot: str | None, enterprise: str | None, from_block: int | None, to_block: int | None) -> Scope:
    if sum(value is not None for value in (lot, enterprise, from_block if from_block is not None else to_block)) > 1:
        raise InvalidInput("name one scope: lot, enterprise, or a block range", pointer="/lot")
    if lot is not None:
        return lot_scope(lot)
    return Scope(enterprise=enterprise, from_block=from_block, to_block=to_block)
