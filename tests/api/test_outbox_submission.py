"""The outbox writer's submission on a real anvil (one per test): a refused send does not fail the round, a stale
transaction of the relayer in the node's pool is replaced, a transaction the node dropped is noticed in seconds."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_support import ZONE, Journey, declaration
from eth_account import Account
from sqlmodel import Session, select
from web3 import HTTPProvider, Web3

from tracer.chain.anvil import AnvilSupervisor
from tracer.chain.writer import RECEIPT_TIMEOUT_SECONDS, Writer, relayer_lanes
from tracer.store.models import Actor, ChainTask, Event

pytestmark = pytest.mark.anvil


@pytest.fixture
def node(tmp_path: Path) -> Iterator[AnvilSupervisor]:
    """An anvil of this test's own, mining a block per second (transactions wait in the pool meanwhile)."""
    with AnvilSupervisor.in_directory(tmp_path / "chain", block_time=1) as supervisor:
        yield supervisor


@pytest.fixture
def database_url(tmp_path: Path) -> str:  # the PostgreSQL runs are the fault tests'
    return f"sqlite:///{tmp_path / 'tracer.db'}"


@pytest.fixture
def w3(node: AnvilSupervisor) -> Web3:
    return Web3(HTTPProvider(node.rpc_url, request_kwargs={"timeout": 10}))


def _rpc(node: AnvilSupervisor, method: str, *params: object) -> object:
    answer = httpx.post(node.rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    assert "error" not in answer.json(), answer.json()
    return answer.json()["result"]


def _events(journey: Journey) -> list[Event]:
    with Session(journey.api.service.engine) as session:
        return list(session.exec(select(Event).order_by(Event.seq)))


def _enter(journey: Journey) -> None:
    response = journey.api.post(
        f"/lots/{journey.lot_id}/entry", journey.parties.warehouse, {"counted_quantity": 1000, "biz_location": ZONE}
    )
    assert response.status_code == 202, response.text


def test_a_send_the_node_refuses_leaves_its_rows_pending_and_the_round_goes_on(
    journey: Journey, node: AnvilSupervisor
) -> None:
    journey.declare()
    journey.api.anchor()
    service = journey.api.service
    with Session(service.engine) as session:
        admin = session.exec(select(Actor).where(Actor.role == "admin")).one()
    _rpc(node, "anvil_setBalance", admin.address, "0x0")  # the admin cannot pay for the grant it signs
    journey.api.actor("late-carrier", "carrier")  # a grant (the admin's key) and a funding (the deployer's)
    _enter(journey)

    service.writer.run_once()

    with Session(service.engine) as session:
        tasks = {task.kind: task.status for task in session.exec(select(ChainTask))}
        grant = session.exec(select(ChainTask).where(ChainTask.kind == "grant")).all()[-1]
    assert grant.status == "pending" and grant.tx_hash is None
    assert "done" in tasks.values()  # the funding went
    assert [e.status for e in _events(journey)] == ["anchored", "anchored"]  # so did the warehouse's entry
    _rpc(node, "anvil_setBalance", admin.address, hex(10**18))
    journey.api.anchor()
    with Session(service.engine) as session:
        assert {task.status for task in session.exec(select(ChainTask))} == {"done"}


def test_a_stale_relayer_transaction_in_the_pool_is_replaced_without_a_wait(
    journey: Journey, node: AnvilSupervisor
) -> None:
    journey.declare()
    journey.api.anchor()
    service = journey.api.service
    deployer = service.deployer
    # As after a round cut short: a transaction of the relayer queued one nonce ahead, waiting for a gap.
    nonce = service.client.pending_nonce(deployer.address)
    stale = service.client.sign(
        service.client.transfer_request(sender=deployer, to=Account.create().address, value_wei=1), nonce=nonce + 1
    )
    assert service.client.send_raw([stale]) == [stale.tx_hash]
    journey.api.actor("late-carrier", "carrier")  # the relayer funds it (nonce), then relays the entry (nonce + 1)
    _enter(journey)

    started = time.monotonic()
    service.writer.run_once()

    assert time.monotonic() - started < RECEIPT_TIMEOUT_SECONDS / 2  # replaced at once, the stale one not waited out
    assert [e.status for e in _events(journey)] == ["anchored", "anchored"]
    assert _rpc(node, "eth_getTransactionByHash", stale.tx_hash) is None  # replaced, never mined
    assert service.client.pending_nonce(deployer.address) == nonce + 2


def test_a_transaction_the_node_dropped_is_noticed_in_seconds_and_sent_again(
    journey: Journey, node: AnvilSupervisor
) -> None:
    journey.declare()
    journey.api.anchor()
    service = journey.api.service
    _rpc(node, "evm_setIntervalMining", 0)  # nothing is mined: the entry's transaction waits in the pool
    _enter(journey)
    durations: list[float] = []

    def round_() -> None:
        started = time.monotonic()
        service.writer.run_once()
        durations.append(time.monotonic() - started)

    writer = threading.Thread(target=round_)
    writer.start()
    deadline = time.monotonic() + 30
    while (tx_hash := _events(journey)[-1].tx_hash) is None:
        assert time.monotonic() < deadline, "the entry was not sent"
        time.sleep(0.05)
    _rpc(node, "anvil_dropTransaction", tx_hash)  # as a node restarted from an older state forgets it
    writer.join(timeout=90)

    assert durations and durations[0] < RECEIPT_TIMEOUT_SECONDS / 2  # noticed, not the receipt timeout waited out
    assert _events(journey)[-1].status == "pending"
    _rpc(node, "evm_setIntervalMining", 1)
    journey.api.anchor()
    assert [e.status for e in _events(journey)] == ["anchored", "anchored"]


def test_lots_spread_over_relayer_lanes_each_lot_staying_in_its_lane(journey: Journey, node: AnvilSupervisor) -> None:
    service = journey.api.service
    lanes = relayer_lanes(service.deployer, 3)
    writer = Writer(
        engine=service.engine,
        client=service.client,
        open_key=service.keystore.open,
        deployer=service.deployer,
        relayers=lanes,
    )
    assert {service.client.balance(lane.address) for lane in lanes[1:]} == {0}
    lots = []
    for number in range(6):
        response = journey.api.post("/lots", journey.parties.enterprise, declaration(lot=f"LANE-{number}"))
        assert response.status_code == 202, response.text
        lots.append(response.json()["lot_id"])
    writer.drain(timeout=60)  # the first round funds the lanes and relays on the deployer's alone
    for lot in lots:
        response = journey.api.post(
            f"/lots/{lot}/entry", journey.parties.warehouse, {"counted_quantity": 1000, "biz_location": ZONE}
        )
        assert response.status_code == 202, response.text
    writer.drain(timeout=60)

    assert all(service.client.balance(lane.address) > 0 for lane in lanes)
    with Session(service.engine) as session:
        entries = session.exec(select(Event).where(Event.step == "entry")).all()
    assert {event.status for event in entries} == {"anchored"} and len(entries) == len(lots)
    relayed_by = {event.lot_pk: service.client.w3.eth.get_transaction(event.tx_hash)["from"] for event in entries}  # type: ignore[arg-type]
    assert set(relayed_by.values()) == {lane.address for lane in lanes}  # every lane carried lots
    assert all(relayed_by[lot_pk] == lanes[lot_pk % len(lanes)].address for lot_pk in relayed_by)
