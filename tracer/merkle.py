"""Merkle trees exactly as OpenZeppelin's ``@openzeppelin/merkle-tree`` ``StandardMerkleTree`` builds them,
so the registry's ``MerkleProof`` checks their proofs (release manifests).

- a leaf is ``keccak256(keccak256(abi.encode(types, value)))`` (double hashed: no leaf is ever a node);
- leaves are sorted by their hash, then laid out as a complete binary tree in one array ``tree`` of
  ``2n - 1`` nodes, leaf ``i`` at ``tree[2n - 2 - i]``, node ``i`` = ``hash_pair(tree[2i + 1], tree[2i + 2])``;
- ``hash_pair(a, b) = keccak256(min(a, b) ‖ max(a, b))`` (sorted pairs, OpenZeppelin ``Hashes.commutativeKeccak256``);
- the root is ``tree[0]``; a proof lists the siblings from the leaf up.

Pure functions; the golden tests pin the README vector of ``@openzeppelin/merkle-tree``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import encode
from eth_utils.crypto import keccak

#: The leaf types of a release record (``ITraceRegistry.ReleaseRecord``):
#: parcelId, lotId, index, quantity, order, payment and waybill commitments.
RELEASE_RECORD_TYPES: tuple[str, ...] = ("bytes32", "bytes32", "uint32", "uint64", "bytes32", "bytes32", "bytes32")
#: The leaf types of a split batch's parcels (``splitParcels``' ``parcelsRoot``): parcelId, index, quantity.
SPLIT_PARCEL_TYPES: tuple[str, ...] = ("bytes32", "uint32", "uint64")


def leaf_hash(types: Sequence[str], value: Sequence[Any]) -> bytes:
    """``keccak256(keccak256(abi.encode(value)))`` of one leaf."""
    return keccak(keccak(encode(list(types), list(value))))


def hash_pair(a: bytes, b: bytes) -> bytes:
    """``keccak256`` of the two nodes in ascending order."""
    return keccak(a + b if a <= b else b + a)


def process_proof(leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` leads to from ``leaf`` (OpenZeppelin ``MerkleProof.processProof``)."""
    node = leaf
    for sibling in proof:
        node = hash_pair(node, sibling)
    return node


@dataclass(frozen=True)
class StandardMerkleTree:
    """A tree of ``values`` (each a tuple of ``types``); build it with :meth:`of`."""

    types: tuple[str, ...]
    values: tuple[tuple[Any, ...], ...]
    tree: tuple[bytes, ...]
    tree_index: tuple[int, ...]  # tree position of each value, in the order given

    @classmethod
    def of(cls, values: Sequence[Sequence[Any]], types: Sequence[str]) -> StandardMerkleTree:
        """Build the tree; raises ValueError for no values or a value that does not encode as ``types``."""
        if not values:
            raise ValueError("a Merkle tree needs at least one value")
        hashed = sorted(
            ((leaf_hash(types, value), position) for position, value in enumerate(values)), key=lambda item: item[0]
        )
        size = 2 * len(hashed) - 1
        tree: list[bytes] = [b""] * size
        tree_index = [0] * len(values)
        for order, (digest, position) in enumerate(hashed):
            tree[size - 1 - order] = digest
            tree_index[position] = size - 1 - order
        for node in range(size - 1 - len(hashed), -1, -1):
            tree[node] = hash_pair(tree[2 * node + 1], tree[2 * node + 2])
        return cls(tuple(types), tuple(tuple(v) for v in values), tuple(tree), tuple(tree_index))

    @property
    def root(self) -> bytes:
        """The 32-byte root."""
        return self.tree[0]

    def proof(self, position: int) -> list[bytes]:
        """The proof of the value at ``position`` (in the order given to :meth:`of`): siblings, leaf upwards."""
        node = self.tree_index[position]
        proof = []
        while node > 0:
            proof.append(self.tree[node + 1 if node % 2 == 1 else node - 1])
            node = (node - 1) // 2
        return proof

    def leaf(self, position: int) -> bytes:
        """The leaf hash of the value at ``position``."""
        return self.tree[self.tree_index[position]]


def verify(root: bytes, types: Sequence[str], value: Sequence[Any], proof: Sequence[bytes]) -> bool:
    """Whether ``value`` is a leaf of the tree with ``root`` (as the contract's ``MerkleProof.verify``)."""
    return process_proof(leaf_hash(types, value), proof) == root
