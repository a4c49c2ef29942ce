"""Fixtures shared by every test folder: a real anvil node for the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tracer.chain.anvil import AnvilSupervisor, find_anvil_binary
from tracer.chain.supervisor import free_port


@pytest.fixture(scope="session")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real anvil (automine) for the session; yields its RPC URL."""
    directory = tmp_path_factory.mktemp("anvil")
    supervisor = AnvilSupervisor(
        binary=find_anvil_binary(),
        port=free_port(),
        state_path=directory / "anvil-state.json",
        log_path=directory / "anvil.log",
        block_time=None,
    )
    with supervisor:
        yield supervisor.rpc_url
