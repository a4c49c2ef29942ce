"""Proof bundles: checked against the chain alone, against the registry the verifier trusts."""

from __future__ import annotations

import copy
from typing import Any

from api_support import Journey, sscc

from tracer.chain.client import ChainClient
from tracer.chain.compiler import load_artifact
from tracer.verify import Status, verify_bundle


def _bundle(journey: Journey) -> dict[str, Any]:
    journey.to_stored()
    parcel = sscc(3)
    journey.split((parcel, 2))
    journey.documents(parcel)
    journey.api.anchor()
    response = journey.api.get(f"/proof/00/{parcel}")
    assert response.status_code == 200
    return dict(response.json())


def _trusted(journey: Journey) -> ChainClient:
    service = journey.api.service
    return ChainClient(service.client.w3, address=service.registry)


def test_an_honest_bundle_verifies(journey: Journey) -> None:
    verdict = verify_bundle(_bundle(journey), client=_trusted(journey))
    assert verdict.status is Status.VERIFIED and verdict.events_checked == 8


def test_an_edited_event_is_tampered(journey: Journey) -> None:
    bundle = _bundle(journey)
    bundle["events"][1]["event"]["quantityList"][0]["quantity"] = 999
    verdict = verify_bundle(bundle, client=_trusted(journey))
    assert verdict.status is Status.TAMPERED and "event 1 differs" in verdict.reason


def test_a_dropped_event_is_tampered(journey: Journey) -> None:
    bundle = _bundle(journey)
    del bundle["events"][2]
    verdict = verify_bundle(bundle, client=_trusted(journey))
    assert verdict.status is Status.TAMPERED and "missing from the bundle" in verdict.reason


def test_an_anchor_naming_another_transaction_is_tampered(journey: Journey) -> None:
    bundle = _bundle(journey)
    bundle["events"][0]["anchor"]["txHash"] = bundle["events"][1]["anchor"]["txHash"]
    verdict = verify_bundle(bundle, client=_trusted(journey))
    assert verdict.status is Status.TAMPERED and "names transaction" in verdict.reason


def test_a_bundle_made_against_another_registry_with_identical_code_is_tampered(journey: Journey) -> None:
    bundle = _bundle(journey)
    service = journey.api.service
    artifact = load_artifact()
    twin, _ = ChainClient(service.client.w3).deploy(
        deployer=service.deployer,
        admin=service.deployer.address,
        customs_admin=service.deployer.address,
        bytecode=artifact.bytecode,
        abi=artifact.abi,
    )
    forged = copy.deepcopy(bundle)
    forged["registry"] = twin
    verdict = verify_bundle(forged, client=ChainClient(service.client.w3, address=twin))
    assert verdict.status is Status.TAMPERED
    assert "made against registry" in verdict.reason or "not hold" in verdict.reason


def test_a_bundle_with_events_not_yet_anchored_is_pending(journey: Journey) -> None:
    journey.declare()
    response = journey.api.get(
        f"/proof{journey.api.get(f'/lots/{journey.lot_id}', journey.parties.enterprise).json()['path']}"
    )
    verdict = verify_bundle(response.json(), client=_trusted(journey))
    assert verdict.status is Status.PENDING


def test_an_unreachable_node_is_unverifiable(journey: Journey) -> None:
    bundle = _bundle(journey)
    dead = ChainClient.connect("http://127.0.0.1:9", address=journey.api.service.registry, timeout=1)
    assert verify_bundle(bundle, client=dead).status is Status.UNVERIFIABLE
