"""Salted commitments: how personal data is bound to events and the chain without ever entering them.

An auditor holding the salt and the value recomputes a commitment with nothing but SHA-256::

    commitment = "0x" + sha256(salt || utf8(NFC(value))).hexdigest()

``salt`` is the record's secret: 32 random bytes (:func:`new_salt`), stored beside the personal data
and erased with it, after which the commitment in the event and on chain reveals nothing.
:func:`document_commitment` commits to a whole document the same way, over its canonical JSON:
keys sorted, no spaces (``separators=(",", ":")``), UTF-8 without ``\\u`` escapes, every string NFC-
normalised; values may be strings, integers, booleans, ``None``, ``Decimal`` (written as its string),
lists and objects with string keys. Floats are refused: their text is not canonical across languages.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import unicodedata
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from tracer.exceptions import InvalidInput

__all__ = ["SALT_BYTES", "canonical_json", "commit", "document_commitment", "new_salt", "same_person"]

#: Length of every salt, in bytes.
SALT_BYTES = 32

_WHITESPACE = re.compile(r"\s+")


def new_salt() -> bytes:
    """32 bytes from the operating system's CSPRNG, one per personal-data record."""
    return secrets.token_bytes(SALT_BYTES)


def _check_salt(salt: bytes) -> bytes:
    if not isinstance(salt, (bytes, bytearray)) or len(salt) != SALT_BYTES:
        raise InvalidInput(f"a salt is exactly {SALT_BYTES} bytes")
    return bytes(salt)


def _digest(salt: bytes, payload: bytes) -> str:
    return "0x" + hashlib.sha256(_check_salt(salt) + payload).hexdigest()


def commit(value: str, salt: bytes) -> str:
    """``0x`` + hex SHA-256 of ``salt || UTF-8(NFC(value))`` (32 bytes, lower case).

    Raises InvalidInput when ``value`` is not a string or ``salt`` is not 32 bytes.
    """
    if not isinstance(value, str):
        raise InvalidInput("a committed value must be a string")
    return _digest(salt, unicodedata.normalize("NFC", value).encode("utf-8"))


def _canonical(value: Any, pointer: str) -> Any:
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInput("document keys must be strings", pointer=pointer)
            out[unicodedata.normalize("NFC", key)] = _canonical(item, f"{pointer}/{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [_canonical(item, f"{pointer}/{i}") for i, item in enumerate(value)]
    raise InvalidInput(
        f"{type(value).__name__} cannot be committed canonically (use a string for amounts)",
        pointer=pointer or "/",
    )


def canonical_json(fields: Mapping[str, Any]) -> bytes:
    """The canonical JSON bytes :func:`document_commitment` hashes. Raises InvalidInput (floats etc.)."""
    if not isinstance(fields, Mapping):
        raise InvalidInput("a document must be a mapping")
    text = json.dumps(_canonical(fields, ""), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def document_commitment(fields: Mapping[str, Any], salt: bytes) -> str:
    """``0x`` + hex SHA-256 of ``salt || canonical_json(fields)``: a commitment to a whole document.

    Raises InvalidInput for a value that has no canonical JSON form or a salt that is not 32 bytes.
    """
    return _digest(salt, canonical_json(fields))


def _normal(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    text = unicodedata.normalize("NFKC", value)
    text = unicodedata.normalize("NFKC", text.casefold())
    return _WHITESPACE.sub(" ", text).strip()


def same_person(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two documents name the same person: equal ``name`` and ``id_number`` after normalising.

    Normalising is NFKC, case folding and collapsed/stripped whitespace (full-width characters and
    ``x``/``X`` in a Chinese ID number compare equal); whitespace inside an ID number is ignored.
    A missing or empty name or ID number never matches.
    """
    name_a, name_b = _normal(a.get("name")), _normal(b.get("name"))
    id_a = _normal(a.get("id_number")).replace(" ", "")
    id_b = _normal(b.get("id_number")).replace(" ", "")
    return bool(name_a and id_a) and name_a == name_b and id_a == id_b
