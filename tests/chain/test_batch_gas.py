"""The writer's fixed gas limits of a signed batch cover what the registry spends, measured on anvil: a batch of
one observation on each of many lots (each lot's record read and written cold) must not run out of gas."""

from __future__ import annotations

import time
import uuid

from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from tests.chain.chain_support import Actors
from tracer.chain import typed_data
from tracer.chain.client import ChainClient
from tracer.chain.writer import batch_gas


def _fresh() -> bytes:
    return keccak(text=uuid.uuid4().hex)


def _stored_lots(client: ChainClient, actors: Actors, count: int, *, declared_only: bool = False) -> list[bytes]:
    """``count`` lots declared, entered, inspected and stored (observations next at seq 4), or only declared (1)."""
    lots = [_fresh() for _ in range(count)]
    steps = [
        (actors.enterprise, "declareLot", lambda lot: [lot, 100, _fresh()]),
        (actors.warehouse, "recordEntry", lambda lot: [lot, 1, 100, _fresh()]),
        (actors.customs, "recordInspection", lambda lot: [lot, 2, 0, _fresh()]),
        (actors.warehouse, "recordStorage", lambda lot: [lot, 3, _fresh()]),
    ]
    for sender, function, args in steps[:1] if declared_only else steps:
        sent = [client.send_call(sender=sender, function=function, args=args(lot)) for lot in lots]
        for tx_hash in sent:
            client.wait_receipt(tx_hash, timeout=30)
    return lots


def _gas_used(client: ChainClient, signer: LocalAccount, relayer: LocalAccount, groups: list[typed_data.LotOps]) -> int:
    batch, signature = typed_data.sign_batch(
        signer, chain_id=client.chain_id, registry=client.address, deadline=int(time.time()) + 600, lots=groups
    )
    tx_hash = client.send_call(
        sender=relayer,
        function="recordSigned",
        # The writer sends each group's prior head (a re-send of what the chain holds is skipped).
        args=[batch, signature, [client.get_lot(g.lot_id)["head"] for g in groups], typed_data.split_hashes(groups)],
        gas=20_000_000,
    )
    receipt = client.wait_receipt(tx_hash, timeout=30)
    assert len(receipt.events) == sum(len(group.ops) for group in groups)
    return receipt.gas_used


def test_batch_gas_covers_one_observation_on_each_of_many_lots(registry: ChainClient, anvil_actors: Actors) -> None:
    lots = _stored_lots(registry, anvil_actors, 12)
    observe = typed_data.Action.OBSERVE
    # One observation on each of six stored lots, then 300 on one lot, then one on each of seven lots only declared
    # (the bulk benchmark's single-event captures: these ran out of gas before BATCH_LOT_GAS), then three on five.
    spread = [typed_data.LotOps(lot, 4, [typed_data.SignedOp(observe, _fresh())]) for lot in lots[:6]]
    used = _gas_used(registry, anvil_actors.warehouse, anvil_actors.admin, spread)
    print(f"6 lots x 1 observation: {used} gas, limit {batch_gas(spread)}")
    assert used <= batch_gas(spread)
    many = [typed_data.LotOps(lots[6], 4, [typed_data.SignedOp(observe, _fresh()) for _ in range(300)])]
    used = _gas_used(registry, anvil_actors.warehouse, anvil_actors.admin, many)
    print(f"1 lot x 300 observations: {used} gas, limit {batch_gas(many)}")
    assert used <= batch_gas(many)
    declared = _stored_lots(registry, anvil_actors, 7, declared_only=True)
    first = [typed_data.LotOps(lot, 1, [typed_data.SignedOp(observe, _fresh())]) for lot in declared]
    used = _gas_used(registry, anvil_actors.carrier, anvil_actors.admin, first)
    print(f"7 declared lots x 1 observation: {used} gas, limit {batch_gas(first)}")
    assert used <= batch_gas(first)
    mixed = [typed_data.LotOps(lot, 4, [typed_data.SignedOp(observe, _fresh()) for _ in range(3)]) for lot in lots[7:]]
    used = _gas_used(registry, anvil_actors.warehouse, anvil_actors.admin, mixed)
    print(f"5 lots x 3 observations: {used} gas, limit {batch_gas(mixed)}")
    assert used <= batch_gas(mixed)
