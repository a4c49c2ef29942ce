"""Fixtures shared by every test folder: a real anvil node for the session; and how tests spread over workers.

``scripts/test`` runs the suite on pytest-xdist workers with ``--dist loadgroup``. Each worker is a pytest
session of its own (its own anvil, Ganache and eth-tester chains, temporary dirs and PostgreSQL schemas), so
only what is set up once per module needs care: the tests of a module with a module-scoped fixture (a service,
a compiled tree, a slither run) are kept on one worker, as one group, so the fixture is built once, as in a
serial run, and not once per worker; so are the tests on the session's Ganache.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from postgres_support import postgres_schema_url

from tracer.chain.anvil import AnvilSupervisor

# Property tests assert behaviour, never speed: hypothesis' per-example deadline turns a loaded machine (CI, other
# suites) into failures that say nothing about the code. Example counts stay as each test sets them.
settings.register_profile("tracer", deadline=None)
settings.load_profile("tracer")

#: Session fixtures too costly to start on every worker: Ganache is a Node.js process taking seconds of CPU to
#: start and to deploy on (anvil starts in milliseconds, so each worker has its own).
ONE_WORKER_FIXTURES = ("ganache",)
WIDER_THAN_A_TEST = {"module", "class", "package"}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups off the items
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        group = _worker_group(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


def _worker_group(item: pytest.Item) -> str | None:
    """The xdist group ``item`` must share a worker with, or None when any worker may run it.

    One group per item: xdist joins the names of several marks into a new group of their own.
    """
    fixture_info = getattr(item, "_fixtureinfo", None)
    if fixture_info is None or item.get_closest_marker("xdist_group") is not None:  # a test's own group wins
        return None
    shared = [name for name in ONE_WORKER_FIXTURES if name in fixture_info.names_closure]
    if shared:
        return shared[0]
    scopes = {definition.scope for definitions in fixture_info.name2fixturedefs.values() for definition in definitions}
    return item.nodeid.split("::", 1)[0] if scopes & WIDER_THAN_A_TEST else None


@pytest.fixture(scope="session")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real anvil (automine) for the session (one per xdist worker); yields its RPC URL."""
    directory = tmp_path_factory.mktemp("anvil")
    supervisor = AnvilSupervisor.in_directory(directory, block_time=None)
    with supervisor:
        yield supervisor.rpc_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The store of one test: a SQLite file, then a PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tracer.db'}"
    else:
        yield from postgres_schema_url()
