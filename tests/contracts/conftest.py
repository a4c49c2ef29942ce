"""Fixtures for the registry contract tests: an in-process eth-tester chain, one account per role and the
registry deployed from the committed artifact, reset to a snapshot after every test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest
from eth_tester.exceptions import TransactionFailed
from registry_support import Accounts, Driver, decode_custom_error, revert_data, role_id
from web3 import EthereumTesterProvider, Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError

from tracer.chain.compiler import RegistryArtifact, load_artifact


@pytest.fixture(scope="session")
def w3() -> Web3:
    """An in-process eth-tester (py-evm) chain."""
    return Web3(EthereumTesterProvider())


@pytest.fixture(scope="session")
def accounts(w3: Web3) -> Accounts:
    return Accounts(*w3.eth.accounts[:9])


@pytest.fixture(scope="session")
def artifact() -> RegistryArtifact:
    return load_artifact("TraceRegistry")


@pytest.fixture(scope="session")
def _deployed(w3: Web3, accounts: Accounts, artifact: RegistryArtifact) -> Contract:
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    tx = factory.constructor(accounts.admin, accounts.customs_admin).transact({"from": accounts.admin})
    address = w3.eth.wait_for_transaction_receipt(tx)["contractAddress"]
    registry = w3.eth.contract(address=address, abi=artifact.abi)
    for name in ("enterprise", "warehouse", "carrier", "payment"):
        registry.functions.grantRole(role_id(name), getattr(accounts, name)).transact({"from": accounts.admin})
    registry.functions.grantRole(role_id("enterprise"), accounts.other_enterprise).transact({"from": accounts.admin})
    registry.functions.grantRole(role_id("customs"), accounts.customs).transact({"from": accounts.customs_admin})
    return registry


@pytest.fixture
def registry(w3: Web3, _deployed: Contract) -> Iterator[Contract]:
    """The registry with every role granted, reset to its freshly deployed state after the test."""
    tester = w3.provider.ethereum_tester
    snapshot = tester.take_snapshot()
    yield _deployed
    tester.revert_to_snapshot(snapshot)


@pytest.fixture
def driver(registry: Contract, accounts: Accounts) -> Driver:
    return Driver(registry, accounts)


@pytest.fixture
def expect_revert(registry: Contract) -> Callable[..., AbstractContextManager[None]]:
    """``with expect_revert("TraceRegistryOverSplit", lot, 11, 10): ...`` asserts the custom error and,
    when given, its arguments."""

    @contextmanager
    def check(name: str, *args: Any) -> Iterator[None]:
        with pytest.raises((ContractCustomError, TransactionFailed)) as info:
            yield
        got_name, got_args = decode_custom_error(registry.abi, revert_data(info.value))
        assert got_name == name, f"reverted with {got_name}{got_args}, expected {name}"
        if args:
            assert got_args == tuple(args)

    return check
