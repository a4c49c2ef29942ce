"""The bonded-import journey through the HTTP API, anchored on an in-process chain."""

from __future__ import annotations

from api_support import GTIN, LOT, Journey, sscc


def test_full_journey_is_anchored_and_scans_verified(journey: Journey) -> None:
    journey.to_stored()
    parcel = sscc(1)
    assert journey.split((parcel, 2)).status_code == 202
    journey.documents(parcel)
    assert journey.release(parcel).status_code == 202
    assert journey.deliver(parcel).status_code == 202
    journey.api.anchor()

    lot = journey.api.get(f"/lots/{journey.lot_id}", journey.parties.enterprise).json()
    assert [e["status"] for e in lot["events"]] == ["anchored"] * 10
    assert lot["released_quantity"] == 2

    scan = journey.api.get(f"/00/{parcel}", headers={"Accept": "application/json"}).json()
    assert scan["verification"]["status"] == "verified"
    assert [e["step"] for e in scan["events"]] == [
        "declaration",
        "entry",
        "inspection",
        "storage",
        "split",
        "order",
        "payment",
        "waybill",
        "release",
        "delivery",
    ]
    assert scan["product"]["gtin"] == GTIN and scan["product"]["lot"] == LOT
