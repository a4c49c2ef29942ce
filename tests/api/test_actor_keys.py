"""API keys: keyed hashes, rotation and revocation (the key at once, the chain role through the outbox)."""

from __future__ import annotations

import hashlib
import hmac
import stat

from api_support import Api, Parties, ProblemCheck, declaration
from sqlmodel import Session, select

from tracer.service import ADMIN_KEY_FILE, reconcile
from tracer.store.models import Actor, ChainTask, Event


def _stored(api: Api, name: str) -> Actor:
    with Session(api.service.engine) as session:
        return session.exec(select(Actor).where(Actor.name == name)).one()


def _works(api: Api, key: str) -> bool:
    status = api.get("/events", key).status_code
    assert status in (200, 401)
    return bool(status == 200)


def test_the_stored_form_is_keyed_by_the_data_dirs_secret(api: Api) -> None:
    key = api.actor("acme", "enterprise")
    secret = bytes.fromhex((api.service.settings.data_dir / "api-key-secret").read_text())
    stored = _stored(api, "acme").api_key_hash
    assert stored == hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()
    assert stored != hashlib.sha256(key.encode()).hexdigest()  # nobody without the secret can compute it


def test_a_key_stored_in_the_legacy_unkeyed_form_works_once_and_is_upgraded(api: Api) -> None:
    key = api.actor("acme", "enterprise")
    with Session(api.service.engine) as session:
        actor = session.exec(select(Actor).where(Actor.name == "acme")).one()
        actor.api_key_hash = hashlib.sha256(key.encode()).hexdigest()
        session.add(actor)
        session.commit()
    assert _works(api, key)
    assert _stored(api, "acme").api_key_hash == api.service.keystore.api_key_digest(key)
    assert _works(api, key)


def test_a_rotated_key_replaces_the_old_one_at_once(api: Api) -> None:
    old = api.actor("acme", "enterprise")
    response = api.post("/actors/acme/rotate-key", api.admin_key)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"name", "role", "address", "api_key"} and body["name"] == "acme"
    assert body["api_key"] != old
    assert not _works(api, old)
    assert api.post("/lots", body["api_key"], declaration()).status_code == 202


def test_an_actor_rotates_its_own_key(api: Api) -> None:
    old = api.actor("acme", "carrier")
    new = api.post("/actors/acme/rotate-key", old).json()["api_key"]
    assert _works(api, new) and not _works(api, old)


def test_rotating_the_admins_key_rewrites_its_key_file_owner_only(api: Api) -> None:
    new = api.post("/actors/platform-admin/rotate-key", api.admin_key).json()["api_key"]
    path = api.service.settings.data_dir / ADMIN_KEY_FILE
    assert path.read_text().strip() == new
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not _works(api, api.admin_key) and _works(api, new)


def test_only_managers_rotate_or_revoke_others(api: Api, problem: ProblemCheck) -> None:
    carrier = api.actor("carrier-1", "carrier")
    api.actor("acme", "enterprise")
    for action in ("rotate-key", "revoke"):
        problem(api.post(f"/actors/acme/{action}", carrier), 403)
        problem(api.post(f"/actors/nobody/{action}", carrier), 403)  # not 404: names are not disclosed
        problem(api.post(f"/actors/nobody/{action}", api.admin_key), 404)
        problem(api.post(f"/actors/acme/{action}", None), 401)


def test_customs_officers_are_managed_by_the_customs_admin_alone(api: Api, problem: ProblemCheck) -> None:
    officer = api.actor("officer", "customs")
    problem(api.post("/actors/officer/rotate-key", api.admin_key), 403)
    problem(api.post("/actors/officer/revoke", api.admin_key), 403)
    problem(api.post("/actors/acme/revoke", api.customs_admin_key), 404)
    api.actor("acme", "enterprise")
    problem(api.post("/actors/acme/revoke", api.customs_admin_key), 403)
    assert api.post("/actors/officer/revoke", api.customs_admin_key).status_code == 200
    assert not _works(api, officer)


def test_revoking_stops_the_key_at_once_and_the_role_on_chain(api: Api, parties: Parties) -> None:
    address = _stored(api, "warehouse-1").address
    assert api.service.client.has_role("warehouse", address)
    response = api.post("/actors/warehouse-1/revoke", api.admin_key)
    assert response.status_code == 200, response.text
    assert response.json() == {"name": "warehouse-1", "role": "warehouse", "address": address, "revoked": True}
    assert not _works(api, parties.warehouse)
    api.anchor()
    assert not api.service.client.has_role("warehouse", address)


def test_events_accepted_before_a_revocation_are_anchored_with_the_role_they_had(api: Api, parties: Parties) -> None:
    lot_id = api.post("/lots", parties.enterprise, declaration()).json()["lot_id"]
    assert api.post("/actors/enterprise-1/revoke", api.admin_key).status_code == 200
    api.anchor()
    with Session(api.service.engine) as session:
        assert [event.status for event in session.exec(select(Event))] == ["anchored"]
        tasks = session.exec(select(ChainTask).where(ChainTask.kind == "revoke")).all()
        assert [task.status for task in tasks] == ["done"]
    assert api.service.client.get_lot(lot_id)["nextSeq"] == 1
    assert not api.service.client.has_role("enterprise", _stored(api, "enterprise-1").address)


def test_revocation_is_final_and_platform_actors_are_not_revoked(api: Api, problem: ProblemCheck) -> None:
    api.actor("acme", "enterprise")
    assert api.post("/actors/acme/revoke", api.admin_key).status_code == 200
    problem(api.post("/actors/acme/revoke", api.admin_key), 409)
    problem(api.post("/actors/acme/rotate-key", api.admin_key), 409)
    problem(api.post("/actors/customs-admin/revoke", api.admin_key), 409)
    problem(api.post("/actors/platform-admin/revoke", api.admin_key), 409)
    assert _works(api, api.admin_key)


def test_start_up_revokes_again_a_role_the_chain_regained_and_grants_it_no_more(api: Api, parties: Parties) -> None:
    assert api.post("/actors/carrier-1/revoke", api.admin_key).status_code == 200
    api.anchor()
    address = _stored(api, "carrier-1").address
    admin = api.service.keystore.open(_stored(api, "platform-admin").encrypted_key or "")
    # A node restored from a state before the revocation holds the role again.
    api.service.client.wait_receipt(api.service.client.grant_role(sender=admin, role_name="carrier", address=address))
    assert api.service.client.has_role("carrier", address)
    with Session(api.service.engine) as session:
        reconcile(session=session, client=api.service.client)
        session.commit()
        pending = session.exec(select(ChainTask).where(ChainTask.status == "pending")).all()
    assert [(task.kind, task.role) for task in pending] == [("revoke", "carrier")]
    api.anchor()
    assert not api.service.client.has_role("carrier", address)
    with Session(api.service.engine) as session:
        reconcile(session=session, client=api.service.client)
        assert session.exec(select(ChainTask).where(ChainTask.status == "pending")).all() == []
