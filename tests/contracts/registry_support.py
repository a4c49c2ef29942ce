"""Helpers of the registry contract tests: the documented id encodings, enum indices, custom-error decoding
and a driver that sends journey steps with the right role and sequence number.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import decode
from eth_utils import keccak, to_checksum_address
from web3.contract import Contract

from tracer.merkle import SPLIT_PARCEL_TYPES, StandardMerkleTree

ROLE_NAMES = ("enterprise", "warehouse", "customs", "carrier", "payment", "customs_admin")

# Indices of the ITraceRegistry enums, as the ABI carries them (uint8).
LOT_STATE = {name: i for i, name in enumerate(("None", "Declared", "Entered", "Cleared", "Held", "Stored", "Closed"))}
PARCEL_STATE = {name: i for i, name in enumerate(("None", "Split", "Released", "Delivered"))}
INSPECTION = {name: i for i, name in enumerate(("Conformant", "NonConformant", "Sampled"))}
DOCUMENT = {name: i for i, name in enumerate(("Order", "Payment", "Waybill"))}
STEP = {
    name: i
    for i, name in enumerate(
        (
            "Declared",
            "Entered",
            "Inspected",
            "Stored",
            "Split",
            "DocumentAttached",
            "Released",
            "Delivered",
            "Recalled",
            "Observed",
            "ClearedByRule",
            "ManifestReleased",
            "Returned",
            "Destroyed",
            "HoldLifted",
        )
    )
}

_counter = itertools.count(1)


def role_id(name: str) -> bytes:
    """The on-chain id of a role: keccak256 of its name; the platform admin's is 0x00…00."""
    return b"\x00" * 32 if name == "admin" else keccak(text=name)


def lot_id(gtin14: str, lot_number: str) -> bytes:
    """lotId = keccak256("01" + gtin14 + "10" + lotNumber), as ITraceRegistry documents it."""
    return keccak(text=f"01{gtin14}10{lot_number}")


def parcel_id(sscc18: str) -> bytes:
    """parcelId = keccak256("00" + sscc18)."""
    return keccak(text=f"00{sscc18}")


def next_head(head: bytes, event_hash: bytes) -> bytes:
    """head_{n+1} = keccak256(head_n ‖ eventHash_n)."""
    return keccak(head + event_hash)


def fresh_hash() -> bytes:
    """A distinct stand-in for an EPCIS event hash."""
    return keccak(text=f"event-{next(_counter)}")


def fresh_lot() -> bytes:
    """A lot id never used before in this session."""
    return lot_id("09421902960055", f"LOT/{next(_counter)}")


def fresh_parcel() -> bytes:
    """A parcel id never used before in this session."""
    return parcel_id(f"{next(_counter):018d}")


def revert_data(exc: BaseException) -> bytes:
    """The raw revert data behind a failed call or transaction.

    web3 raises ``ContractCustomError`` (hex in ``.data``) on JSON-RPC nodes; its eth-tester provider
    re-raises eth-tester's ``TransactionFailed`` with the data only in a message, the original (carrying the
    bytes) being the exception's context.
    """
    seen: BaseException | None = exc
    while seen is not None:
        data = getattr(seen, "data", None)
        if isinstance(data, str) and data.startswith("0x"):
            return bytes.fromhex(data[2:])
        first = seen.args[0] if seen.args else None
        if isinstance(first, Exception) and first.args:
            first = first.args[0]
        if isinstance(first, bytes):
            return first
        seen = seen.__cause__ or seen.__context__
    raise AssertionError(f"no revert data in {exc!r}")


def decode_custom_error(abi: list[dict[str, Any]], raw: bytes) -> tuple[str, tuple[Any, ...]]:
    """The name and decoded arguments of a custom error's revert data, looked up by selector in ``abi``."""
    for item in abi:
        if item["type"] != "error":
            continue
        types = [arg["type"] for arg in item["inputs"]]
        if keccak(text=f"{item['name']}({','.join(types)})")[:4] == raw[:4]:
            values = decode(types, raw[4:])
            return item["name"], tuple(
                to_checksum_address(v) if t == "address" else v for t, v in zip(types, values, strict=True)
            )
    raise AssertionError(f"revert data 0x{raw.hex()} matches no error of the ABI")


