"""A capture waiting for the database does not hold up other requests: its work runs off the event loop."""

from __future__ import annotations

import threading
from typing import Any

from api_support import GTIN, LOT, Journey
from sqlmodel import Session, select

from tracer.store.database import set_meta
from tracer.store.models import Lot


def _reading(n: int) -> dict[str, Any]:
    return {
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "epcisBody": {
            "eventList": [
                {
                    "type": "ObjectEvent",
                    "eventTime": f"2026-11-27T08:00:{n:02d}.000+08:00",
                    "eventTimeZoneOffset": "+08:00",
                    "action": "OBSERVE",
                    "bizStep": "sensor_reporting",
                    "quantityList": [{"epcClass": f"https://id.gs1.org/01/{GTIN}/10/{LOT.replace('/', '%2F')}"}],
                }
            ]
        },
    }


def test_a_capture_waiting_for_its_lot_does_not_hold_up_other_requests(journey: Journey) -> None:
    """The lot is locked by another transaction (PostgreSQL: its row; SQLite: the database's write lock), so the
    capture waits; meanwhile the service must still answer. A capture doing its blocking work on the event loop
    would hold every request until the lock is released."""
    api = journey.api
    assert journey.declare().status_code == 202
    answers: dict[str, Any] = {}

    def post_capture() -> None:
        answers["capture"] = api.http.post(
            "/capture", json=_reading(1), headers={"Authorization": f"Bearer {journey.parties.warehouse}"}
        )

    def get_schema() -> None:
        answers["schema"] = api.http.get("/openapi.json")

    capture = threading.Thread(target=post_capture)
    other = threading.Thread(target=get_schema)
    with Session(api.service.engine) as holder:
        holder.exec(select(Lot).with_for_update()).all()
        set_meta(holder, "holding", "the lot")
        holder.flush()
        try:
            capture.start()
            capture.join(timeout=1.0)
            assert capture.is_alive(), f"the capture did not wait for the lot: {answers}"
            other.start()
            other.join(timeout=15)
            assert not other.is_alive(), "a request that needs no database waited for the blocked capture"
            assert answers["schema"].status_code == 200
            assert capture.is_alive()  # still waiting: the other request did not get its answer by luck
        finally:
            holder.commit()
    capture.join(timeout=60)
    other.join(timeout=60)
    assert answers["capture"].status_code == 202, answers["capture"].text
