"""Compile the registry contracts with py-solc-x and keep their committed artifacts in step with the sources.

The compiler gets every source by its relative name (``contracts/TraceRegistry.sol``,
``@openzeppelin/contracts/access/AccessControl.sol``), all of them in the standard-JSON input, so the
metadata hash and the bytecode do not depend on where the clone lives, and the set of sources (and their
hash) is known before compiling: :func:`sources_changed` is cheap.

Which ``solc`` runs, in order: the ``solc_binary`` argument, ``$TRACER_SOLC``, a native ``solc`` on
``PATH`` whose version is :data:`SOLC_VERSION`, else ``solc-node.cjs`` beside this module (npm ``solc``
driven through Node; native solc cannot be downloaded on every machine).

``python -m tracer.chain.compiler [--force] [--check]`` recompiles when the sources changed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import posixpath
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracer.config import PROJECT_ROOT
from tracer.exceptions import CompilerError

SOLC_VERSION = "0.8.30"
EVM_VERSION = "shanghai"
OPTIMIZER = {"enabled": True, "runs": 200}
# The contracts that get an artifact; every other source is compiled as a dependency only.
ARTIFACT_CONTRACTS = ("TraceRegistry",)
CONTRACTS_DIR = "contracts"
ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"
NODE_ADAPTER = Path(__file__).resolve().parent / "solc-node.cjs"

_OUTPUTS = [
    "abi",
    "evm.bytecode.object",
    "evm.deployedBytecode.object",
    "evm.deployedBytecode.immutableReferences",
    "metadata",
]
# A string literal or a comment: comments are dropped before looking for imports, strings kept.
_TOKEN = re.compile(r"\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'|//[^\n]*|/\*.*?\*/", re.DOTALL)
_IMPORT = re.compile(r"\bimport\b[^;\"']*[\"']([^\"']+)[\"'][^;]*;")


@dataclass(frozen=True)
class RegistryArtifact:
    """A compiled contract as committed in ``tracer/chain/artifacts/<name>.json``."""

    contract_name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    immutable_references: dict[str, Any]
    compiler: dict[str, Any]
    source_hash: str
    sources: dict[str, str]
    metadata: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RegistryArtifact:
        """Build an artifact from its JSON form; raises ``KeyError`` if a field is missing."""
        return cls(
            contract_name=data["contractName"],
            abi=data["abi"],
            bytecode=data["bytecode"],
            deployed_bytecode=data["deployedBytecode"],
            immutable_references=data["immutableReferences"],
            compiler=data["compiler"],
            source_hash=data["sourceHash"],
            sources=data["sources"],
            metadata=data["metadata"],
        )

    def matches_runtime_code(self, code: bytes) -> bool:
        """Whether ``code`` (as ``eth_getCode`` returns it) is this artifact's deployed bytecode.

        The bytes of immutables (OpenZeppelin ``EIP712`` keeps its domain separator, chain id and address in
        them) are set by the constructor, so they are compared outside those ranges only.
        """
        expected = bytearray.fromhex(self.deployed_bytecode.removeprefix("0x"))
        actual = bytearray(code)
        if len(actual) != len(expected):
            return False
        for ranges in self.immutable_references.values():
            for where in ranges:
                start, end = where["start"], where["start"] + where["length"]
                actual[start:end] = expected[start:end] = bytes(where["length"])
        return actual == expected

    def to_json(self) -> dict[str, Any]:
        """The JSON form written to the artifact file."""
        return {
            "contractName": self.contract_name,
            "abi": self.abi,
            "bytecode": self.bytecode,
            "deployedBytecode": self.deployed_bytecode,
            "immutableReferences": self.immutable_references,
            "compiler": self.compiler,
            "sourceHash": self.source_hash,
            "sources": self.sources,
            "metadata": self.metadata,
        }


def collect_sources(*, root: Path = PROJECT_ROOT) -> dict[str, str]:
    """Every source to compile, by relative name: ``contracts/*.sol`` and everything they import.

    Imports resolve like the Node adapter's: ``./`` and ``../`` against the importing source's name, other
    names under ``node_modules/`` first, then the project root. Raises :class:`CompilerError` when an
    import cannot be found.
    """
    contracts = sorted((root / CONTRACTS_DIR).glob("*.sol"))
    if not contracts:
        raise CompilerError(f"no Solidity sources in {root / CONTRACTS_DIR}")
    pending = [f"{CONTRACTS_DIR}/{path.name}" for path in contracts]
    sources: dict[str, str] = {}
    while pending:
        name = pending.pop()
        if name in sources:
            continue
        sources[name] = _read_source(root, name)
        for imported in _imports(sources[name]):
            pending.append(_resolve_import(name, imported))
    return dict(sorted(sources.items()))


def source_hash(sources: Mapping[str, str]) -> str:
    """sha256 over the sorted (name, content) pairs, each part length-prefixed, as hex."""
    digest = hashlib.sha256()
    for name in sorted(sources):
        for part in (name.encode(), sources[name].encode()):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
    return digest.hexdigest()


def find_solc(*, env: Mapping[str, str] | None = None) -> Path:
    """The ``solc`` to run: ``$TRACER_SOLC``, a native ``solc`` of the pinned version, else the Node adapter.

    Raises :class:`CompilerError` when ``$TRACER_SOLC`` is not the pinned version or no compiler is usable.
    """
    env = os.environ if env is None else env
    named = env.get("TRACER_SOLC")
    if named:
        path = Path(named).expanduser()
        version = _solc_version(path)
        if version != SOLC_VERSION:
            raise CompilerError(
                f"TRACER_SOLC={named} is solc {version or '(unreadable version)'}; this project pins "
                f"{SOLC_VERSION}: point TRACER_SOLC at a solc {SOLC_VERSION} or unset it to use npm solc"
            )
        return path
    native = shutil.which("solc", path=env.get("PATH"))
    if native and _solc_version(Path(native)) == SOLC_VERSION:
        return Path(native)
    if shutil.which("node", path=env.get("PATH")) is None:
        raise CompilerError(
            f"no solc {SOLC_VERSION} found: install Node.js 20 and run `npm install` at the project root "
            f"(npm solc@{SOLC_VERSION}), or set TRACER_SOLC to a native solc {SOLC_VERSION}"
        )
    if not os.access(NODE_ADAPTER, os.X_OK):
        raise CompilerError(f"{NODE_ADAPTER} is not executable: run `chmod +x {NODE_ADAPTER}`")
    return NODE_ADAPTER


def compile_contracts(*, root: Path = PROJECT_ROOT, solc_binary: Path | None = None) -> dict[str, Any]:
    """Compile every contract under ``root/contracts`` and return solc's standard-JSON output.

    The output gains a ``tracer`` key: ``{"sources": {name: content}, "sourceHash": ...}``, the exact
    input compiled. Raises :class:`CompilerError` if the compiler is missing or reports errors.
    """
    import solcx  # imported here: the service imports this module for its artifacts, rarely compiles
    from solcx.exceptions import SolcError

    sources = collect_sources(root=root)
    binary = solc_binary or find_solc()
    try:
        output: dict[str, Any] = solcx.compile_standard(_standard_input(sources), solc_binary=binary)
    except SolcError as exc:
        raise CompilerError(f"solc ({binary}) failed:\n{exc}") from exc
    except (OSError, ValueError) as exc:
        raise CompilerError(
            f"could not run solc ({binary}): {exc}; run `npm install` at the project root, "
            f"or set TRACER_SOLC to a native solc {SOLC_VERSION}"
        ) from exc
    compiled = set(output.get("sources", {}))
    if compiled != set(sources):
        # The compiler read a file that the import scan missed (or the reverse): the hash would lie.
        raise CompilerError(f"compiled sources differ from the scanned ones: {sorted(compiled ^ set(sources))}")
    output["tracer"] = {"sources": sources, "sourceHash": source_hash(sources)}
    return output


def build_artifacts(output: Mapping[str, Any]) -> list[RegistryArtifact]:
    """The artifacts of :data:`ARTIFACT_CONTRACTS` from a :func:`compile_contracts` output."""
    sources: dict[str, str] = output["tracer"]["sources"]
    artifacts = []
    for name in ARTIFACT_CONTRACTS:
        contract = output["contracts"][f"{CONTRACTS_DIR}/{name}.sol"][name]
        metadata = contract["metadata"]
        artifacts.append(
            RegistryArtifact(
                contract_name=name,
                abi=contract["abi"],
                bytecode="0x" + contract["evm"]["bytecode"]["object"],
                deployed_bytecode="0x" + contract["evm"]["deployedBytecode"]["object"],
                immutable_references=contract["evm"]["deployedBytecode"].get("immutableReferences", {}),
                compiler={
                    "version": json.loads(metadata)["compiler"]["version"],
                    "evmVersion": EVM_VERSION,
                    "optimizer": dict(OPTIMIZER),
                },
                source_hash=output["tracer"]["sourceHash"],
                sources={source: hashlib.sha256(content.encode()).hexdigest() for source, content in sources.items()},
                metadata=metadata,
            )
        )
    return artifacts


def write_artifacts(
    *, root: Path = PROJECT_ROOT, artifacts_dir: Path | None = None, solc_binary: Path | None = None
) -> list[Path]:
    """Compile and write ``<name>.json`` for each of :data:`ARTIFACT_CONTRACTS`; return the paths written.

    Raises :class:`CompilerError` as :func:`compile_contracts` does.
    """
    target = artifacts_dir or root / "tracer" / "chain" / "artifacts"
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for artifact in build_artifacts(compile_contracts(root=root, solc_binary=solc_binary)):
        path = target / f"{artifact.contract_name}.json"
        path.write_text(json.dumps(artifact.to_json(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written


def load_artifact(name: str = "TraceRegistry", *, artifacts_dir: Path | None = None) -> RegistryArtifact:
    """The committed artifact of contract ``name``; raises :class:`CompilerError` if it is missing or broken."""
    path = (artifacts_dir or ARTIFACTS_DIR) / f"{name}.json"
    try:
        return RegistryArtifact.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError) as exc:
        raise CompilerError(
            f"artifact {path} is missing or unreadable ({exc}): run `python -m tracer.chain.compiler --force`"
        ) from exc


def sources_changed(*, root: Path = PROJECT_ROOT, artifacts_dir: Path | None = None) -> bool:
    """True when the sources no longer hash to what the artifacts were built from (or an artifact is missing).

    Reads the sources, never compiles. Raises :class:`CompilerError` if an import cannot be found.
    """
    current = source_hash(collect_sources(root=root))
    target = artifacts_dir or root / "tracer" / "chain" / "artifacts"
    for name in ARTIFACT_CONTRACTS:
        try:
            if load_artifact(name, artifacts_dir=target).source_hash != current:
                return True
        except CompilerError:
            return True
    return False


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m tracer.chain.compiler``: recompile when the sources changed."""
    parser = argparse.ArgumentParser(
        prog="python -m tracer.chain.compiler", description="Compile the contracts into tracer/chain/artifacts."
    )
    parser.add_argument("--force", action="store_true", help="compile even if the sources did not change")
    parser.add_argument("--check", action="store_true", help="only report; exit 1 if the artifacts are stale")
    args = parser.parse_args(argv)
    try:
        changed = sources_changed()
        if args.check:
            print("artifacts are stale: sources changed" if changed else "artifacts are up to date")
            return 1 if changed else 0
        if not (changed or args.force):
            print("contracts unchanged; artifacts are up to date")
            return 0
        binary = find_solc()
        for path in write_artifacts(solc_binary=binary):
            print(f"compiled with {binary}; wrote {path}")
    except CompilerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _standard_input(sources: Mapping[str, str]) -> dict[str, Any]:
    return {
        "language": "Solidity",
        "sources": {name: {"content": content} for name, content in sources.items()},
        "settings": {
            "evmVersion": EVM_VERSION,
            "optimizer": dict(OPTIMIZER),
            "outputSelection": {"*": {"*": list(_OUTPUTS)}},
        },
    }


def _solc_version(binary: Path) -> str | None:
    from solcx import wrapper

    try:
        return str(wrapper.get_solc_version(binary))
    except Exception:  # any failure to run or parse means "not a usable solc"
        return None


def _imports(content: str) -> list[str]:
    code = _TOKEN.sub(lambda m: m.group(0) if m.group(0)[0] in "\"'" else " ", content)
    return _IMPORT.findall(code)


def _resolve_import(importer: str, name: str) -> str:
    if name.startswith(("./", "../")):
        return posixpath.normpath(posixpath.join(posixpath.dirname(importer), name))
    return name


def _read_source(root: Path, name: str) -> str:
    if name.startswith("/") or ".." in name.split("/"):
        raise CompilerError(f"import outside the project refused: {name}")
    for base in (root / "node_modules", root):
        path = base / name
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise CompilerError(
        f"Solidity source {name!r} not found under {root / 'node_modules'} or {root}: "
        "run `npm install` at the project root"
    )


if __name__ == "__main__":
    raise SystemExit(main())