@dataclass
class Accounts:
    """One funded account per role, plus a second enterprise and an outsider with no role."""

    admin: str
    customs_admin: str
    enterprise: str
    other_enterprise: str
    warehouse: str
    customs: str
    carrier: str
    payment: str
    outsider: str


@dataclass
class SplitBatch:
    """A batch of parcels split off a lot in one call: their leaves, tree, event hashes and where they start."""

    lot: bytes
    first_seq: int
    first_index: int
    parcels: list[tuple[bytes, int]]
    hashes: list[bytes]
    tree: StandardMerkleTree
    receipt: Any = None

    @classmethod
    def of(cls, lot: bytes, first_seq: int, first_index: int, parcels: Sequence[tuple[bytes, int]]) -> SplitBatch:
        leaves = [(parcel, first_index + i, quantity) for i, (parcel, quantity) in enumerate(parcels)]
        tree = StandardMerkleTree.of(leaves, SPLIT_PARCEL_TYPES)
        return cls(lot, first_seq, first_index, list(parcels), [fresh_hash() for _ in parcels], tree)

    @property
    def quantity(self) -> int:
        return sum(quantity for _, quantity in self.parcels)

    def call(self, registry: Contract) -> Any:
        return registry.functions.splitParcels(self.lot, self.first_seq, self.tree.root, self.quantity, self.hashes)

    def register_call(self, registry: Contract, position: int) -> Any:
        parcel, quantity = self.parcels[position]
        return registry.functions.registerParcel(
            self.lot,
            self.first_index,
            len(self.parcels),
            parcel,
            self.first_index + position,
            quantity,
            self.tree.proof(position),
        )


class Driver:
    """Sends journey steps with the right role and the lot's next sequence number."""

    def __init__(self, registry: Contract, accounts: Accounts) -> None:
        self.registry = registry
        self.accounts = accounts

    def next_seq(self, lot: bytes) -> int:
        return self.registry.functions.getLot(lot).call()[7]

    def send(self, fn: Any, sender: str) -> Any:
        w3 = self.registry.w3
        return w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender}))

    def declare(self, lot: bytes, quantity: int = 1000, *, sender: str | None = None) -> Any:
        fn = self.registry.functions.declareLot(lot, quantity, fresh_hash())
        return self.send(fn, sender or self.accounts.enterprise)

    def enter(self, lot: bytes, counted: int = 1000) -> Any:
        fn = self.registry.functions.recordEntry(lot, self.next_seq(lot), counted, fresh_hash())
        return self.send(fn, self.accounts.warehouse)

    def inspect(self, lot: bytes, result: str = "Conformant") -> Any:
        fn = self.registry.functions.recordInspection(lot, self.next_seq(lot), INSPECTION[result], fresh_hash())
        return self.send(fn, self.accounts.customs)

    def store(self, lot: bytes) -> Any:
        fn = self.registry.functions.recordStorage(lot, self.next_seq(lot), fresh_hash())
        return self.send(fn, self.accounts.warehouse)

    def split(self, lot: bytes, parcel: bytes, quantity: int = 10) -> Any:
        fn = self.registry.functions.splitParcel(lot, self.next_seq(lot), parcel, quantity, fresh_hash())
        return self.send(fn, self.accounts.warehouse)

    def split_batch(self, lot: bytes, parcels: Sequence[tuple[bytes, int]]) -> SplitBatch:
        """Splits ``parcels`` ((id, quantity) pairs) off ``lot`` in one ``splitParcels`` call."""
        first_index = self.registry.functions.getLot(lot).call()[8]
        batch = SplitBatch.of(lot, self.next_seq(lot), first_index, parcels)
        batch.receipt = self.send(batch.call(self.registry), self.accounts.warehouse)
        return batch

    def register(self, batch: SplitBatch, position: int, *, sender: str | None = None) -> Any:
        """Registers the parcel at ``position`` of ``batch`` with its proof (anyone may: the outsider by default)."""
        return self.send(batch.register_call(self.registry, position), sender or self.accounts.outsider)

    def attach(self, parcel: bytes, kind: str, *, sender: str | None = None, commitment: bytes | None = None) -> Any:
        lot = self.registry.functions.getParcel(parcel).call()[0]
        default = {"Order": self.accounts.enterprise, "Payment": self.accounts.payment}.get(kind, self.accounts.carrier)
        fn = self.registry.functions.attachDocument(
            parcel, self.next_seq(lot), DOCUMENT[kind], commitment or fresh_hash(), fresh_hash()
        )
        return self.send(fn, sender or default)

    def attach_all(self, parcel: bytes) -> None:
        for kind in DOCUMENT:
            self.attach(parcel, kind)

    def release(self, parcel: bytes) -> Any:
        lot = self.registry.functions.getParcel(parcel).call()[0]
        fn = self.registry.functions.releaseParcel(parcel, self.next_seq(lot), fresh_hash())
        return self.send(fn, self.accounts.customs)

    def deliver(self, parcel: bytes) -> Any:
        lot = self.registry.functions.getParcel(parcel).call()[0]
        fn = self.registry.functions.recordDelivery(parcel, self.next_seq(lot), fresh_hash())
        return self.send(fn, self.accounts.carrier)

    def recall(self, lot: bytes, *, sender: str | None = None) -> Any:
        fn = self.registry.functions.recall(lot, self.next_seq(lot), fresh_hash())
        return self.send(fn, sender or self.accounts.enterprise)

    def stored_lot(self, received: int = 1000) -> bytes:
        """A new lot, declared, entered with ``received`` units, cleared and stored."""
        lot = fresh_lot()
        self.declare(lot)
        self.enter(lot, received)
        self.inspect(lot)
        self.store(lot)
        return lot

    def split_parcel(self, quantity: int = 10, *, documents: bool = False) -> tuple[bytes, bytes]:
        """A new stored lot and a parcel of ``quantity`` split off it, with its three documents if asked."""
        lot = self.stored_lot()
        parcel = fresh_parcel()
        self.split(lot, parcel, quantity)
        if documents:
            self.attach_all(parcel)
        return lot, parcel


