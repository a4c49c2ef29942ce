"""``tracer actor add``: the operator's way to create an actor, against the service's chain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tracer.cli import app

pytestmark = pytest.mark.anvil


def _run(tmp_path: Path, rpc_url: str, *args: str) -> object:
    env = {"TRACER_DATA_DIR": str(tmp_path), "TRACER_RPC_URL": rpc_url, "TRACER_KEY_PASSPHRASE": "cli test"}
    return CliRunner().invoke(app, ["actor", "add", *args], env=env)


def test_actor_add_prints_one_json_object_with_an_api_key(tmp_path: Path, anvil: str) -> None:
    result = _run(tmp_path, anvil, "acme", "--role", "enterprise")
    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    assert set(created) == {"name", "role", "address", "api_key"}
    assert created["name"] == "acme" and created["role"] == "enterprise" and created["address"].startswith("0x")


def test_actor_add_with_an_address_keeps_that_address(tmp_path: Path, anvil: str) -> None:
    address = "0x" + "ab" * 20
    result = _run(tmp_path, anvil, "own-keys", "--role", "warehouse", "--address", address)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["address"].lower() == address


def test_a_taken_name_exits_1_with_a_message(tmp_path: Path, anvil: str) -> None:
    assert _run(tmp_path, anvil, "acme", "--role", "enterprise").exit_code == 0
    result = _run(tmp_path, anvil, "acme", "--role", "carrier")
    assert result.exit_code == 1
    assert "exists already" in result.stderr and result.stdout == ""


def test_without_its_chain_it_exits_1_saying_what_to_do(tmp_path: Path) -> None:
    result = _run(tmp_path, "http://127.0.0.1:9", "acme", "--role", "enterprise")
    assert result.exit_code == 1
    assert "scripts/run" in result.stderr


def test_reindex_without_a_registry_says_to_start_the_service(tmp_path: Path, anvil: str) -> None:
    env = {"TRACER_DATA_DIR": str(tmp_path), "TRACER_RPC_URL": anvil, "TRACER_KEY_PASSPHRASE": "cli test"}
    result = CliRunner().invoke(app, ["reindex"], env=env)
    assert result.exit_code == 2 and "scripts/run" in result.stderr
