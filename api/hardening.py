"""What the service does against hostile or careless clients: request limits, and a schema that says so."""

from __future__ import annotations

from fastapi import FastAPI

from api import limits, openapi


def install(app: FastAPI) -> None:
    """Installs the request limits (api.limits) and the honest OpenAPI schema (api.openapi) on ``app``."""
    limits.install(app)
    openapi.install(app)
