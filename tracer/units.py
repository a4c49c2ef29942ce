"""Serialised units (GTIN + serial, GS1 AI 21) in proofs: which anchored event says a unit is in a parcel.

Nothing per unit is on chain. A unit is packed into its parcel by the parcel's split event (an
AggregationEvent ADD whose ``childEPCs`` name the unit); that event's canonical hash is anchored like any
other, so the unit's membership is as tamper-evident as the event. A unit's proof bundle is its parcel's
bundle plus a ``unit`` object naming that event by its sequence number; :func:`membership_problem` checks
the named event really packs the unit (pure: the chain check of the event itself is the verifier's).
"""

from __future__ import annotations

from typing import Any

from tracer import identifiers
from tracer.exceptions import InvalidInput


def packed_units(event: dict[str, Any]) -> list[identifiers.UnitRef]:
    """The units an event packs into its parent: the ``childEPCs`` of an AggregationEvent ADD, as references
    (SGTIN EPC URNs and Digital Links alike); anything else packs none. Unreadable EPCs are skipped."""
    if event.get("type") != "AggregationEvent" or event.get("action") != "ADD":
        return []
    units = []
    for epc in event.get("childEPCs") or []:
        try:
            ref = identifiers.parse_identifier(epc)
        except InvalidInput:
            continue
        if isinstance(ref, identifiers.UnitRef):
            units.append(ref)
    return units


def event_parent(event: dict[str, Any]) -> str | None:
    """The SSCC of an event's ``parentID``, or None when it names no parcel."""
    parent = event.get("parentID")
    try:
        ref = identifiers.parse_identifier(parent) if isinstance(parent, str) else None
    except InvalidInput:
        return None
    return ref.sscc if isinstance(ref, identifiers.ParcelRef) else None


def membership_public(*, gtin: str, serial: str, sscc: str, seq: int, event_id: str) -> dict[str, Any]:
    """The ``unit`` object of a unit's proof bundle: the unit, its parcel, and the split event that packs it."""
    return {
        "gtin": gtin,
        "serial": serial,
        "epc": identifiers.unit_uri(gtin, serial),
        "parcel": identifiers.parcel_uri(sscc),
        "seq": seq,
        "eventID": event_id,
    }


def membership_problem(bundle: dict[str, Any]) -> str | None:
    """Why a bundle's ``unit`` claim does not hold, or None when it holds or the bundle names no unit.

    It holds when the bundle's event at ``unit.seq`` is an AggregationEvent ADD whose ``parentID`` is the
    parcel ``unit.parcel`` and whose ``childEPCs`` name the unit (GTIN and serial).
    """
    unit = bundle.get("unit")
    if unit is None:
        return None
    if not (
        isinstance(unit, dict)
        and isinstance(unit.get("gtin"), str)
        and isinstance(unit.get("serial"), str)
        and isinstance(unit.get("seq"), int)
    ):
        return "the bundle's unit claim lacks gtin, serial or seq"
    name = f"unit {unit['gtin']}/{unit['serial']}"
    events = bundle.get("events")
    items = events if isinstance(events, list) else []
    item = next((e for e in items if isinstance(e, dict) and e.get("seq") == unit["seq"]), None)
    event = item.get("event") if item is not None else None
    if not isinstance(event, dict):
        return f"{name}: the event {unit['seq']} said to pack it is not in the bundle"
    if not any(ref.gtin == unit["gtin"] and ref.serial == unit["serial"] for ref in packed_units(event)):
        return f"{name}: event {unit['seq']} does not pack it (not among its childEPCs)"
    claimed_parcel = unit.get("parcel")
    if claimed_parcel is not None:
        try:
            claimed = identifiers.parse_identifier(claimed_parcel) if isinstance(claimed_parcel, str) else None
        except InvalidInput:
            claimed = None
        if not isinstance(claimed, identifiers.ParcelRef) or claimed.sscc != event_parent(event):
            return f"{name}: event {unit['seq']} packs it into {event.get('parentID')}, not {claimed_parcel}"
    return None


def membership_summary(bundle: dict[str, Any]) -> str | None:
    """What a bundle's ``unit`` claim establishes once it holds and the events verify (for the verdict's
    reason), or None when the bundle names no unit or the claim does not hold."""
    unit = bundle.get("unit")
    if unit is None or membership_problem(bundle) is not None:
        return None
    return f"unit {unit['gtin']}/{unit['serial']} is packed into parcel {unit.get('parcel')} by event {unit['seq']}"
