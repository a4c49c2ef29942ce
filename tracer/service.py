"""Opening the service: the store, the keys, the chain, the registry, and the outbox writer.

``open_service`` is idempotent: on first start it creates the platform admin and the customs admin,
deploys the registry and writes the admin API key file; on every later start it re-attaches to the
same registry and re-checks on chain what the outbox once did (role grants, funding, anchors), so a
node that came back from an older state gets them again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from tracer.actors import CHAIN_ROLES, PLATFORM_ROLES, NewActor, create_actor, is_revoked
from tracer.chain.client import ChainClient
from tracer.chain.compiler import load_artifact
from tracer.chain.indexer import Indexer
from tracer.chain.writer import Writer, relayer_lanes
from tracer.config import DEV_DEPLOYER_KEY, Settings
from tracer.exceptions import ConfigurationError
from tracer.keys import KeyStore, lock_down, resolve_passphrase, write_secret_file
from tracer.scans import ScanLog
from tracer.store.database import count, create_db_engine, get_meta, init_db, set_meta
from tracer.store.models import Actor, ChainTask, Event, Lot

log = logging.getLogger(__name__)

ADMIN_KEY_FILE = "admin-api-key"
CUSTOMS_ADMIN_KEY_FILE = "customs-admin-api-key"
_PLATFORM_KEY_FILES = {"admin": ADMIN_KEY_FILE, "customs_admin": CUSTOMS_ADMIN_KEY_FILE}


@dataclass
class Service:
    """Everything a running tracer needs, built once at start-up and passed down."""

    settings: Settings
    engine: Engine
    keystore: KeyStore
    client: ChainClient
    deployer: LocalAccount
    registry: str
    chain_id: int
    deploy_block: int
    writer: Writer
    indexer: Indexer
    scan_log: ScanLog
    deployed_now: bool = False


def open_store(settings: Settings) -> tuple[Engine, KeyStore]:
    """The database (tables created) and the key store of ``settings``' data dir (made owner-only).

    Raises ConfigurationError in production without a passphrase of the operator's own.
    """
    lock_down(settings.data_dir, tuple(_PLATFORM_KEY_FILES.values()))
    passphrase = resolve_passphrase(settings.data_dir, settings.key_passphrase, production=settings.production)
    engine = create_db_engine(settings.effective_database_url)
    init_db(engine)
    return engine, KeyStore(data_dir=settings.data_dir, passphrase=passphrase)


def save_platform_key(data_dir: Path, created: NewActor) -> None:
    """Keeps a platform actor's new API key in its key file (mode 0600); other actors' keys are never kept."""
    key_file = _PLATFORM_KEY_FILES.get(created.actor.role)
    if key_file is not None:
        path = data_dir / key_file
        write_secret_file(path, created.api_key + "\n")
        log.warning("the %s actor's API key is in %s (mode 0600)", created.actor.role, path)


def open_service(settings: Settings, *, client: ChainClient | None = None, attach: bool = False) -> Service:
    """Opens (and on first start, creates) the service; raises ConfigurationError with what to do.

    ``attach``: for a further process of a service another process opened (an HTTP worker, ``api.workers``):
    the stored registry, no platform actors created, nothing deployed or reconciled; its writer and indexer are
    built but must not be started (the opening process runs them).
    """
    if settings.production and not settings.embedded_chain and settings.deployer_key == DEV_DEPLOYER_KEY:
        # Anvil's first development key is public: on a real node anyone could spend its funds or front-run
        # the deployment it signs.
        raise ConfigurationError(
            "TRACER_ENV=production with a node given by URL needs a deployer key of its own: "
            "set TRACER_DEPLOYER_KEY (the default is anvil's public development key)"
        )
    engine, keystore = open_store(settings)
    client = client or ChainClient.connect(settings.effective_rpc_url)
    deployer: LocalAccount = Account.from_key(settings.deployer_key)
    chain_id: int | None = None
    if attach:
        # Nothing asked of the node: a worker must start (and answer "unverifiable") while the node is away.
        registry, deploy_block, chain_id = _opened_registry(engine)
        deployed_now = False
        client = ChainClient(client.w3, address=registry, abi=client.abi, deploy_block=deploy_block)
    else:
        with Session(engine) as session:
            admin, customs_admin = _ensure_platform_actors(session, keystore, settings.data_dir)
            registry, deploy_block, deployed_now = _attach_registry(
                session, settings, client, deployer, admin=admin.address, customs_admin=customs_admin.address
            )
            session.commit()
        client = ChainClient(client.w3, address=registry, abi=client.abi, deploy_block=deploy_block)
        with Session(engine) as session:
            reconcile(session=session, client=client)
            session.commit()
    writer = Writer(
        engine=engine,
        client=client,
        open_key=keystore.open,
        deployer=deployer,
        relayers=relayer_lanes(deployer, settings.writer_lanes),
        confirmations=settings.confirmations,
        idle_seconds=settings.writer_idle_seconds,
    )
    return Service(
        settings=settings,
        engine=engine,
        keystore=keystore,
        client=client,
        deployer=deployer,
        registry=registry,
        chain_id=client.chain_id if chain_id is None else chain_id,
        deploy_block=deploy_block,
        writer=writer,
        indexer=Indexer(engine=engine, client=client),
        scan_log=ScanLog(engine),
        deployed_now=deployed_now,
    )


def _ensure_platform_actors(session: Session, keystore: KeyStore, data_dir: Path) -> tuple[Actor, Actor]:
    """The platform admin and the customs admin, created (custodial) with their key files on first start."""
    actors = []
    for role, name in (("admin", "platform-admin"), ("customs_admin", "customs-admin")):
        actor = session.exec(select(Actor).where(Actor.role == role).order_by(col(Actor.id))).first()
        if actor is None:
            # The registry's constructor grants these two roles, so only funding goes through the outbox.
            created = create_actor(session=session, keystore=keystore, name=name, role=role, grant_on_chain=False)
            actor = created.actor
            log.warning("created the %s actor %r", role, name)
            save_platform_key(data_dir, created)
        actors.append(actor)
    return actors[0], actors[1]


def _attach_registry(
    session: Session,
    settings: Settings,
    client: ChainClient,
    deployer: LocalAccount,
    *,
    admin: str,
    customs_admin: str,
) -> tuple[str, int, bool]:
    """The registry this database belongs to: the configured one, the stored one, or a new deployment."""
    stored = get_meta(session, "registry_address")
    configured = settings.registry_address
    if configured:
        configured = to_checksum_address(configured)
        if stored and stored != configured and count(session, Event):
            raise ConfigurationError(
                f"the database holds events of registry {stored}, not of TRACER_REGISTRY_ADDRESS={configured}; "
                "use another TRACER_DATABASE_URL or unset TRACER_REGISTRY_ADDRESS"
            )
        _require_code(client, configured, settings)
        deploy_block = int(get_meta(session, "deploy_block") or 0) if stored == configured else 0
        _remember(session, client, configured, deploy_block)
        return configured, deploy_block, False
    if stored:
        if client.code_at(stored):
            return stored, int(get_meta(session, "deploy_block") or 0), False
        if count(session, Event):
            raise ConfigurationError(
                f"the chain at {client.rpc_url} has no registry at {stored}, but the database holds its events: "
                "the chain's state was lost. Restore the chain (data/chain) or point TRACER_RPC_URL at a node "
                "that has it."
            )
        log.warning("registry %s is gone from the chain (its state was lost before any event); redeploying", stored)
    artifact = load_artifact()
    address, deploy_block = client.deploy(
        deployer=deployer, admin=admin, customs_admin=customs_admin, bytecode=artifact.bytecode, abi=artifact.abi
    )
    _remember(session, client, address, deploy_block)
    log.warning("deployed the registry at %s in block %d", address, deploy_block)
    return address, deploy_block, True


def _opened_registry(engine: Engine) -> tuple[str, int, int]:
    """The registry, its deployment block and the chain id the opening process stored (ConfigurationError when no
    process opened this database)."""
    with Session(engine) as session:
        stored = get_meta(session, "registry_address")
        deploy_block = int(get_meta(session, "deploy_block") or 0)
        chain_id = get_meta(session, "chain_id")
    if not stored or chain_id is None:
        raise ConfigurationError("no registry in the database yet: the service must be opened before it is attached")
    return stored, deploy_block, int(chain_id)


def _require_code(client: ChainClient, address: str, settings: Settings) -> None:
    if not client.code_at(address):
        raise ConfigurationError(
            f"no contract at TRACER_REGISTRY_ADDRESS={address} on {settings.effective_rpc_url}; "
            "check the address and the node"
        )


def _remember(session: Session, client: ChainClient, address: str, deploy_block: int) -> None:
    set_meta(session, "registry_address", address)
    set_meta(session, "chain_id", str(client.chain_id))
    set_meta(session, "deploy_block", str(deploy_block))


def reconcile(*, session: Session, client: ChainClient) -> None:
    """Re-queues what the chain lost: role grants and revocations, funding, and anchors past a lot's on-chain
    sequence.

    A node restored from an older state (anvil after a hard kill between two state dumps) may lack
    transactions the outbox already counted as done; the chain is the judge, so they go out again.
    """
    open_tasks = {(t.actor_id, t.kind) for t in session.exec(select(ChainTask).where(ChainTask.status == "pending"))}
    for actor in session.exec(select(Actor)):
        assert actor.id is not None
        if is_revoked(actor):
            if (
                actor.role in CHAIN_ROLES
                and (actor.id, "revoke") not in open_tasks
                and client.has_role(actor.role, actor.address)
            ):
                session.add(ChainTask(kind="revoke", actor_id=actor.id, role=actor.role))
            continue  # a revoked actor needs neither its role nor funding
        if (
            actor.role in CHAIN_ROLES - PLATFORM_ROLES
            and (actor.id, "grant") not in open_tasks
            and not client.has_role(actor.role, actor.address)
        ):
            session.add(ChainTask(kind="grant", actor_id=actor.id, role=actor.role))
        if (
            actor.encrypted_key is not None
            and actor.role in CHAIN_ROLES
            and (actor.id, "fund") not in open_tasks
            and client.balance(actor.address) == 0
        ):
            session.add(ChainTask(kind="fund", actor_id=actor.id))
    for lot in session.exec(select(Lot)):
        on_chain = client.get_lot(lot.lot_id)["nextSeq"]
        lost = session.exec(
            select(Event).where(Event.lot_pk == lot.id, Event.status == "anchored", Event.seq >= on_chain)
        ).all()
        for event in lost:
            log.warning("lot %s event %d is no longer on chain; re-sending it", lot.lot_id, event.seq)
            event.status = "pending"
            event.tx_hash = event.block_hash = None
            event.block_number = event.log_index = None
            session.add(event)


def describe(service: Service) -> dict[str, object]:
    """What the start-up banner prints: where everything is."""
    return {
        "rpc_url": service.client.rpc_url,
        "chain_id": service.chain_id,
        "registry": service.registry,
        "database": service.settings.effective_database_url.split("@")[-1],
        "data_dir": str(service.settings.data_dir),
        "admin_api_key_file": str(service.settings.data_dir / ADMIN_KEY_FILE),
    }
