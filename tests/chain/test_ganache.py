"""The registry on Ganache 7 (npm ganache 7.9.2, Shanghai), the documented alternative to anvil."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from chain_support import Actors
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from tracer.chain.client import ChainClient
from tracer.chain.compiler import RegistryArtifact
from tracer.chain.ganache import GanacheSupervisor
from tracer.chain.supervisor import free_port
from tracer.exceptions import ContractReverted

pytestmark = pytest.mark.ganache


def test_dev_deployer_key_is_funded_on_chain_1337(ganache: str, deployer: LocalAccount) -> None:
    client = ChainClient.connect(ganache)
    assert client.chain_id == 1337
    assert client.balance(deployer.address) > 1000 * 10**18


def test_declaration_is_read_back_from_lot_events(
    ganache_registry: ChainClient, ganache_actors: Actors, lot_id: bytes
) -> None:
    client = ganache_registry
    receipt = client.wait_receipt(
        client.send_call(
            sender=ganache_actors.enterprise, function="declareLot", args=[lot_id, 1000, keccak(text="d")]
        ),
        timeout=30,
    )
    client.wait_receipt(
        client.send_call(
            sender=ganache_actors.warehouse, function="recordEntry", args=[lot_id, 1, 999, keccak(text="e")]
        ),
        timeout=30,
    )

    events = client.lot_events(lot_id)

    assert [(e.seq, e.step_name, e.author) for e in events] == [
        (0, "Declared", ganache_actors.enterprise.address),
        (1, "Entered", ganache_actors.warehouse.address),
    ]
    assert events[0].tx_hash == receipt.tx_hash and events[0].block_hash == receipt.block_hash
    assert events[1].head == keccak(events[0].head + keccak(text="e"))
    assert client.get_lot(lot_id)["receivedQuantity"] == 999


def test_reverts_decode_on_ganache(ganache_registry: ChainClient, ganache_actors: Actors, lot_id: bytes) -> None:
    client = ganache_registry
    with pytest.raises(ContractReverted) as simulated:
        client.simulate(
            sender_address=ganache_actors.warehouse.address, function="declareLot", args=[lot_id, 1, b"\1" * 32]
        )
    assert simulated.value.name == "AccessControlUnauthorizedAccount"

    client.wait_receipt(
        client.send_call(sender=ganache_actors.enterprise, function="declareLot", args=[lot_id, 5, b"\1" * 32]),
        timeout=30,
    )
    with pytest.raises(ContractReverted) as mined:
        client.wait_receipt(
            client.send_call(sender=ganache_actors.warehouse, function="recordEntry", args=[lot_id, 3, 5, b"\2" * 32]),
            timeout=30,
        )
    assert (mined.value.name, mined.value.args_) == (
        "TraceRegistrySequenceMismatch",
        {"lotId": "0x" + lot_id.hex(), "expected": 1, "provided": 3},
    )


def test_chain_survives_a_kill_9_with_a_database_path(
    tmp_path: Path, deployer: LocalAccount, artifact: RegistryArtifact
) -> None:
    node = GanacheSupervisor(port=free_port(), db_path=tmp_path / "db")
    node.start()
    try:
        client = ChainClient.connect(node.rpc_url, abi=artifact.abi)
        address, _ = client.deploy(deployer=deployer, admin=deployer.address, customs_admin=deployer.address)
        block = client.latest_block()
        time.sleep(0.5)
        node.kill()

        node.start()
        again = ChainClient.connect(node.rpc_url, address=address, abi=artifact.abi)
        assert again.code_at(address) != b""
        assert again.has_role("admin", deployer.address)
        assert again.latest_block() >= block
    finally:
        node.stop()
