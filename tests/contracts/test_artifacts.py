"""The committed artifacts are what the sources compile to, wherever the clone lives."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tracer.chain import compiler
from tracer.chain.compiler import (
    NODE_ADAPTER,
    SOLC_VERSION,
    RegistryArtifact,
    build_artifacts,
    compile_contracts,
    find_solc,
    load_artifact,
    sources_changed,
)
from tracer.config import PROJECT_ROOT
from tracer.exceptions import CompilerError


def _clone_sources(root: Path) -> Path:
    """A copy of the contracts at another path, with the project's node_modules linked in."""
    shutil.copytree(PROJECT_ROOT / "contracts", root / "contracts")
    (root / "node_modules").symlink_to(PROJECT_ROOT / "node_modules")
    return root


@pytest.fixture(scope="module")
def committed() -> RegistryArtifact:
    return load_artifact("TraceRegistry")


@pytest.fixture(scope="module")
def recompiled() -> RegistryArtifact:
    (artifact,) = build_artifacts(compile_contracts())
    return artifact


@pytest.mark.parametrize("field", ["abi", "bytecode", "deployed_bytecode", "immutable_references", "metadata"])
def test_recompiling_the_sources_gives_the_committed_artifact(committed, recompiled, field):
    assert getattr(recompiled, field) == getattr(committed, field)


def test_committed_artifact_records_compiler_settings_and_source_hash(committed, recompiled):
    assert committed.compiler == {
        "version": f"{SOLC_VERSION}+commit.73712a01",
        "evmVersion": "shanghai",
        "optimizer": {"enabled": True, "runs": 200},
    }
    assert committed.source_hash == recompiled.source_hash
    assert committed.sources == recompiled.sources


def test_source_hash_covers_openzeppelin_sources(committed):
    assert "@openzeppelin/contracts/access/AccessControl.sol" in committed.sources
    assert "contracts/TraceRegistry.sol" in committed.sources


def test_sources_unchanged_on_a_clean_tree():
    assert sources_changed() is False


def test_sources_changed_after_an_edit(tmp_path):
    root = _clone_sources(tmp_path)
    registry = root / "contracts" / "TraceRegistry.sol"
    registry.write_text(registry.read_text() + "\n// edited\n")
    assert sources_changed(root=root, artifacts_dir=compiler.ARTIFACTS_DIR) is True


def test_sources_changed_when_the_artifact_is_missing(tmp_path):
    assert sources_changed(artifacts_dir=tmp_path) is True


def test_bytecode_does_not_depend_on_where_the_clone_lives(tmp_path, committed):
    (artifact,) = build_artifacts(compile_contracts(root=_clone_sources(tmp_path / "elsewhere")))
    assert artifact.bytecode == committed.bytecode


def test_compile_error_raises_compiler_error(tmp_path):
    root = _clone_sources(tmp_path)
    (root / "contracts" / "Broken.sol").write_text("// SPDX-License-Identifier: MIT\npragma solidity 0.8.30;\nbroken\n")
    with pytest.raises(CompilerError, match="Broken.sol"):
        compile_contracts(root=root)


def test_missing_import_raises_compiler_error(tmp_path):
    root = _clone_sources(tmp_path)
    (root / "contracts" / "Orphan.sol").write_text('import {Nothing} from "@nowhere/Nothing.sol";\n')
    with pytest.raises(CompilerError, match="@nowhere/Nothing.sol"):
        sources_changed(root=root)


def test_node_adapter_answers_version_like_native_solc():
    out = subprocess.run([NODE_ADAPTER, "--version"], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0] == "solc, the solidity compiler commandline interface"
    assert out.splitlines()[1].startswith(f"Version: {SOLC_VERSION}+commit.")


def test_find_solc_falls_back_to_the_node_adapter_without_native_solc():
    env = {"PATH": os.path.dirname(shutil.which("node") or "/usr/bin/node")}
    if shutil.which("solc", path=env["PATH"]):
        pytest.skip("a native solc sits beside node")
    assert find_solc(env=env) == NODE_ADAPTER


def test_find_solc_refuses_tracer_solc_of_another_version(tmp_path):
    fake = tmp_path / "solc"
    banner = "solc, the solidity compiler commandline interface"
    fake.write_text(f"#!/bin/sh\necho '{banner}'\necho 'Version: 0.8.29+commit.ab55807c.Linux.g++'\n")
    fake.chmod(0o755)
    with pytest.raises(CompilerError, match="0.8.29"):
        find_solc(env={"TRACER_SOLC": str(fake), "PATH": os.environ.get("PATH", "")})


def test_find_solc_accepts_tracer_solc_of_the_pinned_version():
    assert find_solc(env={"TRACER_SOLC": str(NODE_ADAPTER), "PATH": ""}) == NODE_ADAPTER


def test_deployed_code_matches_the_artifact_outside_its_immutables(w3, registry, committed):
    assert committed.immutable_references  # EIP712 caches its domain in immutables
    assert committed.matches_runtime_code(bytes(w3.eth.get_code(registry.address)))


def test_other_code_does_not_match_the_artifact(w3, registry, committed):
    code = bytearray(w3.eth.get_code(registry.address))
    code[10] ^= 0xFF
    assert not committed.matches_runtime_code(bytes(code))
