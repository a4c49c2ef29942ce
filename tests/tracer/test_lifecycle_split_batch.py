"""Split batches in the pure model: a batch is one split of its sum, with at least one unit per parcel; a parcel
of a batch gets its record once, by index within its batch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracer.exceptions import DuplicateRecord, NotFound, OverRelease, StepOutOfOrder
from tracer.lifecycle import LotState, check_registration, check_split, check_split_batch


def _verdict(check: Callable[..., None], **kwargs: Any) -> type[Exception] | None:
    try:
        check(**kwargs)
    except (OverRelease, StepOutOfOrder) as exc:
        return type(exc)
    return None


@given(
    state=st.sampled_from(list(LotState)),
    recalled=st.booleans(),
    received=st.integers(0, 50),
    split=st.integers(0, 50),
    quantities=st.lists(st.integers(0, 10), max_size=6),
)
def test_a_batch_is_one_split_of_its_sum(
    state: LotState, recalled: bool, received: int, split: int, quantities: list[int]
) -> None:
    lot = {"state": state, "recalled": recalled, "subject": "lot", "received": received, "split": split}
    batch = _verdict(check_split_batch, quantities=quantities, **lot)
    single = _verdict(check_split, quantity=sum(quantities), **lot)
    if not quantities or sum(quantities) < len(quantities):
        assert batch is StepOutOfOrder
    else:
        assert batch is single


def test_a_parcel_registers_once_within_its_batch() -> None:
    check_registration(registered=False, subject="p", first_index=4, count=3, index=6, quantity=1)
    with pytest.raises(NotFound):
        check_registration(registered=False, subject="p", first_index=4, count=3, index=7, quantity=1)
    with pytest.raises(DuplicateRecord):
        check_registration(registered=True, subject="p", first_index=4, count=3, index=4, quantity=1)
    with pytest.raises(StepOutOfOrder):
        check_registration(registered=False, subject="p", first_index=4, count=3, index=5, quantity=0)
