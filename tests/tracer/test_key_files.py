"""Secrets at rest: the data dir and its key files are the owner's alone; production refuses the development
passphrase."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from tracer.actors import create_actor
from tracer.config import PROJECT_ROOT, Settings
from tracer.exceptions import ConfigurationError
from tracer.service import ADMIN_KEY_FILE, _ensure_platform_actors, open_service, open_store
from tracer.store.models import Actor

KEY_FILES = ("keystore-salt", "api-key-secret", "key-passphrase", ADMIN_KEY_FILE, "customs-admin-api-key")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _settings(data_dir: Path, **overrides: Any) -> Settings:
    return Settings(data_dir=data_dir, rpc_url="http://127.0.0.1:9", **overrides)


def _first_start(settings: Settings) -> None:
    engine, keystore = open_store(settings)
    with Session(engine) as session:
        _ensure_platform_actors(session, keystore, settings.data_dir)
        session.commit()
    engine.dispose()


def test_the_data_dir_is_0700_and_every_key_file_0600(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    _first_start(_settings(data_dir))
    assert _mode(data_dir) == 0o700
    for name in KEY_FILES:
        assert _mode(data_dir / name) == 0o600, name


def test_a_data_dir_with_loose_modes_is_tightened_at_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    _first_start(_settings(data_dir))
    data_dir.chmod(0o755)
    for name in KEY_FILES:
        (data_dir / name).chmod(0o644)
    open_store(_settings(data_dir))[0].dispose()
    assert _mode(data_dir) == 0o700
    assert {name: _mode(data_dir / name) for name in KEY_FILES} == dict.fromkeys(KEY_FILES, 0o600)


def test_production_without_a_passphrase_refuses_to_start_saying_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="TRACER_KEY_PASSPHRASE") as refused:
        open_store(_settings(tmp_path / "data", env="production"))
    assert "production" in str(refused.value)
    assert not (tmp_path / "data" / "key-passphrase").exists()  # nothing generated


def test_the_service_in_production_without_a_passphrase_exits_1_saying_what_to_set(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TRACER_")},
        "TRACER_ENV": "production",
        "TRACER_DATA_DIR": str(tmp_path / "data"),
        "TRACER_RPC_URL": "http://127.0.0.1:9",
        "TRACER_DEPLOYER_KEY": "0x" + "42" * 32,  # not the development key: the passphrase is what is missing
    }
    started = subprocess.run(
        [sys.executable, "-m", "api"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert started.returncode == 1
    assert "set TRACER_KEY_PASSPHRASE" in started.stdout + started.stderr


def test_production_refuses_the_generated_development_passphrase_given_back(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    open_store(_settings(data_dir))[0].dispose()
    generated = (data_dir / "key-passphrase").read_text().strip()
    with pytest.raises(ConfigurationError, match="development passphrase"):
        open_store(_settings(data_dir, env="production", key_passphrase=generated))


def test_production_starts_with_a_passphrase_of_its_own(tmp_path: Path) -> None:
    engine, keystore = open_store(_settings(tmp_path / "data", env="production", key_passphrase="a long secret"))
    with Session(engine) as session:
        created = create_actor(session=session, keystore=keystore, name="acme", role="enterprise")
        session.commit()
        stored = session.exec(select(Actor)).one()
    assert stored.encrypted_key is not None and created.actor.address == keystore.open(stored.encrypted_key).address
    engine.dispose()


def test_the_environment_names_production_or_development_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACER_ENV", "prod")
    with pytest.raises(ValueError, match="production"):
        Settings()
    monkeypatch.setenv("TRACER_ENV", "production")
    assert Settings().production


def test_production_on_a_node_by_url_refuses_the_public_development_deployer_key(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "data", env="production", key_passphrase="a long secret")
    with pytest.raises(ConfigurationError, match="set TRACER_DEPLOYER_KEY"):
        open_service(settings)
    assert not (tmp_path / "data").exists()  # refused before anything was created
