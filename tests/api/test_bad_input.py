"""Bad input gets a 4xx problem document naming the problem, and leaves store and chain consistent."""

from __future__ import annotations

from api_support import CONSIGNEE, Journey, ProblemCheck, declaration, order, payment, sscc, waybill
from sqlmodel import Session, select

from tracer.store.models import Event, Lot


def _events(journey: Journey) -> list[Event]:
    with Session(journey.api.service.engine) as session:
        return list(session.exec(select(Event)))


def test_declaration_with_a_bad_gtin_check_digit_is_400_naming_the_field(
    journey: Journey, problem: ProblemCheck
) -> None:
    body = problem(journey.declare(gtin="09421902960056"), 400, pointer="/gtin")
    assert "check digit" in body["detail"]
    assert _events(journey) == []


def test_schema_errors_are_400_with_pointers_not_fastapis_422(journey: Journey, problem: ProblemCheck) -> None:
    body = problem(journey.declare(quantity=-5, origin_country="New Zealand"), 400)
    pointers = {error["pointer"] for error in body["errors"]}
    assert pointers == {"/quantity", "/origin_country"}


def test_malformed_json_is_400(journey: Journey, problem: ProblemCheck) -> None:
    response = journey.api.http.post(
        "/lots",
        content=b"{not json",
        headers={"Authorization": f"Bearer {journey.parties.enterprise}", "Content-Type": "application/json"},
    )
    problem(response, 400)


def test_missing_key_is_401_and_unknown_key_is_401(journey: Journey, problem: ProblemCheck) -> None:
    problem(journey.api.post("/lots", None, {}), 401)
    problem(journey.api.post("/lots", "trk_not-a-key", {}), 401)


def test_wrong_role_is_403(journey: Journey, problem: ProblemCheck) -> None:
    response = journey.api.post("/lots", journey.parties.warehouse, declaration())
    assert "enterprise" in problem(response, 403)["detail"]


def test_unknown_lot_is_404(journey: Journey, problem: ProblemCheck) -> None:
    response = journey.api.post(
        "/lots/0x" + "ab" * 32 + "/entry",
        journey.parties.warehouse,
        {"counted_quantity": 1, "biz_location": "https://id.gs1.org/414/9521234000006"},
    )
    problem(response, 404)


def test_step_out_of_order_is_409_and_writes_nothing(journey: Journey, problem: ProblemCheck) -> None:
    assert journey.declare().status_code == 202
    response = journey.api.post(
        f"/lots/{journey.lot_id}/storage",
        journey.parties.warehouse,
        {"storage_location": "https://id.gs1.org/414/9521234000006"},
    )
    assert "declared" in problem(response, 409)["detail"]
    assert [e.step for e in _events(journey)] == ["declaration"]


def test_duplicate_declaration_is_409(journey: Journey, problem: ProblemCheck) -> None:
    assert journey.declare().status_code == 202
    problem(journey.declare(), 409)


def test_split_above_the_received_quantity_is_409_and_writes_no_parcel(journey: Journey, problem: ProblemCheck) -> None:
    journey.to_stored(counted=10)
    before = len(_events(journey))
    response = journey.split((sscc(1), 6), (sscc(2), 5))
    assert "only 4 available" in problem(response, 409)["detail"]
    assert len(_events(journey)) == before
    with Session(journey.api.service.engine) as session:
        lot = session.exec(select(Lot)).one()
        assert lot.split_quantity == 0


def test_release_with_mismatching_documents_is_422_naming_each_mismatch(
    journey: Journey, problem: ProblemCheck
) -> None:
    journey.to_stored()
    parcel = sscc(1)
    assert journey.split((parcel, 2)).status_code == 202
    api, parties = journey.api, journey.parties
    assert api.post(f"/parcels/{parcel}/order", parties.enterprise, order(parcel)).status_code == 202
    assert (
        api.post(
            f"/parcels/{parcel}/payment",
            parties.payment,
            payment(parcel, amount="1.00", payer={"name": "王伟", "id_number": "110101198001010010"}),
        ).status_code
        == 202
    )
    assert api.post(f"/parcels/{parcel}/waybill", parties.carrier, waybill(parcel)).status_code == 202
    body = problem(journey.release(parcel), 422)
    messages = " ".join(error["message"] for error in body["errors"])
    assert "paid 1.00" in messages and "payer" in messages


def test_release_before_all_three_documents_is_409(journey: Journey, problem: ProblemCheck) -> None:
    journey.to_stored()
    parcel = sscc(1)
    journey.split((parcel, 2))
    journey.api.post(f"/parcels/{parcel}/order", journey.parties.enterprise, order(parcel))
    assert "payment, waybill" in problem(journey.release(parcel), 409)["detail"]


def test_a_parcel_holding_more_than_its_order_is_not_released(journey: Journey, problem: ProblemCheck) -> None:
    journey.to_stored()
    parcel = sscc(1)
    journey.split((parcel, 5))
    journey.documents(parcel, quantity=2)
    body = problem(journey.release(parcel), 422)
    assert any("holds 5" in error["message"] for error in body["errors"])


def test_no_personal_data_reaches_events_or_chain_calls(journey: Journey) -> None:
    journey.to_stored()
    parcel = sscc(1)
    journey.split((parcel, 2))
    journey.documents(parcel)
    journey.api.anchor()
    for event in _events(journey):
        for value in CONSIGNEE.values():
            assert value not in event.payload
            assert value not in event.chain_args