# Storage of TraceRegistry: AccessControl._roles (0), Pausable._paused (1), EIP712 name and version (2, 3), _lots (4).
LOTS_SLOT = 4
# Fields of LotRecord's second slot: (bit offset, width).
_SLOT1_FIELDS = {
    "received": (0, 64),
    "split": (64, 64),
    "released": (128, 64),
    "last_seq": (192, 32),
    "parcels": (224, 32),
}


def poke_lot_ledger(w3: Any, address: str, lot: bytes, **fields: int) -> None:
    """Overwrite fields of a lot's second storage slot in py-evm's state (received, split, released, last_seq,
    parcels), then mine a block: lets a test stand up a lot of many parcels without a transaction per split."""
    chain = w3.provider.ethereum_tester.backend.chain
    slot = int.from_bytes(keccak(lot + LOTS_SLOT.to_bytes(32, "big")), "big") + 1
    canonical = bytes.fromhex(address[2:])
    state = chain.get_vm().state
    word = state.get_storage(canonical, slot)
    for name, value in fields.items():
        offset, width = _SLOT1_FIELDS[name]
        mask = ((1 << width) - 1) << offset
        word = (word & ~mask) | (value << offset)
    state.set_storage(canonical, slot, word)
    state.persist()
    chain.header = chain.header.copy(state_root=state.state_root)
    w3.provider.ethereum_tester.mine_blocks(1)


#: TraceRegistry._rangeCount, after the eight mappings from slot 4 on.
RANGE_COUNT_SLOT = 12


def poke_storage(w3: Any, address: str, slot: int, value: int) -> None:
    """Overwrite one storage slot of ``address`` in py-evm's state, then mine a block."""
    chain = w3.provider.ethereum_tester.backend.chain
    state = chain.get_vm().state
    state.set_storage(bytes.fromhex(address[2:]), slot, value)
    state.persist()
    chain.header = chain.header.copy(state_root=state.state_root)
    w3.provider.ethereum_tester.mine_blocks(1)
