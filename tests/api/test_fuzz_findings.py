"""What tests/api/test_fuzz_schema.py found, each kept as a plain test of its fix."""

from __future__ import annotations

from api_support import Api, ProblemCheck


def test_an_audit_of_an_enterprise_that_is_no_address_is_400_not_500(api: Api, problem: ProblemCheck) -> None:
    auditor = api.actor("auditor-1", "auditor")
    problem(api.get("/audit", auditor, params={"enterprise": "%s %s %d"}), 400, pointer="/enterprise")


def test_an_audit_of_a_lot_id_that_is_no_hex_is_400_not_500(api: Api, problem: ProblemCheck) -> None:
    auditor = api.actor("auditor-1", "auditor")
    problem(api.get("/audit", auditor, params={"lot": "0x" + "zz" * 32}), 400, pointer="/lot")
