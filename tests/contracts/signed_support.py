"""Helpers of the signed-batch tests: self-custody actors (local keys, no funds) and a relayer that submits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3.contract import Contract

from tracer.chain.typed_data import LotOps, sign_batch, split_hashes

FAR_DEADLINE = 2**63


class Relayer:
    """Signs batches with an actor's key and submits them from an account that holds no role."""

    def __init__(self, registry: Contract, sender: str) -> None:
        self.registry = registry
        self.sender = sender

    def sign(
        self, actor: LocalAccount, lots: Sequence[LotOps], *, deadline: int = FAR_DEADLINE
    ) -> tuple[tuple[Any, ...], bytes]:
        return sign_batch(
            actor, chain_id=self.registry.w3.eth.chain_id, registry=self.registry.address, deadline=deadline, lots=lots
        )

    def call(
        self,
        batch: tuple[Any, ...],
        signature: bytes,
        prior_heads: Sequence[bytes] = (),
        hashes: Sequence[Sequence[bytes]] = (),
    ) -> Any:
        return self.registry.functions.recordSigned(batch, signature, list(prior_heads), [list(h) for h in hashes])

    def submit(self, *args: Any) -> Any:
        """Sends ``call(*args)`` from the relayer and waits for its receipt."""
        tx = self.call(*args).transact({"from": self.sender})
        return self.registry.w3.eth.wait_for_transaction_receipt(tx)

    def record(self, actor: LocalAccount, lots: Sequence[LotOps], **kwargs: Any) -> Any:
        batch, signature = self.sign(actor, lots, **kwargs)
        return self.submit(batch, signature, (), split_hashes(lots))


def self_custody_actor(registry: Contract, admin: str, role: bytes, *, granter: str | None = None) -> LocalAccount:
    """A fresh local key granted ``role`` on chain; it never sends a transaction (so needs no funds)."""
    actor = Account.create()
    registry.functions.grantRole(role, actor.address).transact({"from": granter or admin})
    return actor
