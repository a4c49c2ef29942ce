"""Actors: the platform admin creates, re-keys and revokes parties; only the customs admin does so for customs
officers."""

from __future__ import annotations

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, Field
from sqlmodel import Session

from api.deps import ActorDep, ServiceDep, SessionDep, reject_unknown_query_parameters
from tracer.actors import PLATFORM_ROLES, create_actor, get_actor, revoke_actor, revoked_public, rotate_api_key
from tracer.exceptions import InvalidInput, PermissionDenied
from tracer.service import save_platform_key
from tracer.store.models import Actor

router = APIRouter(tags=["actors"], dependencies=[Depends(reject_unknown_query_parameters)])


class ActorCreate(BaseModel):
    """A new actor; without `address` the service keeps its key (custodial)."""

    name: str = Field(min_length=1, max_length=128)
    role: str
    address: str | None = None


class ActorCreated(BaseModel):
    """The new actor (or the re-keyed one) and its API key, shown this once."""

    name: str
    role: str
    address: str
    api_key: str


class ActorRevoked(BaseModel):
    """A revoked actor: its API key no longer works; its chain role is revoked through the outbox."""

    name: str
    role: str
    address: str
    revoked: bool


def _require_manager(caller: Actor, role: str) -> None:
    """Customs officers are managed by the customs admin, every other actor by the platform admin."""
    needed = "customs_admin" if role == "customs" else "admin"
    if caller.role != needed:
        raise PermissionDenied(caller.name, caller.role, needed)


def _require_manager_of(session: Session, caller: Actor, name: str) -> None:
    if caller.role not in PLATFORM_ROLES:  # before the look-up: others learn nothing of which names exist
        raise PermissionDenied(caller.name, caller.role, "admin")
    _require_manager(caller, get_actor(session=session, name=name).role)


@router.post("/actors", status_code=status.HTTP_201_CREATED, response_model=ActorCreated)
def add_actor(body: ActorCreate, caller: ActorDep, session: SessionDep, service: ServiceDep) -> dict[str, str]:
    """Create an actor (admin key; a `customs` actor needs the customs admin's key)."""
    if body.role in PLATFORM_ROLES:
        raise InvalidInput(f"{body.role} exists once, created at first start", pointer="/role")
    _require_manager(caller, body.role)
    created = create_actor(
        session=session, keystore=service.keystore, name=body.name, role=body.role, address=body.address
    )
    session.commit()
    service.writer.notify()
    return created.public()


@router.post("/actors/{name}/rotate-key", response_model=ActorCreated)
def rotate_key(name: str, caller: ActorDep, session: SessionDep, service: ServiceDep) -> dict[str, str]:
    """Give an actor a new API key, shown this once; the old key stops working at once (the actor itself, or
    whoever may create it)."""
    if caller.name != name:
        _require_manager_of(session, caller, name)
    rotated = rotate_api_key(session=session, keystore=service.keystore, name=name)
    session.commit()
    save_platform_key(service.settings.data_dir, rotated)
    return rotated.public()


@router.post("/actors/{name}/revoke", response_model=ActorRevoked)
def revoke(name: str, caller: ActorDep, session: SessionDep, service: ServiceDep) -> dict[str, object]:
    """Revoke an actor (whoever may create it): its API key stops working at once and its chain role is
    revoked once the events it had sent are anchored."""
    _require_manager_of(session, caller, name)
    actor = revoke_actor(session=session, name=name)
    session.commit()
    service.writer.notify()
    return revoked_public(actor)
