"""Start, watch and stop a local Ethereum node process (anvil, Ganache): what both supervisors share.

A supervised node runs in its own process group, so stopping it reaches every process it spawned
(the npm ``anvil`` command, for one, is a Node wrapper whose child outlives a signal to the wrapper).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from tracer.exceptions import ChainUnavailable, ConfigurationError

LOCALHOST = "127.0.0.1"


def port_in_use(port: int, host: str = LOCALHOST) -> bool:
    """True when something already listens on ``host:port`` (or the port cannot be bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Without SO_REUSEADDR a port in TIME_WAIT would look taken although a node could bind it.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = LOCALHOST) -> int:
    """A TCP port that is free right now (for tests and tools that start their own node)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def rpc_chain_id(rpc_url: str, *, timeout: float = 1.0) -> int | None:
    """The node's ``eth_chainId``, or None when nothing answers at ``rpc_url`` (never raises)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    request = urllib.request.Request(rpc_url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(json.load(response)["result"], 16)
    except (OSError, urllib.error.URLError, ValueError, KeyError, TypeError):
        return None


class NodeSupervisor:
    """Runs one node process on ``127.0.0.1:port`` in its own process group, logging to ``log_path``.

    Subclasses say which command to run (``command()``) and what to prepare before it starts
    (``prepare()``). ``start()`` waits until the node answers ``eth_chainId``; ``stop()`` sends SIGTERM
    to the group, waits, then SIGKILL. Use it as a context manager to stop the node on the way out.
    """

    #: Shown in error messages ("anvil", "ganache").
    name = "node"
    #: The environment variable a user changes to pick another port (named in the port-in-use error).
    port_env_var = "TRACER_CHAIN_PORT"

    def __init__(self, *, port: int, log_path: Path, chain_id: int) -> None:
        self.port = port
        self.log_path = Path(log_path)
        self.chain_id = chain_id
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    # -- what subclasses provide ----------------------------------------------------------------

    def command(self) -> list[str]:
        """The argv that starts the node."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Called before the node starts (create directories, check files)."""

    def started(self) -> None:
        """Called once the node answers."""

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def rpc_url(self) -> str:
        """The node's HTTP JSON-RPC URL."""
        return f"http://{LOCALHOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The node's process id (also its process group id) while it runs."""
        return self._process.pid if self._process is not None else None

    def is_running(self) -> bool:
        """True while the node process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self, *, timeout: float = 20.0) -> Self:
        """Starts the node and waits until it answers ``eth_chainId`` with ``chain_id``.

        Raises ConfigurationError when the port is taken, the node exits at once (bad flags, unreadable
        state) or answers with another chain id; ChainUnavailable when it does not answer in ``timeout``.
        """
        if self.is_running():
            return self
        if port_in_use(self.port):
            raise ConfigurationError(
                f"port {self.port} on {LOCALHOST} is already in use, so {self.name} cannot listen there "
                f"(another node or an earlier run still running?); stop that process or set "
                f"{self.port_env_var} to a free port"
            )
        self.prepare()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        argv = self.command()
        self._log_file.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        self._log_file.flush()
        try:
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() reaches every child
                preexec_fn=_terminate_with_parent,
            )
        except OSError as exc:
            self._close_log()
            raise ConfigurationError(f"cannot start {self.name} ({argv[0]}): {exc}") from exc
        deadline = time.monotonic() + timeout
        while True:
            code = self._process.poll()
            if code is not None:
                self._process = None
                self._close_log()
                raise ConfigurationError(
                    f"{self.name} exited at start (exit code {code}); see {self.log_path}:\n{self.log_tail()}"
                )
            answered = rpc_chain_id(self.rpc_url, timeout=0.5)
            if answered is not None:
                if answered != self.chain_id:
                    self.stop()
                    raise ConfigurationError(
                        f"{self.name} on {self.rpc_url} answers chain id {answered}, expected {self.chain_id} "
                        f"(its saved state belongs to another chain?); see {self.log_path}"
                    )
                break
            if time.monotonic() > deadline:
                self.stop()
                raise ChainUnavailable(
                    self.rpc_url, f"{self.name} did not answer within {timeout:g} s; see {self.log_path}"
                )
            time.sleep(0.05)
        self.started()
        return self

    def stop(self, *, timeout: float = 10.0) -> int | None:
        """Stops the node: SIGTERM to its process group (a clean exit), then SIGKILL after ``timeout``.

        Returns the exit code (None if it was not running).
        """
        process = self._process
        if process is None:
            return None
        try:
            if process.poll() is None:
                self._signal_group(process, signal.SIGTERM)
                try:
                    process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self._signal_group(process, signal.SIGKILL)
                    process.wait(timeout=5)
            # Children that ignored SIGTERM die with the group.
            self._signal_group(process, signal.SIGKILL)
            return process.returncode
        finally:
            self._process = None
            self._close_log()

    def kill(self) -> None:
        """SIGKILL to the node's process group, as a crash would (for tests of what survives)."""
        process = self._process
        if process is None:
            return
        self._signal_group(process, signal.SIGKILL)
        process.wait(timeout=5)
        self._process = None
        self._close_log()

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the node's log file."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.is_running() else "stopped"
        return f"<{type(self).__name__} {self.rpc_url} {state}>"

    # -- internals ------------------------------------------------------------------------------

    @staticmethod
    def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def _terminate_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the service dies, even by ``kill -9``.

    Without this a hard-killed service leaves its node running on the port, and the next start fails;
    SIGTERM (not SIGKILL) lets anvil dump its state on the way out. Linux only; elsewhere a no-op.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


_PR_SET_PDEATHSIG = 1
