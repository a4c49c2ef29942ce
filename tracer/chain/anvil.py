"""The embedded chain: a supervised anvil (npm ``@foundry-rs/anvil``) with its state on disk.

Measured with anvil 1.7.1 (tests/chain/test_anvil.py keeps these true):

- The state file (JSON) holds accounts, storage, every block, transaction and log, so after a restart the
  contract, its storage and its logs are there and block numbers go on from the last dumped block.
- anvil's own periodic dump (``--state-interval``) is not consistent with a miner at work: it can write the
  storage of a block it is mining next to a block list that ends before it. After a ``kill -9`` such a node
  comes back with a lot's sequence number advanced but the logs of those events gone, so nothing could prove
  them. With interval mining the supervisor therefore dumps the state itself (``anvil_dumpState``) while the
  miner is paused for that moment, and writes the file aside and renames it into place, so a kill never
  leaves a torn file. anvil still dumps on a clean exit (SIGTERM, ``--dump-state``).
- With automine (a block per transaction, for fast tests) anvil's own ``--state-interval`` dump is kept:
  pausing would hold up every transaction, and nothing kills those nodes.
- A ``kill -9`` loses what happened after the last dump only; ``wait_for_state_dump()`` right after
  deploying makes the deployment durable.
- anvil's exit dump is written in place: a kill during it leaves a truncated file that anvil refuses at the
  next start ("failed to parse json file"). Each start therefore keeps the file it loaded successfully as
  ``<state>.bak``, and the error names it.
- Every block, even empty, is kept in the dump (~1.75 KB per empty block at one-second blocks,
  ~150 MB a day), and the whole file is rewritten at every interval.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from tracer.chain.supervisor import NodeSupervisor, free_port
from tracer.config import PROJECT_ROOT
from tracer.exceptions import ConfigurationError

log = logging.getLogger(__name__)
#: Where ``npm install`` puts the native binary that ``@foundry-rs/anvil`` ships (linux x64).
ANVIL_BINARY_RELATIVE = Path("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")

#: How long the miner stays paused before a dump, so that a block being mined when the pause came is finished.
MINER_SETTLE_SECONDS = 0.05
#: The wait between dumps is at least this many times the last dump's duration (a long chain dumps less often):
#: anvil answers no request while it dumps (measured: an eth_blockNumber waited 0.41 s behind the 0.47 s dump of a
#: 36 MB state, and a dump under load took over a second), so the node is away at most ~1 % of the time. A
#: hard kill then loses up to a hundred dump durations of chain (one to two minutes for such a state): the
#: events anchored meanwhile, which the outbox sends again when the service reconciles.
DUMP_DUTY_FACTOR = 100

#: The development mnemonic of anvil, Hardhat and Ganache; its first key is ``config.DEV_DEPLOYER_KEY``.
DEV_MNEMONIC = "test test test test test test test test test test test junk"


def find_anvil_binary(root: Path = PROJECT_ROOT) -> Path:
    """The native anvil binary under ``root/node_modules`` (never the npm Node wrapper).

    Raises ConfigurationError when it is not installed.
    """
    candidates = [root / ANVIL_BINARY_RELATIVE]
    # Other platforms ship their binary in a sibling package (@foundry-rs/anvil-<os>-<arch>).
    candidates += sorted((root / "node_modules/@foundry-rs").glob("anvil-*/bin/anvil"))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise ConfigurationError(
        f"the anvil binary is not installed (looked for {root / ANVIL_BINARY_RELATIVE}); "
        "run scripts/run or scripts/test to install it"
    )


class AnvilSupervisor(NodeSupervisor):
    """A native anvil on ``127.0.0.1:port`` with one-second blocks and its state in ``state_path``.

    ``start()`` loads the state file if it exists; ``stop()`` ends anvil cleanly, which dumps the state;
    ``wait_for_state_dump(after)`` waits for the next periodic dump (every ``state_interval`` seconds,
    written by the supervisor with interval mining, by anvil with automine: see the module's notes).
    Accounts come from the development mnemonic, each funded with ``balance_ether``.
    ``block_time=None`` mines a block per transaction instead (automine: fast tests).
    """

    name = "anvil"

    def __init__(
        self,
        *,
        binary: Path | str,
        port: int,
        state_path: Path | str,
        log_path: Path | str,
        block_time: int | None = 1,
        chain_id: int = 31337,
        state_interval: int = 1,
        mnemonic: str = DEV_MNEMONIC,
        accounts: int = 10,
        balance_ether: int = 1_000_000,
    ) -> None:
        super().__init__(port=port, log_path=Path(log_path), chain_id=chain_id)
        self.binary = Path(binary)
        self.state_path = Path(state_path)
        self.block_time = block_time
        self.state_interval = state_interval
        self.mnemonic = mnemonic
        self.accounts = accounts
        self.balance_ether = balance_ether
        self._dumper: threading.Thread | None = None
        self._stop_dumping = threading.Event()
        self._dumping = threading.Lock()  # one dump at a time: the periodic one and a caller's

    @property
    def dumps_itself(self) -> bool:
        """True when the supervisor writes the periodic dumps (interval mining), not anvil (automine)."""
        return self.block_time is not None

    @classmethod
    def in_directory(
        cls, directory: Path, *, port: int | None = None, block_time: int | None = 1, state_interval: int = 1
    ) -> AnvilSupervisor:
        """The project's anvil keeping its state file and log in ``directory``, on ``port`` or a free one."""
        return cls(
            binary=find_anvil_binary(),
            port=free_port() if port is None else port,
            state_path=directory / "anvil-state.json",
            log_path=directory / "anvil.log",
            block_time=block_time,
            state_interval=state_interval,
        )

    @property
    def backup_path(self) -> Path:
        """The state file as it was at the last successful start."""
        return self.state_path.with_name(self.state_path.name + ".bak")

    @property
    def _loading_path(self) -> Path:
        return self.state_path.with_name(self.state_path.name + ".loading")

    def command(self) -> list[str]:
        """The anvil argv (see ``anvil --help``)."""
        if self.dumps_itself:
            load = ["--load-state", str(self.state_path)] if self.state_path.exists() else []
            state = [*load, "--dump-state", str(self.state_path), "--block-time", str(self.block_time)]
        else:
            state = ["--state", str(self.state_path), "--state-interval", str(self.state_interval)]
        return [
            str(self.binary),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--chain-id", str(self.chain_id),
            *state,
            "--mnemonic", self.mnemonic,
            "--accounts", str(self.accounts),
            "--balance", str(self.balance_ether),
        ]  # fmt: skip

    def prepare(self) -> None:
        """Checks the binary, creates the state directory and sets aside the state about to be loaded."""
        if not (self.binary.is_file() and os.access(self.binary, os.X_OK)):
            raise ConfigurationError(
                f"anvil binary {self.binary} is missing or not executable; run scripts/run or scripts/test "
                "to install it"
            )
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        if self.state_path.exists():
            if self.state_path.stat().st_size == 0:
                # anvil refuses an empty file; an empty file only ever means "no state yet".
                self.state_path.unlink()
            else:
                # anvil rewrites the file in place within a second of starting; keep what it loads.
                shutil.copy2(self.state_path, self._loading_path)

    def started(self) -> None:
        """anvil loaded the state file: the copy taken before start is a known-good backup now."""
        if self._loading_path.exists():
            os.replace(self._loading_path, self.backup_path)
        if self.dumps_itself:
            # An Event per dumper: a dumper still finishing a dump after stop() must not run on beside the next one.
            self._stop_dumping = threading.Event()
            self._dumper = threading.Thread(
                target=self._dump_periodically, args=(self._stop_dumping,), name="anvil-state-dump", daemon=True
            )
            self._dumper.start()

    def stop(self, *, timeout: float = 10.0) -> int | None:
        """Stops the dumps, then anvil (SIGTERM: it writes its exit dump)."""
        self._stop_dumper()
        return super().stop(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would: the state is what the last dump holds (a dump under way is not waited for)."""
        self._stop_dumper(wait=False)
        super().kill()

    def dump_state(self) -> float:
        """Writes a consistent dump after the next block: the miner is paused while anvil serialises its state.

        Returns the seconds the dump itself took (anvil's serialising to the file in place).

        Raises OSError when anvil does not answer, ConfigurationError when it refuses; the file is then untouched.
        """
        if not self.dumps_itself:
            raise ConfigurationError("with automine anvil writes its own dumps (--state-interval)")
        with self._dumping:
            # Pause right after a block: setting the interval again restarts anvil's timer, so a pause at a random
            # moment (every second, with one-second blocks) could keep postponing the next block for ever.
            self._wait_for_next_block()
            self._rpc("evm_setIntervalMining", 0)
            try:
                time.sleep(MINER_SETTLE_SECONDS)
                started = time.monotonic()
                dumped = self._rpc("anvil_dumpState")
            finally:
                self._resume_mining()
            state = gzip.decompress(bytes.fromhex(str(dumped).removeprefix("0x")))
            partial = self.state_path.with_name(self.state_path.name + ".partial")
            with open(partial, "wb") as handle:
                handle.write(state)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, self.state_path)
            return time.monotonic() - started

    def _wait_for_next_block(self) -> None:
        assert self.block_time is not None
        first = int(self._rpc("eth_blockNumber"), 16)
        deadline = time.monotonic() + 2 * self.block_time + 1
        while int(self._rpc("eth_blockNumber"), 16) == first and time.monotonic() < deadline:
            time.sleep(0.02)

    def _resume_mining(self) -> None:
        """Interval mining on again; a node that does not answer is asked again (it must not stay paused)."""
        for attempt in range(5):
            try:
                self._rpc("evm_setIntervalMining", self.block_time)
                return
            except Exception as exc:  # noqa: BLE001 - retried, then reported
                if attempt == 4 or not self.is_running():
                    log.error("could not resume anvil's miner after a state dump: %s", exc)
                    return
                time.sleep(0.2)

    def _dump_periodically(self, stop: threading.Event) -> None:
        pause = float(self.state_interval)
        while not stop.wait(pause):
            try:
                took = self.dump_state()
            except Exception as exc:  # noqa: BLE001 - a node that is away or busy is dumped next interval
                if not stop.is_set():
                    log.warning("could not dump anvil's state (%s); trying again in %.0f s", exc, pause)
                continue
            # A long chain takes long to dump (the whole file each time): at most ~1 % of the time goes to dumps.
            pause = max(float(self.state_interval), DUMP_DUTY_FACTOR * took)

    def _stop_dumper(self, *, wait: bool = True) -> None:
        self._stop_dumping.set()
        if wait and self._dumper is not None and self._dumper is not threading.current_thread():
            self._dumper.join(timeout=30)
        self._dumper = None

    def _rpc(self, method: str, *params: Any) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
        request = urllib.request.Request(self.rpc_url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
        if "error" in answer:
            raise ConfigurationError(f"anvil refused {method}: {answer['error']}")
        return answer.get("result")

    def start(self, *, timeout: float = 20.0) -> AnvilSupervisor:
        """Starts anvil (see ``NodeSupervisor.start``); a state file anvil cannot parse is named in the error."""
        try:
            super().start(timeout=timeout)
        except ConfigurationError as exc:
            if "failed to parse json file" in str(exc):
                hint = f" The state file {self.state_path} looks damaged (anvil killed while writing it?)." + (
                    f" The state loaded at the last successful start is in {self.backup_path}: "
                    "move it into place to restart from there."
                    if self.backup_path.exists()
                    else ""
                )
                raise ConfigurationError(str(exc) + hint) from exc
            raise
        return self

    def _dump_complete(self) -> bool:
        """True when the state file ends like a whole JSON document and stopped growing.

        The dump is written in place, so a fresh mtime alone may mean "being written".
        """
        try:
            size = self.state_path.stat().st_size
            with open(self.state_path, "rb") as handle:
                handle.seek(max(0, size - 64))
                complete = handle.read().rstrip().endswith(b"}")
            time.sleep(0.02)
            return complete and self.state_path.stat().st_size == size
        except OSError:
            return False

    def wait_for_state_dump(self, after: float, *, timeout: float | None = None) -> float:
        """Waits until the state file was written after the wall-clock time ``after`` (``time.time()``).

        Returns the file's modification time. Call it after a deployment so that a hard kill right
        after the first start loses nothing. Raises TimeoutError after ``timeout`` seconds (default:
        five state intervals).
        """
        limit = timeout if timeout is not None else 5 * self.state_interval + 2
        deadline = time.monotonic() + limit
        while True:
            try:
                mtime = self.state_path.stat().st_mtime
            except FileNotFoundError:
                mtime = 0.0
            if mtime > after and self._dump_complete():
                return mtime
            if time.monotonic() > deadline:
                raise TimeoutError(f"anvil did not write {self.state_path} within {limit:g} s; see {self.log_path}")
            time.sleep(0.05)
