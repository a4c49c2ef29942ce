"""Schemathesis against the service's own OpenAPI schema, in process, over the real app and an eth-tester chain.

Every operation gets ``TRACER_FUZZ_EXAMPLES`` cases (20 by default, so the file stays well under a minute on
two cores) from the fixed seed ``TRACER_FUZZ_SEED``, in three passes: schema-valid requests (positive),
requests that break the schema somewhere (negative), and schema-valid requests whose path names a real lot and
parcel (positive on records). Each is sent with the API key of the role the operation is for, so
the fuzzing reaches past authentication into the routes. Every answer must be no 5xx, carry a status and a
media type the schema declares, match the declared body and headers, and a negative request must be refused
(4xx); an operation that needs a key must refuse the request without one. Schema-valid requests may still be
refused (400 for a bad check digit, 409 out of the journey's order): the schema cannot say everything.

A longer run: ``TRACER_FUZZ_EXAMPLES=500 TRACER_FUZZ_SEED=$RANDOM .venv/bin/python -m pytest
tests/api/test_fuzz_schema.py``, on PostgreSQL with ``TRACER_FUZZ_DATABASE=postgres`` (SQLite otherwise).
Each finding is kept as a plain test in tests/api/test_fuzz_findings.py, and planted faults (a crash, a key
not checked, a declared bound not enforced) show the fuzzing finds its kinds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any

import pytest
import schemathesis
from api_support import Api, Journey, Parties, sscc
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from hypothesis import HealthCheck, given, seed, settings
from hypothesis.errors import Unsatisfiable
from postgres_support import postgres_schema_url
from schemathesis import GenerationMode
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.main import create_app
from tracer.config import Settings

EXAMPLES = int(os.environ.get("TRACER_FUZZ_EXAMPLES", "20"))
SEED = int(os.environ.get("TRACER_FUZZ_SEED", "8"))

# The role each write is for (by the path's last segment); reads go with the enterprise's key.
_ROLE_OF = {
    "actors": "admin",
    "rotate-key": "admin",
    "revoke": "admin",
    "entry": "warehouse",
    "storage": "warehouse",
    "parcels": "warehouse",
    "inspection": "customs",
    "release": "customs",
    "payment": "payment",
    "waybill": "carrier",
    "delivery": "carrier",
    "audit": "auditor",
}


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """One store, SQLite unless told otherwise: the fuzzing is about the HTTP layer; the stores' behaviour is the
    other tests' business."""
    if os.environ.get("TRACER_FUZZ_DATABASE") == "postgres":
        yield from postgres_schema_url()
    else:
        yield f"sqlite:///{tmp_path / 'tracer.db'}"


def _keys(api: Api, parties: Parties) -> dict[str, str]:
    keys = {role: getattr(parties, role) for role in Parties.__dataclass_fields__}
    keys["admin"] = api.admin_key
    keys["auditor"] = api.actor("auditor-1", "auditor")
    return keys


def _key_for(label: str, keys: dict[str, str]) -> str:
    method, path = label.split(" ", 1)
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return keys[_ROLE_OF.get(last, "enterprise")] if method == "POST" or last == "audit" else keys["enterprise"]


