"""A background loop: rounds of work in a daemon thread, backing off while the chain is away."""

from __future__ import annotations

import logging
import threading

from tracer.exceptions import ChainUnavailable

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 5.0


class Worker:
    """Runs ``run_once`` in a thread until ``stop``; sleeps ``idle_seconds`` when a round did nothing.

    A round that fails (the node is down, or any bug) is logged and retried with a doubling pause: the
    service must outlive a bad round.
    """

    name = "worker"

    def __init__(self, *, idle_seconds: float) -> None:
        self._idle_seconds = idle_seconds
        self._stop = threading.Event()
        self._wakeup = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """One round of work; returns how much it did (0: nothing to do)."""
        raise NotImplementedError

    def start(self) -> None:
        """Runs rounds in a daemon thread until ``stop``."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"tracer-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Asks the thread to finish its round and waits for it."""
        self._stop.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def notify(self) -> None:
        """Wakes the loop early: there is work."""
        self._wakeup.set()

    def _loop(self) -> None:
        backoff = self._idle_seconds
        while not self._stop.is_set():
            try:
                progressed = self.run_once()
                backoff = self._idle_seconds
            except ChainUnavailable as exc:
                log.warning("%s: chain unavailable, retrying in %.1fs: %s", self.name, backoff, exc)
                progressed = 0
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            except Exception:  # the loop must outlive any single bad round
                log.exception("%s round failed", self.name)
                progressed = 0
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            if not progressed:
                self._wakeup.wait(backoff)
                self._wakeup.clear()
