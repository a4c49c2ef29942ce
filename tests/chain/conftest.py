"""Real nodes for the chain tests: one anvil and one Ganache 7 per session, on free ports in tmp dirs.

``anvil`` and ``ganache`` yield the node's JSON-RPC URL. ``anvil`` automines (a block per transaction)
so the many client tests stay fast; tests/chain/test_anvil.py starts its own nodes with the service's
one-second blocks.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from chain_support import Actors, deploy_with_actors
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from tracer.chain.client import ChainClient
from tracer.chain.compiler import RegistryArtifact, load_artifact
from tracer.chain.ganache import GanacheSupervisor
from tracer.chain.supervisor import free_port
from tracer.config import DEV_DEPLOYER_KEY


@pytest.fixture(scope="session")
def ganache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Ganache 7 (eager instamine) for the session; yields its RPC URL."""
    directory = tmp_path_factory.mktemp("ganache")
    with GanacheSupervisor(port=free_port(), db_path=directory / "db", log_path=directory / "ganache.log") as node:
        yield node.rpc_url


@pytest.fixture(scope="session")
def artifact() -> RegistryArtifact:
    """The committed registry artifact."""
    return load_artifact()


@pytest.fixture(scope="session")
def deployer() -> LocalAccount:
    """Anvil's (and, by the shared mnemonic, Ganache's) first funded dev account."""
    return Account.from_key(DEV_DEPLOYER_KEY)


@pytest.fixture
def lot_id() -> bytes:
    """A lot id no other test uses (the registry's encoding: keccak of the GS1 element string 01…10…)."""
    return keccak(text="01" + "09506000134352" + "10" + uuid.uuid4().hex[:12])


@pytest.fixture(scope="session")
def anvil_actors(anvil: str, deployer: LocalAccount, artifact: RegistryArtifact) -> Actors:
    """A registry on the session anvil with one account per role."""
    return deploy_with_actors(ChainClient.connect(anvil, abi=artifact.abi), deployer, artifact)


@pytest.fixture
def registry(anvil: str, anvil_actors: Actors, artifact: RegistryArtifact) -> ChainClient:
    """A fresh client bound to the session registry on anvil."""
    return ChainClient.connect(
        anvil, address=anvil_actors.registry, abi=artifact.abi, deploy_block=anvil_actors.deploy_block
    )


@pytest.fixture(scope="session")
def ganache_actors(ganache: str, deployer: LocalAccount, artifact: RegistryArtifact) -> Actors:
    """A registry on the session Ganache with one account per role."""
    return deploy_with_actors(ChainClient.connect(ganache, abi=artifact.abi), deployer, artifact)


@pytest.fixture
def ganache_registry(ganache: str, ganache_actors: Actors, artifact: RegistryArtifact) -> ChainClient:
    """A fresh client bound to the session registry on Ganache."""
    return ChainClient.connect(
        ganache, address=ganache_actors.registry, abi=artifact.abi, deploy_block=ganache_actors.deploy_block
    )