@pytest.mark.parametrize(
    ("mode", "on_records"),
    [(GenerationMode.POSITIVE, False), (GenerationMode.NEGATIVE, False), (GenerationMode.POSITIVE, True)],
    ids=["positive", "negative", "positive-on-records"],
)
def test_every_operation_answers_as_its_schema_says(
    mode: GenerationMode, on_records: bool, api: Api, parties: Parties, journey: Journey
) -> None:
    """``on-records``: the path names a real lot and parcel (stored, split, its documents attached), so the
    generated bodies reach the journey's rules instead of a 404."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.http.app)
    keys = _keys(api, parties)
    pinned = _records(journey) if on_records else {}
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20, "the schema lost its operations"
    for operation in operations:
        path_parameters = {name: pinned.get((operation.path, name)) for name in _path_names(operation.path)}
        if on_records and (not path_parameters or None in path_parameters.values()):
            continue  # nothing of this operation's path is a record of the journey
        headers = {"Authorization": f"Bearer {_key_for(operation.label, keys)}"}
        try:
            _fuzz(operation, mode, headers, path_parameters if on_records else None)
        except Unsatisfiable:
            # Nothing about the operation can be made invalid (no inputs, or only free-text path segments).
            assert mode is GenerationMode.NEGATIVE, operation.label
        except (Exception, BaseExceptionGroup) as exc:
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)


def _path_names(path: str) -> list[str]:
    return re.findall(r"{(\w+)}", path)


def _records(journey: Journey) -> dict[tuple[str, str], str]:
    """A lot through storage with one parcel split off and its three documents: path parameters naming them."""
    journey.to_stored()
    code = sscc(1)
    assert journey.split((code, 2)).status_code == 202
    journey.documents(code)
    records = {}
    for path in ("/lots/{lot_id}", *(f"/lots/{{lot_id}}/{step}" for step in _LOT_STEPS)):
        records[(path, "lot_id")] = journey.lot_id
    for step in _PARCEL_STEPS:
        records[(f"/parcels/{{sscc}}/{step}", "sscc")] = code
    records[("/00/{rest}", "rest")] = code
    return records


_LOT_STEPS = ("entry", "inspection", "storage", "parcels", "recall")
_PARCEL_STEPS = ("order", "payment", "waybill", "release", "delivery")


def _fuzz(
    operation: Any, mode: GenerationMode, headers: dict[str, str], path_parameters: dict[str, Any] | None = None
) -> None:
    @given(case=operation.as_strategy(mode, path_parameters=path_parameters))
    @seed(SEED)
    @settings(max_examples=EXAMPLES, suppress_health_check=list(HealthCheck), deadline=None, database=None)
    def exercise(case: Any) -> None:
        # A case whose headers were made invalid (the key left out, say) goes as generated: adding the key back
        # would turn it into a valid request.
        header = case.meta.components.get(ParameterLocation.HEADER)
        sent = None if header is not None and header.mode.is_negative else headers
        case.call_and_validate(headers=sent, excluded_checks=[positive_data_acceptance])

    exercise()


# -- the fuzzing is no formality: planted faults of each kind it is there for are found -------------------

_bearer = HTTPBearer(auto_error=False)


def _crashes() -> dict[str, str]:
    raise RuntimeError("planted fault")


def _ignores_its_key(_credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> dict[str, str]:
    return {"served": "to anyone"}


def _ignores_its_limit(request: Request) -> dict[str, str]:
    return {"perPage": request.query_params.get("perPage", "")}


_PLANTED = {
    "a 5xx": ("/planted/crash", _crashes, {}, "planted fault"),
    "a key that is not checked": (
        "/planted/unguarded",
        _ignores_its_key,
        {},
        "API accepts requests without authentication",
    ),
    "a declared bound that is not enforced": (
        "/planted/unbounded",
        _ignores_its_limit,
        {
            "parameters": [
                {"name": "perPage", "in": "query", "required": True, "schema": {"type": "integer", "minimum": 1}}
            ]
        },
        "Schema-violating request accepted",
    ),
}


@pytest.mark.parametrize("fault", list(_PLANTED))
def test_a_planted_fault_is_found(fault: str, api: Api, parties: Parties) -> None:
    path, endpoint, extra, finding = _PLANTED[fault]
    app = api.http.app
    app.add_api_route(path, endpoint, methods=["GET"], openapi_extra=extra)
    app.openapi_schema = None
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operation = schema.find_operation_by_label(f"GET {path}")
    assert operation is not None
    mode = GenerationMode.NEGATIVE if extra else GenerationMode.POSITIVE
    with pytest.raises((Exception, BaseExceptionGroup)) as found:  # noqa: B017 - checked just below
        _fuzz(operation, mode, {"Authorization": f"Bearer {parties.enterprise}"})
    assert finding in str(found.value)


def test_the_schema_declares_the_problem_documents_and_not_fastapis_422() -> None:
    service = SimpleNamespace(settings=Settings(), writer=None, indexer=None)
    schema = create_app(service, run_writer=False).openapi()  # type: ignore[arg-type]
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            label, responses = f"{method.upper()} {path}", operation["responses"]
            problems = {
                status
                for status, response in responses.items()
                if "application/problem+json" in response.get("content", {})
            }
            assert "503" in (responses if path == "/healthz" else problems), label  # /healthz says why in JSON
            assert ("422" in problems) == (label in ("POST /parcels/{sscc}/release", "POST /capture")), label
            if operation.get("security"):
                assert "401" in problems, label
            if method == "post":
                assert {"400", "409", "413", "429"} <= problems, label
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path)), label
