"""``tracer actor rotate-key`` and ``tracer actor revoke``: the operator's side of API key management."""

from __future__ import annotations

import json
from pathlib import Path

from sqlmodel import Session, select
from typer.testing import CliRunner, Result

from tracer.actors import authenticate, create_actor
from tracer.cli import app
from tracer.config import Settings
from tracer.exceptions import AuthenticationFailed
from tracer.service import open_store
from tracer.store.models import Actor, ChainTask

ENV = {"TRACER_KEY_PASSPHRASE": "cli test", "TRACER_RPC_URL": "http://127.0.0.1:9"}


def _deployment(tmp_path: Path) -> tuple[Settings, str]:
    """A data dir holding one enterprise; returns its settings and the enterprise's API key."""
    settings = Settings(data_dir=tmp_path, key_passphrase=ENV["TRACER_KEY_PASSPHRASE"], rpc_url=ENV["TRACER_RPC_URL"])
    engine, keystore = open_store(settings)
    with Session(engine) as session:
        api_key = create_actor(session=session, keystore=keystore, name="acme", role="enterprise").api_key
        session.commit()
    engine.dispose()
    return settings, api_key


def _run(tmp_path: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["actor", *args], env={"TRACER_DATA_DIR": str(tmp_path), **ENV})


def _holder(settings: Settings, api_key: str) -> Actor | None:
    engine, keystore = open_store(settings)
    try:
        with Session(engine) as session:
            return authenticate(session=session, keystore=keystore, api_key=api_key)
    except AuthenticationFailed:
        return None
    finally:
        engine.dispose()


def test_rotate_key_prints_the_new_key_as_json_and_the_old_one_stops_working(tmp_path: Path) -> None:
    settings, old = _deployment(tmp_path)
    result = _run(tmp_path, "rotate-key", "acme")
    assert result.exit_code == 0, result.output
    rotated = json.loads(result.stdout)
    assert set(rotated) == {"name", "role", "address", "api_key"} and rotated["name"] == "acme"
    assert _holder(settings, old) is None
    holder = _holder(settings, rotated["api_key"])
    assert holder is not None and holder.name == "acme"


def test_revoke_stops_the_key_and_queues_the_role_revocation(tmp_path: Path) -> None:
    settings, api_key = _deployment(tmp_path)
    result = _run(tmp_path, "revoke", "acme")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["revoked"] is True
    assert _holder(settings, api_key) is None
    engine, _ = open_store(settings)
    with Session(engine) as session:
        tasks = session.exec(select(ChainTask).where(ChainTask.kind == "revoke")).all()
    engine.dispose()
    assert [(task.role, task.status) for task in tasks] == [("enterprise", "pending")]


def test_an_unknown_or_revoked_actor_exits_1_with_a_message(tmp_path: Path) -> None:
    _deployment(tmp_path)
    result = _run(tmp_path, "rotate-key", "nobody")
    assert result.exit_code == 1 and "unknown actor: nobody" in result.stderr
    assert _run(tmp_path, "revoke", "acme").exit_code == 0
    again = _run(tmp_path, "rotate-key", "acme")
    assert again.exit_code == 1 and "revoked" in again.stderr and again.stdout == ""
