"""Helpers of the chain tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

from dataclasses import dataclass

from eth_account import Account
from eth_account.signers.local import LocalAccount

from tracer.chain.client import ChainClient
from tracer.chain.compiler import RegistryArtifact
from tracer.config import PROJECT_ROOT

CAST = PROJECT_ROOT / "node_modules/@foundry-rs/cast-linux-amd64/bin/cast"
ACTOR_ROLES = ("enterprise", "warehouse", "customs", "carrier", "payment")
FUNDING_WEI = 10**18


@dataclass(frozen=True)
class Actors:
    """One funded account per on-chain role of a freshly deployed registry."""

    admin: LocalAccount
    customs_admin: LocalAccount
    enterprise: LocalAccount
    warehouse: LocalAccount
    customs: LocalAccount
    carrier: LocalAccount
    payment: LocalAccount
    registry: str
    deploy_block: int


def deploy_with_actors(client: ChainClient, deployer: LocalAccount, artifact: RegistryArtifact) -> Actors:
    """Deploys a registry (the deployer is the platform admin) and funds and grants one account per role."""
    customs_admin = Account.create()
    registry, deploy_block = client.deploy(
        deployer=deployer, admin=deployer.address, customs_admin=customs_admin.address,
        bytecode=artifact.bytecode, abi=artifact.abi,
    )  # fmt: skip
    accounts = {role: Account.create() for role in ACTOR_ROLES}
    sent = [client.transfer(sender=deployer, to=customs_admin.address, value_wei=FUNDING_WEI)]
    for role, account in accounts.items():
        sent.append(client.transfer(sender=deployer, to=account.address, value_wei=FUNDING_WEI))
        if role != "customs":
            sent.append(client.grant_role(sender=deployer, role_name=role, address=account.address))
    for tx_hash in sent:
        client.wait_receipt(tx_hash, timeout=30)
    # Only the customs admin may grant the customs role.
    client.wait_receipt(
        client.grant_role(sender=customs_admin, role_name="customs", address=accounts["customs"].address), timeout=30
    )
    return Actors(admin=deployer, customs_admin=customs_admin, registry=registry, deploy_block=deploy_block, **accounts)
