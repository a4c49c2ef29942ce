"""Submission on a real anvil: raw transactions in one JSON-RPC batch with an outcome each, and receipt waits that
notice within seconds a transaction the node lost (a restart from its state dump) or queues behind a nonce gap."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from tracer.chain import client as client_module
from tracer.chain.anvil import AnvilSupervisor
from tracer.chain.client import ChainClient, Receipt, ReceiptWait, SignedTx, TransactionDropped, TransactionRejected

pytestmark = pytest.mark.anvil

#: Far longer than any drop may take to notice: a wait that ran into it would have found nothing.
LONG_TIMEOUT = 60.0


def _rpc(url: str, method: str, *params: object) -> object:
    response = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=10)
    return response.json().get("result")


def _payee() -> str:
    return Account.create().address


def _transfer(client: ChainClient, sender: LocalAccount, value_wei: int, *, nonce: int) -> SignedTx:
    """A signed transfer of ``value_wei`` to a fresh address at ``nonce``, not sent."""
    return client.sign(client.transfer_request(sender=sender, to=_payee(), value_wei=value_wei), nonce=nonce)


def test_a_batch_of_raw_transactions_gets_an_outcome_each(tmp_path: Path, deployer: LocalAccount) -> None:
    with AnvilSupervisor.in_directory(tmp_path / "chain", block_time=None) as node:
        _rpc(node.rpc_url, "evm_setAutomine", False)  # the first two wait in the pool
        client = ChainClient.connect(node.rpc_url)
        nonce = client.pending_nonce(deployer.address)
        first = _transfer(client, deployer, 1, nonce=nonce)
        second = _transfer(client, deployer, 2, nonce=nonce + 1)
        other = _transfer(client, deployer, 3, nonce=nonce)

        sent = client.send_raw([first, second])
        again = client.send_raw([second, other])
        _rpc(node.rpc_url, "evm_mine")
        (late,) = client.send_raw([other])

        assert sent == [first.tx_hash, second.tx_hash]
        assert again[0] == second.tx_hash  # "already known": the very same transaction counts as sent
        assert isinstance(again[1], TransactionRejected) and again[1].replacement_underpriced
        assert isinstance(late, TransactionRejected) and late.nonce_too_low and late.nonce == nonce
        receipts = client.wait_receipts(sent, timeout=30).outcomes
        assert all(isinstance(receipts[tx_hash], Receipt) for tx_hash in sent)


def test_a_transaction_queued_behind_a_nonce_gap_is_dropped_within_seconds(
    tmp_path: Path, deployer: LocalAccount
) -> None:
    # Automine off: the gapped transaction stays in the pool as the restarted node kept the writer's late sends.
    with AnvilSupervisor.in_directory(tmp_path / "chain", block_time=None) as node:
        _rpc(node.rpc_url, "evm_setAutomine", False)
        client = ChainClient.connect(node.rpc_url)
        nonce = client.pending_nonce(deployer.address)
        gapped = _transfer(client, deployer, 1, nonce=nonce + 1)
        (sent,) = client.send_raw([gapped])
        assert sent == gapped.tx_hash and _rpc(node.rpc_url, "eth_getTransactionByHash", sent) is not None

        started = time.monotonic()
        with pytest.raises(TransactionDropped, match="nonce gap"):
            client.wait_receipt(gapped.tx_hash, timeout=LONG_TIMEOUT)
        assert time.monotonic() - started < LONG_TIMEOUT / 2  # noticed, not waited out (~2 s alone)


def test_a_replacement_at_higher_fees_takes_the_nonce_of_a_stale_pool_transaction(
    tmp_path: Path, deployer: LocalAccount
) -> None:
    with AnvilSupervisor.in_directory(tmp_path / "chain", block_time=None) as node:
        _rpc(node.rpc_url, "evm_setAutomine", False)
        client = ChainClient.connect(node.rpc_url)
        nonce = client.pending_nonce(deployer.address)
        stale = _transfer(client, deployer, 1, nonce=nonce)
        fresh = client.transfer_request(sender=deployer, to=_payee(), value_wei=2)
        client.send_raw([stale])

        (refused,) = client.send_raw([client.sign(fresh, nonce=nonce)])
        (replaced,) = client.send_raw([bumped := client.sign(fresh, nonce=nonce, fee_bump=1.25)])

        assert isinstance(refused, TransactionRejected) and refused.replacement_underpriced
        assert replaced == bumped.tx_hash
        _rpc(node.rpc_url, "evm_mine")
        assert isinstance(client.wait_receipt(bumped.tx_hash, timeout=30), Receipt)
        assert _rpc(node.rpc_url, "eth_getTransactionReceipt", stale.tx_hash) is None


def test_a_transaction_lost_in_a_node_restart_is_dropped_within_seconds(tmp_path: Path, deployer: LocalAccount) -> None:
    node = AnvilSupervisor.in_directory(tmp_path / "chain", block_time=None, state_interval=1)
    node.start()
    try:
        client = ChainClient.connect(node.rpc_url, timeout=2)
        node.wait_for_state_dump(after=time.time())
        _rpc(node.rpc_url, "evm_setAutomine", False)  # the transaction waits in the pool, which no dump holds
        nonce = client.pending_nonce(deployer.address)
        lost = _transfer(client, deployer, 1, nonce=nonce)
        assert client.send_raw([lost]) == [lost.tx_hash]
        waits: list[ReceiptWait | BaseException] = []

        def wait_for_it() -> None:
            started = time.monotonic()
            try:
                waits.append(client.wait_receipts([lost.tx_hash], timeout=LONG_TIMEOUT))
            except BaseException as exc:  # noqa: BLE001 - reported below
                waits.append(exc)
            durations.append(time.monotonic() - started)

        # The waiting runs in a thread, the restart here: anvil dies with the thread that started it.
        durations: list[float] = []
        waiter = threading.Thread(target=wait_for_it)
        waiter.start()
        time.sleep(1.0)
        node.kill()
        time.sleep(1.0)  # the wait rides out a node that does not answer
        node.start()
        waiter.join(timeout=LONG_TIMEOUT + 10)

        (wait,) = waits
        assert isinstance(wait, ReceiptWait), wait
        assert isinstance(wait.outcomes[lost.tx_hash], TransactionDropped)
        assert wait.chain_changed
        assert durations[0] < LONG_TIMEOUT / 2  # noticed, not waited out
    finally:
        node.stop()


def test_a_round_larger_than_a_node_takes_in_one_batch_goes_as_several(
    tmp_path: Path, deployer: LocalAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "MAX_BATCH_CALLS", 3)
    with AnvilSupervisor.in_directory(tmp_path / "chain", block_time=None) as node:
        client = ChainClient.connect(node.rpc_url)
        nonce = client.pending_nonce(deployer.address)
        signed = [_transfer(client, deployer, 1, nonce=nonce + n) for n in range(7)]
        batches: list[int] = []
        provider = client.w3.provider
        batch_request = provider.make_batch_request  # type: ignore[attr-defined]
        monkeypatch.setattr(
            provider, "make_batch_request", lambda calls: batches.append(len(calls)) or batch_request(calls)
        )

        assert client.send_raw(signed) == [s.tx_hash for s in signed]
        assert batches == [3, 3]  # and the seventh alone
        assert client.pending_nonce(deployer.address) == nonce + 7
