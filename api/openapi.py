"""An honest OpenAPI schema: every status and media type the service answers, and none it does not.

FastAPI documents a 422 that this service never sends (its validation errors are 400 problem documents, see
api.problems) and nothing of the problem documents it does send. The schema is built as FastAPI builds it and
then corrected here, by rules that follow from how the service is made: any input can be malformed (400),
a bearer key can be missing (401), a path names something that may not exist (404), a write can lose a race
or break the journey's order (409), a body can be too large (413, api.limits), a key or an address can write too
often (429, api.ratelimit), and the database or the node can be away (503). What no rule can tell, a few
operations' own statuses and media types, is listed in ``_EXTRA``. tests/api/test_fuzz_schema.py holds the
schema to every answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

PROBLEM_MEDIA_TYPE = "application/problem+json"
_PROBLEM = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["pointer", "message"],
                "properties": {"pointer": {"type": "string"}, "message": {"type": "string"}},
            },
        },
        "request_id": {"type": "string"},
    },
}
_WHY = {
    400: "Malformed input; `errors` points at each field at fault",
    401: "No API key, or an unknown or revoked one",
    403: "The actor's role may not do this",
    404: "Unknown lot, parcel, capture job or path",
    409: "Out of the journey's order, a duplicate, over the balance, or a concurrent write",
    413: "The body, or the capture document's events, past the limits (docs/api.md, Limits)",
    415: "A body that is not JSON",
    422: "The documents disagree (the three-document match of a release)",
    429: "Too many writes from this key or address; retry after the Retry-After seconds",
    503: "The database or the chain node is unavailable",
}
_JSON_ANY: dict[str, Any] = {"schema": {}}
_HTML = {"schema": {"type": "string"}}
_SVG = {"schema": {"type": "string"}}

# Statuses and media types the rules cannot see: (method, path) -> responses merged over FastAPI's; None adds
# the status's problem response.
_EXTRA: dict[tuple[str, str], dict[int, dict[str, Any] | None]] = {
    ("get", "/healthz"): {
        503: {"description": "The database does not answer", "content": {"application/json": _JSON_ANY}}
    },
    ("get", "/01/{rest}"): {200: {"content": {"text/html": _HTML, "application/json": _JSON_ANY}}},
    ("get", "/00/{rest}"): {200: {"content": {"text/html": _HTML, "application/json": _JSON_ANY}}},
    ("post", "/claim/{rest}"): {
        200: {"description": "Already claimed by this device", "content": {"application/json": _JSON_ANY}},
        201: {"description": "Claimed", "content": {"application/json": _JSON_ANY}},
        303: {
            "description": "A form post: back to the scan page",
            "headers": {"Location": {"schema": {"type": "string"}}},
        },
    },
    ("get", "/labels/{rest}"): {200: {"content": {"image/svg+xml": _SVG}}},
    ("get", "/qr/{kind}/{rest}"): {
        200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}, "image/svg+xml": _SVG}}
    },
    ("get", "/audit"): {200: {"content": {"application/json": _JSON_ANY, "text/csv": _HTML, "text/html": _HTML}}},
    ("post", "/parcels/{sscc}/release"): {422: None},
    ("post", "/capture"): {415: None, 422: None},
}
# Reads that any actor may make: a key is needed, no role.
_ANY_ROLE = {
    ("get", "/lots/{lot_id}"),
    ("get", "/capture/{capture_id}"),
    ("get", "/events"),
    ("get", "/epcs/{epc}/events"),
}
_PATH_PARAMETER = re.compile(r"{([^}:]+)(?::[^}]*)?}")


def _problem_statuses(method: str, path: str, operation: dict[str, Any]) -> set[int]:
    statuses = {503}
    takes_input = bool(operation.get("parameters") or operation.get("requestBody") or "{" in path)
    if takes_input:
        statuses.add(400)
    if "{" in path:
        statuses.add(404)
    secured = bool(operation.get("security"))
    if secured:
        statuses.add(401)
        if (method, path) not in _ANY_ROLE:
            statuses.add(403)
    if method == "post":
        statuses |= {409, 413, 429}  # every write is rate-limited per client address too (api.ratelimit)
    return statuses


def _declare_path_parameters(path: str, operation: dict[str, Any]) -> None:
    """Routes that parse their raw path (lot numbers may hold an encoded "/") declare the rest of it too."""
    parameters = operation.setdefault("parameters", [])
    declared = {p["name"] for p in parameters if p.get("in") == "path"}
    for name in _PATH_PARAMETER.findall(path):
        if name not in declared:
            parameters.append({"name": name, "in": "path", "required": True, "schema": {"type": "string"}})


def _correct(method: str, path: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    validation = responses.get("422", {}).get("content", {}).get("application/json", {}).get("schema", {})
    if validation.get("$ref", "").endswith("/HTTPValidationError"):
        del responses["422"]  # FastAPI's; this service answers 400 problem documents instead
    _declare_path_parameters(path, operation)
    extra = _EXTRA.get((method, path), {})
    statuses = _problem_statuses(method, path, operation) | {status for status, given in extra.items() if given is None}
    for status in sorted(statuses):
        declared = responses.setdefault(
            str(status),
            {
                "description": _WHY[status],
                "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
            },
        )
        if status == 429:
            declared.setdefault("headers", {"Retry-After": {"description": "seconds", "schema": {"type": "integer"}}})
    for status, given in extra.items():
        if given is not None:
            response = responses.setdefault(str(status), {"description": given.get("description", "")})
            response.update({key: value for key, value in given.items() if key != "description"})


def honest(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (as FastAPI built it) with the statuses and media types the service really answers."""
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            _correct(method, path, operation)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = _PROBLEM
    if "HTTPValidationError" not in str(schema.get("paths")):
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
    return schema


def install(app: FastAPI) -> None:
    """Serves the corrected schema at /openapi.json and /docs."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = honest(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
