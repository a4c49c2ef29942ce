"""Salted commitments: recomputable by an auditor with plain SHA-256, canonical, hiding."""

from __future__ import annotations

import hashlib
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracer.commitments import (
    SALT_BYTES,
    canonical_json,
    commit,
    document_commitment,
    new_salt,
    same_person,
)
from tracer.exceptions import InvalidInput

SALT = bytes(range(32))


def test_new_salt_is_32_random_bytes() -> None:
    salts = {new_salt() for _ in range(16)}
    assert len(salts) == 16 and all(len(s) == SALT_BYTES == 32 for s in salts)


def test_commit_is_sha256_of_salt_then_utf8_value() -> None:
    expected = "0x" + hashlib.sha256(SALT + "张三".encode()).hexdigest()
    assert commit("张三", SALT) == expected
    assert commit("", SALT) == "0x" + hashlib.sha256(SALT).hexdigest()


def test_commit_golden_vector() -> None:
    # sha256(bytes(range(32)) + b"13800138000"), fixed so a change of the scheme cannot go unnoticed.
    assert commit("13800138000", SALT) == "0x" + hashlib.sha256(SALT + b"13800138000").hexdigest()
    assert len(commit("13800138000", SALT)) == 66


def test_commit_normalises_to_nfc() -> None:
    assert commit("Jose\u0301", SALT) == commit("José", SALT)


@pytest.mark.parametrize("salt", [b"", b"x" * 31, b"x" * 33, "x" * 32])
def test_commit_requires_a_32_byte_salt(salt: object) -> None:
    with pytest.raises(InvalidInput, match="32 bytes"):
        commit("x", salt)  # type: ignore[arg-type]


def test_commit_requires_a_string() -> None:
    with pytest.raises(InvalidInput):
        commit(13800138000, SALT)  # type: ignore[arg-type]


def test_document_commitment_is_over_canonical_json() -> None:
    fields = {"b": "二", "a": 1, "c": [True, None, Decimal("12.30")], "d": {"y": 1, "x": 2}}
    canonical = '{"a":1,"b":"二","c":[true,null,"12.30"],"d":{"x":2,"y":1}}'.encode()
    assert canonical_json(fields) == canonical
    assert document_commitment(fields, SALT) == "0x" + hashlib.sha256(SALT + canonical).hexdigest()


def test_document_commitment_ignores_key_order() -> None:
    a = {"order_number": "1", "consignee": {"name": "王", "phone": "1"}}
    b = {"consignee": {"phone": "1", "name": "王"}, "order_number": "1"}
    assert document_commitment(a, SALT) == document_commitment(b, SALT)


@pytest.mark.parametrize("bad", [{"amount": 1.5}, {1: "x"}, {"x": object()}, {"x": {"y": [1.0]}}])
def test_document_commitment_refuses_non_canonical_values(bad: dict) -> None:
    with pytest.raises(InvalidInput):
        document_commitment(bad, SALT)


@given(value=st.text(), salt1=st.binary(min_size=32, max_size=32), salt2=st.binary(min_size=32, max_size=32))
def test_commit_is_deterministic_and_salt_dependent(value: str, salt1: bytes, salt2: bytes) -> None:
    assert commit(value, salt1) == commit(value, salt1)
    if salt1 != salt2:
        assert commit(value, salt1) != commit(value, salt2)


@given(a=st.text(min_size=1), b=st.text(min_size=1))
def test_different_values_give_different_commitments(a: str, b: str) -> None:
    import unicodedata

    if unicodedata.normalize("NFC", a) != unicodedata.normalize("NFC", b):
        assert commit(a, SALT) != commit(b, SALT)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"name": "张三", "id_number": "11010519491231002X"}, {"name": " 张三 ", "id_number": "11010519491231002x"}),
        (
            {"name": "Li  Lei", "id_number": "110105194912310021"},
            {"name": "li lei", "id_number": "110105 194912310021"},
        ),
        (
            {"name": "ＺＨＡＮＧ", "id_number": "１１０１０５１９４９１２３１００２Ｘ"},
            {"name": "zhang", "id_number": "11010519491231002X"},
        ),
    ],
)
def test_same_person_after_normalising(a: dict, b: dict) -> None:
    assert same_person(a, b) and same_person(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"name": "张三", "id_number": "11010519491231002X"}, {"name": "张三", "id_number": "110105194912310021"}),
        ({"name": "张三", "id_number": "11010519491231002X"}, {"name": "李四", "id_number": "11010519491231002X"}),
        ({"name": "张三"}, {"name": "张三"}),
        ({"name": "", "id_number": ""}, {"name": "", "id_number": ""}),
        ({"name": None, "id_number": "1"}, {"name": None, "id_number": "1"}),
    ],
)
def test_different_or_incomplete_people_do_not_match(a: dict, b: dict) -> None:
    assert not same_person(a, b)
