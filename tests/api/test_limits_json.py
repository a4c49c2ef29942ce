"""The JSON limits of api.limits: a body is refused exactly when some part of it is past a limit, and the byte
scans that spare a legitimate body the walk never miss one that is past a limit (property tests)."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from api.limits import Limits, _may_pass_limits, _Refused, check_json

# Small limits, so that random documents break them often.
LIMITS = Limits(max_body_bytes=1 << 20, max_depth=4, max_string_length=6)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

texts = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]) | st.sampled_from('"\\/[]{}\x00\x7f\t'), max_size=9
)
documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=30,
)


def past_limits(value: Any, depth: int = 0) -> bool:
    """The reference: recursion over the parsed document, as the limits are written in docs/api.md."""
    if isinstance(value, str):
        return len(value) > LIMITS.max_string_length or bool(_CONTROL.search(value))
    if isinstance(value, dict | list):
        if depth + 1 > LIMITS.max_depth:
            return True
        members = [*value.keys(), *value.values()] if isinstance(value, dict) else value
        return any(past_limits(member, depth + 1) for member in members)
    return False


def refused(body: bytes) -> bool:
    try:
        check_json(body, LIMITS)
    except _Refused:
        return True
    return False


@given(documents, st.booleans())
def test_a_body_is_refused_exactly_when_a_part_of_it_is_past_a_limit(document: Any, ascii_only: bool) -> None:
    body = json.dumps(document, ensure_ascii=ascii_only).encode()
    assert refused(body) == past_limits(document)


@given(documents, st.booleans())
def test_the_byte_scans_never_clear_a_body_past_a_limit(document: Any, ascii_only: bool) -> None:
    body = json.dumps(document, ensure_ascii=ascii_only).encode()
    if past_limits(document):
        assert _may_pass_limits(body, LIMITS)


def test_an_escaped_backslash_before_b_is_no_control_character() -> None:
    assert not refused(json.dumps(["C:\\bob"]).encode())


def test_escaped_quotes_count_as_characters_of_their_string() -> None:
    assert refused(json.dumps(['"' * (LIMITS.max_string_length + 1)]).encode())
    assert not refused(json.dumps(['"' * LIMITS.max_string_length]).encode())
