"""Actors: the parties that write to the registry, each with an API key and its own chain account."""

from __future__ import annotations

from dataclasses import dataclass

from eth_utils.address import is_address, to_checksum_address
from sqlmodel import Session, select

from tracer.exceptions import AuthenticationFailed, DuplicateRecord, InvalidInput
from tracer.keys import KeyStore, hash_api_key, new_api_key
from tracer.store.models import Actor, ChainTask

# Roles as named on chain and in the API; ``auditor`` reads only and has no chain role.
ROLES = ("admin", "customs_admin", "enterprise", "warehouse", "customs", "carrier", "payment", "auditor")
CHAIN_ROLES = frozenset(ROLES) - {"auditor"}
# Roles that exist once, created at first start.
PLATFORM_ROLES = frozenset({"admin", "customs_admin"})


@dataclass(frozen=True)
class NewActor:
    """An actor just created, with the only copy of its API key."""

    actor: Actor
    api_key: str

    def public(self) -> dict[str, str]:
        """The JSON INTERFACES.md gives for ``tracer actor add`` and ``POST /actors``."""
        actor = self.actor
        return {"name": actor.name, "role": actor.role, "address": actor.address, "api_key": self.api_key}


def create_actor(
    *,
    session: Session,
    keystore: KeyStore,
    name: str,
    role: str,
    address: str | None = None,
    grant_on_chain: bool = True,
) -> NewActor:
    """Creates an actor and queues its role grant and funding in the outbox (the caller commits).

    Without ``address`` the service creates and keeps the actor's key (custodial); with one, the actor keeps
    its own key. Raises InvalidInput for a bad name, role or address and DuplicateRecord for a taken name.
    """
    name = name.strip()
    if not name or len(name) > 128:
        raise InvalidInput("must be 1 to 128 characters", pointer="/name")
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}; one of {', '.join(ROLES)}", pointer="/role")
    if session.exec(select(Actor).where(Actor.name == name)).first() is not None:
        raise DuplicateRecord("actor", name)
    encrypted_key: str | None = None
    if address is None:
        account, encrypted_key = keystore.new_account()
        address = account.address
    elif not is_address(address):
        raise InvalidInput("not an Ethereum address (0x and 40 hex digits)", pointer="/address")
    api_key = new_api_key()
    actor = Actor(
        name=name,
        role=role,
        address=to_checksum_address(address),
        api_key_hash=hash_api_key(api_key),
        encrypted_key=encrypted_key,
    )
    session.add(actor)
    session.flush()
    assert actor.id is not None
    if grant_on_chain and role in CHAIN_ROLES:
        session.add(ChainTask(kind="grant", actor_id=actor.id, role=role))
    if encrypted_key is not None and role in CHAIN_ROLES:
        session.add(ChainTask(kind="fund", actor_id=actor.id))
    return NewActor(actor=actor, api_key=api_key)


def authenticate(*, session: Session, api_key: str | None) -> Actor:
    """The actor holding ``api_key``; raises AuthenticationFailed for none or an unknown one."""
    if not api_key:
        raise AuthenticationFailed("an API key is required: send 'Authorization: Bearer <api_key>'")
    actor = session.exec(select(Actor).where(Actor.api_key_hash == hash_api_key(api_key))).first()
    if actor is None:
        raise AuthenticationFailed("unknown API key")
    return actor
