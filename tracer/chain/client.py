"""The registry as the service sees it: deploy, send signed calls, read lots and their recorded events.

``ChainClient`` takes a ready ``Web3`` (an HTTP provider in production, eth-tester in unit tests) and
the registry's ABI (default: the committed artifact). Transactions are signed locally with
eth-account (fast with ``coincurve`` installed) and sent raw; nothing relies on node-held accounts.

Errors are translated here, once: a node that does not answer becomes ``ChainUnavailable``; a
revert becomes ``ContractReverted(name, args)`` decoded from any custom error of the ABI (the
registry's own and OpenZeppelin's, e.g. ``AccessControlUnauthorizedAccount``, ``EnforcedPause``),
from ``Error(string)`` (name ``"Error"``) or ``Panic(uint256)`` (name ``"Panic"``). In decoded error
arguments ``bytes`` values are ``0x`` hex strings and addresses checksummed, so they read well in
messages and JSON problem documents.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit, urlunsplit

from eth_abi import abi as eth_abi
from eth_utils.abi import (
    event_abi_to_log_topic,
    function_abi_to_4byte_selector,
    get_abi_input_names,
    get_abi_input_types,
    get_abi_output_types,
)
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3 import HTTPProvider, Web3
from web3._utils.method_formatters import receipt_formatter, transaction_result_formatter
from web3.exceptions import (
    ContractLogicError,
    ProviderConnectionError,
    Web3RPCError,
)
from web3.types import RPCEndpoint

from tracer.exceptions import ChainError, ChainUnavailable, ConfigurationError, ContractReverted

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from eth_typing import ABIConstructor, ChecksumAddress

#: ``ITraceRegistry.Step`` in declaration order: the on-chain ``step`` value is the index.
STEP_NAMES: tuple[str, ...] = (
    "Declared",
    "Entered",
    "Inspected",
    "Stored",
    "Split",
    "DocumentAttached",
    "Released",
    "Delivered",
    "Recalled",
    "Observed",
    "ClearedByRule",
    "ManifestReleased",
    "Returned",
    "Destroyed",
    "HoldLifted",
)

#: The on-chain roles; the id of each is keccak256 of its name, except ``admin`` (DEFAULT_ADMIN_ROLE, 0x00).
ROLE_NAMES: tuple[str, ...] = ("admin", "customs_admin", "enterprise", "warehouse", "customs", "carrier", "payment")

#: Gas limits per registry function, sent without an ``eth_estimateGas`` round trip: ~1.3x the gas used
#: in a whole journey on anvil 1.7.1 (measured with registry v2, v3 within 100 gas, by scripts/gas_report:
#: declareLot 97,465; recordEntry 64,509; recordInspection 47,177; recordStorage 46,826; splitParcel 71,021;
#: attachDocument 77,526; releaseParcel 75,593 (it marks the lot's release bitmap: 20k more when it opens a new word);
#: recordDelivery 49,478; recall 46,797; grantRole 51,521). tests/chain/test_client.py keeps >= 20 %
#: headroom. A function not listed here falls back to an estimate.
GAS_LIMITS: dict[str, int] = {
    "declareLot": 130_000,
    "recordEntry": 85_000,
    "recordInspection": 65_000,
    "recordStorage": 65_000,
    "splitParcel": 95_000,
    "attachDocument": 105_000,
    "releaseParcel": 100_000,
    "recordDelivery": 65_000,
    "recall": 70_000,
    "registerParcel": 85_000,  # ~61,000 with a 9-level proof (scripts/gas_report), ~550 more per level
    "grantRole": 70_000,
    "revokeRole": 50_000,
    "pause": 50_000,
    "unpause": 50_000,
}

#: How often a receipt wait asks whether the node still knows the transactions it waits for (and whether they can
#: be mined: not queued behind a nonce gap). A transaction counts as dropped after ``DROPPED_AFTER_CHECKS``
#: such checks in a row say no, so a node restarted from an older state costs seconds, not the whole wait.
DROPPED_CHECK_SECONDS = 1.0
DROPPED_AFTER_CHECKS = 2
#: How long a receipt wait rides out a node that does not answer (a restart) before it gives up with
#: ChainUnavailable; a node that answers again counts as possibly restarted.
UNANSWERED_GRACE_SECONDS = 10.0

#: Blocks per ``eth_getLogs`` request: nodes cap the range or the response size of one request.
LOG_CHUNK_BLOCKS = 10_000
#: Calls per JSON-RPC batch: geth refuses more than 1,000 (its default BatchRequestLimit); a round of more is split.
MAX_BATCH_CALLS = 500

#: How long a read base fee is reused for EIP-1559 fees; the max fee leaves room for ~6 full blocks.
FEE_CACHE_SECONDS = 2.0

_DEFAULT_PRIORITY_FEE = 10**9  # 1 gwei, when the node has no eth_maxPriorityFeePerGas
_TRANSFER_GAS = 21_000
_ERROR_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
_PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)
_ADMIN_ROLE = b"\x00" * 32


def role_id(role_name: str) -> bytes:
    """The 32-byte on-chain id of a role name (``admin`` is OpenZeppelin's DEFAULT_ADMIN_ROLE, 0x00).

    Raises ValueError for a name that is not in ``ROLE_NAMES``.
    """
    if role_name not in ROLE_NAMES:
        raise ValueError(f"unknown role {role_name!r}; one of {', '.join(ROLE_NAMES)}")
    return _ADMIN_ROLE if role_name == "admin" else keccak(text=role_name)


def redact_url(url: str) -> str:
    """``url`` without credentials (user, password) and query string, fit for logs and /healthz."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class ReceiptTimeout(ChainUnavailable, TimeoutError):
    """A sent transaction was not mined within the wait; it may still be mined later (also a TimeoutError)."""

    def __init__(self, rpc_url: str, tx_hash: str, timeout: float) -> None:
        self.tx_hash = tx_hash
        self.timeout = timeout
        super().__init__(rpc_url, f"transaction {tx_hash} not mined within {timeout:g} s")


class TransactionDropped(ReceiptTimeout):
    """The node no longer knows a sent transaction, or holds it where it can never be mined (queued behind a nonce
    gap, e.g. after a restart from an older state): waiting longer would not help (also a ReceiptTimeout)."""

    def __init__(self, rpc_url: str, tx_hash: str, waited: float, reason: str) -> None:
        super().__init__(rpc_url, tx_hash, waited)
        self.reason = reason
        self.args = (f"transaction {tx_hash} dropped after {waited:.1f} s: {reason}",)


class TransactionRejected(ChainError):
    """The node refused a signed transaction (nonce too low, fee too low, insufficient funds, ...).

    ``nonce_too_low``: the nonce is used already (read the account's count again); ``replacement_underpriced``:
    another transaction of the sender holds that nonce in the node's pool (re-sign it with higher fees to replace it).
    """

    def __init__(self, reason: str, *, nonce: int | None = None) -> None:
        self.reason = reason
        self.nonce = nonce
        super().__init__(f"transaction rejected by the node (nonce {nonce}): {reason}")

    @property
    def nonce_too_low(self) -> bool:
        """The nonce is used already (geth and anvil: "nonce too low"; Ganache: "doesn't have the correct nonce")."""
        text = self.reason.lower()
        return "nonce too low" in text or "correct nonce" in text

    @property
    def replacement_underpriced(self) -> bool:
        """Another transaction of the sender with this nonce waits in the pool at fees not far enough below."""
        return "replacement" in self.reason.lower()


@dataclass(frozen=True, slots=True)
class TxRequest:
    """A transaction to sign: ``sender`` calls ``to`` (None: deploy) with ``data`` and ``value`` wei, ``gas`` limit."""

    sender: LocalAccount
    to: str | None
    data: bytes
    gas: int
    value: int = 0


@dataclass(frozen=True, slots=True)
class SignedTx:
    """A signed transaction ready to send: its sender's address, nonce, raw bytes and hash."""

    sender: str
    nonce: int
    raw: bytes
    tx_hash: str


@dataclass
class ReceiptWait:
    """What ``wait_receipts`` found: per hash a Receipt, the ContractReverted of a failed transaction, or a
    ReceiptTimeout (a TransactionDropped when the node lost it); ``chain_changed`` when the node's head went back
    or it stopped answering meanwhile (a restart or a reorg: nonces read before are stale)."""

    outcomes: dict[str, Receipt | ContractReverted | ReceiptTimeout] = field(default_factory=dict)
    chain_changed: bool = False


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """One recorded event of a lot's chain, where it sits on chain: an ``EventRecorded`` log, or one parcel's
    event of a ``ParcelsSplit`` log (step Split, subject the batch's parcels root, the head folded from the log's
    prior head; all the batch's events share the log's ``log_index`` and carry ``split_range``)."""

    lot_id: bytes
    seq: int
    author: str
    step: int
    step_name: str
    subject: bytes
    event_hash: bytes
    head: bytes
    tx_hash: str
    block_number: int
    block_hash: bytes
    log_index: int
    #: For an event of a split batch: (first index, number of parcels) of the batch, the key of its root on chain
    #: (``splitRoot``), and the event's position in the batch; None and 0 for any other event.
    split_range: tuple[int, int] | None = None
    split_position: int = 0

    @property
    def parcel_index(self) -> int | None:
        """The index in its lot of the parcel a split batch's event split off (None for other events)."""
        return None if self.split_range is None else self.split_range[0] + self.split_position


@dataclass(frozen=True, slots=True)
class Receipt:
    """A mined, successful transaction and the registry events it recorded.

    ``receipt[key]`` reads a field of the node's own receipt (``receipt["blockNumber"]``).
    """

    tx_hash: str
    block_number: int
    block_hash: bytes
    gas_used: int
    contract_address: str | None
    events: tuple[RecordedEvent, ...]
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]


