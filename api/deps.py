"""Dependencies of the routes, as Annotated aliases (``SessionDep``, ``ActorDep``, ``ServiceDep``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from tracer.actors import authenticate
from tracer.exceptions import InvalidInput
from tracer.service import Service
from tracer.store.models import Actor

_bearer = HTTPBearer(auto_error=False, description="The actor's API key")


def get_service(request: Request) -> Service:
    """The service the app was created with."""
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


def get_session(service: ServiceDep) -> Iterator[Session]:
    """A database session for one request (objects stay readable after a commit, see tracer.views)."""
    with Session(service.engine, expire_on_commit=False) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_actor(
    session: SessionDep,
    service: ServiceDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    """The actor whose API key came with the request (401 otherwise)."""
    return authenticate(
        session=session, keystore=service.keystore, api_key=credentials.credentials if credentials else None
    )


ActorDep = Annotated[Actor, Depends(get_actor)]


def reject_unknown_query_parameters(request: Request) -> None:
    """Refuses a query parameter the route does not declare (a router-wide dependency of the write and audit APIs).

    A misspelt filter would otherwise be ignored, and ``/audit?lots=…`` would quietly audit everything. The scan
    pages do not use this: GS1 Digital Link lets a resolver ignore attributes it does not know.
    """
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    declared = _query_parameter_names(route.dependant)
    for name in request.query_params:
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise InvalidInput(f"unknown query parameter {name!r} (this endpoint takes: {known})", pointer=f"/{name}")


def _query_parameter_names(dependant: Dependant) -> set[str]:
    """The query parameters a route declares, its dependencies' included."""
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_parameter_names(sub)
    return names
