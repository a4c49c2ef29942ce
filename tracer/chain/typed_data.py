"""EIP-712 typed data of the registry's signed batches: what a self-custody actor signs.

An actor that keeps its own key signs a ``Batch`` of its events (on one or many lots); any relayer submits
it with ``recordSigned(batch, signature, priorHeads, splitHashes)`` and the registry records the signer as the
author. A ``SplitBatch`` op stands for many split events: it signs the hash of their event hashes, and the hashes
themselves travel in ``splitHashes`` (``split_hashes(lots)``), one list per such op in batch order.
The types below are the registry's (``TraceRegistry.BATCH_TYPEHASH``); docs/contracts.md spells them out
for independent clients (ethers ``signTypedData``, ``cast wallet sign --data``, eth-account).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from eth_account.messages import encode_typed_data
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

#: The EIP-712 domain's name and version; chainId and verifyingContract are the deployment's.
DOMAIN_NAME = "TraceRegistry"
DOMAIN_VERSION = "3"

#: The EIP-712 types of a signed batch (primary type ``Batch``).
EIP712_TYPES: dict[str, list[dict[str, str]]] = {
    "Batch": [
        {"name": "signer", "type": "address"},
        {"name": "deadline", "type": "uint64"},
        {"name": "lots", "type": "LotOps[]"},
    ],
    "LotOps": [
        {"name": "lotId", "type": "bytes32"},
        {"name": "seq", "type": "uint64"},
        {"name": "ops", "type": "Op[]"},
    ],
    "Op": [
        {"name": "action", "type": "uint8"},
        {"name": "subject", "type": "bytes32"},
        {"name": "amount", "type": "uint64"},
        {"name": "data", "type": "bytes32"},
        {"name": "eventHash", "type": "bytes32"},
    ],
}

_ZERO = b"\x00" * 32


class Action(IntEnum):
    """``ITraceRegistry.Action``: what a signed operation does (each mirrors a direct function)."""

    DECLARE = 0
    ENTRY = 1
    INSPECTION = 2
    STORAGE = 3
    SPLIT = 4
    DOCUMENT = 5
    RELEASE = 6
    DELIVERY = 7
    RECALL = 8
    OBSERVE = 9
    SPLIT_BATCH = 10


@dataclass(frozen=True, slots=True)
class SignedOp:
    """One event of a batch; see ``ITraceRegistry.SignedOp`` for which field each action uses."""

    action: Action
    event_hash: bytes
    subject: bytes = _ZERO
    amount: int = 0
    data: bytes = _ZERO
    #: A SplitBatch op's event hashes (its ``event_hash`` is their packed keccak); empty for other actions.
    split_hashes: tuple[bytes, ...] = ()

    @classmethod
    def split_batch(cls, parcels_root: bytes, quantity: int, event_hashes: Sequence[bytes]) -> SignedOp:
        """The SplitBatch op of parcels under ``parcels_root`` (``quantity`` units in all), one event each."""
        hashes = tuple(bytes(h) for h in event_hashes)
        return cls(
            Action.SPLIT_BATCH,
            keccak(b"".join(hashes)),
            subject=parcels_root,
            amount=quantity,
            data=len(hashes).to_bytes(32, "big"),
            split_hashes=hashes,
        )

    @property
    def events(self) -> int:
        """How many events of the lot's chain the op records (sequence numbers it takes)."""
        return len(self.split_hashes) if self.action is Action.SPLIT_BATCH else 1

    def as_tuple(self) -> tuple[int, bytes, int, bytes, bytes]:
        """The ABI tuple ``(action, subject, amount, data, eventHash)``."""
        return (int(self.action), self.subject, self.amount, self.data, self.event_hash)


@dataclass(frozen=True, slots=True)
class LotOps:
    """Consecutive events of one lot from sequence number ``seq`` on: one per op, one per parcel of a SplitBatch."""

    lot_id: bytes
    seq: int
    ops: Sequence[SignedOp] = field(default_factory=tuple)

    def as_tuple(self) -> tuple[bytes, int, list[tuple[int, bytes, int, bytes, bytes]]]:
        """The ABI tuple ``(lotId, seq, ops)``."""
        return (self.lot_id, self.seq, [op.as_tuple() for op in self.ops])


def typed_data(*, chain_id: int, registry: str, signer: str, deadline: int, lots: Sequence[LotOps]) -> dict[str, Any]:
    """The full EIP-712 message (``domain``, ``types``, ``primaryType``, ``message``) of a batch."""
    return {
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": chain_id,
            "verifyingContract": to_checksum_address(registry),
        },
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            **EIP712_TYPES,
        },
        "primaryType": "Batch",
        "message": {
            "signer": to_checksum_address(signer),
            "deadline": deadline,
            "lots": [
                {
                    "lotId": group.lot_id,
                    "seq": group.seq,
                    "ops": [
                        {
                            "action": int(op.action),
                            "subject": op.subject,
                            "amount": op.amount,
                            "data": op.data,
                            "eventHash": op.event_hash,
                        }
                        for op in group.ops
                    ],
                }
                for group in lots
            ],
        },
    }


def split_hashes(lots: Sequence[LotOps]) -> list[list[bytes]]:
    """The ``splitHashes`` argument of ``recordSigned``: each SplitBatch op's event hashes, in batch order."""
    return [list(op.split_hashes) for group in lots for op in group.ops if op.action is Action.SPLIT_BATCH]


def sign_batch(
    account: LocalAccount, *, chain_id: int, registry: str, deadline: int, lots: Sequence[LotOps]
) -> tuple[tuple[str, int, list[Any]], bytes]:
    """Sign a batch of ``account``'s events; returns the ABI ``batch`` tuple and the 65-byte signature,
    the first two arguments of ``recordSigned``."""
    message = typed_data(chain_id=chain_id, registry=registry, signer=account.address, deadline=deadline, lots=lots)
    signed = account.sign_message(encode_typed_data(full_message=message))
    batch = (account.address, deadline, [group.as_tuple() for group in lots])
    return batch, bytes(signed.signature)