@dataclass(frozen=True, slots=True)
class _Function:
    selector: bytes
    input_types: tuple[str, ...]
    output_types: tuple[str, ...]
    abi: dict[str, Any]


class ChainClient:
    """The registry at ``address`` on the chain behind ``w3``, with the registry ``abi``.

    ``abi`` defaults to the committed artifact (``tracer.chain.compiler.load_artifact()``), loaded on
    first use. ``deploy_block`` is where log scans start. Every method raises ``ChainUnavailable`` when
    the node does not answer; calls that run the contract raise ``ContractReverted`` on a revert.
    """

    def __init__(
        self,
        w3: Web3,
        *,
        address: str | None = None,
        abi: Sequence[dict[str, Any]] | None = None,
        deploy_block: int = 0,
    ) -> None:
        self._w3 = w3
        self._address: ChecksumAddress | None = to_checksum_address(address) if address else None
        self._abi: list[dict[str, Any]] | None = list(abi) if abi is not None else None
        self.deploy_block = deploy_block
        self._functions: dict[str, _Function] | None = None
        self._errors: dict[bytes, tuple[str, list[str], list[str]]] | None = None
        self._chain_id: int | None = None
        self._fees: tuple[float, dict[str, int]] | None = None
        self._priority_fee: int | None = None
        self._lock = threading.Lock()

    @classmethod
    def connect(
        cls,
        rpc_url: str,
        *,
        timeout: float = 10.0,
        address: str | None = None,
        abi: Sequence[dict[str, Any]] | None = None,
        deploy_block: int = 0,
    ) -> ChainClient:
        """A client over HTTP JSON-RPC at ``rpc_url``; each request gives up after ``timeout`` seconds.

        web3's own retries are off: a node that does not answer raises ``ChainUnavailable`` at once and
        the caller (the writer's loop) decides when to try again.
        """
        provider = HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None)
        return cls(Web3(provider), address=address, abi=abi, deploy_block=deploy_block)

    # -- what the client is bound to ----------------------------------------------------------------

    @property
    def w3(self) -> Web3:
        """The underlying Web3 instance."""
        return self._w3

    @property
    def rpc_url(self) -> str:
        """The node's URL without credentials (or a description of a non-HTTP provider)."""
        endpoint = getattr(self._w3.provider, "endpoint_uri", None)
        return redact_url(str(endpoint)) if endpoint else type(self._w3.provider).__name__

    @property
    def address(self) -> ChecksumAddress:
        """The registry's checksummed address; ConfigurationError when there is none yet."""
        if self._address is None:
            raise ConfigurationError("no registry address: deploy one or set TRACER_REGISTRY_ADDRESS")
        return self._address

    @property
    def abi(self) -> list[dict[str, Any]]:
        """The registry ABI (the committed artifact's unless one was passed in)."""
        if self._abi is None:
            from tracer.chain.compiler import load_artifact  # lazily: the artifact is only read when needed

            self._abi = list(load_artifact().abi)
        return self._abi

    # -- the node -----------------------------------------------------------------------------------

    @property
    def chain_id(self) -> int:
        """The chain id (read once)."""
        if self._chain_id is None:
            with self._rpc():
                self._chain_id = int(self._w3.eth.chain_id)
        return self._chain_id

    def latest_block(self) -> int:
        """The number of the latest block."""
        with self._rpc():
            return int(self._w3.eth.block_number)

    def is_reachable(self) -> bool:
        """True when the node answers ``eth_chainId`` now (never raises)."""
        try:
            with self._rpc():
                self._w3.eth.chain_id  # noqa: B018 - the request is the point
        except ChainUnavailable:
            return False
        return True

    def code_at(self, address: str) -> bytes:
        """The runtime bytecode at ``address`` (empty when no contract is there)."""
        with self._rpc():
            return bytes(self._w3.eth.get_code(to_checksum_address(address)))

    def block_hash(self, number: int) -> bytes:
        """The hash of block ``number`` (ChainError when there is no such block)."""
        with self._rpc():
            block = self._w3.eth.get_block(number)
        return bytes(block["hash"])

    def pending_nonce(self, address: str) -> int:
        """The next nonce of ``address``, counting its transactions still in the node's pool."""
        with self._rpc():
            return int(self._w3.eth.get_transaction_count(to_checksum_address(address), "pending"))

    def balance(self, address: str) -> int:
        """The balance of ``address`` in wei."""
        with self._rpc():
            return int(self._w3.eth.get_balance(to_checksum_address(address)))

    # -- writing ------------------------------------------------------------------------------------

    def deploy(
        self,
        *,
        deployer: LocalAccount,
        admin: str,
        customs_admin: str,
        bytecode: str | bytes | None = None,
        abi: Sequence[dict[str, Any]] | None = None,
        timeout: float = 60.0,
    ) -> tuple[str, int]:
        """Deploys the registry with ``admin`` and ``customs_admin`` and waits for it to be mined.

        ``bytecode`` and ``abi`` default to the committed artifact. The client is bound to the new
        registry afterwards. Returns ``(address, block_number)``.
        """
        if bytecode is None or abi is None:
            from tracer.chain.compiler import load_artifact

            artifact = load_artifact()
            bytecode = artifact.bytecode if bytecode is None else bytecode
            abi = artifact.abi if abi is None else abi
        abi = list(abi)
        code = HexBytes(bytecode)
        constructor: dict[str, Any] = next((item for item in abi if item.get("type") == "constructor"), {"inputs": []})
        ctor_args = eth_abi.encode(get_abi_input_types(cast("ABIConstructor", constructor)), [admin, customs_admin])
        data = bytes(code) + ctor_args
        estimate = self._estimate(sender=deployer.address, to=None, data=data)
        tx_hash = self._send(TxRequest(sender=deployer, to=None, data=data, gas=estimate * 6 // 5), nonce=None)
        receipt = self.wait_receipt(tx_hash, timeout=timeout)
        if receipt.contract_address is None:
            raise ChainError(f"deployment {tx_hash} created no contract")
        self._abi = abi
        self._functions = self._errors = None
        self._address = to_checksum_address(receipt.contract_address)  # already checksummed by web3; typed here
        self.deploy_block = receipt.block_number
        return receipt.contract_address, receipt.block_number

    def send_call(
        self,
        *,
        sender: LocalAccount,
        function: str,
        args: Sequence[Any],
        nonce: int | None = None,
        gas: int | None = None,
    ) -> str:
        """Signs a call of the registry's ``function(*args)`` by ``sender`` and sends it; returns the tx hash.

        ``gas`` defaults to ``GAS_LIMITS[function]`` (an estimate for functions not in the table) and
        ``nonce`` to the sender's pending count. Does not wait for the receipt: see ``wait_receipt``.
        Raises ContractReverted if the node refuses it with a revert, TransactionRejected for other
        refusals.
        """
        return self._send(self.call_request(sender=sender, function=function, args=args, gas=gas), nonce=nonce)

    def transfer(self, *, sender: LocalAccount, to: str, value_wei: int, nonce: int | None = None) -> str:
        """Sends ``value_wei`` from ``sender`` to ``to`` (funding an actor); returns the tx hash."""
        return self._send(self.transfer_request(sender=sender, to=to, value_wei=value_wei), nonce=nonce)

    def grant_role(self, *, sender: LocalAccount, role_name: str, address: str, nonce: int | None = None) -> str:
        """Sends ``grantRole(role, address)`` signed by ``sender`` (who must hold the role's admin role)."""
        return self.send_call(
            sender=sender, function="grantRole", args=[role_id(role_name), to_checksum_address(address)], nonce=nonce
        )

    def revoke_role(self, *, sender: LocalAccount, role_name: str, address: str, nonce: int | None = None) -> str:
        """Sends ``revokeRole(role, address)`` signed by ``sender`` (who must hold the role's admin role)."""
        return self.send_call(
            sender=sender, function="revokeRole", args=[role_id(role_name), to_checksum_address(address)], nonce=nonce
        )

    def call_request(
        self, *, sender: LocalAccount, function: str, args: Sequence[Any], gas: int | None = None
    ) -> TxRequest:
        """The unsigned transaction of ``sender`` calling the registry's ``function(*args)``.

        ``gas`` defaults to ``GAS_LIMITS[function]`` (an estimate for functions not in the table).
        """
        data = self._encode_call(function, args)
        if gas is None:
            gas = GAS_LIMITS.get(function)
        if gas is None:
            gas = self._estimate(sender=sender.address, to=self.address, data=data) * 6 // 5
        return TxRequest(sender=sender, to=self.address, data=data, gas=gas)

    def transfer_request(self, *, sender: LocalAccount, to: str, value_wei: int) -> TxRequest:
        """The unsigned transfer of ``value_wei`` from ``sender`` to ``to``."""
        return TxRequest(sender=sender, to=to_checksum_address(to), data=b"", gas=_TRANSFER_GAS, value=value_wei)

    def sign(self, request: TxRequest, *, nonce: int, fee_bump: float = 1.0) -> SignedTx:
        """Signs ``request`` locally with ``nonce`` and the current fees times ``fee_bump`` (> 1 to replace a
        transaction of the same nonce waiting in the node's pool: nodes want at least 10 % more)."""
        fees = {name: int(value * fee_bump) + (1 if fee_bump > 1 else 0) for name, value in self._fee_fields().items()}
        tx: dict[str, Any] = {
            "chainId": self.chain_id,
            "nonce": nonce,
            "gas": request.gas,
            "value": request.value,
            "data": request.data,
            **fees,
        }
        if request.to is not None:
            tx["to"] = request.to
        signed = request.sender.sign_transaction(tx)
        raw = bytes(signed.raw_transaction)
        return SignedTx(sender=request.sender.address, nonce=nonce, raw=raw, tx_hash="0x" + keccak(raw).hex())

    def send_raw(self, signed: Sequence[SignedTx]) -> list[str | ContractReverted | TransactionRejected]:
        """Sends signed transactions in one JSON-RPC batch (one HTTP request; one request each on other providers).

        Per transaction, in order: its hash, or what the node said instead, as the single sends raise it:
        ContractReverted for a revert (nodes that run a transaction when it is sent: eth-tester, Ganache's
        instamine), TransactionRejected for other refusals. A transaction the node holds already ("already known")
        counts as sent. Raises ChainUnavailable when the node does not answer at all.
        """
        results = self._call_many([("eth_sendRawTransaction", ["0x" + tx.raw.hex()]) for tx in signed])
        return [self._send_outcome(tx, result) for tx, result in zip(signed, results, strict=True)]

    def pending_nonces(self, addresses: Sequence[str]) -> dict[str, int]:
        """The next nonce of each address, counting its transactions in the node's pool that can be mined (not those
        queued behind a gap), in one batched request."""
        unique = list(dict.fromkeys(to_checksum_address(a) for a in addresses))
        results = self._call_many([("eth_getTransactionCount", [address, "pending"]) for address in unique])
        return {address: _quantity(_unwrap(result)) for address, result in zip(unique, results, strict=True)}

    def balances(self, addresses: Sequence[str]) -> dict[str, int]:
        """The balance in wei of each address (checksummed keys), in one batched request."""
        unique = list(dict.fromkeys(to_checksum_address(a) for a in addresses))
        results = self._call_many([("eth_getBalance", [address, "latest"]) for address in unique])
        return {address: _quantity(_unwrap(result)) for address, result in zip(unique, results, strict=True)}

    def wait_receipt(self, tx_hash: str | bytes, *, timeout: float = 30.0) -> Receipt:
        """Waits until ``tx_hash`` is mined and returns its receipt.

        A failed transaction is replayed with ``eth_call`` at its block to find its revert reason and
        raises ContractReverted (``"OutOfGas"`` when it used all its gas and the replay succeeds).
        ReceiptTimeout after ``timeout`` seconds; TransactionDropped (a ReceiptTimeout) within seconds when the
        node no longer knows the transaction or holds it queued behind a nonce gap: waiting longer would not help.
        """
        tx_hash = HexBytes(tx_hash).to_0x_hex()
        outcome = self.wait_receipts([tx_hash], timeout=timeout).outcomes[tx_hash]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def wait_receipts(
        self, tx_hashes: Sequence[str], *, timeout: float, stop: threading.Event | None = None
    ) -> ReceiptWait:
        """Waits for the receipts of ``tx_hashes`` together, polling them in one batched request each time.

        Every ``DROPPED_CHECK_SECONDS`` (and at once when the node's head went back or it answered again after an
        outage) it asks the node about those still missing: one it no longer knows, or holds queued behind a
        nonce gap (its nonce at or above the sender's pending count), ``DROPPED_AFTER_CHECKS`` times in a row is
        dropped. Those still missing at ``timeout`` (or when ``stop`` is set) time out. Raises ChainUnavailable
        when the node does not answer for ``UNANSWERED_GRACE_SECONDS``.
        """
        wait = ReceiptWait()
        outstanding = list(dict.fromkeys(HexBytes(h).to_0x_hex() for h in tx_hashes))
        state = _ReceiptPoll(self, wait)
        deadline = state.started + timeout
        unanswered_since: float | None = None
        pause = 0.02
        while outstanding:
            try:
                state.poll(outstanding)
            except ChainUnavailable:
                now = time.monotonic()
                unanswered_since = unanswered_since or now
                if now - unanswered_since > UNANSWERED_GRACE_SECONDS:
                    raise
                wait.chain_changed = True  # it may come back from an older state
                state.next_check = 0.0  # once it answers, ask about every transaction at once
                time.sleep(0.25)
                continue
            unanswered_since = None
            outstanding = [h for h in outstanding if h not in wait.outcomes]
            now = time.monotonic()
            if outstanding and (now > deadline or (stop is not None and stop.is_set())):
                for tx_hash in outstanding:
                    wait.outcomes[tx_hash] = ReceiptTimeout(self.rpc_url, tx_hash, timeout)
                break
            if outstanding:
                time.sleep(pause)
                pause = min(pause * 1.5, 0.25)
        return wait

    def _unminable(self, tx_hashes: list[str]) -> dict[str, str | None]:
        """Per transaction not mined yet, why it will not be mined as things stand (None: it may still be)."""
        found = self._call_many([("eth_getTransactionByHash", [h]) for h in tx_hashes])
        reasons: dict[str, str | None] = {}
        waiting: dict[str, tuple[str, int]] = {}
        for tx_hash, raw in zip(tx_hashes, found, strict=True):
            if isinstance(raw, Exception):
                reasons[tx_hash] = None
            elif raw is None:
                reasons[tx_hash] = "the node does not know it (a restart from an older state?)"
            else:
                tx = transaction_result_formatter(raw)
                if tx.get("blockNumber") is not None:
                    reasons[tx_hash] = None  # mined just now: the next poll reads its receipt
                else:
                    waiting[tx_hash] = (to_checksum_address(tx["from"]), int(tx["nonce"]))
        if waiting:
            counts = self.pending_nonces([sender for sender, _ in waiting.values()])
            for tx_hash, (sender, nonce) in waiting.items():
                # The pending count covers what can be mined in order; a nonce at or past it waits for a gap below.
                gap = nonce >= counts[sender]
                reasons[tx_hash] = f"queued behind a nonce gap ({sender} is at {counts[sender]})" if gap else None
        return reasons

    def _receipt_outcome(self, tx_hash: str, raw: Mapping[str, Any]) -> Receipt | ContractReverted:
        if raw["status"] != 1:
            return self._replay_failure(tx_hash, raw)
        return Receipt(
            tx_hash=tx_hash,
            block_number=int(raw["blockNumber"]),
            block_hash=bytes(raw["blockHash"]),
            gas_used=int(raw["gasUsed"]),
            contract_address=raw.get("contractAddress"),
            events=tuple(self._decode_logs(raw["logs"])),
            raw=raw,
        )

    # -- reading ------------------------------------------------------------------------------------

    def recorded_in(self, receipt: Receipt | Mapping[str, Any]) -> list[RecordedEvent]:
        """The registry's ``EventRecorded`` events in a receipt (ours or a node's raw receipt)."""
        if isinstance(receipt, Receipt):
            return list(receipt.events)
        return list(self._decode_logs(receipt["logs"]))

    def simulate(self, *, sender_address: str, function: str, args: Sequence[Any]) -> Any:
        """Runs ``function(*args)`` as ``sender_address`` with ``eth_call`` on the latest state.

        Returns the decoded result (one value, a tuple for several, None for none); raises
        ContractReverted if it would revert.
        """
        return self.call(function, args, sender_address=sender_address)

    def call(
        self, function: str, args: Sequence[Any] = (), *, sender_address: str | None = None, block: int | str = "latest"
    ) -> Any:
        """Calls a registry function read-only and decodes its result (see ``simulate``)."""
        fn = self._function(function)
        tx: dict[str, Any] = {"to": self.address, "data": HexBytes(self._encode_call(function, args))}
        if sender_address is not None:
            tx["from"] = to_checksum_address(sender_address)
        with self._reverts(), self._rpc():
            output = self._w3.eth.call(tx, block)  # type: ignore[arg-type]
        values = eth_abi.decode(fn.output_types, bytes(output))
        if not values:
            return None
        return values[0] if len(values) == 1 else values

    def has_role(self, role_name: str, address: str) -> bool:
        """Whether ``address`` holds the role ``role_name`` in the registry."""
        return bool(self.call("hasRole", [role_id(role_name), to_checksum_address(address)]))

    def get_lot(self, lot_id: bytes | str) -> dict[str, Any]:
        """The registry's ``Lot`` struct of ``lot_id`` as a dict keyed by the struct's field names.

        An unknown lot has ``state`` 0 (``LotState.None``) and zeros elsewhere.
        """
        return self._struct("getLot", _bytes32(lot_id))

    def get_parcel(self, parcel_id: bytes | str) -> dict[str, Any]:
        """The registry's ``Parcel`` struct of ``parcel_id`` as a dict keyed by the struct's field names."""
        return self._struct("getParcel", _bytes32(parcel_id))

    def is_recalled(self, id: bytes | str) -> bool:  # noqa: A002 - the registry's own parameter name
        """Whether the lot ``id``, or the lot the parcel ``id`` was split from, is recalled."""
        return bool(self.call("isRecalled", [_bytes32(id)]))

    def lot_events(
        self, lot_id: bytes | str, *, from_block: int | None = None, to_block: int | str = "latest"
    ) -> list[RecordedEvent]:
        """Every ``EventRecorded`` log of ``lot_id`` between the blocks, in chain order.

        Scans from ``from_block`` (default: the deploy block) in ranges of ``LOG_CHUNK_BLOCKS``.
        """
        return self._recorded([HexBytes(_bytes32(lot_id)).to_0x_hex()], from_block, to_block)

    def recorded_events(self, *, from_block: int | None = None, to_block: int | str = "latest") -> list[RecordedEvent]:
        """Every ``EventRecorded`` log of the registry between the blocks, of all lots, in chain order."""
        return self._recorded([], from_block, to_block)

    def _recorded(self, topics: list[str], from_block: int | None, to_block: int | str) -> list[RecordedEvent]:
        start = self.deploy_block if from_block is None else from_block
        end = self.latest_block() if to_block == "latest" else int(to_block)
        events: list[RecordedEvent] = []
        for chunk_start in range(start, end + 1, LOG_CHUNK_BLOCKS):
            chunk_end = min(chunk_start + LOG_CHUNK_BLOCKS - 1, end)
            query = {
                "address": self.address,
                "topics": [[t.to_0x_hex() for t in self._event_topics()], *topics],
                "fromBlock": chunk_start,
                "toBlock": chunk_end,
            }
            with self._rpc():
                if isinstance(self._w3.provider, HTTPProvider):
                    # An HTTP node's raw answer, past web3's middleware and result formatters: _decode_logs reads the
                    # few fields it needs from the hex, and formatting every field of thousands of logs was most of
                    # an indexer round's CPU. (In-process providers want web3's formatted request.)
                    query.update(fromBlock=hex(chunk_start), toBlock=hex(chunk_end))
                    response = self._w3.provider.make_request(RPCEndpoint("eth_getLogs"), [query])
                    logs = _unwrap(_batch_result(response)) or []
                else:
                    logs = self._w3.eth.get_logs(cast("Any", query))
            events.extend(self._decode_logs(logs))
        events.sort(key=lambda e: (e.block_number, e.log_index))
        return events

    # -- internals: encoding ------------------------------------------------------------------------

    def _function(self, name: str) -> _Function:
        if self._functions is None:
            table: dict[str, _Function] = {}
            for item in self.abi:
                if item.get("type") == "function":
                    # Overloads are not used by the registry; the first one wins.
                    table.setdefault(
                        item["name"],
                        _Function(
                            selector=function_abi_to_4byte_selector(item),  # type: ignore[arg-type]
                            input_types=tuple(get_abi_input_types(item)),  # type: ignore[arg-type]
                            output_types=tuple(get_abi_output_types(item)),  # type: ignore[arg-type]
                            abi=item,
                        ),
                    )
            self._functions = table
        try:
            return self._functions[name]
        except KeyError:
            raise ValueError(f"the registry ABI has no function {name!r}") from None

    def _encode_call(self, function: str, args: Sequence[Any]) -> bytes:
        fn = self._function(function)
        if len(args) != len(fn.input_types):
            raise ValueError(f"{function} takes {len(fn.input_types)} arguments, got {len(args)}")
        values = [
            HexBytes(value) if isinstance(value, str) and kind.startswith("bytes") else value
            for kind, value in zip(fn.input_types, args, strict=True)
        ]
        return fn.selector + eth_abi.encode(fn.input_types, values)

    def _struct(self, function: str, *args: Any) -> dict[str, Any]:
        fn = self._function(function)
        value = self.call(function, list(args))
        components = fn.abi["outputs"][0].get("components", [])
        return {c["name"]: _plain(c["type"], v) for c, v in zip(components, value, strict=True)}

    def _event_topics(self) -> tuple[HexBytes, ...]:
        """The topics of ``EventRecorded`` and (registry v3 on) ``ParcelsSplit``, the logs of lots' events."""
        events = {item.get("name"): item for item in self.abi if item.get("type") == "event"}
        if "EventRecorded" not in events:
            raise ConfigurationError("the registry ABI has no EventRecorded event")
        return tuple(
            HexBytes(event_abi_to_log_topic(events[name]))  # type: ignore[arg-type]
            for name in ("EventRecorded", "ParcelsSplit")
            if name in events
        )

    def _decode_logs(self, logs: Sequence[Any]) -> Iterator[RecordedEvent]:
        recorded, *split = self._event_topics()
        address = self._address
        for log in logs:
            topics = log["topics"]
            if log.get("removed") or not topics:
                continue
            topic = HexBytes(topics[0])
            if topic != recorded and topic not in split:
                continue
            if address is not None and _checksum(bytes(HexBytes(log["address"]))) != address:
                continue
            data = bytes(HexBytes(log["data"]))
            if topic != recorded:
                step, subject, event_hash, head = _SPLIT_STEP, b"", b"", b""
            else:
                step, subject, event_hash, head = eth_abi.decode(["uint8", "bytes32", "bytes32", "bytes32"], data)
            event = RecordedEvent(
                lot_id=bytes(HexBytes(topics[1])),
                seq=int.from_bytes(HexBytes(topics[2]), "big"),
                author=_checksum(bytes(HexBytes(topics[3])[-20:])),
                step=step,
                step_name=STEP_NAMES[step] if step < len(STEP_NAMES) else f"Step{step}",
                subject=subject,
                event_hash=event_hash,
                head=head,
                tx_hash=HexBytes(log["transactionHash"]).to_0x_hex(),
                block_number=_quantity(log["blockNumber"]),
                block_hash=bytes(HexBytes(log["blockHash"])),
                log_index=_quantity(log["logIndex"]),
            )
            if topic != recorded:
                yield from split_events(event, data)
            else:
                yield event

    # -- internals: sending -------------------------------------------------------------------------

    def _estimate(self, *, sender: str, to: str | None, data: bytes) -> int:
        tx: dict[str, Any] = {"from": sender, "data": HexBytes(data)}
        if to is not None:
            tx["to"] = to
        with self._reverts(), self._rpc():
            return int(self._w3.eth.estimate_gas(tx))  # type: ignore[arg-type]

    def _fee_fields(self) -> dict[str, int]:
        """EIP-1559 fees from a base fee read at most every FEE_CACHE_SECONDS; gasPrice without London."""
        now = time.monotonic()
        cached = self._fees
        if cached is not None and now - cached[0] < FEE_CACHE_SECONDS:
            return cached[1]
        with self._rpc():
            block = self._w3.eth.get_block("latest")
            base_fee = block.get("baseFeePerGas")
            if base_fee is None:
                fees = {"gasPrice": int(self._w3.eth.gas_price)}
            else:
                if self._priority_fee is None:
                    try:
                        self._priority_fee = int(self._w3.eth.max_priority_fee)
                    except Web3RPCError:
                        self._priority_fee = _DEFAULT_PRIORITY_FEE
                tip = self._priority_fee
                fees = {"maxFeePerGas": 2 * int(base_fee) + tip, "maxPriorityFeePerGas": tip}
        self._fees = (now, fees)
        return fees

    def _send(self, request: TxRequest, *, nonce: int | None) -> str:
        if nonce is None:
            nonce = self.pending_nonce(request.sender.address)
        (outcome,) = self.send_raw([self.sign(request, nonce=nonce)])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def _send_outcome(self, tx: SignedTx, result: Any) -> str | ContractReverted | TransactionRejected:
        """What one answer to eth_sendRawTransaction means (see ``send_raw``)."""
        if not isinstance(result, Exception):
            return HexBytes(result).to_0x_hex()
        message = str(getattr(result, "message", None) or result)
        if any(known in message.lower() for known in _ALREADY_KNOWN):
            return tx.tx_hash  # this very transaction waits in the pool already: sent
        try:
            with self._reverts():
                raise result
        except ContractReverted as reverted:
            return reverted
        except Exception:  # noqa: BLE001 - any other refusal is this transaction's, not the batch's
            if "fee" in message.lower() or "underpriced" in message.lower():
                self._fees = None  # the next send reads the base fee again
            return TransactionRejected(message, nonce=tx.nonce)
        raise AssertionError("unreachable")  # pragma: no cover - _reverts re-raises

    def _call_many(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        """The results of ``calls`` in order, each a raw result (None for a null one) or the exception its error
        raised. An HTTP node gets them as one JSON-RPC batch (web3's own batching refuses eth_sendRawTransaction,
        so the array is posted through the provider's session here); other providers get one request each.
        Raises ChainUnavailable when the node does not answer."""
        if not calls:
            return []
        if len(calls) > MAX_BATCH_CALLS:
            # Nodes cap a batch (geth: 1,000 calls): a round of more goes as several batches, each under the cap.
            return [
                result
                for start in range(0, len(calls), MAX_BATCH_CALLS)
                for result in self._call_many(calls[start : start + MAX_BATCH_CALLS])
            ]
        provider = self._w3.provider
        with self._rpc():
            if isinstance(provider, HTTPProvider) and len(calls) > 1:
                responses = provider.make_batch_request([(cast("Any", method), params) for method, params in calls])
                if isinstance(responses, list) and len(responses) == len(calls):
                    return [_batch_result(response) for response in responses]
                # A node without batches answers the array with one error: ask one by one.
            results: list[Any] = []
            for method, params in calls:
                try:
                    results.append(self._w3.manager.request_blocking(cast("Any", method), params))
                except (OSError, ProviderConnectionError):
                    raise
                except Exception as exc:  # noqa: BLE001 - the caller maps each call's error
                    results.append(exc)
            return results

    def _replay_failure(self, tx_hash: str, receipt: Any) -> ContractReverted:
        """Finds why a mined transaction failed by running it again with eth_call at its block."""
        with self._rpc():
            tx = self._w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
        call: dict[str, Any] = {
            "from": tx["from"],
            "data": HexBytes(tx["input"]),
            "value": tx["value"],
            "gas": tx["gas"],
        }
        if tx.get("to"):
            call["to"] = tx["to"]
        try:
            with self._reverts(), self._rpc():
                self._w3.eth.call(call, int(receipt["blockNumber"]))  # type: ignore[arg-type]
        except ContractReverted as reverted:
            return reverted
        except Web3RPCError as exc:
            # The node no longer has the state of that block (pruned, or restarted from a dump).
            return ContractReverted("Reverted", {"tx_hash": tx_hash, "reason": exc.message})
        if int(receipt["gasUsed"]) >= int(tx["gas"]):
            return ContractReverted("OutOfGas", {"tx_hash": tx_hash, "gas": int(tx["gas"])})
        return ContractReverted("Reverted", {"tx_hash": tx_hash})

    # -- internals: error translation ---------------------------------------------------------------

    @contextlib.contextmanager
    def _rpc(self) -> Iterator[None]:
        """Connection failures of any kind become ChainUnavailable (requests' errors are OSErrors)."""
        try:
            yield
        except (OSError, ProviderConnectionError) as exc:
            raise ChainUnavailable(self.rpc_url, _reason(exc)) from exc

    @contextlib.contextmanager
    def _reverts(self) -> Iterator[None]:
        """A revert reported by the node becomes ContractReverted, decoded against the ABI."""
        try:
            yield
        except ContractLogicError as exc:
            raise self._decode_revert(_revert_data(exc.data), fallback=exc.message) from exc
        except Web3RPCError as exc:
            data = _rpc_error_data(exc)
            if data is None and "revert" not in exc.message.lower():
                raise
            raise self._decode_revert(data or b"", fallback=exc.message) from exc
        except Exception as exc:
            # The in-process eth-tester runs a transaction when it is sent and raises its own
            # TransactionFailed there, instead of mining a failed receipt as a real node does.
            if not type(exc).__module__.startswith("eth_tester"):
                raise
            raise self._decode_revert(_eth_tester_revert_data(exc), fallback=str(exc)) from exc

    def _error_table(self) -> dict[bytes, tuple[str, list[str], list[str]]]:
        if self._errors is None:
            table: dict[bytes, tuple[str, list[str], list[str]]] = {}
            for item in self.abi:
                if item.get("type") == "error":
                    table[function_abi_to_4byte_selector(item)] = (  # type: ignore[arg-type]
                        item["name"],
                        list(get_abi_input_types(item)),  # type: ignore[arg-type]
                        # solc writes "" for an unnamed parameter; only a hand-written ABI omits the key (None).
                        [name or "" for name in get_abi_input_names(item)],  # type: ignore[arg-type]
                    )
            self._errors = table
        return self._errors

    def _decode_revert(self, data: bytes, *, fallback: str | None = None) -> ContractReverted:
        """ContractReverted for the revert ``data``: a custom error of the ABI, Error(string) or Panic."""
        selector, payload = data[:4], data[4:]
        if not data:
            return ContractReverted("Reverted", {"message": fallback} if fallback else {})
        try:
            if selector == _ERROR_SELECTOR:
                (message,) = eth_abi.decode(["string"], payload)
                return ContractReverted("Error", {"message": message})
            if selector == _PANIC_SELECTOR:
                (code,) = eth_abi.decode(["uint256"], payload)
                return ContractReverted("Panic", {"code": code})
            known = self._error_table().get(selector)
            if known is not None:
                name, types, names = known
                values = eth_abi.decode(types, payload)
                return ContractReverted(
                    name, {n: _error_value(t, v) for n, t, v in zip(names, types, values, strict=True)}
                )
        except Exception:  # noqa: BLE001 - malformed revert data still deserves a readable error
            pass
        return ContractReverted("UnknownError", {"data": HexBytes(data).to_0x_hex()})


#: The data of a ``ParcelsSplit`` log (its topics are those of ``EventRecorded``: lot id, first seq, author).
PARCELS_SPLIT_DATA: tuple[str, ...] = ("uint32", "bytes32", "uint64", "bytes32", "bytes32[]")
_SPLIT_STEP = STEP_NAMES.index("Split")


def split_events(log: RecordedEvent, data: bytes) -> Iterator[RecordedEvent]:
    """The events of one ``ParcelsSplit`` log with ``data``: one per parcel, sequence numbers from the log's
    (``log.seq``) on, subject the parcels root, each head folded from the log's prior head
    (``keccak256(head ‖ eventHash)``); ``log`` holds the log's lot id, author and place on chain."""
    first_index, root, _quantity, head, hashes = eth_abi.decode(PARCELS_SPLIT_DATA, data)
    for position, event_hash in enumerate(hashes):
        head = keccak(head + event_hash)
        yield replace(
            log,
            seq=log.seq + position,
            subject=root,
            event_hash=event_hash,
            head=head,
            split_range=(first_index, len(hashes)),
            split_position=position,
        )


@functools.lru_cache(maxsize=4096)
def _checksum(address: bytes) -> str:
    """The checksummed form of a 20-byte address, remembered: every decoded log names its author and the registry,
    a few addresses thousands of times, and each checksum is a keccak."""
    return to_checksum_address(address)


def _bytes32(value: bytes | str) -> bytes:
    raw = bytes(HexBytes(value))
    if len(raw) != 32:
        raise ValueError(f"expected 32 bytes, got {len(raw)}")
    return raw


def _plain(abi_type: str, value: Any) -> Any:
    """A struct field as Python holds it: addresses checksummed, bytes as bytes."""
    if abi_type == "address":
        return to_checksum_address(value)
    return value


def _error_value(abi_type: str, value: Any) -> Any:
    """An error argument as messages and JSON show it: addresses checksummed, bytes as 0x hex."""
    if abi_type == "address":
        return to_checksum_address(value)
    if isinstance(value, bytes):
        return HexBytes(value).to_0x_hex()
    return value


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    # requests nests the cause ("HTTPConnectionPool(...): Max retries exceeded ... (Caused by ...)").
    if "Connection refused" in text:
        return "connection refused"
    if "timed out" in text.lower():
        return "timed out"
    return f"{type(exc).__name__}: {text[:200]}"


def _revert_data(data: Any) -> bytes:
    """The revert bytes from what web3 puts on ContractLogicError.data (a hex string or a node's dict)."""
    if isinstance(data, dict):
        for key in ("data", "result"):
            if isinstance(data.get(key), str):
                return _revert_data(data[key])
        for value in data.values():
            # Ganache keys its error data by transaction hash.
            if isinstance(value, dict):
                found = _revert_data(value)
                if found:
                    return found
        return b""
    if isinstance(data, str):
        text = data.removeprefix("Reverted ").strip()
        if text.startswith("0x"):
            try:
                return bytes(HexBytes(text))
            except ValueError:
                return b""
    return b""


def _rpc_error_data(exc: Web3RPCError) -> bytes | None:
    response = exc.rpc_response or {}
    error = response.get("error") if isinstance(response, dict) else None
    if isinstance(error, dict) and "data" in error:
        return _revert_data(error["data"]) or None
    return None


def _eth_tester_revert_data(exc: BaseException) -> bytes:
    """The raw revert bytes of an eth-tester failure: its message ends with their ``repr`` (``b'...'``)."""
    seen: BaseException | None = exc
    while seen is not None:
        for arg in seen.args:
            if isinstance(arg, bytes):
                return arg
            text = str(arg)
            for quote in ("b'", 'b"'):
                at = text.find(quote)
                if at != -1:
                    try:
                        value = ast.literal_eval(text[at:])
                    except (ValueError, SyntaxError):
                        continue
                    if isinstance(value, bytes):
                        return value
        seen = seen.__context__
    return b""


@dataclass
class _ReceiptPoll:
    """One ``wait_receipts`` between its polls: the highest head seen, when to ask about missing transactions next,
    and how many checks in a row found each one unminable."""

    client: ChainClient
    wait: ReceiptWait
    started: float = field(default_factory=time.monotonic)
    next_check: float = 0.0
    highest: int | None = None
    misses: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.next_check = self.started + DROPPED_CHECK_SECONDS

    def poll(self, outstanding: list[str]) -> None:
        """One batched request for the receipts and the head; then, when due, the check of those still missing."""
        client, wait = self.client, self.wait
        calls: list[tuple[str, list[Any]]] = [("eth_getTransactionReceipt", [h]) for h in outstanding]
        *receipts, head = client._call_many([*calls, ("eth_blockNumber", [])])
        number = _quantity(_unwrap(head))
        if self.highest is not None and number < self.highest:
            wait.chain_changed, self.next_check = True, 0.0  # the head went back: a restart or a reorg
        self.highest = number if self.highest is None else max(self.highest, number)
        for tx_hash, raw in zip(outstanding, receipts, strict=True):
            if raw is not None and not isinstance(raw, Exception):
                wait.outcomes[tx_hash] = client._receipt_outcome(tx_hash, receipt_formatter(raw))
        missing = [h for h in outstanding if h not in wait.outcomes]
        now = time.monotonic()
        if not missing or now < self.next_check:
            return
        self.next_check = now + DROPPED_CHECK_SECONDS
        for tx_hash, reason in client._unminable(missing).items():
            if reason is None:
                self.misses.pop(tx_hash, None)
                continue
            self.misses[tx_hash] = self.misses.get(tx_hash, 0) + 1
            if self.misses[tx_hash] >= DROPPED_AFTER_CHECKS:
                wait.outcomes[tx_hash] = TransactionDropped(client.rpc_url, tx_hash, now - self.started, reason)


#: How nodes say that the very transaction sent is in their pool already (geth, anvil, Ganache).
_ALREADY_KNOWN = ("already known", "already imported", "known transaction")


def _batch_result(response: Mapping[str, Any]) -> Any:
    """One response of a JSON-RPC batch: its result, or a Web3RPCError carrying its error."""
    if "error" in response:
        error = response["error"]
        message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
        return Web3RPCError(message, rpc_response=cast("Any", response))
    return response.get("result")


def _unwrap(result: Any) -> Any:
    if isinstance(result, Exception):
        raise ChainError(f"the node answered with an error: {result}") from result
    return result


def _quantity(value: Any) -> int:
    """A JSON-RPC quantity as an int (hex on the wire, already an int from in-process providers)."""
    return int(value, 16) if isinstance(value, str) else int(value)
