"""Proof bundles of parcels split in a batch: each split event carries its parcel's leaf and the leaf's proof under
the parcels root the registry logged; verification checks them against the chain."""

from __future__ import annotations

import copy
from typing import Any

from api_support import Journey, sscc

from tracer.chain.client import ChainClient
from tracer.verify import Status, verify_bundle


def _bundle(journey: Journey) -> tuple[dict[str, Any], ChainClient]:
    journey.to_stored()
    parcels = [sscc(n) for n in (11, 12, 13)]
    journey.split(*[(code, 2) for code in parcels])  # one request: one split batch on chain
    journey.documents(parcels[1])  # its first own step registers it from the batch's tree
    journey.api.anchor()
    response = journey.api.get(f"/proof/00/{parcels[1]}")
    assert response.status_code == 200
    service = journey.api.service
    return dict(response.json()), ChainClient(service.client.w3, address=service.registry)


def _split_items(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [item for item in bundle["events"] if "splitProof" in item]


def test_split_events_carry_proofs_that_verify(journey: Journey) -> None:
    bundle, client = _bundle(journey)
    items = _split_items(bundle)
    assert len(items) == 3
    roots = {item["splitProof"]["merkleRoot"] for item in items}
    assert len(roots) == 1  # one batch
    logged = {r.seq: r for r in client.lot_events(bundle["lot_id"])}
    for item in items:
        recorded = logged[item["seq"]]
        assert recorded.split_range == (0, 3) and "0x" + recorded.subject.hex() in roots
        assert item["splitProof"]["leaf"]["index"] == recorded.parcel_index
    assert client.get_parcel(bytes.fromhex(items[1]["splitProof"]["leaf"]["parcelId"][2:]))["state"] == 1
    assert verify_bundle(bundle, client=client).status is Status.VERIFIED


def test_a_forged_split_proof_is_tampered(journey: Journey) -> None:
    bundle, client = _bundle(journey)
    forged = copy.deepcopy(bundle)
    _split_items(forged)[0]["splitProof"]["leaf"]["quantity"] = 5
    verdict = verify_bundle(forged, client=client)
    assert verdict.status is Status.TAMPERED and "do not lead to the split root" in verdict.reason
    swapped = copy.deepcopy(bundle)
    first, second = _split_items(swapped)[:2]
    first["splitProof"], second["splitProof"] = second["splitProof"], first["splitProof"]
    verdict = verify_bundle(swapped, client=client)
    assert verdict.status is Status.TAMPERED and "its place in its batch" in verdict.reason
