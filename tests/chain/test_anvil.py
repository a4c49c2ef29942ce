"""AnvilSupervisor with the service's settings (one-second blocks, state on disk every second)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from tracer.chain.anvil import AnvilSupervisor, find_anvil_binary
from tracer.chain.client import ChainClient
from tracer.chain.compiler import RegistryArtifact
from tracer.chain.supervisor import port_in_use
from tracer.exceptions import ConfigurationError

pytestmark = pytest.mark.anvil


def _supervisor(directory: Path, *, port: int | None = None, state_interval: int = 1) -> AnvilSupervisor:
    return AnvilSupervisor.in_directory(directory / "chain", port=port, state_interval=state_interval)


def _deploy_and_declare(
    node: AnvilSupervisor, deployer: LocalAccount, artifact: RegistryArtifact
) -> tuple[ChainClient, bytes]:
    client = ChainClient.connect(node.rpc_url, abi=artifact.abi)
    client.deploy(deployer=deployer, admin=deployer.address, customs_admin=deployer.address)
    lot_id = keccak(text="0109506000134352" + "10LOT-1")
    client.wait_receipt(
        client.grant_role(sender=deployer, role_name="enterprise", address=deployer.address), timeout=10
    )
    client.wait_receipt(
        client.send_call(sender=deployer, function="declareLot", args=[lot_id, 1000, keccak(text="d")]), timeout=10
    )
    return client, lot_id


def _assert_registry_survived(node: AnvilSupervisor, before: ChainClient, lot_id: bytes, block: int) -> None:
    after = ChainClient.connect(node.rpc_url, address=before.address, abi=before.abi, deploy_block=before.deploy_block)
    assert after.code_at(after.address) != b""
    assert after.get_lot(lot_id)["declaredQuantity"] == 1000
    assert [e.step_name for e in after.lot_events(lot_id)] == ["Declared"]
    # Block numbers go on from the dumped chain rather than restarting at 0.
    assert after.latest_block() >= block


def test_find_anvil_binary_returns_the_native_binary_not_the_node_wrapper() -> None:
    binary = find_anvil_binary()
    assert binary.name == "anvil" and "anvil-linux-amd64" in str(binary)
    assert binary.read_bytes()[:4] == b"\x7fELF"


def test_find_anvil_binary_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="run scripts/run or scripts/test to install it"):
        find_anvil_binary(tmp_path)


def test_start_answers_and_stop_ends_the_process_group(tmp_path: Path) -> None:
    node = _supervisor(tmp_path)
    started = time.monotonic()
    with node:
        elapsed = time.monotonic() - started
        client = ChainClient.connect(node.rpc_url)
        assert client.chain_id == 31337
        pid = node.pid
        assert pid is not None and os.getpgid(pid) == pid  # its own process group
        first = client.latest_block()
        time.sleep(2.2)
        assert client.latest_block() >= first + 2  # one-second blocks even with no transactions
    assert elapsed < 5
    assert not node.is_running()
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    assert not port_in_use(node.port)
    assert (tmp_path / "chain" / "anvil-state.json").stat().st_size > 0  # a clean exit dumps the state


def test_state_survives_a_clean_stop(tmp_path: Path, deployer: LocalAccount, artifact: RegistryArtifact) -> None:
    node = _supervisor(tmp_path)
    with node:
        client, lot_id = _deploy_and_declare(node, deployer, artifact)
        block = client.latest_block()

    with node:
        _assert_registry_survived(node, client, lot_id, block)


def test_state_survives_kill_9_after_a_state_dump(
    tmp_path: Path, deployer: LocalAccount, artifact: RegistryArtifact
) -> None:
    node = _supervisor(tmp_path)
    node.start()
    try:
        client, lot_id = _deploy_and_declare(node, deployer, artifact)
        block = client.latest_block()
        node.wait_for_state_dump(time.time())
        node.kill()  # SIGKILL to the group: no exit dump

        node.start()
        _assert_registry_survived(node, client, lot_id, block)
        assert node.backup_path.exists()  # the state it loaded, kept aside
    finally:
        node.stop()


def test_kill_9_before_a_state_dump_loses_the_recent_blocks(
    tmp_path: Path, deployer: LocalAccount, artifact: RegistryArtifact
) -> None:
    # Why the service waits for a dump after deploying: with a long interval nothing is on disk yet.
    node = _supervisor(tmp_path, state_interval=600)
    node.start()
    try:
        client, _ = _deploy_and_declare(node, deployer, artifact)
        node.kill()

        node.start()
        assert ChainClient.connect(node.rpc_url).code_at(client.address) == b""
    finally:
        node.stop()


def test_a_taken_port_names_the_port_and_the_variable_to_change(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigurationError, match=rf"port {port}\b.*TRACER_CHAIN_PORT"):
            _supervisor(tmp_path, port=port).start()


def test_a_damaged_state_file_is_refused_naming_the_backup(tmp_path: Path) -> None:
    node = _supervisor(tmp_path)
    with node:
        pass  # a first start and clean stop write a whole state file
    with node:
        pass  # the second start keeps the state it loaded as the backup
    state = node.state_path.read_bytes()
    node.state_path.write_bytes(state[: len(state) // 2])  # as a kill during the dump would leave it

    with pytest.raises(ConfigurationError, match="failed to parse json file") as caught:
        node.start()

    assert str(node.backup_path) in str(caught.value)
    assert not node.is_running()
    os.replace(node.backup_path, node.state_path)
    with node:
        assert ChainClient.connect(node.rpc_url).is_reachable()


def test_state_and_logs_agree_after_kill_9_under_load(
    tmp_path: Path, deployer: LocalAccount, artifact: RegistryArtifact
) -> None:
    # anvil's own interval dump could write a block's storage without the block (its logs): after a kill the
    # registry held lots no log declared. The supervisor's dumps pause the miner: state and logs agree.
    node = _supervisor(tmp_path)
    node.start()
    try:
        client, _ = _deploy_and_declare(node, deployer, artifact)
        nonce = client.pending_nonce(deployer.address)
        lots: list[bytes] = []
        until = time.monotonic() + 4 * node.state_interval + 0.5
        while time.monotonic() < until:  # a few declarations in every block, across several dumps
            lots.append(keccak(text=f"load-{len(lots)}"))
            client.send_call(sender=deployer, function="declareLot", args=[lots[-1], 10, keccak(text="d")], nonce=nonce)
            nonce += 1
            time.sleep(0.05)
        node.kill()

        node.start()
        after = ChainClient.connect(node.rpc_url, address=client.address, abi=client.abi, deploy_block=0)
        logged = {bytes(event.lot_id) for event in after.recorded_events()}
        declared = {lot for lot in lots if after.get_lot(lot)["declaredQuantity"] == 10}
        assert declared, "no declaration survived: the kill came before any dump"
        assert declared == logged & set(lots)
    finally:
        node.stop()


def test_a_dump_pauses_the_miner_only_for_its_moment(tmp_path: Path) -> None:
    node = _supervisor(tmp_path)
    with node:
        client = ChainClient.connect(node.rpc_url)
        first = client.latest_block()
        for _ in range(3):
            node.dump_state()
        time.sleep(2.5)
        assert client.latest_block() >= first + 2  # still mining after the dumps
        assert not node.state_path.with_name(node.state_path.name + ".partial").exists()
    assert node.state_path.read_bytes().rstrip().endswith(b"}")
