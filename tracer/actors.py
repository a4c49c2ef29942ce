"""Actors: the parties that write to the registry, each with an API key and its own chain account.

An actor's API key can be rotated (the old one stops working at once) and the actor revoked: its key
stops working and its chain role is revoked through the outbox, like a grant. A revoked actor keeps its
row (its events and their authorship stay), marked by a revoked API key hash (see ``is_revoked``).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from eth_utils.address import is_address, to_checksum_address
from sqlmodel import Session, select

from tracer.exceptions import AuthenticationFailed, Conflict, DuplicateRecord, InvalidInput, NotFound
from tracer.keys import KeyStore, legacy_api_key_hash, new_api_key
from tracer.store.models import Actor, ChainTask

# Roles as named on chain and in the API; ``auditor`` reads only and has no chain role.
ROLES = ("admin", "customs_admin", "enterprise", "warehouse", "customs", "carrier", "payment", "auditor")
CHAIN_ROLES = frozenset(ROLES) - {"auditor"}
# Roles that exist once, created at first start.
PLATFORM_ROLES = frozenset({"admin", "customs_admin"})
# A revoked actor's api_key_hash: no HMAC digest (64 hex digits) has a ':', so no key ever matches it, and the
# random tail keeps the column unique. A marker in that column, rather than a new one, because the store has
# no migrations: a new column would break every existing database.
_REVOKED_PREFIX = "revoked:"


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
        api_key_hash=keystore.api_key_digest(api_key),
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


def is_revoked(actor: Actor) -> bool:
    """Whether ``actor`` was revoked (its API key no longer works, its chain role is revoked)."""
    return actor.api_key_hash.startswith(_REVOKED_PREFIX)


def revoked_public(actor: Actor) -> dict[str, object]:
    """The JSON ``tracer actor revoke`` and ``POST /actors/{name}/revoke`` answer with."""
    return {"name": actor.name, "role": actor.role, "address": actor.address, "revoked": is_revoked(actor)}


def rotate_api_key(*, session: Session, keystore: KeyStore, name: str) -> NewActor:
    """Gives actor ``name`` a new API key; the old one stops working with the caller's commit.

    Raises NotFound for an unknown actor and Conflict for a revoked one.
    """
    actor = get_actor(session=session, name=name)
    if is_revoked(actor):
        raise Conflict(f"actor {actor.name!r} is revoked; create a new actor instead")
    api_key = new_api_key()
    actor.api_key_hash = keystore.api_key_digest(api_key)
    session.add(actor)
    return NewActor(actor=actor, api_key=api_key)


def revoke_actor(*, session: Session, name: str) -> Actor:
    """Revokes actor ``name``: its API key stops working with the caller's commit, and its chain role is
    queued for revocation in the outbox (sent once the events it had accepted are anchored).

    Raises NotFound for an unknown actor and Conflict for a platform actor or one revoked already.
    """
    actor = get_actor(session=session, name=name)
    if actor.role in PLATFORM_ROLES:
        raise Conflict(f"actor {actor.name!r} is the {actor.role}, which cannot be revoked; rotate its key instead")
    if is_revoked(actor):
        raise Conflict(f"actor {actor.name!r} is revoked already")
    assert actor.id is not None
    actor.api_key_hash = _REVOKED_PREFIX + secrets.token_hex(28)
    session.add(actor)
    if actor.role in CHAIN_ROLES:
        session.add(ChainTask(kind="revoke", actor_id=actor.id, role=actor.role))
    return actor


def get_actor(*, session: Session, name: str) -> Actor:
    """The actor called ``name``; raises NotFound."""
    actor = session.exec(select(Actor).where(Actor.name == name)).first()
    if actor is None:
        raise NotFound("actor", name)
    return actor


def authenticate(*, session: Session, keystore: KeyStore, api_key: str | None) -> Actor:
    """The actor holding ``api_key``; raises AuthenticationFailed for none, an unknown or a revoked one.

    A key still stored in its legacy unkeyed form is accepted once and upgraded (committed here).
    """
    if not api_key:
        raise AuthenticationFailed("an API key is required: send 'Authorization: Bearer <api_key>'")
    digest = keystore.api_key_digest(api_key)
    actor = _holder(session, digest)
    if actor is None:
        actor = _holder(session, legacy_api_key_hash(api_key))
        if actor is not None:
            actor.api_key_hash = digest
            session.add(actor)
            session.commit()
    # The index found the row; the constant-time comparison is the check (a database collation must not decide).
    if actor is None or not hmac.compare_digest(actor.api_key_hash.encode(), digest.encode()):
        raise AuthenticationFailed("unknown API key")
    return actor


def _holder(session: Session, stored: str) -> Actor | None:
    return session.exec(select(Actor).where(Actor.api_key_hash == stored)).first()
