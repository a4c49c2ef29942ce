"""The ``tracer`` command: operator tools over the same core the API uses."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from sqlmodel import Session

from tracer.actors import create_actor
from tracer.chain.client import ChainClient
from tracer.config import Settings
from tracer.exceptions import TracerError
from tracer.service import open_store

app = typer.Typer(help="tracer: blockchain-backed goods traceability for bonded imports.", no_args_is_help=True)
actor_app = typer.Typer(help="Manage actors (the parties that write to the registry).", no_args_is_help=True)
app.add_typer(actor_app, name="actor")


def _fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@actor_app.command("add")
def actor_add(
    name: Annotated[str, typer.Argument(help="a unique name for the actor")],
    role: Annotated[str, typer.Option(help="enterprise, warehouse, customs, carrier, payment or auditor")],
    address: Annotated[
        str | None, typer.Option(help="the actor's own address (self-custody); omit to let the service keep a key")
    ] = None,
) -> None:
    """Create an actor and print it as JSON, with its API key (shown this once)."""
    settings = Settings()
    try:
        client = ChainClient.connect(settings.effective_rpc_url)
        if not client.is_reachable():
            _fail(f"the chain at {settings.effective_rpc_url} does not answer; start the service with scripts/run")
        engine, keystore = open_store(settings)
        with Session(engine) as session:
            created = create_actor(session=session, keystore=keystore, name=name, role=role, address=address)
            session.commit()
            public = created.public()
    except TracerError as exc:
        _fail(str(exc))
    json.dump(public, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    app()
