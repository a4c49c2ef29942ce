"""Actors: who may create whom, and the chain's view of their roles."""

from __future__ import annotations

from api_support import Api, ProblemCheck, declaration
from sqlmodel import Session, select

from tracer.store.models import Actor, Lot


def test_admin_creates_an_enterprise_granted_and_funded_on_chain(api: Api) -> None:
    response = api.post("/actors", api.admin_key, {"name": "acme", "role": "enterprise"})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"name", "role", "address", "api_key"}
    api.anchor()
    client = api.service.client
    assert client.has_role("enterprise", body["address"])
    assert client.balance(body["address"]) > 0


def test_api_keys_are_stored_hashed_and_actor_keys_encrypted(api: Api) -> None:
    key = api.actor("acme", "enterprise")
    with Session(api.service.engine) as session:
        actor = session.exec(select(Actor).where(Actor.name == "acme")).one()
    assert actor.api_key_hash == api.service.keystore.api_key_digest(key) and key not in actor.api_key_hash
    assert actor.encrypted_key is not None
    assert api.service.keystore.open(actor.encrypted_key).address == actor.address


def test_only_the_customs_admin_creates_customs_officers(api: Api, problem: ProblemCheck) -> None:
    problem(api.post("/actors", api.admin_key, {"name": "officer", "role": "customs"}), 403)
    response = api.post("/actors", api.customs_admin_key, {"name": "officer", "role": "customs"})
    assert response.status_code == 201
    api.anchor()
    assert api.service.client.has_role("customs", response.json()["address"])


def test_the_customs_admin_creates_nothing_else(api: Api, problem: ProblemCheck) -> None:
    problem(api.post("/actors", api.customs_admin_key, {"name": "w", "role": "warehouse"}), 403)


def test_a_taken_name_is_409(api: Api, problem: ProblemCheck) -> None:
    api.actor("acme", "enterprise")
    problem(api.post("/actors", api.admin_key, {"name": "acme", "role": "carrier"}), 409)


def test_unknown_role_and_bad_address_are_400_naming_the_field(api: Api, problem: ProblemCheck) -> None:
    problem(api.post("/actors", api.admin_key, {"name": "x", "role": "pirate"}), 400, pointer="/role")
    problem(
        api.post("/actors", api.admin_key, {"name": "x", "role": "carrier", "address": "0x12"}), 400, pointer="/address"
    )


def test_platform_roles_cannot_be_created_again(api: Api, problem: ProblemCheck) -> None:
    problem(api.post("/actors", api.admin_key, {"name": "x", "role": "admin"}), 400, pointer="/role")


def test_a_business_actor_cannot_create_actors(api: Api, problem: ProblemCheck) -> None:
    key = api.actor("acme", "enterprise")
    problem(api.post("/actors", key, {"name": "y", "role": "carrier"}), 403)


def test_a_self_custody_actor_gets_its_role_on_its_own_address(api: Api) -> None:
    address = "0x" + "12" * 20
    response = api.post("/actors", api.admin_key, {"name": "own-keys", "role": "warehouse", "address": address})
    assert response.status_code == 201
    api.anchor()
    assert api.service.client.has_role("warehouse", response.json()["address"])
    with Session(api.service.engine) as session:
        assert session.exec(select(Actor).where(Actor.name == "own-keys")).one().encrypted_key is None


def test_healthz_reports_chain_registry_and_database(api: Api) -> None:
    health = api.get("/healthz").json()
    assert health["status"] == "ok" and health["database"] == "ok"
    assert health["registry"] == api.service.registry
    assert health["chain_id"] == api.service.chain_id and isinstance(health["latest_block"], int)


def test_a_self_custody_actors_unsigned_step_is_refused_not_left_pending(api: Api, problem: ProblemCheck) -> None:
    created = api.post("/actors", api.admin_key, {"name": "own", "role": "enterprise", "address": "0x" + "34" * 20})
    body = problem(api.post("/lots", created.json()["api_key"], declaration()), 403)
    assert "EIP-712" in body["detail"]
    with Session(api.service.engine) as session:
        assert session.exec(select(Lot)).all() == []
