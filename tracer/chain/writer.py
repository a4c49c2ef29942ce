"""The outbox writer: sends what the database accepted to the chain, in order, and records the anchors.

Accepted events and administrative tasks (role grants, account funding) are committed as ``pending``
rows in the same database transaction that accepts the request. This writer, a thread of the service,
picks them up, sends them signed by their actor's own key, and marks them ``anchored`` once their
block is ``confirmations`` deep, or ``rejected`` with the registry's reason. Re-sending is always safe:
the registry refuses a sequence number twice, and a refused re-send whose hash is already on chain
counts as anchored.

Per lot, events go in sequence order: consecutive events of one sender share a round (their nonces keep
the order), and an event of another sender waits for the round after.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from tracer.chain.client import ChainClient, Receipt, ReceiptTimeout, RecordedEvent
from tracer.chain.worker import Worker
from tracer.epcis import event_hash_bytes
from tracer.exceptions import ContractReverted
from tracer.store.models import Actor, ChainTask, Event, Lot

log = logging.getLogger(__name__)

# Enough ether for tens of thousands of journey steps on a development chain.
FUNDING_WEI = 10 * 10**18
RECEIPT_TIMEOUT_SECONDS = 60.0


@dataclass
class _Sent:
    """A transaction in flight and the row it anchors."""

    row_id: int
    kind: str  # "event" | "task"
    tx_hash: str | None
    refused: ContractReverted | None = None  # the node refused it when it was sent


class Writer(Worker):
    """Drains the outbox to the chain; ``run_once`` is one round, ``start`` runs rounds in a thread."""

    name = "writer"

    def __init__(
        self,
        *,
        engine: Engine,
        client: ChainClient,
        open_key: Callable[[str], LocalAccount],
        deployer: LocalAccount,
        confirmations: int = 1,
        idle_seconds: float = 0.2,
    ) -> None:
        super().__init__(idle_seconds=idle_seconds)
        self._engine = engine
        self._client = client
        self._open_key = open_key
        self._deployer = deployer
        self._confirmations = max(1, confirmations)

    # -- one round -----------------------------------------------------------------------------------------

    def run_once(self) -> int:
        """Sends every row that may go now, waits for their receipts, records the outcome; returns the count."""
        with Session(self._engine) as session:
            sent = self._send_tasks(session)
            blocked_actors = {task.actor_id for task in self._pending_tasks(session)}
            sent += self._send_events(session, blocked_actors)
        if not sent:
            return 0
        for item in sent:
            self._settle(item)
        return len(sent)

    def drain(self, *, timeout: float = 120.0) -> None:
        """Runs rounds until nothing is pending (tests and the CLI use it); raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while self.pending_count():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.pending_count()} outbox rows still pending after {timeout}s")
            if not self.run_once():
                time.sleep(self._idle_seconds)

    def pending_count(self) -> int:
        """How many events and tasks wait for the chain."""
        with Session(self._engine) as session:
            events = session.exec(select(Event.id).where(Event.status == "pending")).all()
            return len(events) + len(self._pending_tasks(session))

    @staticmethod
    def _pending_tasks(session: Session) -> list[ChainTask]:
        return list(session.exec(select(ChainTask).where(ChainTask.status == "pending").order_by(col(ChainTask.id))))

    def _send_tasks(self, session: Session) -> list[_Sent]:
        sent: list[_Sent] = []
        nonces: dict[str, int] = {}
        for task in self._pending_tasks(session):
            actor = session.get(Actor, task.actor_id)
            assert actor is not None
            try:
                if task.kind == "fund":
                    sender = self._deployer
                    tx_hash = self._client.transfer(
                        sender=sender, to=actor.address, value_wei=FUNDING_WEI, nonce=self._next_nonce(nonces, sender)
                    )
                else:
                    sender = self._grantor(session, task.role or "")
                    tx_hash = self._client.grant_role(
                        sender=sender,
                        role_name=task.role or "",
                        address=actor.address,
                        nonce=self._next_nonce(nonces, sender),
                    )
            except ContractReverted as refused:
                nonces.pop(sender.address, None)
                sent.append(_Sent(row_id=task.id or 0, kind="task", tx_hash=None, refused=refused))
                continue
            task.tx_hash = tx_hash
            session.add(task)
            sent.append(_Sent(row_id=task.id or 0, kind="task", tx_hash=tx_hash))
        session.commit()
        return sent

    def _grantor(self, session: Session, role: str) -> LocalAccount:
        """Who grants ``role`` on chain: the customs admin for ``customs``, the platform admin otherwise."""
        granting_role = "customs_admin" if role == "customs" else "admin"
        actor = session.exec(select(Actor).where(Actor.role == granting_role).order_by(col(Actor.id))).first()
        if actor is None or actor.encrypted_key is None:
            raise ContractReverted("NoGrantor", {"role": role})
        return self._open_key(actor.encrypted_key)

    def _send_events(self, session: Session, blocked_actors: set[int]) -> list[_Sent]:
        pending = session.exec(
            select(Event).where(Event.status == "pending").order_by(col(Event.lot_pk), col(Event.seq))
        ).all()
        sent: list[_Sent] = []
        nonces: dict[str, int] = {}
        round_sender: dict[int, int | None] = {}  # lot -> actor of this round's first event (None: lot closed)
        for event in pending:
            if event.lot_pk in round_sender and round_sender[event.lot_pk] != event.actor_id:
                round_sender[event.lot_pk] = None  # a different sender: the rest of this lot waits
                continue
            if event.lot_pk in round_sender and round_sender[event.lot_pk] is None:
                continue
            if event.actor_id in blocked_actors:
                round_sender[event.lot_pk] = None
                continue
            actor = session.get(Actor, event.actor_id)
            assert actor is not None
            if actor.encrypted_key is None:
                # A self-custody actor's event arrives signed; this version relays only custodial ones.
                round_sender[event.lot_pk] = None
                continue
            round_sender[event.lot_pk] = event.actor_id
            sender = self._open_key(actor.encrypted_key)
            try:
                tx_hash = self._client.send_call(
                    sender=sender,
                    function=event.chain_function,
                    args=_decode_args(event.chain_args),
                    nonce=self._next_nonce(nonces, sender),
                )
            except ContractReverted as refused:
                nonces.pop(sender.address, None)  # nothing was queued: re-read the nonce
                round_sender[event.lot_pk] = None  # later events of the lot wait for the verdict
                sent.append(_Sent(row_id=event.id or 0, kind="event", tx_hash=None, refused=refused))
                continue
            event.tx_hash = tx_hash
            session.add(event)
            sent.append(_Sent(row_id=event.id or 0, kind="event", tx_hash=tx_hash))
        session.commit()
        return sent

    def _next_nonce(self, nonces: dict[str, int], sender: LocalAccount) -> int:
        if sender.address not in nonces:
            nonces[sender.address] = self._client.pending_nonce(sender.address)
        nonce = nonces[sender.address]
        nonces[sender.address] = nonce + 1
        return nonce

    # -- outcomes ------------------------------------------------------------------------------------------

    def _settle(self, item: _Sent) -> None:
        receipt: Receipt | None = None
        outcome = item.refused
        if item.tx_hash is not None:
            try:
                receipt = self._client.wait_receipt(item.tx_hash, timeout=RECEIPT_TIMEOUT_SECONDS)
            except ContractReverted as exc:
                outcome = exc
            except ReceiptTimeout:
                log.warning("no receipt for %s yet; it will be re-sent", item.tx_hash)
                return
        if receipt is not None:
            self._wait_confirmations(receipt.block_number)
        with Session(self._engine) as session:
            if item.kind == "task":
                self._settle_task(session, item, outcome)
            else:
                self._settle_event(session, item, receipt, outcome)
            session.commit()

    def _wait_confirmations(self, block_number: int) -> None:
        while self._client.latest_block() - block_number + 1 < self._confirmations:
            if self._stop.is_set():
                return
            time.sleep(0.2)

    @staticmethod
    def _settle_task(session: Session, item: _Sent, outcome: ContractReverted | None) -> None:
        task = session.get(ChainTask, item.row_id)
        assert task is not None
        task.status = "rejected" if outcome else "done"
        task.reason = str(outcome) if outcome else None
        session.add(task)

    def _settle_event(
        self, session: Session, item: _Sent, receipt: Receipt | None, outcome: ContractReverted | None
    ) -> None:
        event = session.get(Event, item.row_id)
        assert event is not None
        if receipt is not None:
            match = next((r for r in receipt.events if r.seq == event.seq), None)
            if match is not None:
                _anchor(event, match)
        elif outcome is not None and self._already_recorded(session, event, outcome):
            pass  # _already_recorded anchored it
        else:
            event.status = "rejected"
            event.reason = str(outcome)
            log.warning("event %s (lot %s seq %s) rejected: %s", event.event_hash, event.lot_pk, event.seq, outcome)
        session.add(event)

    def _already_recorded(self, session: Session, event: Event, outcome: ContractReverted) -> bool:
        """A re-send the chain refused because it holds this very event already counts as anchored."""
        if outcome.name not in ("TraceRegistrySequenceMismatch", "TraceRegistryLotExists"):
            return False
        lot = session.get(Lot, event.lot_pk)
        assert lot is not None
        for recorded in self._client.lot_events(lot.lot_id):
            if recorded.seq == event.seq and recorded.event_hash == event_hash_bytes(event.event_hash):
                _anchor(event, recorded)
                return True
        return False


def _anchor(event: Event, recorded: RecordedEvent) -> None:
    event.status = "anchored"
    event.reason = None
    event.tx_hash = recorded.tx_hash
    event.block_number = recorded.block_number
    event.block_hash = "0x" + bytes(recorded.block_hash).hex()
    event.log_index = recorded.log_index


def _decode_args(raw: str) -> list[Any]:
    return list(json.loads(raw))
