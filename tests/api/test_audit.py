"""The auditor's view: an honest history audits clean, the chain alone reproduces the service's ledger, and each
tampering of the operator's database (or of the registry's code) is caught with its finding kind."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from api_support import Api, Journey, sscc
from sqlmodel import Session, col, select

from tracer.audit import AuditReport, Scope, lot_scope, render_csv, render_html, render_json, run_audit
from tracer.chain.compiler import load_artifact
from tracer.config import PROJECT_ROOT
from tracer.store.models import Event, Lot, Parcel

TEMPLATES = PROJECT_ROOT / "api" / "templates"


def audit(api: Api, *, database: bool = True, **kwargs: Any) -> AuditReport:
    service = api.service
    return run_audit(
        w3=service.client.w3,
        registry=service.registry,
        engine=service.engine if database else None,
        **kwargs,
    )


def kinds(report: AuditReport) -> set[str]:
    return {finding.kind for finding in report.findings}


def delivered_lot(journey: Journey, *, parcels: int = 2) -> list[str]:
    """A lot stored, ``parcels`` parcels of 2 split, documented, released and delivered; all anchored."""
    journey.to_stored(counted=998)
    codes = [sscc(700 + i) for i in range(parcels)]
    assert journey.split(*[(code, 2) for code in codes]).status_code == 202
    for code in codes:
        journey.documents(code)
        assert journey.release(code).status_code == 202
        assert journey.deliver(code).status_code == 202
    journey.api.anchor()
    return codes


def test_an_honest_history_audits_clean(journey: Journey) -> None:
    delivered_lot(journey)
    report = audit(journey.api)
    assert report.status == "clean", [f.public() for f in report.findings]
    (row,) = report.reconciliation
    assert row["lot"] == journey.lot_id and row["label"] == "09421902960055/NZ-2026/11"
    expected = {"declared": 1000, "received": 998, "discrepancy": -2, "inspected": 998, "non_conformant": 0}
    expected |= {"split": 4, "released": 4, "destroyed": 0, "returned": 0, "remaining": 994, "parcels": 2}
    assert {k: row[k] for k in expected} == expected
    assert row["ledger"]["remaining"] == 994 and row["balanced"]
    assert set(report.event_status.values()) == {"matching"}
    assert report.bytecode["status"] == "matches"
    assert set(report.bytecode["immutables"]) >= {"cachedChainId", "cachedThisAddress", "cachedDomainSeparator"}


def test_the_chain_alone_reproduces_the_services_own_view(journey: Journey) -> None:
    delivered_lot(journey, parcels=3)
    report = audit(journey.api, database=False)
    assert report.status == "clean" and not report.with_database
    view = journey.api.get(f"/lots/{journey.lot_id}", journey.parties.enterprise).json()
    (row,) = report.reconciliation
    assert row["declared"] == view["declared_quantity"]
    assert row["received"] == view["received_quantity"]
    assert row["split"] == view["split_quantity"]
    assert row["released"] == view["released_quantity"]
    assert row["parcels"] == len(view["parcels"])
    chain_hashes = [e.event_hash for e in report.events]
    assert len(chain_hashes) == len(view["events"])
    assert all(event.timestamp for event in report.events)


def test_role_grants_are_listed_with_who_and_when(journey: Journey) -> None:
    delivered_lot(journey, parcels=1)
    report = audit(journey.api, database=False)
    roles = {(change.role, change.granted) for change in report.roles}
    assert {("admin", True), ("customs_admin", True), ("enterprise", True), ("customs", True)} <= roles
    customs = next(change for change in report.roles if change.role == "customs")
    enterprise = next(change for change in report.roles if change.role == "enterprise")
    customs_admin = next(change for change in report.roles if change.role == "customs_admin")
    assert customs.sender == customs_admin.account != enterprise.sender  # only the customs admin grants customs
    assert customs.timestamp is not None and customs.tx_hash.startswith("0x")


def _edit(api: Api, lot_id: str, seq: int, **changes: Any) -> None:
    with Session(api.service.engine) as session:
        lot = session.exec(select(Lot).where(Lot.lot_id == lot_id)).one()
        event = session.exec(select(Event).where(Event.lot_pk == lot.id, Event.seq == seq)).one()
        for name, value in changes.items():
            setattr(event, name, value)
        session.add(event)
        session.commit()


def _payload(api: Api, lot_id: str, seq: int) -> dict[str, Any]:
    with Session(api.service.engine) as session:
        lot = session.exec(select(Lot).where(Lot.lot_id == lot_id)).one()
        event = session.exec(select(Event).where(Event.lot_pk == lot.id, Event.seq == seq)).one()
        return dict(json.loads(event.payload))


def test_an_edited_payload_is_altered(journey: Journey) -> None:
    delivered_lot(journey, parcels=1)
    payload = _payload(journey.api, journey.lot_id, 1)
    payload["bizLocation"] = {"id": "https://id.gs1.org/414/9521234000013"}
    _edit(journey.api, journey.lot_id, 1, payload=json.dumps(payload))
    report = audit(journey.api)
    assert kinds(report) == {"altered"}
    (finding,) = report.findings
    assert finding.event == 1 and finding.evidence["stored_hash_matches_chain"] is True
    assert report.event_status[(journey.lot_id, 1)] == "altered"


def test_an_edited_payload_with_its_stored_hash_recomputed_is_still_altered(journey: Journey) -> None:
    from tracer.epcis import event_hash

    delivered_lot(journey, parcels=1)
    payload = _payload(journey.api, journey.lot_id, 0)
    payload["tracer:declaredQuantity"] = 5
    _edit(journey.api, journey.lot_id, 0, payload=json.dumps(payload), event_hash=event_hash(payload))
    report = audit(journey.api)
    assert kinds(report) == {"altered"}
    assert report.findings[0].evidence["recomputed"] == event_hash(payload)


def test_an_edited_hash_column_alone_is_altered(journey: Journey) -> None:
    delivered_lot(journey, parcels=1)
    _edit(journey.api, journey.lot_id, 2, event_hash="ni:///sha-256;" + "ab" * 32 + "?ver=CBV2.0")
    assert kinds(audit(journey.api)) == {"altered"}


def test_a_deleted_event_row_is_missing_from_the_database_and_leaves_a_gap(journey: Journey) -> None:
    delivered_lot(journey, parcels=1)
    with Session(journey.api.service.engine) as session:
        lot = session.exec(select(Lot).where(Lot.lot_id == journey.lot_id)).one()
        event = session.exec(select(Event).where(Event.lot_pk == lot.id, Event.seq == 3)).one()
        session.delete(event)
        session.commit()
    report = audit(journey.api)
    assert kinds(report) == {"missing_from_database", "sequence_gap"}
    missing = next(f for f in report.findings if f.kind == "missing_from_database")
    assert missing.event == 3 and missing.evidence["step"] == "Stored"
    gap = next(f for f in report.findings if f.kind == "sequence_gap")
    assert gap.evidence == {"source": "database", "missing": [3], "count": 1}


def test_an_inserted_event_never_anchored_is_unanchored(journey: Journey) -> None:
    delivered_lot(journey, parcels=1)
    with Session(journey.api.service.engine) as session:
        lot = session.exec(select(Lot).where(Lot.lot_id == journey.lot_id)).one()
        last = session.exec(select(Event).where(Event.lot_pk == lot.id).order_by(col(Event.seq).desc())).first()
        assert last is not None
        forged = Event.model_validate(
            last.model_dump(exclude={"id"}) | {"seq": last.seq + 1, "status": "anchored", "tx_hash": "0x" + "11" * 32}
        )
        session.add(forged)
        session.commit()
    report = audit(journey.api)
    assert kinds(report) == {"unanchored"}
    assert report.findings[0].event == len(report.events)
    assert "unanchored" in render_csv(report)


def test_a_recent_pending_event_is_in_flight_not_unanchored(journey: Journey) -> None:
    delivered_lot(journey, parcels=1)
    assert (
        journey.api.post(f"/lots/{journey.lot_id}/recall", journey.parties.customs, {"reason": "test"}).status_code
        == 202
    )
    report = audit(journey.api)
    assert report.status == "clean"
    assert "pending" in report.event_status.values()


def test_a_changed_quantity_is_a_quantity_imbalance(journey: Journey) -> None:
    codes = delivered_lot(journey, parcels=1)
    with Session(journey.api.service.engine) as session:
        lot = session.exec(select(Lot).where(Lot.lot_id == journey.lot_id)).one()
        lot.released_quantity = 1
        parcel = session.exec(select(Parcel).where(Parcel.sscc == codes[0])).one()
        parcel.quantity = 20
        session.add(lot)
        session.add(parcel)
        session.commit()
    report = audit(journey.api)
    assert kinds(report) == {"quantity_imbalance"}
    evidence = [f.evidence for f in report.findings]
    assert {"released", None} == {e.get("field") for e in evidence}
    assert any(e.get("database") == 20 and e.get("chain") == 2 for e in evidence)


def test_a_back_dated_event_is_a_late_anchor(journey: Journey) -> None:
    journey.to_stored()
    # The entry claims a time two days before the block that anchors it: the chain's clock moved on first.
    tester = journey.api.service.client.w3.provider.ethereum_tester  # type: ignore[attr-defined]
    now = journey.api.service.client.w3.eth.get_block("latest")["timestamp"]
    tester.time_travel(now + 2 * 86_400)
    journey.api.anchor()
    report = audit(journey.api)
    assert kinds(report) == {"late_anchor"}
    assert {f.event for f in report.findings} == {0, 1, 2, 3}
    assert report.findings[0].evidence["lag_seconds"] > 86_400
    assert audit(journey.api, late_anchor_seconds=3 * 86_400).status == "clean"


def test_a_registry_whose_code_differs_is_a_bytecode_mismatch(journey: Journey) -> None:
    delivered_lot(journey, parcels=1)
    artifact = load_artifact()
    code = bytearray(bytes.fromhex(artifact.deployed_bytecode.removeprefix("0x")))
    code[100] ^= 0xFF  # one byte outside the immutables
    modified = dataclasses.replace(artifact, deployed_bytecode="0x" + code.hex())
    report = audit(journey.api, artifact=modified)
    assert kinds(report) == {"bytecode_mismatch"}
    assert report.findings[0].evidence["first_difference"] == 100


def test_a_registry_at_another_address_than_its_immutables_name_is_a_bytecode_mismatch(journey: Journey) -> None:
    from tracer.audit import check_bytecode

    artifact = load_artifact()
    code = journey.api.service.client.code_at(journey.api.service.registry)
    _, findings = check_bytecode(code, artifact, address="0x" + "12" * 20, chain_id=journey.api.service.chain_id)
    assert findings and {f.kind for f in findings} == {"bytecode_mismatch"}
    assert all("immutable" in f.evidence["reason"] for f in findings)


def test_scopes_pick_one_lot_one_enterprise_or_a_block_range(journey: Journey) -> None:
    delivered_lot(journey, parcels=1)
    first = journey.lot_id
    start = journey.api.service.client.latest_block() + 1
    journey.declare(lot="SECOND-1")
    journey.api.anchor()
    second = journey.lot_id
    by_lot = audit(journey.api, scope=lot_scope("09421902960055/NZ-2026/11"))
    assert [row["lot"] for row in by_lot.reconciliation] == [first]
    enterprise = by_lot.reconciliation[0]["enterprise"]
    assert {row["lot"] for row in audit(journey.api, scope=Scope(enterprise=enterprise)).reconciliation} == {
        first,
        second,
    }
    ranged = audit(journey.api, scope=Scope(from_block=start))
    assert [row["lot"] for row in ranged.reconciliation] == [second]
    assert ranged.status == "clean"


def test_the_report_renders_as_json_csv_and_html(journey: Journey) -> None:
    delivered_lot(journey, parcels=2)
    report = audit(journey.api)
    document = json.loads(render_json(report))
    assert document["status"] == "clean" and document["findings"] == []
    assert document["reconciliation"][0]["lot"] == journey.lot_id
    lines = render_csv(report).splitlines()
    assert lines[0].startswith("lot,label,seq,step") and len(lines) == 1 + len(report.events)
    html = render_html(report, template_dir=TEMPLATES)
    assert "<svg" in html and journey.lot_id in html and "http://" not in html.replace('xmlns="http://', "")


@pytest.fixture
def auditor_key(api: Api) -> str:
    response = api.post("/actors", api.admin_key, {"name": "auditor-1", "role": "auditor"})
    assert response.status_code == 201, response.text
    return str(response.json()["api_key"])


def test_the_auditor_endpoint_answers_the_auditor_alone(journey: Journey, auditor_key: str) -> None:
    delivered_lot(journey, parcels=1)
    response = journey.api.get("/audit", auditor_key)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "clean"
    assert journey.api.get("/audit", journey.parties.enterprise).status_code == 403
    assert journey.api.get("/audit").status_code == 401
    html = journey.api.get("/audit", auditor_key, params={"format": "html"})
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html") and "<svg" in html.text
    csv_text = journey.api.get("/audit", auditor_key, params={"format": "csv", "lot": "09421902960055/NZ-2026/11"})
    assert csv_text.headers["content-type"].startswith("text/csv") and csv_text.text.startswith("lot,")


def test_the_auditor_endpoint_reports_findings_with_200(journey: Journey, auditor_key: str) -> None:
    delivered_lot(journey, parcels=1)
    _edit(journey.api, journey.lot_id, 1, event_hash="ni:///sha-256;" + "cd" * 32 + "?ver=CBV2.0")
    body = journey.api.get("/audit", auditor_key, params={"chain_only": "false"}).json()
    assert body["status"] == "findings" and body["findings"][0]["kind"] == "altered"
    chain_only = journey.api.get("/audit", auditor_key, params={"chain_only": "true"}).json()
    assert chain_only["status"] == "clean"
