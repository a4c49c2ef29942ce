"""A scanner for personal data in bytes: every encoding a piece of code could plausibly have used for a value.

``needles(value)`` lists the forms: the text in UTF-8, UTF-16, UTF-32 and GB 18030; each of those in hex, in
base64 (at all three alignments, so a value inside a larger encoded blob is found too) and url-safe base64;
JSON's ``\\uXXXX`` escapes, HTML character references, percent-encoding; an all-digit value as an integer
(minimal big-endian bytes and the 32-byte ABI word); and the unsalted SHA-256 and Keccak-256 digests, which
are as good as the value to anyone who can enumerate phone or ID numbers. Text, hex and escapes match
regardless of case; raw bytes, base64 and digests as they are.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import quote, quote_plus

from eth_utils.crypto import keccak

#: Shorter needles would match by chance in kilobytes of random calldata.
MIN_NEEDLE_BYTES = 4
MIN_BASE64_CHARS = 6
TEXT_ENCODINGS = ("utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be", "gb18030")


@dataclass(frozen=True)
class Needle:
    """One encoded form of a personal value."""

    value: str
    encoding: str
    data: bytes
    fold_case: bool


@dataclass(frozen=True)
class Leak:
    """A personal value found in a haystack."""

    value: str
    encoding: str
    where: str
    offset: int


def _base64_fragments(data: bytes) -> Iterator[bytes]:
    """The base64 characters that depend on ``data`` alone, for each of the 3 offsets it may start at in a blob.

    Values of 5 bytes or more give a fragment long enough at every offset."""
    for pad in range(3):
        encoded = base64.b64encode(bytes(pad) + data)
        start = -(-8 * pad // 6)  # the first character holding no padding bit
        end = 8 * (pad + len(data)) // 6  # past it, characters mix in the bytes that follow
        fragment = encoded[start:end]
        if len(fragment) >= MIN_BASE64_CHARS:
            yield fragment
            yield fragment.translate(bytes.maketrans(b"+/", b"-_"))


def _plain_forms(value: str) -> Iterator[tuple[str, bytes, bool]]:
    """The value as bytes, before any transport encoding: (name, bytes, whether case may differ)."""
    for name in TEXT_ENCODINGS:
        try:
            yield name, value.encode(name), name == "utf-8"
        except UnicodeEncodeError:
            continue
    utf8 = value.encode()
    yield "json", json.dumps(value)[1:-1].encode(), True
    yield "html", value.encode("ascii", "xmlcharrefreplace"), True
    yield "html-hex", "".join(c if c.isascii() else f"&#x{ord(c):x};" for c in html.escape(value)).encode(), True
    yield "percent", quote(value, safe="").encode(), True
    yield "form", quote_plus(value).encode(), True
    yield "sha256", hashlib.sha256(utf8).digest(), False
    yield "keccak256", keccak(utf8), False
    if value.isascii() and value.isdigit():
        number = int(value)
        yield "uint", number.to_bytes(max(1, (number.bit_length() + 7) // 8), "big"), False
        yield "uint256", number.to_bytes(32, "big"), False
        yield "0x-number", f"0x{number:x}".encode(), True


def _forms(value: str) -> Iterator[tuple[str, bytes, bool]]:
    """Each plain form, and each of those in hex and in base64 (a blob of JSON may be base64-encoded whole)."""
    for name, data, fold_case in _plain_forms(value):
        yield name, data, fold_case
        yield f"hex({name})", data.hex().encode(), True
        for fragment in _base64_fragments(data):
            yield f"base64({name})", fragment, False


def needles(value: str) -> list[Needle]:
    """Every form of ``value`` (and of its NFKC, case and space-free variants) long enough to be searched."""
    cased = [value, value.lower(), value.upper(), unicodedata.normalize("NFKC", value)]
    variants = dict.fromkeys(cased + ["".join(variant.split()) for variant in cased])
    found: dict[tuple[bytes, bool], Needle] = {}
    for variant in variants:
        for encoding, data, fold_case in _forms(variant):
            key = (data.lower() if fold_case else data, fold_case)
            if len(data) >= MIN_NEEDLE_BYTES and key not in found:
                found[key] = Needle(value=value, encoding=encoding, data=key[0], fold_case=fold_case)
    return list(found.values())


def find_personal_data(haystacks: Mapping[str, bytes], values: Iterable[str]) -> list[Leak]:
    """Every occurrence of any form of ``values`` in ``haystacks`` (name -> bytes); empty when none leaked."""
    searched = [needle for value in values for needle in needles(value)]
    leaks = []
    for where, haystack in haystacks.items():
        folded = haystack.lower()
        for needle in searched:
            offset = (folded if needle.fold_case else haystack).find(needle.data)
            if offset >= 0:
                leaks.append(Leak(value=needle.value, encoding=needle.encoding, where=where, offset=offset))
    return leaks
