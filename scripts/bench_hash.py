"""Benchmark of the canonical event hash: in-house (tracer.epcis) against GS1's reference package.

Both hash the same list of distinct events in the same run: every event of the GS1 vector documents
(../shared/fixtures/epcis-hash, when present) plus generated events of all five types (seeded, each with
its own serials and times, so no two are equal and nothing can be served from a cache). Each event is
hashed once per round by each implementation; the best of ``--rounds`` rounds is reported, after a check
that both give the same hash for every event. The rounds alternate (reference, in-house, reference, ...)
so that both see the same machine load, and the in-house value memos are emptied before each of its
rounds (nothing carried over from the check or an earlier round). The load average is printed.
Usage: scripts/bench_hash [--generated N] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tracer.epcis import event_hash  # noqa: E402
from tracer.epcis.native import COMPILED, clear_caches  # noqa: E402
from tracer.epcis.vocabulary import CBV_BIZSTEPS, CBV_DISPOSITIONS, EPCIS_CONTEXT_URL, TRACER_NS  # noqa: E402

FIXTURES = ROOT.parent / "shared" / "fixtures" / "epcis-hash" / "examples"
CONTEXT: list[Any] = [EPCIS_CONTEXT_URL, {"ex": "https://ns.example.com/epcis/", "tracer": TRACER_NS}]
KINDS = ("ObjectEvent", "AggregationEvent", "TransactionEvent", "TransformationEvent", "AssociationEvent")

Item = tuple[dict[str, Any], list[Any]]


def vector_events() -> list[Item]:
    items: list[Item] = []
    for path in sorted(FIXTURES.glob("*.jsonld")):
        if not path.with_suffix(".hashes").exists() or "ignoreFields" in path.read_text():
            continue
        document = json.loads(path.read_text())
        body = document["epcisBody"]
        events = body.get("eventList") or body.get("queryResults", {}).get("resultsBody", {}).get("eventList") or []
        context = document["@context"] if isinstance(document["@context"], list) else [document["@context"]]
        items.extend((event, context) for event in events)
    # Some documents repeat an event of another (e.g. the query document): keep one of each.
    unique: dict[str, Item] = {}
    for event, context in items:
        unique.setdefault(json.dumps([event, context], sort_keys=True), (event, context))
    return list(unique.values())


def _gtin(rng: random.Random) -> str:
    body = "".join(rng.choice("0123456789") for _ in range(13))
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return body + str((10 - total % 10) % 10)


def generated_event(rng: random.Random, n: int) -> dict[str, Any]:
    """One event of a bonded-import flavour; ``n`` makes it distinct."""
    kind = KINDS[n % len(KINDS)]
    gtin = _gtin(rng)
    millis = rng.randrange(1000)
    event: dict[str, Any] = {
        "type": kind,
        "eventTime": f"2025-{1 + n % 12:02d}-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:{rng.randrange(60):02d}"
        f".{millis:03d}+08:00",
        "eventTimeZoneOffset": "+08:00",
        "bizStep": rng.choice(sorted(CBV_BIZSTEPS)),
        "disposition": rng.choice(sorted(CBV_DISPOSITIONS)),
        "readPoint": {"id": f"urn:epc:id:sgln:0614141.{n % 100000:05d}.0"},
        "bizLocation": {"id": "https://id.gs1.org/414/0614141000005/254/ZONE-" + str(n % 7)},
        "bizTransactionList": [
            {"type": "https://ns.tracer.dev/btt/declaration", "bizTransaction": f"urn:tracer:decl:{n}"},
            {"type": "po", "bizTransaction": f"urn:epcglobal:cbv:bt:0614141000005:PO-{n}"},
        ],
        "tracer:hsCode": "2106909090",
        "tracer:declaredQuantity": 100 + n,
        "tracer:inspection": {"tracer:result": "conformant", "tracer:sampled": n % 2 == 0},
    }
    epcs = [f"urn:epc:id:sgtin:0614141.{n % 1000000:06d}.{n}-{i}" for i in range(3)]
    quantities = [{"epcClass": f"https://id.gs1.org/01/{gtin}/10/LOT{n}", "quantity": 10 + n % 50, "uom": "EA"}]
    if kind in ("ObjectEvent", "TransactionEvent"):
        event["epcList"] = epcs
        event["quantityList"] = quantities
        event["action"] = "OBSERVE"
    elif kind == "TransformationEvent":
        event["inputQuantityList"] = quantities
        event["outputEPCList"] = epcs
        event["ilmd"] = {"tracer:lot": f"LOT{n}", "tracer:expiry": "2027-01-31"}
    else:
        event["parentID"] = f"https://id.gs1.org/00/{_gtin(rng)}0000"[:39]
        event["childEPCs"] = epcs
        event["action"] = "ADD"
    if n % 4 == 0:
        event["sensorElementList"] = [
            {
                "sensorMetadata": {"time": event["eventTime"], "deviceID": f"urn:epc:id:giai:4000001.{n}"},
                "sensorReport": [
                    {"type": "Temperature", "value": 4.0 + (n % 10) / 10, "uom": "CEL"},
                    {"type": "RelativeHumidity", "value": 40 + n % 20, "uom": "P1"},
                ],
            }
        ]
    if n % 3 == 0:
        event["sourceList"] = [{"type": "owning_party", "source": f"urn:epc:id:pgln:0614141.{n % 100000:05d}"}]
        event["destinationList"] = [{"type": "location", "destination": "urn:epc:id:sgln:0614141.00001.0"}]
    return event


def time_round(hash_one: Callable[[dict[str, Any], list[Any]], str], items: list[Item]) -> tuple[float, float]:
    """Wall-clock and CPU (process) seconds of one round."""
    wall, cpu = time.perf_counter(), time.process_time()
    for event, context in items:
        hash_one(event, context)
    return time.perf_counter() - wall, time.process_time() - cpu


def report(name: str, wall: float, cpu: float, count: int) -> tuple[float, float]:
    print(
        f"{name:<11} {count / wall:>10,.0f} events/s  {wall / count * 1000:>8.4f} ms/event"
        f"  (CPU time {cpu / count * 1000:.4f} ms/event)"
    )
    return wall / count, cpu / count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generated", type=int, default=2000, help="generated events beside the vectors")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per implementation (best one counts)")
    parser.add_argument("--seed", type=int, default=20250101)
    args = parser.parse_args()
    try:
        from tracer.epcis.reference import reference_event_hash
    except ImportError:
        print("bench_hash: the reference package is missing: pip install -e '.[test]'", file=sys.stderr)
        return 1

    rng = random.Random(args.seed)
    vectors = vector_events()
    items = vectors + [(generated_event(rng, n), CONTEXT) for n in range(args.generated)]
    if len({json.dumps([e, c], sort_keys=True) for e, c in items}) != len(items):
        print("bench_hash: events are not all distinct", file=sys.stderr)
        return 1

    def ours(event: dict[str, Any], context: list[Any]) -> str:
        return event_hash(event, context=context)

    def theirs(event: dict[str, Any], context: list[Any]) -> str:
        return reference_event_hash(event, context=context)

    mismatches = sum(ours(e, c) != theirs(e, c) for e, c in items)
    if mismatches:
        print(f"bench_hash: {mismatches} events hash differently", file=sys.stderr)
        return 1
    print(
        f"{len(items)} distinct events ({len(vectors)} from the GS1 vectors, {args.generated} generated), "
        f"identical hashes; best of {args.rounds} rounds"
    )
    print(f"python {platform.python_version()} on {platform.machine()} {platform.processor() or ''}".rstrip())
    # tracer.epcis.native: the mypyc-compiled copy of canonical.py when the set-up built it (TRACER_PURE_PYTHON=1
    # measures the pure-Python module instead).
    print(
        "in-house: "
        + ("tracer.epcis.canonical compiled by mypyc" if COMPILED else "tracer.epcis.canonical, pure Python")
    )
    load_before = os.getloadavg()
    inf = float("inf")
    reference_best, in_house_best = [inf, inf], [inf, inf]  # wall, CPU
    for _ in range(args.rounds):
        for best, hash_one in ((reference_best, theirs), (in_house_best, ours)):
            # The in-house value memos (canonical values, timestamps, check digits, contexts) start empty
            # in every round: nothing is carried over from the check above or from an earlier round.
            clear_caches()
            wall, cpu = time_round(hash_one, items)
            best[0], best[1] = min(best[0], wall), min(best[1], cpu)
    reference_wall, reference_cpu = report("reference", reference_best[0], reference_best[1], len(items))
    in_house_wall, in_house_cpu = report("in-house", in_house_best[0], in_house_best[1], len(items))
    print(f"speed-up   {reference_wall / in_house_wall:>10.1f}x  (CPU time {reference_cpu / in_house_cpu:.1f}x)")
    load_after = os.getloadavg()
    print(f"load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after, on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
