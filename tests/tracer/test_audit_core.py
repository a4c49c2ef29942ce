"""The audit's pure core: sequence and hash chain, quantity reconciliation, role replay, calldata quantities."""

from __future__ import annotations

import dataclasses

from eth_abi import abi as eth_abi
from eth_utils.abi import function_abi_to_4byte_selector, get_abi_input_types

from tracer.audit import (
    CalldataDecoder,
    ChainEvent,
    Ledger,
    RoleChange,
    RoleTimeline,
    balance_series,
    check_authors,
    check_sequence,
    fold_head,
    reconcile_lot,
)
from tracer.chain.compiler import load_artifact

LOT = "0x" + "aa" * 32
PARCEL = "0x" + "bb" * 32
ENTERPRISE, WAREHOUSE, CUSTOMS, STRANGER = ("0x" + c * 40 for c in "1234")
ZERO = "0x" + "00" * 32


def history() -> list[ChainEvent]:
    """A lot declared (10), counted (9), inspected, stored, one parcel of 4 split and released, 2 destroyed."""
    steps = [
        ("Declared", ENTERPRISE, LOT, 10, None),
        ("Entered", WAREHOUSE, LOT, 9, None),
        ("Inspected", CUSTOMS, LOT, None, "conformant"),
        ("Stored", WAREHOUSE, LOT, None, None),
        ("Split", WAREHOUSE, PARCEL, 4, None),
        ("Released", CUSTOMS, PARCEL, None, None),
        ("Destroyed", CUSTOMS, LOT, 2, "destroyed"),
    ]
    events, head = [], ZERO
    for seq, (step, author, subject, quantity, detail) in enumerate(steps):
        event_hash = "0x" + bytes([seq + 1]).hex() * 32
        head = fold_head(head, event_hash)
        events.append(
            ChainEvent(
                lot_id=LOT, seq=seq, author=author, step=step, subject=subject, event_hash=event_hash, head=head,
                tx_hash="0x" + "cc" * 32, block_number=10 + seq, block_hash=ZERO, log_index=0,
                timestamp=1_700_000_000 + 60 * seq, quantity=quantity, detail=detail,
            )
        )  # fmt: skip
    return events


def ledger(events: list[ChainEvent], **changes: int) -> Ledger:
    fields = dict(declared=10, received=9, split=4, released=4, destroyed=2, returned=0, remaining=3)
    fields.update(changes)
    return Ledger(**fields, next_seq=len(events), head=events[-1].head, state=5, recalled=False, enterprise=ENTERPRISE)


def roles(*extra: RoleChange) -> RoleTimeline:
    base = [
        RoleChange("enterprise", ENTERPRISE, STRANGER, True, 1, 0, ZERO),
        RoleChange("warehouse", WAREHOUSE, STRANGER, True, 1, 1, ZERO),
        RoleChange("customs", CUSTOMS, STRANGER, True, 1, 2, ZERO),
    ]
    return RoleTimeline([*base, *extra])


def test_an_honest_lot_reconciles_with_its_ledger() -> None:
    events = history()
    row, findings = reconcile_lot(LOT, events, ledger(events))
    assert findings == []
    assert (row["declared"], row["received"], row["discrepancy"], row["inspected"]) == (10, 9, -1, 9)
    assert (row["split"], row["released"], row["destroyed"], row["remaining"]) == (4, 4, 2, 3)
    assert check_sequence(LOT, events, ledger(events)) == []


def test_a_ledger_that_differs_from_the_logged_steps_is_a_quantity_imbalance() -> None:
    events = history()
    _, findings = reconcile_lot(LOT, events, ledger(events, released=6, remaining=1))
    assert {f.kind for f in findings} == {"quantity_imbalance"}
    assert {f.evidence["field"] for f in findings} == {"released", "remaining"}


def test_a_ledger_that_does_not_add_up_is_a_quantity_imbalance() -> None:
    events = history()
    _, findings = reconcile_lot(LOT, events, ledger(events, remaining=5))
    assert any("does not add up" in f.evidence["reason"] for f in findings)


def test_a_release_above_what_was_received_is_a_quantity_imbalance() -> None:
    events = history()
    events[4] = dataclasses.replace(events[4], quantity=40)
    _, findings = reconcile_lot(LOT, events, None)
    reasons = {f.evidence["reason"] for f in findings}
    assert "released more than received" in reasons


def test_a_missing_sequence_number_is_a_sequence_gap() -> None:
    events = history()
    del events[3]
    findings = check_sequence(LOT, events, None)
    assert findings[0].kind == "sequence_gap" and findings[0].evidence["missing"] == [3]


