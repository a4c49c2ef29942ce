"""The outbox writer under faults: re-sends, a chain that lost state, refusals, a node that is down."""

from __future__ import annotations

import pytest
from api_support import Journey
from sqlmodel import Session, select

from tracer.chain.client import ChainClient
from tracer.chain.writer import Writer
from tracer.exceptions import ChainUnavailable
from tracer.service import reconcile
from tracer.store.models import Actor, ChainTask, Event


def _events(journey: Journey) -> list[Event]:
    with Session(journey.api.service.engine) as session:
        return list(session.exec(select(Event).order_by(Event.seq)))


def _set_status(journey: Journey, status: str) -> None:
    with Session(journey.api.service.engine) as session:
        for event in session.exec(select(Event)):
            event.status = status
            session.add(event)
        session.commit()


def test_re_sending_events_the_chain_holds_counts_them_anchored(journey: Journey) -> None:
    journey.to_stored()
    journey.api.anchor()
    anchored = [(e.seq, e.tx_hash) for e in _events(journey)]
    _set_status(journey, "pending")  # as after a crash between sending and recording the receipt
    journey.api.anchor()
    assert [(e.seq, e.tx_hash, e.status) for e in _events(journey)] == [(s, t, "anchored") for s, t in anchored]


def test_a_chain_that_lost_state_gets_grants_funding_and_events_again(journey: Journey) -> None:
    tester = journey.api.service.client.w3.provider.ethereum_tester  # type: ignore[attr-defined]
    snapshot = tester.take_snapshot()
    carrier = journey.api.post("/actors", journey.api.admin_key, {"name": "late", "role": "carrier"}).json()
    journey.to_stored()
    journey.api.anchor()
    tester.revert_to_snapshot(snapshot)  # the node comes back from an older state
    client = journey.api.service.client
    assert not client.has_role("carrier", carrier["address"])
    with Session(journey.api.service.engine) as session:
        reconcile(session=session, client=client)
        session.commit()
        requeued = session.exec(select(ChainTask).where(ChainTask.status == "pending")).all()
        assert sorted(task.kind for task in requeued) == ["fund", "grant"]
    assert {e.status for e in _events(journey)} == {"pending"}
    journey.api.anchor()
    assert {e.status for e in _events(journey)} == {"anchored"}
    assert client.has_role("carrier", carrier["address"]) and client.balance(carrier["address"]) > 0
    lot = journey.api.service.client.get_lot(journey.lot_id)
    assert lot["nextSeq"] == 4


def test_an_event_the_registry_refuses_ends_rejected_with_the_reason(journey: Journey) -> None:
    journey.declare()
    journey.api.anchor()
    service = journey.api.service
    with Session(service.engine) as session:
        admin = session.exec(select(Actor).where(Actor.role == "admin")).one()
        assert admin.encrypted_key is not None
        sender = service.keystore.open(admin.encrypted_key)
    service.client.wait_receipt(service.client.send_call(sender=sender, function="pause", args=[]))
    journey.api.post(
        f"/lots/{journey.lot_id}/entry",
        journey.parties.warehouse,
        {"counted_quantity": 5, "biz_location": "https://id.gs1.org/414/9521234000006"},
    )
    journey.api.anchor()
    entry = _events(journey)[-1]
    assert entry.status == "rejected" and "EnforcedPause" in (entry.reason or "")
    shown = journey.api.get(f"/lots/{journey.lot_id}", journey.parties.warehouse).json()["events"][-1]
    assert shown["status"] == "rejected" and "EnforcedPause" in shown["reason"]


def test_events_wait_pending_while_the_node_is_down(journey: Journey) -> None:
    journey.declare()
    service = journey.api.service
    down = Writer(
        engine=service.engine,
        client=ChainClient.connect("http://127.0.0.1:9", address=service.registry, timeout=1),
        open_key=service.keystore.open,
        deployer=service.deployer,
    )
    with pytest.raises(ChainUnavailable):
        down.run_once()
    assert {e.status for e in _events(journey)} == {"pending"}
    journey.api.anchor()  # the node is back
    assert {e.status for e in _events(journey)} == {"anchored"}


def test_a_batch_refused_for_events_the_chain_lost_puts_them_back_instead_of_going_one_by_one(
    journey: Journey,
) -> None:
    journey.declare()
    journey.api.anchor()
    tester = journey.api.service.client.w3.provider.ethereum_tester  # type: ignore[attr-defined]
    snapshot = tester.take_snapshot()
    journey.api.post(
        f"/lots/{journey.lot_id}/entry",
        journey.parties.warehouse,
        {"counted_quantity": 1000, "biz_location": "https://id.gs1.org/414/9521234000006"},
    )
    journey.api.anchor()
    tester.revert_to_snapshot(snapshot)  # the node comes back without the entry; the database counts it anchored
    journey.api.post(f"/lots/{journey.lot_id}/inspection", journey.parties.customs, {"result": "conformant"})
    writer = journey.api.service.writer

    writer.run_once()  # the inspection (seq 2) is refused: the chain expects seq 1

    assert [e.status for e in _events(journey)] == ["anchored", "pending", "pending"]
    assert not writer._solo  # the lost entry goes first, then the inspection, each in a batch
    journey.api.anchor()
    assert [e.status for e in _events(journey)] == ["anchored"] * 3
    assert journey.api.service.client.get_lot(journey.lot_id)["nextSeq"] == 3
