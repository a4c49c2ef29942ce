"""Creating actors: the platform admin creates parties; only the customs admin creates customs officers."""

from __future__ import annotations

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from api.deps import ActorDep, ServiceDep, SessionDep
from tracer.actors import PLATFORM_ROLES, create_actor
from tracer.exceptions import InvalidInput, PermissionDenied

router = APIRouter(tags=["actors"])


class ActorCreate(BaseModel):
    """A new actor; without `address` the service keeps its key (custodial)."""

    name: str = Field(min_length=1, max_length=128)
    role: str
    address: str | None = None


class ActorCreated(BaseModel):
    """The new actor and its API key, shown this once."""

    name: str
    role: str
    address: str
    api_key: str


@router.post("/actors", status_code=status.HTTP_201_CREATED, response_model=ActorCreated)
def add_actor(body: ActorCreate, caller: ActorDep, session: SessionDep, service: ServiceDep) -> dict[str, str]:
    """Create an actor (admin key; a `customs` actor needs the customs admin's key)."""
    if body.role in PLATFORM_ROLES:
        raise InvalidInput(f"{body.role} exists once, created at first start", pointer="/role")
    needed = "customs_admin" if body.role == "customs" else "admin"
    if caller.role != needed:
        raise PermissionDenied(caller.name, caller.role, needed)
    created = create_actor(
        session=session, keystore=service.keystore, name=body.name, role=body.role, address=body.address
    )
    session.commit()
    service.writer.notify()
    return created.public()
