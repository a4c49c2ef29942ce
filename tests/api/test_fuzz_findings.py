"""What the fuzzing found (tests/api/test_fuzz_schema.py, and the capture fuzzing of
tests/api/test_hostile_documents.py), each kept as a plain test of its fix."""

from __future__ import annotations

from typing import Any

import pytest
from api_support import Api, ProblemCheck

# Each finding is refused before the store is touched: one store (SQLite) is enough.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_an_audit_of_an_enterprise_that_is_no_address_is_400_not_500(api: Api, problem: ProblemCheck) -> None:
    auditor = api.actor("auditor-1", "auditor")
    problem(api.get("/audit", auditor, params={"enterprise": "%s %s %d"}), 400, pointer="/enterprise")


def test_an_audit_of_a_lot_id_that_is_no_hex_is_400_not_500(api: Api, problem: ProblemCheck) -> None:
    auditor = api.actor("auditor-1", "auditor")
    problem(api.get("/audit", auditor, params={"lot": "0x" + "zz" * 32}), 400, pointer="/lot")


@pytest.mark.parametrize("per_page", ["²", "9" * 5000])
def test_a_page_size_that_is_no_ascii_number_is_400_not_500(per_page: str, api: Api, problem: ProblemCheck) -> None:
    key = api.actor("enterprise-1", "enterprise")
    problem(api.get("/events", key, params={"perPage": per_page}), 400, pointer="/perPage")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("childEPCs", -171866),
        ("epcList", False),
        ("quantityList", {"epcClass": "x"}),
        ("readPoint", "urn:epc:id:sgln:9521234.00000.0"),
        ("bizLocation", {"id": 7}),
        ("parentID", []),
        ("bizTransactionList", ["urn:tracer:declaration:D-1"]),
        ("action", []),
        ("type", ["ObjectEvent"]),
    ],
)
def test_a_standard_field_of_the_wrong_json_shape_is_400_not_500(
    field: str, value: Any, api: Api, problem: ProblemCheck
) -> None:
    key = api.actor("warehouse-1", "warehouse")
    event = {
        "type": "ObjectEvent",
        "eventTime": "2026-11-27T08:00:00+08:00",
        "eventTimeZoneOffset": "+08:00",
        "action": "OBSERVE",
        field: value,
    }
    doc = {"@context": [], "type": "EPCISDocument", "epcisBody": {"eventList": [event]}}
    body = problem(api.post("/capture", key, doc), 400)
    assert body["errors"][0]["pointer"].startswith(f"/epcisBody/eventList/0/{field}"), body


@pytest.mark.parametrize("context", [None, 7, True])
def test_a_capture_whose_context_is_no_iri_object_or_list_is_400_not_202(
    context: Any, api: Api, problem: ProblemCheck
) -> None:
    key = api.actor("enterprise-1", "enterprise")
    doc = {"@context": context, "type": "EPCISDocument", "epcisBody": {"eventList": []}}
    problem(api.post("/capture", key, doc), 400, pointer="/@context")
