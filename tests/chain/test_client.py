"""ChainClient against the real registry on a real anvil: writes, reads, decoded reverts, connection errors."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest
from chain_support import CAST, Actors
from eth_account import Account
from eth_utils import keccak

from tracer.chain import client as client_module
from tracer.chain.client import GAS_LIMITS, STEP_NAMES, ChainClient, RecordedEvent, role_id
from tracer.chain.compiler import RegistryArtifact
from tracer.chain.supervisor import free_port
from tracer.config import PROJECT_ROOT
from tracer.exceptions import ChainUnavailable, ContractReverted
from tracer.merkle import SPLIT_PARCEL_TYPES, StandardMerkleTree

pytestmark = pytest.mark.anvil

# cast filters on an indexed argument only when the signature says which arguments are indexed.
EVENT_SIGNATURE = (
    "EventRecorded(bytes32 indexed lotId,uint64 indexed seq,address indexed author,uint8 step,bytes32 subject,"
    "bytes32 eventHash,bytes32 head)"
)
LOT_TUPLE = "(uint8,bool,address,uint64,uint64,uint64,uint64,uint64,uint32,bytes32)"


def _send(client: ChainClient, sender, function: str, *args):  # type: ignore[no-untyped-def]
    return client.wait_receipt(client.send_call(sender=sender, function=function, args=list(args)), timeout=30)


def _head(previous: bytes, event_hash: bytes) -> bytes:
    return keccak(previous + event_hash)


def test_deployed_runtime_code_is_the_artifacts(registry: ChainClient, artifact: RegistryArtifact) -> None:
    # Outside its immutables (EIP712's cached domain), which the constructor fills in.
    assert artifact.matches_runtime_code(registry.code_at(registry.address))


def test_declared_lot_reads_back_as_recorded_event(registry: ChainClient, anvil_actors: Actors, lot_id: bytes) -> None:
    event_hash = keccak(text="declaration")

    receipt = _send(registry, anvil_actors.enterprise, "declareLot", lot_id, 1000, event_hash)

    (event,) = registry.lot_events(lot_id)
    assert event == receipt.events[0]
    assert event == RecordedEvent(
        lot_id=lot_id,
        seq=0,
        author=anvil_actors.enterprise.address,
        step=0,
        step_name="Declared",
        subject=lot_id,
        event_hash=event_hash,
        head=_head(b"\0" * 32, event_hash),
        tx_hash=receipt.tx_hash,
        block_number=receipt.block_number,
        block_hash=receipt.block_hash,
        log_index=event.log_index,
    )
    assert registry.block_hash(receipt.block_number) == receipt.block_hash
    assert receipt["blockNumber"] == receipt.block_number
    lot = registry.get_lot(lot_id)
    assert (lot["state"], lot["enterprise"], lot["declaredQuantity"], lot["nextSeq"]) == (
        1,
        anvil_actors.enterprise.address,
        1000,
        1,
    )
    assert lot["head"] == event.head


def test_a_split_batch_reads_back_as_one_event_per_parcel(
    registry: ChainClient, anvil_actors: Actors, lot_id: bytes
) -> None:
    a = anvil_actors
    for index, (sender, function, args) in enumerate(
        [
            (a.enterprise, "declareLot", [lot_id, 100]),
            (a.warehouse, "recordEntry", [lot_id, 1, 100]),
            (a.customs, "recordInspection", [lot_id, 2, 0]),
            (a.warehouse, "recordStorage", [lot_id, 3]),
        ]
    ):
        _send(registry, sender, function, *args, keccak(text=f"step {index}"))
    prior = registry.get_lot(lot_id)["head"]
    parcels = [keccak(text=f"parcel {n}") for n in range(3)]
    tree = StandardMerkleTree.of([(p, i, 2) for i, p in enumerate(parcels)], SPLIT_PARCEL_TYPES)
    hashes = [keccak(text=f"split {n}") for n in range(3)]

    receipt = _send(registry, a.warehouse, "splitParcels", lot_id, 4, tree.root, 6, hashes)

    events = registry.lot_events(lot_id)[4:]
    assert list(receipt.events) == events
    assert [(e.seq, e.step_name, e.subject, e.event_hash) for e in events] == [
        (4 + n, "Split", tree.root, hashes[n]) for n in range(3)
    ]
    assert [e.parcel_index for e in events] == [0, 1, 2] and {e.split_range for e in events} == {(0, 3)}
    assert {(e.author, e.log_index, e.tx_hash) for e in events} == {(a.warehouse.address, 0, receipt.tx_hash)}
    head = prior
    for event in events:
        head = _head(head, event.event_hash)
        assert event.head == head
    assert registry.get_lot(lot_id)["head"] == head
    registered = _send(registry, a.payment, "registerParcel", lot_id, 0, 3, parcels[1], 1, 2, tree.proof(1))
    assert registered.gas_used * 1.2 <= GAS_LIMITS["registerParcel"]
    assert registry.get_parcel(parcels[1])["lotId"] == lot_id


def test_whole_journey_is_recorded_in_order_within_the_gas_limits(
    registry: ChainClient, anvil_actors: Actors, lot_id: bytes
) -> None:
    a = anvil_actors
    parcel_id = keccak(text="00" + "095060001343520017")
    steps = [
        (a.enterprise, "declareLot", [lot_id, 1000]),
        (a.warehouse, "recordEntry", [lot_id, 1, 998]),
        (a.customs, "recordInspection", [lot_id, 2, 0]),
        (a.warehouse, "recordStorage", [lot_id, 3]),
        (a.warehouse, "splitParcel", [lot_id, 4, parcel_id, 6]),
        (a.enterprise, "attachDocument", [parcel_id, 5, 0, keccak(text="order")]),
        (a.payment, "attachDocument", [parcel_id, 6, 1, keccak(text="payment")]),
        (a.carrier, "attachDocument", [parcel_id, 7, 2, keccak(text="waybill")]),
        (a.customs, "releaseParcel", [parcel_id, 8]),
        (a.carrier, "recordDelivery", [parcel_id, 9]),
        (a.enterprise, "recall", [lot_id, 10]),
    ]
    gas_used: dict[str, int] = {}
    for index, (sender, function, args) in enumerate(steps):
        receipt = _send(registry, sender, function, *args, keccak(text=f"event {index}"))
        gas_used[function] = max(gas_used.get(function, 0), receipt.gas_used)

    events = registry.lot_events(lot_id)
    assert [e.seq for e in events] == list(range(len(steps)))
    assert [e.step_name for e in events] == [
        "Declared", "Entered", "Inspected", "Stored", "Split", "DocumentAttached", "DocumentAttached",
        "DocumentAttached", "Released", "Delivered", "Recalled",
    ]  # fmt: skip
    assert [e.author for e in events] == [sender.address for sender, _, _ in steps]
    head = b"\0" * 32
    for event in events:
        head = _head(head, event.event_hash)
        assert event.head == head
    assert registry.get_lot(lot_id)["head"] == head
    parcel = registry.get_parcel(parcel_id)
    assert (parcel["lotId"], parcel["quantity"], parcel["documents"]) == (lot_id, 6, 0b111)
    assert registry.get_lot(lot_id)["releasedQuantity"] == 6
    assert registry.is_recalled(lot_id) and registry.is_recalled(parcel_id)
    # The fixed gas limits leave at least 20 % headroom over what the journey used.
    for function, used in gas_used.items():
        assert used * 1.2 <= GAS_LIMITS[function], (function, used)


def test_sequence_mismatch_decodes_from_the_failed_receipt(
    registry: ChainClient, anvil_actors: Actors, lot_id: bytes
) -> None:
    _send(registry, anvil_actors.enterprise, "declareLot", lot_id, 10, keccak(text="d"))

    # gas given: no estimate, so the node mines the failing transaction and the client replays it.
    tx_hash = registry.send_call(
        sender=anvil_actors.warehouse, function="recordEntry", args=[lot_id, 5, 10, keccak(text="e")], gas=90_000
    )
    with pytest.raises(ContractReverted) as caught:
        registry.wait_receipt(tx_hash, timeout=30)

    assert caught.value.name == "TraceRegistrySequenceMismatch"
    assert caught.value.args_ == {"lotId": "0x" + lot_id.hex(), "expected": 1, "provided": 5}


def test_simulate_decodes_a_custom_error_without_sending(
    registry: ChainClient, anvil_actors: Actors, lot_id: bytes
) -> None:
    with pytest.raises(ContractReverted) as caught:
        registry.simulate(
            sender_address=anvil_actors.warehouse.address, function="recordEntry", args=[lot_id, 1, 5, b"\1" * 32]
        )
    assert caught.value.name == "TraceRegistryUnknownLot"
    assert registry.simulate(sender_address=anvil_actors.warehouse.address, function="paused", args=[]) is False


def test_roleless_sender_decodes_access_control_unauthorized_account(
    registry: ChainClient, anvil_actors: Actors, lot_id: bytes
) -> None:
    stranger = Account.create()
    registry.wait_receipt(
        registry.transfer(sender=anvil_actors.admin, to=stranger.address, value_wei=10**17), timeout=30
    )

    with pytest.raises(ContractReverted) as caught:
        registry.wait_receipt(
            registry.send_call(sender=stranger, function="declareLot", args=[lot_id, 1, b"\2" * 32]), timeout=30
        )

    assert caught.value.name == "AccessControlUnauthorizedAccount"
    assert caught.value.args_ == {"account": stranger.address, "neededRole": "0x" + role_id("enterprise").hex()}


def test_paused_registry_decodes_enforced_pause(
    anvil: str, anvil_actors: Actors, artifact: RegistryArtifact, lot_id: bytes
) -> None:
    client = ChainClient.connect(anvil, abi=artifact.abi)
    admin = anvil_actors.admin
    client.deploy(deployer=admin, admin=admin.address, customs_admin=admin.address)
    _send(client, anvil_actors.admin, "pause")

    with pytest.raises(ContractReverted) as caught:
        client.simulate(sender_address=anvil_actors.admin.address, function="declareLot", args=[lot_id, 1, b"\3" * 32])

    assert (caught.value.name, caught.value.args_) == ("EnforcedPause", {})


def test_roles_are_granted_and_read_by_name(registry: ChainClient, anvil_actors: Actors) -> None:
    newcomer = Account.create()
    assert not registry.has_role("carrier", newcomer.address)

    receipt = registry.wait_receipt(
        registry.grant_role(sender=anvil_actors.admin, role_name="carrier", address=newcomer.address), timeout=30
    )

    assert registry.has_role("carrier", newcomer.address)
    assert receipt.gas_used * 1.2 <= GAS_LIMITS["grantRole"]
    assert registry.has_role("admin", anvil_actors.admin.address)
    assert registry.has_role("customs_admin", anvil_actors.customs_admin.address)
    assert role_id("admin") == b"\0" * 32 and role_id("customs") == keccak(text="customs")


def test_only_the_customs_admin_grants_customs(registry: ChainClient, anvil_actors: Actors) -> None:
    with pytest.raises(ContractReverted) as caught:
        registry.wait_receipt(
            registry.grant_role(sender=anvil_actors.admin, role_name="customs", address=Account.create().address),
            timeout=30,
        )
    assert caught.value.name == "AccessControlUnauthorizedAccount"
    assert caught.value.args_["neededRole"] == "0x" + role_id("customs_admin").hex()


def test_transfer_funds_an_account(registry: ChainClient, anvil_actors: Actors) -> None:
    account = Account.create()
    registry.wait_receipt(registry.transfer(sender=anvil_actors.admin, to=account.address, value_wei=12345), timeout=30)
    assert registry.balance(account.address) == 12345


def test_lot_events_scan_the_block_range_in_chunks(
    registry: ChainClient, anvil_actors: Actors, lot_id: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    _send(registry, anvil_actors.enterprise, "declareLot", lot_id, 10, keccak(text="d"))
    _send(registry, anvil_actors.warehouse, "recordEntry", lot_id, 1, 10, keccak(text="e"))
    whole = registry.lot_events(lot_id)
    calls: list[dict] = []  # type: ignore[type-arg]
    real_request = registry.w3.provider.make_request

    def spy(method: str, params: Any) -> Any:  # eth_getLogs goes to the HTTP node raw (no web3 formatters)
        if method == "eth_getLogs":
            calls.append(params[0])
        return real_request(method, params)  # type: ignore[arg-type]

    monkeypatch.setattr(registry.w3.provider, "make_request", spy)
    monkeypatch.setattr(client_module, "LOG_CHUNK_BLOCKS", 3)

    chunked = registry.lot_events(lot_id, from_block=0)

    assert chunked == whole and len(whole) == 2
    assert len(calls) > 1
    assert all(int(c["toBlock"], 16) - int(c["fromBlock"], 16) < 3 for c in calls)
    assert registry.lot_events(lot_id, from_block=whole[1].block_number + 1) == []


def test_unreachable_node_raises_chain_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    client = ChainClient.connect(url, address="0x" + "11" * 20, abi=[], timeout=2)

    assert client.is_reachable() is False
    with pytest.raises(ChainUnavailable) as caught:
        client.latest_block()
    assert caught.value.rpc_url == url
    assert caught.value.reason == "connection refused"
    with pytest.raises(ChainUnavailable):
        client.transfer(sender=Account.create(), to="0x" + "22" * 20, value_wei=1)


def test_rpc_url_hides_credentials() -> None:
    client = ChainClient.connect("https://user:secret@node.example:8545/rpc?apikey=k")
    assert client.rpc_url == "https://node.example:8545/rpc"


def test_step_names_follow_the_interface() -> None:
    source = (PROJECT_ROOT / "contracts/ITraceRegistry.sol").read_text()
    body = re.search(r"enum Step \{([^}]*)\}", source)
    assert body is not None
    assert tuple(name.strip() for name in body.group(1).split(",") if name.strip()) == STEP_NAMES


def test_cast_reads_the_lot_events_an_independent_client_sees(
    registry: ChainClient, anvil: str, anvil_actors: Actors, lot_id: bytes
) -> None:
    _send(registry, anvil_actors.enterprise, "declareLot", lot_id, 1000, keccak(text="d"))
    _send(registry, anvil_actors.warehouse, "recordEntry", lot_id, 1, 998, keccak(text="e"))
    ours = registry.lot_events(lot_id)

    logs = json.loads(
        subprocess.run(
            [str(CAST), "logs", "--json", "--rpc-url", anvil, "--address", registry.address,
             "--from-block", str(registry.deploy_block), EVENT_SIGNATURE, "0x" + lot_id.hex()],
            check=True, capture_output=True, text=True, timeout=30,
        ).stdout
    )  # fmt: skip

    assert [log["transactionHash"] for log in logs] == [e.tx_hash for e in ours]
    assert [int(log["topics"][2], 16) for log in logs] == [0, 1]
    # data = step, subject, eventHash, head (32 bytes each)
    assert [log["data"][2 + 64 * 2 : 2 + 64 * 3] for log in logs] == [e.event_hash.hex() for e in ours]
    printed = subprocess.run(
        [str(CAST), "call", "--rpc-url", anvil, registry.address, f"getLot(bytes32){LOT_TUPLE}", "0x" + lot_id.hex()],
        check=True, capture_output=True, text=True, timeout=30,
    ).stdout  # fmt: skip
    # cast prints the struct as "(a, b, ...)" or one field per line depending on the output stream.
    fields = [field for field in re.split(r"[\s,()]+", printed) if field]
    # state Entered, not recalled, enterprise, declared, received, split, released, nextSeq, parcels, head
    assert fields == ["2", "false", anvil_actors.enterprise.address, "1000", "998", "0", "0", "2", "0",
                      "0x" + ours[-1].head.hex()]  # fmt: skip
