"""The pure core of units in proofs: a split event lists its serials as childEPCs, and a bundle's unit claim
holds exactly when the event it names packs that unit into that parcel."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracer import identifiers
from tracer.epcis import split_event
from tracer.exceptions import InvalidInput
from tracer.units import membership_problem, membership_public, packed_units

GTIN = "09421902960055"
SSCC = "095212340000001003"
CSET82 = "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
serials = st.text(alphabet=CSET82, min_size=1, max_size=20)
NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def _split(units: list[str], quantity: int | None = None) -> dict[str, Any]:
    return split_event(
        event_time=NOW, gtin=GTIN, lot="L1", sscc=SSCC, quantity=quantity or max(len(units), 1), serials=units
    )


def _bundle(event: dict[str, Any], serial: str, *, seq: int = 4) -> dict[str, Any]:
    unit = membership_public(gtin=GTIN, serial=serial, sscc=SSCC, seq=seq, event_id="ni:///sha-256;00")
    return {"events": [{"seq": seq, "event": event}], "unit": unit}


@settings(max_examples=60, deadline=None)
@given(units=st.lists(serials, min_size=1, max_size=8, unique=True), stranger=serials)
def test_a_claim_holds_exactly_for_the_units_the_split_lists(units: list[str], stranger: str) -> None:
    event = _split(units)
    assert [(ref.gtin, ref.serial) for ref in packed_units(event)] == [(GTIN, s) for s in units]
    for serial in units:
        assert membership_problem(_bundle(event, serial)) is None
    if stranger not in units:
        assert "does not pack it" in (membership_problem(_bundle(event, stranger)) or "")


@settings(max_examples=30, deadline=None)
@given(serial=serials)
def test_sgtin_urns_and_digital_links_pack_the_same_unit(serial: str) -> None:
    event = _split([serial])
    link = event["childEPCs"][0]
    event["childEPCs"] = [identifiers.digital_link_to_epc_urn(link, company_prefix_length=7)]
    assert membership_problem(_bundle(event, serial)) is None


def test_a_split_without_serials_has_no_child_epcs() -> None:
    assert "childEPCs" not in split_event(event_time=NOW, gtin=GTIN, lot="L1", sscc=SSCC, quantity=3)


@pytest.mark.parametrize(
    ("units", "quantity", "pointer"),
    [(["A", "B"], 1, "/serials"), (["A", "B C"], 2, "/serials/1"), (["X" * 21], 1, "/serials/0")],
)
def test_split_event_refuses_bad_serials_naming_them(units: list[str], quantity: int, pointer: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        _split(units, quantity)
    assert raised.value.pointer == pointer


def test_a_claim_naming_an_event_that_is_not_a_packing_of_the_parcel_fails() -> None:
    event = _split(["S1"])
    assert "packs it into" in (
        membership_problem(
            {
                **_bundle(event, "S1"),
                "unit": {**_bundle(event, "S1")["unit"], "parcel": "https://id.gs1.org/00/095212340000001010"},
            }
        )
        or ""
    )
    observed = {**event, "action": "OBSERVE"}
    assert "does not pack it" in (membership_problem(_bundle(observed, "S1")) or "")
    assert "not in the bundle" in (membership_problem(_bundle(event, "S1", seq=4) | {"events": []}) or "")
    assert membership_problem({"events": []}) is None  # no unit claimed: nothing to check
    assert "lacks" in (membership_problem({"events": [], "unit": {"gtin": GTIN}}) or "")
