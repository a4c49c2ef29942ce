"""Split batches seen from the database: the leaves under a batch's ``parcelsRoot`` and their Merkle proofs.

The registry splits consecutive parcels of a lot in one call (``splitParcels``, or a signed ``SplitBatch`` op)
and keeps only the root of their leaves ``(parcelId, index, quantity)`` (an OpenZeppelin StandardMerkleTree,
``tracer.merkle.SPLIT_PARCEL_TYPES``). A batch is the lot's parcels with indices ``[first, first + count)``;
the database knows each parcel's id, index and quantity, so it can rebuild any batch's tree, and a parcel's
proof, from the range alone. The range comes from the chain's log (``RecordedEvent.split_range``) or, for
anchored events, from the events the same log anchored (one log per batch).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlmodel import Session, col, select

from tracer.merkle import SPLIT_PARCEL_TYPES, StandardMerkleTree
from tracer.store.models import Event, Lot, Parcel

#: The registry function of a split event as the database stores it (the single-parcel direct call).
SPLIT_FUNCTION = "splitParcel"


def parcel_leaf(parcel: Parcel) -> tuple[bytes, int, int]:
    """The leaf ``(parcelId, index, quantity)`` of a parcel under its split batch's root."""
    return bytes.fromhex(parcel.parcel_id.removeprefix("0x")), parcel.index, parcel.quantity


def split_tree(parcels: Sequence[Parcel]) -> StandardMerkleTree:
    """The tree of a batch's parcels (the root does not depend on their order)."""
    return StandardMerkleTree.of([parcel_leaf(parcel) for parcel in parcels], SPLIT_PARCEL_TYPES)


def batch_parcels(session: Session, lot_pk: int, first_index: int, count: int) -> list[Parcel]:
    """The lot's parcels with indices ``first_index`` to ``first_index + count - 1``, by index."""
    return list(
        session.exec(
            select(Parcel)
            .where(Parcel.lot_pk == lot_pk, col(Parcel.index) >= first_index, col(Parcel.index) < first_index + count)
            .order_by(col(Parcel.index))
        )
    )


def bundle_proofs(session: Session, lot: Lot) -> dict[int, dict[str, Any]]:
    """For each anchored split event of ``lot``, by sequence number: its parcel's leaf, the root of the batch it
    was split in (the split events one log anchored) and the leaf's proof under it, as a proof bundle carries
    them. A parcel split by itself is a batch of one: its root is its leaf hash and its proof is empty."""
    by_log: dict[tuple[str, int], list[Event]] = defaultdict(list)
    for event in session.exec(
        select(Event).where(Event.lot_pk == lot.id, Event.chain_function == SPLIT_FUNCTION, Event.status == "anchored")
    ):
        if event.block_hash is not None and event.log_index is not None and event.parcel_pk is not None:
            by_log[(event.block_hash, event.log_index)].append(event)
    proofs: dict[int, dict[str, Any]] = {}
    for events in by_log.values():
        parcels = [session.get(Parcel, event.parcel_pk) for event in events]
        known = [parcel for parcel in parcels if parcel is not None]
        if len(known) != len(events):
            continue
        tree = split_tree(known)
        for position, (event, parcel) in enumerate(zip(events, known, strict=True)):
            proofs[event.seq] = {
                "leaf": {"parcelId": parcel.parcel_id, "index": parcel.index, "quantity": parcel.quantity},
                "merkleRoot": "0x" + tree.root.hex(),
                "proof": ["0x" + node.hex() for node in tree.proof(position)],
            }
    return proofs
