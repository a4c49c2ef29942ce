"""The outbox writer: sends what the database accepted to the chain, in order, and records the anchors.

Accepted events and administrative tasks (role grants, account funding) are committed as ``pending``
rows in the same database transaction that accepts the request. This writer, a thread of the service,
picks them up, sends them signed by their actor's own key, and marks them ``anchored`` once their
block is ``confirmations`` deep, or ``rejected`` with the registry's reason. Re-sending is always safe:
the registry refuses a sequence number twice, and a refused re-send whose hash is already on chain
counts as anchored.

Per lot, events go in sequence order: consecutive events of one sender share a round (their nonces keep
the order), and an event of another sender waits for the round after.

Submission (docs/operations.md, "How the writer submits"): a round's transactions are signed locally and sent in
one JSON-RPC batch, nonces counted from one batched read of the senders' pending counts; the receipts are awaited
together, and a transaction the node lost or queued behind a nonce gap is noticed within seconds and its rows sent
again next round. A send the node refuses leaves its rows pending without holding up the rest of the round.

Relaying: signed batches and parcel registrations go from relayer keys, one nonce lane each (``relayer_lanes``:
the deployer key, and keys derived from it when ``TRACER_WRITER_LANES`` asks for more). A lot always goes in its
own lane (its database id modulo the lanes), its registration before its batch. Lanes are funded by the deployer
when their balance runs low (checked each round, so a node restored from an older state funds them again); a lane
without funds yet leaves its lots to the deployer's lane for that round, never to another lane.

Consecutive split events of a lot go as one ``SplitBatch`` op (up to ``MAX_SPLIT_BATCH`` parcels): the chain
keeps the root of their parcels' leaves, not a record per parcel. Before a parcel's first own step (a document,
its release, its delivery, an observation of it) the relayer key registers the parcel with its Merkle proof
(``registerParcel``), in the same nonce lane as the batch that needs it, so it lands first.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from tracer.chain import typed_data
from tracer.chain.client import (
    ChainClient,
    Receipt,
    ReceiptTimeout,
    ReceiptWait,
    RecordedEvent,
    SignedTx,
    TransactionRejected,
    TxRequest,
    role_id,
)
from tracer.chain.splits import SPLIT_FUNCTION, batch_parcels, split_tree
from tracer.chain.worker import Worker
from tracer.epcis import event_hash_bytes
from tracer.exceptions import ContractReverted
from tracer.store.models import Actor, ChainTask, Event, Lot, Parcel

log = logging.getLogger(__name__)

# Enough ether for tens of thousands of journey steps on a development chain.
FUNDING_WEI = 10 * 10**18
#: A relayer lane below this balance is topped up with FUNDING_WEI (a full 25M-gas batch at 40 gwei is 1 ether).
LANE_MIN_BALANCE_WEI = 2 * 10**18
RECEIPT_TIMEOUT_SECONDS = 60.0
#: Sends of a round's transactions: the first, then re-sends of those the node refused for their nonce (used
#: already: read again; held by an older transaction of ours in its pool: replaced at ``FEE_BUMP`` times the fees).
SEND_ATTEMPTS = 3
FEE_BUMP = 1.25
#: Events per signed batch, and the gas a batch may use (fixed from measured costs: no estimate per batch).
MAX_OPS_PER_BATCH = 300
BATCH_BASE_GAS = 60_000
#: Per lot of a batch, on top of its ops: the lot's record read and written cold. Measured on anvil
#: (tests/chain/test_batch_gas.py): one observation each on seven lots only declared so far took ~37,000 gas per lot,
#: which the op's 25,000 alone did not cover (such batches ran out of gas and their events went one by one).
BATCH_LOT_GAS = 25_000
MAX_BATCH_GAS = 25_000_000
BATCH_DEADLINE_SECONDS = 3_600
BATCH_OP_GAS = {
    typed_data.Action.DECLARE: 110_000,
    typed_data.Action.ENTRY: 40_000,
    typed_data.Action.INSPECTION: 30_000,
    typed_data.Action.STORAGE: 30_000,
    typed_data.Action.SPLIT: 60_000,
    typed_data.Action.DOCUMENT: 60_000,
    typed_data.Action.RELEASE: 60_000,
    typed_data.Action.DELIVERY: 30_000,
    typed_data.Action.RECALL: 30_000,
    typed_data.Action.OBSERVE: 25_000,
}
#: Parcels per SplitBatch op, and its gas: a root slot and a log (~50,000), then ~1,300-1,900 per parcel.
MAX_SPLIT_BATCH = 256
SPLIT_BATCH_GAS = 60_000
SPLIT_BATCH_PARCEL_GAS = 3_000
#: Registry functions whose parcel (first argument) must have its record on chain.
_PARCEL_STEPS = ("attachDocument", "releaseParcel", "recordDelivery")
_ZERO32 = "0x" + "00" * 32


@dataclass
class _Sent:
    """A transaction in flight and the row it anchors."""

    row_id: int
    kind: str  # "event" | "task" | "batch" | "register"
    tx_hash: str | None = None
    refused: ContractReverted | None = None  # the node refused it when it was sent
    batch: list[int] = field(default_factory=list)  # a batch's event rows
    parcel: str | None = None  # the parcel a registration is for
    lane: str | None = None  # the relayer a lane funding is for
    request: TxRequest | None = None  # the transaction to send (None when refused before sending)


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
        relayers: Sequence[LocalAccount] = (),
        confirmations: int = 1,
        idle_seconds: float = 0.2,
    ) -> None:
        super().__init__(idle_seconds=idle_seconds)
        self._engine = engine
        self._client = client
        self._open_key = open_key
        self._deployer = deployer
        #: The nonce lanes: relayer keys, the first of them the deployer (see ``relayer_lanes``).
        self._relayers = list(relayers) or [deployer]
        self._funded: list[LocalAccount] = [self._relayers[0]]  # this round's lanes with funds
        self._confirmations = max(1, confirmations)
        # Events of a batch the registry refused go alone next time, so each gets its own verdict.
        self._solo: set[int] = set()
        # Per lot, the last head computed (sequence number, head before it): accepted events' hashes never change,
        # so the next round folds only the events since, not the lot's whole history each time.
        self._heads: dict[int, tuple[int, bytes]] = {}

    # -- one round -----------------------------------------------------------------------------------------

    def run_once(self) -> int:
        """Sends every row that may go now, waits for their receipts, records the outcome; returns the count."""
        # Sessions commit before every call to the node (expire_on_commit=False keeps what they read): a node
        # that is slow or away must never hold the database's write lock (SQLite has one for everybody).
        prepared = self._fund_lanes()
        with Session(self._engine, expire_on_commit=False) as session:
            prepared += self._send_tasks(session)
            # A revocation waits for the actor's accepted events instead of blocking them (see _send_tasks).
            blocked_actors = {task.actor_id for task in self._pending_tasks(session) if task.kind != "revoke"}
            prepared += self._send_events(session, blocked_actors)
        if not prepared:
            return 0
        self._submit(prepared)
        self._record_hashes(prepared)
        self._settle_all([item for item in prepared if item.tx_hash is not None or item.refused is not None])
        return len(prepared)

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
        """The round's role grants and revocations (signed by the role's admin) and fundings (by the deployer)."""
        sent: list[_Sent] = []
        for task in self._pending_tasks(session):
            actor = session.get(Actor, task.actor_id)
            assert actor is not None
            if task.kind == "revoke" and self._has_pending_events(session, task.actor_id):
                continue  # events accepted before the revocation are anchored first, with the role they had
            sender = self._deployer
            try:
                if task.kind in ("grant", "revoke"):
                    sender = self._grantor(session, task.role or "")
                session.commit()
                if task.kind == "fund":
                    request = self._client.transfer_request(sender=sender, to=actor.address, value_wei=FUNDING_WEI)
                else:
                    request = self._client.call_request(
                        sender=sender,
                        function="revokeRole" if task.kind == "revoke" else "grantRole",
                        args=[role_id(task.role or ""), to_checksum_address(actor.address)],
                    )
            except ContractReverted as refused:
                sent.append(_Sent(row_id=task.id or 0, kind="task", refused=refused))
                continue
            sent.append(_Sent(row_id=task.id or 0, kind="task", request=request))
        session.commit()
        return sent

    @staticmethod
    def _has_pending_events(session: Session, actor_id: int) -> bool:
        return (
            session.exec(select(Event.id).where(Event.actor_id == actor_id, Event.status == "pending")).first()
            is not None
        )

    def _grantor(self, session: Session, role: str) -> LocalAccount:
        """Who grants ``role`` on chain: the customs admin for ``customs``, the platform admin otherwise."""
        granting_role = "customs_admin" if role == "customs" else "admin"
        actor = session.exec(select(Actor).where(Actor.role == granting_role).order_by(col(Actor.id))).first()
        if actor is None or actor.encrypted_key is None:
            raise ContractReverted("NoGrantor", {"role": role})
        return self._open_key(actor.encrypted_key)

    def _send_events(self, session: Session, blocked_actors: set[int]) -> list[_Sent]:
        runs = self._next_runs(session, blocked_actors)
        sent = self._register_parcels(session, runs)
        registering = {item.parcel for item in sent}
        by_actor: dict[tuple[int, str], list[list[Event]]] = {}  # (actor, relayer address) -> runs
        for run in runs:
            if any(event.id in self._solo for event in run):
                if _parcel_named(run[0]) in registering:
                    continue  # its own key is another nonce lane: it goes once the registration is mined
                sent.append(self._send_alone(session, run[0]))  # one at a time until the culprit is found
            else:
                by_actor.setdefault((run[0].actor_id, self._lane(run[0].lot_pk).address), []).append(run)
        relayers: dict[str, LocalAccount] = {relayer.address: relayer for relayer in self._relayers}
        for (actor_id, lane), actor_runs in by_actor.items():
            actor = session.get(Actor, actor_id)
            assert actor is not None and actor.encrypted_key is not None
            signer = self._open_key(actor.encrypted_key)
            for chunk in _chunks(actor_runs, MAX_OPS_PER_BATCH):
                sent.append(self._send_batch(session, signer, chunk, relayers[lane]))
        session.commit()
        return sent

    def _next_runs(self, session: Session, blocked_actors: set[int]) -> list[list[Event]]:
        """Per lot, the pending events from its lowest pending sequence number on, while one actor wrote them.

        Events of a lot by another actor wait for the next round: the chain must see them after these.
        """
        pending = session.exec(
            select(Event).where(Event.status == "pending").order_by(col(Event.lot_pk), col(Event.seq))
        ).all()
        runs: dict[int, list[Event]] = {}
        closed: set[int] = set()
        split_in_run: set[str] = set()  # parcels a run splits: their own steps wait for their registration
        for event in pending:
            if event.lot_pk in closed:
                continue
            run = runs.get(event.lot_pk)
            if run is not None and (
                run[-1].actor_id != event.actor_id
                or run[-1].seq + 1 != event.seq
                or _parcel_named(event) in split_in_run
            ):
                closed.add(event.lot_pk)
                continue
            if event.chain_function == SPLIT_FUNCTION:
                split_in_run.add(_decode_args(event.chain_args)[2])
            if run is None:
                actor = session.get(Actor, event.actor_id)
                assert actor is not None
                # A self-custody actor's events arrive signed; only custodial ones are signed here.
                if event.actor_id in blocked_actors or actor.encrypted_key is None:
                    closed.add(event.lot_pk)
                    continue
                run = runs[event.lot_pk] = []
            run.append(event)
        return list(runs.values())

    def _send_batch(
        self, session: Session, signer: LocalAccount, runs: list[list[Event]], relayer: LocalAccount
    ) -> _Sent:
        """One ``recordSigned`` transaction: ``signer``'s runs on many lots, relayed by the lots' lane ``relayer``.

        Each run carries the lot's head before it, so a re-send of what the chain holds is skipped there.
        """
        groups = []
        prior_heads = []
        for run in runs:
            lot = session.get(Lot, run[0].lot_pk)
            assert lot is not None
            ops = _run_ops(session, run)
            groups.append(typed_data.LotOps(lot_id=bytes.fromhex(lot.lot_id[2:]), seq=run[0].seq, ops=ops))
            prior_heads.append(self._head_before(session, lot, run[0].seq))
        batch, signature = typed_data.sign_batch(
            signer,
            chain_id=self._client.chain_id,
            registry=self._client.address,
            deadline=int(time.time()) + BATCH_DEADLINE_SECONDS,
            lots=groups,
        )
        rows = [event.id or 0 for run in runs for event in run]
        request = self._client.call_request(
            sender=relayer,
            function="recordSigned",
            args=[batch, signature, prior_heads, typed_data.split_hashes(groups)],
            gas=batch_gas(groups),
        )
        return _Sent(row_id=0, kind="batch", batch=rows, request=request)

    def _register_parcels(self, session: Session, runs: list[list[Event]]) -> list[_Sent]:
        """Sends ``registerParcel`` (relayer key) for each parcel a run's event needs the record of and the chain
        lacks; the batches sent after it in the same lane land after it."""
        # The chain is asked each time, not a memory of earlier rounds: a reorg or a restored node may drop a
        # registration, and one lookup per parcel step is cheap next to the step.
        wanted: dict[str, int] = {}
        for run in runs:
            for event in run:
                parcel_id = _parcel_named(event)
                if parcel_id is not None:
                    wanted.setdefault(parcel_id, event.lot_pk)
        sent: list[_Sent] = []
        for parcel_id, lot_pk in wanted.items():
            args = self._registration(session, parcel_id, lot_pk)
            if args is None:
                continue
            relayer = self._lane(lot_pk)  # the lane of the lot's batch, which is sent after it
            request = self._client.call_request(sender=relayer, function="registerParcel", args=args)
            sent.append(_Sent(row_id=0, kind="register", parcel=parcel_id, request=request))
        return sent

    def _registration(self, session: Session, parcel_id: str, lot_pk: int) -> list[Any] | None:
        """The ``registerParcel`` arguments of a parcel split in a batch, with its proof rebuilt from the database
        parcels of the batch's index range (read from the split's log); None when the chain has the record
        already, or the split is not anchored (its own event then gets the chain's verdict)."""
        parcel = session.exec(select(Parcel).where(Parcel.parcel_id == parcel_id)).first()
        lot = session.get(Lot, lot_pk)
        split = (
            session.exec(
                select(Event).where(
                    Event.parcel_pk == parcel.id, Event.chain_function == SPLIT_FUNCTION, Event.status == "anchored"
                )
            ).first()
            if parcel is not None
            else None
        )
        session.commit()  # no transaction open while the node answers
        if parcel is None or lot is None:
            return None
        if int(self._client.get_parcel(parcel_id)["state"]) != 0:
            return None
        if split is None or split.block_number is None:
            return None
        logged = self._client.lot_events(lot.lot_id, from_block=split.block_number, to_block=split.block_number)
        recorded = next((r for r in logged if r.seq == split.seq), None)
        if recorded is None or recorded.split_range is None:
            return None
        first_index, count = recorded.split_range
        parcels = batch_parcels(session, lot_pk, first_index, count)
        session.commit()
        tree = split_tree(parcels) if len(parcels) == count else None
        if tree is None or tree.root != recorded.subject:
            log.warning("the database's parcels do not rebuild the split root of parcel %s: not registered", parcel_id)
            return None
        position = next(i for i, p in enumerate(parcels) if p.id == parcel.id)
        return [lot.lot_id, first_index, count, parcel_id, parcel.index, parcel.quantity, tree.proof(position)]

    def _head_before(self, session: Session, lot: Lot, seq: int) -> bytes:
        """The lot's hash-chain head before event ``seq``: keccak folded over the stored hashes of 0..seq-1 (from the
        last head computed for the lot when it is not past ``seq``)."""
        assert lot.id is not None
        known, head = self._heads.get(lot.id, (0, bytes(32)))
        if known > seq:
            known, head = 0, bytes(32)
        for event_hash in session.exec(
            select(Event.event_hash)
            .where(Event.lot_pk == lot.id, col(Event.seq) >= known, col(Event.seq) < seq)
            .order_by(col(Event.seq))
        ):
            head = keccak(head + event_hash_bytes(event_hash))
        self._heads[lot.id] = (seq, head)
        return head

    def _lane(self, lot_pk: int) -> LocalAccount:
        """The relayer of a lot: its own lane (id modulo the lanes) when funded this round, else the deployer's.

        Never another funded lane: a lot whose transaction is still in one lane's pool must not go out again
        from a second lane, where both could be mined.
        """
        relayer = self._relayers[lot_pk % len(self._relayers)]
        return relayer if relayer in self._funded else self._relayers[0]

    def _fund_lanes(self) -> list[_Sent]:
        """Finds the lanes with funds for this round, and tops up the others from the deployer (for the next)."""
        if len(self._relayers) == 1:
            return []
        extra = self._relayers[1:]
        balances = self._client.balances([relayer.address for relayer in extra])
        low = [relayer for relayer in extra if balances[relayer.address] < LANE_MIN_BALANCE_WEI]
        self._funded = [self._relayers[0]] + [relayer for relayer in extra if relayer not in low]
        if low:
            log.warning("funding %d relayer lane(s) from the deployer: %s", len(low), [r.address for r in low])
        return [
            _Sent(
                row_id=0,
                kind="lane",
                lane=relayer.address,
                request=self._client.transfer_request(sender=self._deployer, to=relayer.address, value_wei=FUNDING_WEI),
            )
            for relayer in low
        ]

    def _send_alone(self, session: Session, event: Event) -> _Sent:
        """The event by itself, sent from its actor's own key through the registry's direct function."""
        actor = session.get(Actor, event.actor_id)
        assert actor is not None and actor.encrypted_key is not None
        sender = self._open_key(actor.encrypted_key)
        session.commit()
        try:  # a function without a fixed gas limit is estimated, and the estimate runs it
            request = self._client.call_request(
                sender=sender, function=event.chain_function, args=_decode_args(event.chain_args)
            )
        except ContractReverted as refused:
            return _Sent(row_id=event.id or 0, kind="event", refused=refused)
        return _Sent(row_id=event.id or 0, kind="event", request=request)

    # -- sending -------------------------------------------------------------------------------------------

    def _submit(self, items: list[_Sent]) -> None:
        """Signs the round's transactions and sends them in one JSON-RPC batch, setting each item's ``tx_hash`` or
        ``refused``; an item the node refuses otherwise stays unsent (its rows stay pending for the next round)
        without holding up the others.

        Nonces: one batched read of each sender's pending count per round, then counted up in the items' order,
        so a sender's transactions (a registration before the batch that needs it) are mined in that order. The
        count is read again for a re-send of an item whose nonce was used already; an item whose nonce an older
        transaction of ours holds in the node's pool (a re-send after a drop) replaces it with higher fees.
        """
        todo = [item for item in items if item.request is not None]
        keep: dict[int, int] = {}  # id(item) -> the nonce it must replace in the pool
        bump: dict[int, float] = {}
        used: dict[str, int] = {}  # per sender, the highest nonce the node took this round
        for attempt in range(SEND_ATTEMPTS):
            if not todo:
                return
            signed = self._sign_all(todo, keep, bump, used)
            results = self._client.send_raw(signed)
            retry: list[_Sent] = []
            failed_senders: set[str] = set()
            for item, tx, result in zip(todo, signed, results, strict=True):
                key = id(item)
                if isinstance(result, str):
                    item.tx_hash = result
                    used[tx.sender] = max(used.get(tx.sender, -1), tx.nonce)
                elif isinstance(result, ContractReverted):
                    item.refused = result
                    failed_senders.add(tx.sender)
                elif result.replacement_underpriced:
                    keep[key], bump[key] = tx.nonce, bump.get(key, 1.0) * FEE_BUMP
                    retry.append(item)
                elif result.nonce_too_low or tx.sender in failed_senders:
                    # Used already, or a gap left by an earlier item of the sender that the node refused.
                    keep.pop(key, None)
                    retry.append(item)
                else:
                    self._not_sent(item, result)
                    failed_senders.add(tx.sender)
            if retry:
                log.warning(
                    "re-sending %d of %d transactions the node refused for their nonce (attempt %d)",
                    len(retry),
                    len(todo),
                    attempt + 2,
                )
            todo = retry
        for item in todo:
            self._not_sent(item, TransactionRejected(f"nonce still refused after {SEND_ATTEMPTS} attempts"))

    def _sign_all(
        self, items: list[_Sent], keep: dict[int, int], bump: dict[int, float], used: dict[str, int]
    ) -> list[SignedTx]:
        requests = [item.request for item in items if item.request is not None]
        counts = self._client.pending_nonces([request.sender.address for request in requests])
        kept: dict[str, set[int]] = {}
        for item in items:
            if id(item) in keep and item.request is not None:
                kept.setdefault(item.request.sender.address, set()).add(keep[id(item)])
        next_nonce = {sender: max(count, used.get(sender, -1) + 1) for sender, count in counts.items()}
        signed = []
        for item, request in zip(items, requests, strict=True):
            sender = request.sender.address
            nonce = keep.get(id(item))
            if nonce is None:
                nonce = next_nonce[sender]
                while nonce in kept.get(sender, ()):
                    nonce += 1
                next_nonce[sender] = nonce + 1
            signed.append(self._client.sign(request, nonce=nonce, fee_bump=bump.get(id(item), 1.0)))
        return signed

    @staticmethod
    def _not_sent(item: _Sent, reason: TransactionRejected) -> None:
        what = f"parcel {item.parcel}'s registration" if item.kind == "register" else f"{item.kind} {item.row_id}"
        if item.kind == "lane":
            what = f"the funding of relayer lane {item.lane}"
        if item.kind == "batch":
            what = f"a batch of {len(item.batch)} events"
        log.warning("the node refused %s (%s); it goes again next round", what, reason)

    def _record_hashes(self, items: list[_Sent]) -> None:
        """Keeps each sent transaction's hash on its rows (shown while they are pending): one UPDATE per transaction."""
        with Session(self._engine) as session:
            for item in items:
                if item.tx_hash is None:
                    continue
                if item.kind == "task":
                    session.exec(update(ChainTask).where(col(ChainTask.id) == item.row_id).values(tx_hash=item.tx_hash))
                elif item.kind in ("batch", "event"):
                    rows = item.batch or [item.row_id]
                    session.exec(
                        update(Event)
                        .where(col(Event.id).in_(rows), col(Event.status) == "pending")
                        .values(tx_hash=item.tx_hash)
                    )
            session.commit()

    # -- outcomes ------------------------------------------------------------------------------------------

    def _settle_all(self, items: list[_Sent]) -> None:
        """Waits for the round's receipts together (dropped transactions noticed within seconds) and records each
        outcome; a transaction without a receipt leaves its rows pending, to be sent again next round."""
        hashes = [item.tx_hash for item in items if item.tx_hash is not None]
        wait = (
            self._client.wait_receipts(hashes, timeout=RECEIPT_TIMEOUT_SECONDS, stop=self._stop)
            if hashes
            else ReceiptWait()
        )
        if wait.chain_changed:
            log.warning("the node's chain went back or it was away while the writer waited: a restart or a reorg")
        mined = [outcome.block_number for outcome in wait.outcomes.values() if isinstance(outcome, Receipt)]
        if mined:
            self._wait_confirmations(max(mined))
        for item in items:
            outcome = wait.outcomes.get(item.tx_hash) if item.tx_hash is not None else item.refused
            self._settle(item, outcome)

    def _settle(self, item: _Sent, outcome: Receipt | ContractReverted | ReceiptTimeout | None) -> None:
        if isinstance(outcome, ReceiptTimeout):
            what = f"the registration of parcel {item.parcel}" if item.kind == "register" else item.tx_hash
            log.warning("no receipt for %s (%s); it will be re-sent", what, outcome)
            return
        if item.kind == "lane":
            if isinstance(outcome, ContractReverted):
                log.warning("funding relayer lane %s failed: %s", item.lane, outcome)
            return
        if item.kind == "register":
            if isinstance(outcome, ContractReverted):
                # Another relayer may have registered it first; the next round reads the chain again.
                log.warning("registering parcel %s failed: %s", item.parcel, outcome)
            return
        receipt = outcome if isinstance(outcome, Receipt) else None
        refused = outcome if isinstance(outcome, ContractReverted) else None
        with Session(self._engine, expire_on_commit=False) as session:
            if item.kind == "task":
                self._settle_task(session, item, refused)
            elif item.kind == "batch":
                self._settle_batch(session, item, receipt, refused)
            else:
                self._settle_event(session, item, receipt, refused)
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
        self._solo.discard(item.row_id)
        if receipt is not None:
            match = next((r for r in receipt.events if r.seq == event.seq), None)
            if match is not None:
                _anchor(event, match)
        elif outcome is not None and self._already_recorded(session, event, outcome):
            pass  # _already_recorded anchored it
        elif outcome is not None and _chain_lacks_predecessors(outcome):
            # The chain expects an earlier sequence number: events the database counted as anchored were lost
            # (a node restored from an older state). They go out again first; this one waits, it is not refused.
            _put_back_lost(session, event.lot_pk, int(outcome.args_["expected"]))
        else:
            event.status = "rejected"
            event.reason = str(outcome)
            log.warning("event %s (lot %s seq %s) rejected: %s", event.event_hash, event.lot_pk, event.seq, outcome)
        session.add(event)

    def _settle_batch(
        self, session: Session, item: _Sent, receipt: Receipt | None, outcome: ContractReverted | None
    ) -> None:
        if receipt is None:
            held, lost = self._compare_with_the_chain(session, item.batch)
            if held or lost:
                # A re-send that overlaps what the chain holds (after a crash or a restored node), or a batch whose
                # lots lost earlier events on chain (a node restored from an older state): the chain explains the
                # refusal; the rest goes again in a batch (after the lost events), not one by one.
                log.warning(
                    "a batch of %d events was refused (%s); %d were on chain already, %d earlier ones lost on chain",
                    len(item.batch),
                    outcome,
                    held,
                    lost,
                )
                return
            log.warning("a batch of %d events was refused (%s); sending them one by one", len(item.batch), outcome)
            self._solo.update(item.batch)
            return
        logged = {("0x" + r.lot_id.hex(), r.seq): r for r in receipt.events}
        # The rows the receipt logged are anchored by one executemany UPDATE by primary key (the batch's rows are
        # read as plain tuples, not ORM objects): the ORM object per row was most of a bulk round's settling.
        places = session.exec(
            select(Event.id, Event.seq, Lot.lot_id)
            .join(Lot, col(Lot.id) == col(Event.lot_pk))
            .where(col(Event.id).in_(item.batch))
        ).all()
        anchors: list[dict[str, Any]] = []
        unmatched: list[int] = []
        for row, seq, lot_id in places:
            assert row is not None  # a stored row's primary key
            match = logged.get((lot_id, seq))
            if match is None:
                unmatched.append(row)
                continue
            anchors.append({"id": row, **_anchor_values(match)})
            self._solo.discard(row)
        if anchors:
            session.execute(update(Event), anchors)
        for row in unmatched:
            event = session.get(Event, row)
            lot = session.get(Lot, event.lot_pk) if event is not None else None
            assert event is not None and lot is not None
            if self._find_on_chain(session, event, lot):
                self._solo.discard(row)
            else:
                self._solo.add(row)  # neither written nor already there: find out why, alone
            session.add(event)

    def _compare_with_the_chain(self, session: Session, rows: list[int]) -> tuple[int, int]:
        """Anchors the events of ``rows`` the chain logged already (below their lot's on-chain ``nextSeq``), and puts
        back into the outbox the anchored events their lots lost on chain (``nextSeq`` below the rows' first);
        returns how many of each."""
        by_lot: dict[int, list[Event]] = {}
        for row in rows:
            event = session.get(Event, row)
            assert event is not None
            by_lot.setdefault(event.lot_pk, []).append(event)
        lots = {lot_pk: session.get(Lot, lot_pk) for lot_pk in by_lot}
        session.commit()
        held = lost = 0
        for lot_pk, events in by_lot.items():
            lot = lots[lot_pk]
            assert lot is not None
            next_seq = int(self._client.get_lot(lot.lot_id)["nextSeq"])
            if next_seq < min(event.seq for event in events):
                lost += _put_back_lost(session, lot_pk, next_seq)
                session.commit()  # no transaction open while the node answers for the next lot
                continue
            if not any(event.seq < next_seq for event in events):
                continue
            logged = {r.seq: r for r in self._client.lot_events(lot.lot_id)}
            for event in events:
                recorded = logged.get(event.seq)
                if recorded is not None and recorded.event_hash == event_hash_bytes(event.event_hash):
                    _anchor(event, recorded)
                    session.add(event)
                    held += 1
        return held, lost

    def _already_recorded(self, session: Session, event: Event, outcome: ContractReverted) -> bool:
        """A re-send the chain refused because it holds this very event already counts as anchored."""
        if outcome.name not in ("TraceRegistrySequenceMismatch", "TraceRegistryLotExists"):
            return False
        lot = session.get(Lot, event.lot_pk)
        assert lot is not None
        return self._find_on_chain(session, event, lot)

    def _find_on_chain(self, session: Session, event: Event, lot: Lot) -> bool:
        """Anchors ``event`` if the registry logged this very event at its place in the lot's chain."""
        session.commit()  # no transaction open while the node answers
        for recorded in self._client.lot_events(lot.lot_id):
            if recorded.seq == event.seq and recorded.event_hash == event_hash_bytes(event.event_hash):
                _anchor(event, recorded)
                return True
        return False


def relayer_lanes(deployer: LocalAccount, lanes: int) -> list[LocalAccount]:
    """The writer's ``lanes`` relayer keys: the deployer's, then keys derived from it (keccak of the deployer key and
    the lane's number), so a restart relays from the same accounts without a key file of their own."""
    derived = [
        Account.from_key(keccak(bytes(deployer.key) + b"tracer relayer lane" + lane.to_bytes(4, "big")))
        for lane in range(1, lanes)
    ]
    return [deployer, *derived]


def _put_back_lost(session: Session, lot_pk: int, from_seq: int) -> int:
    """Puts the lot's events from ``from_seq`` on that the database counts as anchored back into the outbox: the
    chain expects ``from_seq`` next, so it lost them (a node restored from an older state). Returns how many."""
    lost = session.exec(
        select(Event).where(Event.lot_pk == lot_pk, col(Event.seq) >= from_seq, Event.status == "anchored")
    ).all()
    for event in lost:
        event.status, event.indexed = "pending", False
        event.tx_hash = event.block_hash = None
        event.block_number = event.log_index = None
        session.add(event)
    if lost:
        log.warning("lot %s lost its events from seq %d on chain; re-sending them", lot_pk, from_seq)
    return len(lost)


def _anchor(event: Event, recorded: RecordedEvent) -> None:
    for name, value in _anchor_values(recorded).items():
        setattr(event, name, value)


def _anchor_values(recorded: RecordedEvent) -> dict[str, Any]:
    """The columns of an event anchored where ``recorded`` sits on chain."""
    return {
        "status": "anchored",
        "reason": None,
        "tx_hash": recorded.tx_hash,
        "block_number": recorded.block_number,
        "block_hash": "0x" + bytes(recorded.block_hash).hex(),
        "log_index": recorded.log_index,
    }


def _decode_args(raw: str) -> list[Any]:
    return list(json.loads(raw))


def _chunks(runs: list[list[Event]], limit: int) -> list[list[list[Event]]]:
    """Runs packed into batches of at most ``limit`` events (a longer run is cut into consecutive parts)."""
    batches: list[list[list[Event]]] = [[]]
    size = 0
    for run in runs:
        for start in range(0, len(run), limit):
            part = run[start : start + limit]
            if size + len(part) > limit and batches[-1]:
                batches.append([])
                size = 0
            batches[-1].append(part)
            size += len(part)
    return [batch for batch in batches if batch]


# The registry's direct functions and the signed batch's actions: the same step, the same arguments.
_ACTIONS = {
    "declareLot": typed_data.Action.DECLARE,
    "recordEntry": typed_data.Action.ENTRY,
    "recordInspection": typed_data.Action.INSPECTION,
    "recordStorage": typed_data.Action.STORAGE,
    "splitParcel": typed_data.Action.SPLIT,
    "attachDocument": typed_data.Action.DOCUMENT,
    "releaseParcel": typed_data.Action.RELEASE,
    "recordDelivery": typed_data.Action.DELIVERY,
    "recall": typed_data.Action.RECALL,
    "recordObservation": typed_data.Action.OBSERVE,
}


def _parcel_named(event: Event) -> str | None:
    """The parcel (0x id) whose on-chain record the event's step needs, if any."""
    if event.chain_function in _PARCEL_STEPS:
        return str(_decode_args(event.chain_args)[0])
    if event.chain_function == "recordObservation":  # (lotId, seq, subject, hash): a parcel, or the lot itself
        lot_id, _seq, subject, _hash = _decode_args(event.chain_args)
        return None if subject in (_ZERO32, lot_id) else str(subject)
    return None


def _run_ops(session: Session, run: list[Event]) -> list[typed_data.SignedOp]:
    """The batch ops of a run: one per event, except consecutive splits, which go as SplitBatch ops."""
    ops: list[typed_data.SignedOp] = []
    splits: list[Event] = []
    for event in [*run, None]:
        if event is not None and event.chain_function == SPLIT_FUNCTION and len(splits) < MAX_SPLIT_BATCH:
            splits.append(event)
            continue
        if splits:
            ops.append(_split_batch_op(session, splits))
            splits = []
        if event is not None and event.chain_function == SPLIT_FUNCTION:
            splits.append(event)  # a full batch was just closed: this split opens the next one
        elif event is not None:
            ops.append(_signed_op(event))
    return ops


def _split_batch_op(session: Session, events: list[Event]) -> typed_data.SignedOp:
    """The SplitBatch op of consecutive split events: their parcels' root, total quantity and event hashes."""
    parcels = []
    for event in events:
        parcel_id = _decode_args(event.chain_args)[2]  # (lotId, seq, parcelId, quantity, hash)
        parcel = session.exec(select(Parcel).where(Parcel.parcel_id == parcel_id)).one()
        parcels.append(parcel)
    return typed_data.SignedOp.split_batch(
        split_tree(parcels).root,
        sum(parcel.quantity for parcel in parcels),
        [event_hash_bytes(event.event_hash) for event in events],
    )


def batch_gas(groups: Sequence[typed_data.LotOps]) -> int:
    """The gas limit of a signed batch of ``groups`` (fixed from measured costs: tests/chain/test_batch_gas.py)."""
    gas = BATCH_BASE_GAS + sum(BATCH_LOT_GAS + sum(_op_gas(op) for op in group.ops) for group in groups)
    return min(gas, MAX_BATCH_GAS)


def _op_gas(op: typed_data.SignedOp) -> int:
    if op.action is typed_data.Action.SPLIT_BATCH:
        return SPLIT_BATCH_GAS + SPLIT_BATCH_PARCEL_GAS * len(op.split_hashes)
    return BATCH_OP_GAS[op.action]


def _signed_op(event: Event) -> typed_data.SignedOp:
    """The batch operation of a stored event, from the direct call it was accepted with."""
    args = _decode_args(event.chain_args)
    action = _ACTIONS[event.chain_function]
    digest = event_hash_bytes(event.event_hash)
    b32 = bytes.fromhex
    match event.chain_function:
        case "declareLot":  # (lotId, quantity, hash)
            return typed_data.SignedOp(action, digest, amount=args[1])
        case "recordEntry" | "recordInspection":  # (lotId, seq, quantity | result, hash)
            return typed_data.SignedOp(action, digest, amount=args[2])
        case "splitParcel":  # (lotId, seq, parcelId, quantity, hash)
            return typed_data.SignedOp(action, digest, subject=b32(args[2][2:]), amount=args[3])
        case "attachDocument":  # (parcelId, seq, kind, commitment, hash)
            return typed_data.SignedOp(action, digest, subject=b32(args[0][2:]), amount=args[2], data=b32(args[3][2:]))
        case "releaseParcel" | "recordDelivery":  # (parcelId, seq, hash)
            return typed_data.SignedOp(action, digest, subject=b32(args[0][2:]))
        case "recordObservation":  # (lotId, seq, subject, hash)
            return typed_data.SignedOp(action, digest, subject=b32(args[2][2:]))
        case _:  # recordStorage, recall: (lotId, seq, hash)
            return typed_data.SignedOp(action, digest)


def _chain_lacks_predecessors(outcome: ContractReverted) -> bool:
    """A sequence mismatch where the chain expects an earlier event than the one sent: a gap, not a conflict."""
    if outcome.name != "TraceRegistrySequenceMismatch":
        return False
    try:
        return int(outcome.args_["expected"]) < int(outcome.args_["provided"])
    except (KeyError, TypeError, ValueError):
        return False
