"""The ``tracer`` command: operator tools over the same core the API uses."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import httpx
import typer
from sqlmodel import Session

from tracer.actors import create_actor, revoke_actor, revoked_public, rotate_api_key
from tracer.audit import DEFAULT_LATE_ANCHOR_SECONDS
from tracer.chain.client import ChainClient
from tracer.chain.indexer import Indexer
from tracer.config import PROJECT_ROOT, Settings
from tracer.exceptions import TracerError
from tracer.keys import KeyStore
from tracer.service import open_store, save_platform_key
from tracer.store.database import get_meta
from tracer.verify import Status, verify_bundle

if TYPE_CHECKING:
    from rich.progress import TaskID

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
        reachable = client.is_reachable()
    except TracerError as exc:
        _fail(str(exc))
    if not reachable:
        _fail(f"the chain at {settings.effective_rpc_url} does not answer; start the service with scripts/run")

    def add(session: Session, keystore: KeyStore) -> dict[str, str]:
        created = create_actor(session=session, keystore=keystore, name=name, role=role, address=address)
        session.commit()
        return created.public()

    _print_from_store(settings, add)


@actor_app.command("rotate-key")
def actor_rotate_key(name: Annotated[str, typer.Argument(help="the actor's name")]) -> None:
    """Give an actor a new API key and print it as JSON, like add; the old key stops working at once."""
    settings = Settings()

    def rotate(session: Session, keystore: KeyStore) -> dict[str, str]:
        rotated = rotate_api_key(session=session, keystore=keystore, name=name)
        session.commit()
        save_platform_key(settings.data_dir, rotated)
        return rotated.public()

    _print_from_store(settings, rotate)


@actor_app.command("revoke")
def actor_revoke(name: Annotated[str, typer.Argument(help="the actor's name")]) -> None:
    """Revoke an actor: its API key stops working at once; the running service revokes its role on chain."""

    def revoke(session: Session, _keystore: KeyStore) -> dict[str, object]:
        actor = revoke_actor(session=session, name=name)
        session.commit()
        return revoked_public(actor)

    _print_from_store(Settings(), revoke)


def _print_from_store(settings: Settings, act: Callable[[Session, KeyStore], Mapping[str, object]]) -> None:
    """Runs ``act`` on the configured store and prints what it returns as JSON; exits 1 with the message of a
    TracerError."""
    try:
        engine, keystore = open_store(settings)
        with Session(engine) as session:
            public = act(session, keystore)
    except TracerError as exc:
        _fail(str(exc))
    _print_json(public)


def _print_json(document: object) -> None:
    json.dump(document, sys.stdout)
    sys.stdout.write("\n")


@app.command()
def reindex() -> None:
    """Rebuild everything the database derives from the chain, from the registry's logs alone; print what differed."""
    settings = Settings()
    try:
        engine, _ = open_store(settings)
        with Session(engine) as session:
            registry = get_meta(session, "registry_address")
            deploy_block = int(get_meta(session, "deploy_block") or 0)
        if registry is None:
            _fail("this data dir has no registry yet; start the service once with scripts/run", code=2)
        client = ChainClient.connect(settings.effective_rpc_url, address=registry, deploy_block=deploy_block)
        report = Indexer(engine=engine, client=client).reindex()
    except TracerError as exc:
        _fail(str(exc), code=2)
    json.dump(dataclasses.asdict(report), sys.stdout, indent=2)
    sys.stdout.write("\n")
    if report.mismatched or report.missing_from_database:
        raise typer.Exit(1)