def test_a_logged_head_that_is_not_the_fold_is_a_sequence_gap() -> None:
    events = history()
    events[2] = dataclasses.replace(events[2], event_hash="0x" + "ee" * 32)
    findings = check_sequence(LOT, events, None)
    assert [f.evidence["reason"] for f in findings] == ["hash chain broken"] and findings[0].event == 2


def test_logs_a_node_withholds_show_against_the_registrys_next_sequence() -> None:
    events = history()
    findings = check_sequence(LOT, events[:-1], ledger(events))
    assert findings[0].evidence["reason"] == "registry's next sequence differs from the logs"


def test_an_author_without_the_role_is_unauthorized() -> None:
    events = history()
    events[1] = dataclasses.replace(events[1], author=STRANGER)
    findings = check_authors(events, roles(), enterprise=ENTERPRISE)
    assert [(f.kind, f.event) for f in findings] == [("unauthorized_author", 1)]
    assert findings[0].evidence["needs"] == ["warehouse"]


def test_an_author_whose_role_was_revoked_before_the_block_is_unauthorized() -> None:
    events = history()
    revoked = RoleChange("customs", CUSTOMS, STRANGER, False, 12, 5, ZERO)  # after seq 2 (block 12), same block
    findings = check_authors(events, roles(revoked), enterprise=ENTERPRISE)
    assert {f.event for f in findings} == {5, 6}  # the release (block 15) and the destruction (block 16)


def test_a_role_granted_later_in_the_same_block_does_not_cover_an_earlier_event() -> None:
    events = history()
    late = RoleTimeline([RoleChange("enterprise", ENTERPRISE, STRANGER, True, 10, 3, ZERO)])
    assert timeline_holds(late, block=10, log_index=0) is False
    assert timeline_holds(late, block=10, log_index=4) is True
    assert check_authors(events[:1], late, enterprise=ENTERPRISE)[0].kind == "unauthorized_author"


def timeline_holds(timeline: RoleTimeline, *, block: int, log_index: int) -> bool:
    return timeline.holds("enterprise", ENTERPRISE, block=block, log_index=log_index)


def test_an_order_by_another_enterprise_is_unauthorized() -> None:
    other = "0x" + "5" * 40
    events = history()
    order = dataclasses.replace(events[5], step="DocumentAttached", detail="order", author=other, seq=7)
    timeline = roles(RoleChange("enterprise", other, STRANGER, True, 1, 9, ZERO))
    findings = check_authors([order], timeline, enterprise=ENTERPRISE)
    assert findings[0].evidence["reason"] == "not the lot's enterprise"


def test_the_bonded_balance_falls_with_each_write_off() -> None:
    assert [balance for _, _, balance in balance_series(history())] == [9, 5, 3]


def test_quantities_come_from_a_signed_batchs_calldata() -> None:
    abi = load_artifact().abi
    function = next(item for item in abi if item.get("name") == "recordSigned")
    lot = bytes.fromhex(LOT[2:])
    ops = [(0, b"\0" * 32, 10, b"\0" * 32, b"\1" * 32), (1, b"\0" * 32, 9, b"\0" * 32, b"\2" * 32)]
    ops.append((2, b"\0" * 32, 1, b"\0" * 32, b"\3" * 32))
    data = function_abi_to_4byte_selector(function) + eth_abi.encode(
        get_abi_input_types(function), [("0x" + "11" * 20, 2**63, [(lot, 0, ops)]), b"\0" * 65, [], []]
    )
    moved = CalldataDecoder(abi).decode(data)
    assert moved[(LOT, 0)].quantity == 10 and moved[(LOT, 1)].quantity == 9
    assert moved[(LOT, 2)].detail == "non_conformant"
    assert CalldataDecoder(abi).decode(b"\x12\x34\x56\x78") == {}


def test_a_signed_split_batch_takes_one_sequence_number_per_parcel() -> None:
    abi = load_artifact().abi
    function = next(item for item in abi if item.get("name") == "recordSigned")
    lot = bytes.fromhex(LOT[2:])
    split = (10, b"\7" * 32, 6, (3).to_bytes(32, "big"), b"\1" * 32)  # SplitBatch of 3 parcels, 6 units
    document = (5, b"\x08" * 32, 1, b"\0" * 32, b"\2" * 32)  # a payment document after it
    data = function_abi_to_4byte_selector(function) + eth_abi.encode(
        get_abi_input_types(function),
        [("0x" + "11" * 20, 2**63, [(lot, 5, [split, document])]), b"\0" * 65, [], [[b"\3" * 32] * 3]],
    )
    moved = CalldataDecoder(abi).decode(data)
    assert set(moved) == {(LOT, 8)}  # the split's quantities come from its log, not the calldata
    assert moved[(LOT, 8)].detail == "payment"
