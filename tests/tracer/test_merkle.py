"""tracer.merkle builds @openzeppelin/merkle-tree StandardMerkleTrees: golden vectors and properties."""

from __future__ import annotations

import pytest
from eth_utils import keccak
from hypothesis import given
from hypothesis import strategies as st

from tracer.merkle import RELEASE_RECORD_TYPES, StandardMerkleTree, hash_pair, leaf_hash, verify

# The README example of @openzeppelin/merkle-tree: values, leaf encoding and the dumped tree.
README_VALUES = [
    ("0x1111111111111111111111111111111111111111", 5000000000000000000),
    ("0x2222222222222222222222222222222222222222", 2500000000000000000),
]
README_TREE = [
    "d4dee0beab2d53f2cc83e567171bd2820e49898130a22622b10ead383e90bd77",
    "eb02c421cfa48976e66dfb29120745909ea3a0f843456c263cf8f1253483e283",
    "b92c48e9d7abe27fd8dfd6b5dfdbfb1c9a463f80c712b66f3a5180a090cccafc",
]


def _records(count):
    return [
        (
            keccak(text=f"p{i}"),
            keccak(text="lot"),
            i,
            i + 1,
            keccak(text=f"o{i}"),
            keccak(text=f"y{i}"),
            keccak(text=f"w{i}"),
        )
        for i in range(count)
    ]


def test_readme_vector_tree_matches_openzeppelin():
    tree = StandardMerkleTree.of(README_VALUES, ["address", "uint256"])
    assert [node.hex() for node in tree.tree] == README_TREE


def test_readme_vector_proof_of_first_value_is_its_sibling_leaf():
    tree = StandardMerkleTree.of(README_VALUES, ["address", "uint256"])
    assert [p.hex() for p in tree.proof(0)] == [README_TREE[2]]


def test_leaf_is_double_hashed_abi_encoding():
    assert leaf_hash(["uint256"], [1]) == keccak(keccak((1).to_bytes(32, "big")))


def test_hash_pair_is_commutative():
    a, b = keccak(b"a"), keccak(b"b")
    assert hash_pair(a, b) == hash_pair(b, a) == keccak(min(a, b) + max(a, b))


def test_single_value_tree_has_the_leaf_as_root_and_an_empty_proof():
    tree = StandardMerkleTree.of(_records(1), RELEASE_RECORD_TYPES)
    assert tree.root == tree.leaf(0)
    assert tree.proof(0) == []


def test_empty_tree_is_refused():
    with pytest.raises(ValueError):
        StandardMerkleTree.of([], RELEASE_RECORD_TYPES)


@given(st.integers(min_value=1, max_value=40))
def test_every_proof_verifies_against_the_root(count):
    records = _records(count)
    tree = StandardMerkleTree.of(records, RELEASE_RECORD_TYPES)
    assert all(verify(tree.root, RELEASE_RECORD_TYPES, r, tree.proof(i)) for i, r in enumerate(records))


def test_altered_value_does_not_verify():
    records = _records(5)
    tree = StandardMerkleTree.of(records, RELEASE_RECORD_TYPES)
    altered = (*records[2][:3], records[2][3] + 1, *records[2][4:])
    assert not verify(tree.root, RELEASE_RECORD_TYPES, altered, tree.proof(2))
