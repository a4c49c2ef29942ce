"""The writer's batch ops: consecutive split events of a run go as SplitBatch ops of at most MAX_SPLIT_BATCH
parcels, whose roots are the trees of those parcels' leaves (what registerParcel later proves against)."""

from __future__ import annotations

import json

from eth_utils import keccak
from sqlalchemy import create_engine
from sqlmodel import Session, SQLModel

from tracer.chain import typed_data
from tracer.chain.splits import split_tree
from tracer.chain.writer import MAX_SPLIT_BATCH, _run_ops
from tracer.store.models import Event, Parcel


def _hash_uri(n: int) -> str:
    return f"ni:///sha-256;{keccak(text=f'event {n}').hex()}?ver=CBV2.0"


def test_consecutive_splits_go_as_capped_batches_around_other_ops() -> None:
    engine = create_engine("sqlite://")
    SQLModel.metadata.create_all(engine)
    lot_id = "0x" + "11" * 32
    with Session(engine) as session:
        parcels = [
            Parcel(sscc=f"{n:018d}", parcel_id="0x" + keccak(text=f"p{n}").hex(), lot_pk=1, index=n,
                   quantity=1 + n % 3, state="split")
            for n in range(MAX_SPLIT_BATCH + 46)
        ]  # fmt: skip
        session.add_all(parcels)
        session.commit()

        def split(seq: int, parcel: Parcel) -> Event:
            args = [lot_id, seq, parcel.parcel_id, parcel.quantity, "0x" + "00" * 32]
            return Event(lot_pk=1, seq=seq, step="split", actor_id=1, payload="{}", event_hash=_hash_uri(seq),
                         chain_function="splitParcel", chain_args=json.dumps(args))  # fmt: skip

        run = [split(4 + n, parcel) for n, parcel in enumerate(parcels[:-2])]
        observation = [lot_id, len(run) + 4, "0x" + "00" * 32, "0x" + "00" * 32]
        run.append(Event(lot_pk=1, seq=len(run) + 4, step="observation", actor_id=1, payload="{}",
                         event_hash=_hash_uri(len(run) + 4), chain_function="recordObservation",
                         chain_args=json.dumps(observation)))  # fmt: skip
        run += [split(len(run) + 4 + n, parcel) for n, parcel in enumerate(parcels[-2:])]

        ops = _run_ops(session, run)

    actions = [op.action for op in ops]
    split_action, observe = typed_data.Action.SPLIT_BATCH, typed_data.Action.OBSERVE
    assert actions == [split_action, split_action, observe, split_action]
    groups = [parcels[:MAX_SPLIT_BATCH], parcels[MAX_SPLIT_BATCH:-2], parcels[-2:]]
    for op, group in zip([ops[0], ops[1], ops[3]], groups, strict=True):
        assert op.subject == split_tree(group).root
        assert op.amount == sum(parcel.quantity for parcel in group)
        assert int.from_bytes(op.data, "big") == len(group) == len(op.split_hashes) == op.events
        assert op.event_hash == keccak(b"".join(op.split_hashes))
    assert sum(op.events for op in ops) == len(run)
    assert ops[0].split_hashes[0] == bytes.fromhex(_hash_uri(4).split(";")[1][:64])
