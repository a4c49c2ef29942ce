"""A query parameter an API endpoint does not take is refused, not ignored; the scan pages stay lenient."""

from __future__ import annotations

from typing import Any

from api_support import GTIN, LOT, Journey

from tracer import identifiers


def test_a_misspelt_audit_scope_is_400_not_an_audit_of_everything(api: Any, problem: Any) -> None:
    auditor = api.actor("auditor-1", "auditor")
    body = problem(api.get("/audit?lots=0x00", auditor), 400, "/lots")
    assert "unknown query parameter 'lots'" in body["detail"] and "lot" in body["detail"]
    assert api.get("/audit?lot=0x" + "00" * 32, auditor).status_code == 200  # the declared name still works


def test_journey_and_actor_endpoints_refuse_unknown_parameters(journey: Journey, problem: Any) -> None:
    journey.declare()
    problem(journey.api.get(f"/lots/{journey.lot_id}?verbose=1", journey.parties.enterprise), 400, "/verbose")
    assert journey.api.get(f"/lots/{journey.lot_id}", journey.parties.enterprise).status_code == 200
    problem(journey.api.post("/actors?dry_run=1", journey.api.admin_key, {"name": "x", "role": "carrier"}), 400)


def test_a_scan_with_tracking_parameters_still_resolves(journey: Journey) -> None:
    journey.declare()
    path = identifiers.lot_path(GTIN, LOT) + "?utm_source=poster&17=271231"
    response = journey.api.get(path, headers={"Accept": "application/json"})
    assert response.status_code == 200, response.text