@app.command()
def verify(
    source: Annotated[str, typer.Argument(help="a proof bundle (JSON file) or a scan URL")],
    rpc: Annotated[str | None, typer.Option(help="any node of the chain (default: the service's)")] = None,
    registry: Annotated[
        str | None, typer.Option(help="the registry you trust (default: the local configuration); never the bundle's")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the verdict as JSON")] = False,
) -> None:
    """Check a proof bundle against the chain alone: exit 0 verified, 1 tampered, 2 error, 3 pending/unverifiable."""
    settings = Settings()
    try:
        bundle = _load_bundle(source)
        trusted = registry or settings.registry_address or _configured_registry(settings)
        if not trusted:
            _fail("name the registry you trust with --registry 0x…", code=2)
        client = ChainClient.connect(rpc or settings.effective_rpc_url, address=trusted)
        verdict = verify_bundle(bundle, client=client)
    except (TracerError, OSError, ValueError, httpx.HTTPError) as exc:
        _fail(str(exc), code=2)
    if as_json:
        json.dump(
            {**verdict.public(), "events": [vars(check) | {"status": check.status.value} for check in verdict.checks]},
            sys.stdout,
            default=str,
        )
        sys.stdout.write("\n")
    else:
        typer.echo(f"{verdict.status.value}: {verdict.reason}")
        for check in verdict.checks:
            typer.echo(f"  event {check.seq}: {check.status.value} - {check.reason}")
    raise typer.Exit(_EXIT_CODES[verdict.status])


_EXIT_CODES = {Status.VERIFIED: 0, Status.TAMPERED: 1, Status.PENDING: 3, Status.UNVERIFIABLE: 3}


class AuditFormat(StrEnum):
    """The audit report's format."""

    json = "json"
    csv = "csv"
    html = "html"


@app.command()
def audit(
    rpc: Annotated[
        str | None, typer.Option(help="any node of the chain; without it, the service's configuration and database")
    ] = None,
    registry: Annotated[str | None, typer.Option(help="the registry to audit (0x…)")] = None,
    database: Annotated[
        str | None, typer.Option(help="the operator's database (SQLAlchemy URL) to check against the chain")
    ] = None,
    lot: Annotated[str | None, typer.Option(help="one lot: GTIN14/LOT (or its 0x lot id)")] = None,
    enterprise: Annotated[str | None, typer.Option(help="the lots this enterprise (0x…) declared")] = None,
    from_block: Annotated[int | None, typer.Option(help="the lots touched from this block on")] = None,
    to_block: Annotated[int | None, typer.Option(help="… up to this block (default: the latest)")] = None,
    output_format: Annotated[
        AuditFormat, typer.Option("--format", help="json, csv (events) or html")
    ] = AuditFormat.json,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write the report here, not to stdout")] = None,
    late_anchor: Annotated[
        int, typer.Option(help="seconds an event's time may precede its block's before it is a late anchor")
    ] = DEFAULT_LATE_ANCHOR_SECONDS,
    deploy_block: Annotated[
        int | None, typer.Option(help="the registry's deployment block (default: found on chain)")
    ] = None,
) -> None:
    """Audit the registry from the chain alone (and the operator's database against it): exit 0 clean, 1 findings,
    2 error. Findings: altered, missing_from_database, unanchored, sequence_gap, late_anchor, quantity_imbalance,
    bytecode_mismatch, unauthorized_author."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from web3 import HTTPProvider, Web3

    from tracer.audit import Scope, lot_scope, render_csv, render_html, render_json, run_audit
    from tracer.store.database import create_db_engine

    settings = Settings()
    try:
        if sum(x is not None for x in (lot, enterprise, from_block if from_block is not None else to_block)) > 1:
            _fail("name one scope: --lot, --enterprise, or --from-block/--to-block", code=2)
        scope = lot_scope(lot) if lot else Scope(enterprise=enterprise, from_block=from_block, to_block=to_block)
        database_url = database
        if rpc is None:  # the service's own view: its node, its registry, its database
            database_url = database_url or settings.effective_database_url
            if database is None and settings.database_url is None and not (settings.data_dir / "tracer.db").exists():
                _fail(f"no service database in {settings.data_dir}; give --rpc and --registry to audit the chain", 2)
        engine = create_db_engine(database_url) if database_url else None
        trusted = registry or settings.registry_address
        if trusted is None and engine is not None:
            with Session(engine) as session:
                trusted = get_meta(session, "registry_address")
        if not trusted:
            _fail("name the registry to audit with --registry 0x…", code=2)
        assert trusted is not None
        provider = HTTPProvider(rpc or settings.effective_rpc_url, request_kwargs={"timeout": 60})
        console = Console(stderr=True)
        columns = (TextColumn("{task.description:>9}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as bars:
            tasks: dict[str, TaskID] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bars.add_task(stage, total=total)
                bars.update(tasks[stage], completed=done, total=total)

            report = run_audit(
                w3=Web3(provider),
                registry=trusted,
                scope=scope,
                engine=engine,
                deploy_block=deploy_block,
                late_anchor_seconds=late_anchor,
                progress=progress,
            )
    except (TracerError, OSError, ValueError) as exc:
        _fail(str(exc), code=2)
    if output_format is AuditFormat.csv:
        text = render_csv(report)
    elif output_format is AuditFormat.html:
        text = render_html(report, template_dir=PROJECT_ROOT / "api" / "templates")
    else:
        text = render_json(report) + "\n"
    if output is not None:
        output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    typer.secho(
        f"{report.status}: {len(report.reconciliation)} lots, {len(report.events)} events, "
        f"{len(report.findings)} findings {report.counts() or ''}".rstrip(),
        err=True,
        fg=typer.colors.GREEN if report.status == "clean" else typer.colors.RED,
    )
    raise typer.Exit(0 if report.status == "clean" else 1)


def _load_bundle(source: str) -> dict[str, object]:
    """The bundle in a file, or downloaded through a scan URL (the only call to an API)."""
    if source.startswith(("http://", "https://")):
        headers = {"Accept": "application/json"}
        document = httpx.get(source, headers=headers, timeout=30, follow_redirects=True).raise_for_status().json()
        if "links" in document:
            document = httpx.get(document["links"]["proof"], headers=headers, timeout=30).raise_for_status().json()
    else:
        with open(source, encoding="utf-8") as handle:
            document = json.load(handle)
    if not isinstance(document, dict):
        raise ValueError(f"{source} is not a proof bundle (a JSON object)")
    return document


def _configured_registry(settings: Settings) -> str | None:
    """The registry this machine's service deployed, from its database (no API involved)."""
    if not settings.data_dir.exists() and settings.database_url is None:
        return None
    engine, _ = open_store(settings)
    with Session(engine) as session:
        return get_meta(session, "registry_address")


if __name__ == "__main__":
    app()
