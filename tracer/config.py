"""Service configuration, read once from the environment (``TRACER_*``) and passed in where needed.

Nothing in the core reads the environment by itself: ``Settings`` is built at start-up (CLI, service,
tests) and handed down.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Anvil's and Ganache's first deterministic development account (mnemonic "test test ... junk").
DEV_DEPLOYER_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


class Settings(BaseSettings):
    """Everything the service, the CLI and the writer need to know about where things live."""

    model_config = SettingsConfigDict(env_prefix="TRACER_", extra="ignore")

    data_dir: Path = Field(default=PROJECT_ROOT / "data")
    database_url: str | None = None
    rpc_url: str | None = None
    deployer_key: str = DEV_DEPLOYER_KEY
    registry_address: str | None = None
    key_passphrase: str | None = None
    admin_key: str | None = None
    port: int = 8000
    chain_port: int = 8545
    public_url: str | None = None
    api_url: str | None = None
    # How deep a block must be before its events count as anchored.
    confirmations: int = 1
    # How long the writer sleeps when it finds nothing to send.
    writer_idle_seconds: float = 0.2

    @model_validator(mode="after")
    def _fill_derived(self) -> Settings:
        self.data_dir = self.data_dir.expanduser().resolve()
        if self.public_url is None:
            self.public_url = f"http://127.0.0.1:{self.port}"
        self.public_url = self.public_url.rstrip("/")
        if self.api_url is None:
            self.api_url = f"http://127.0.0.1:{self.port}"
        return self

    @property
    def embedded_chain(self) -> bool:
        """True when the service supervises its own anvil (no ``TRACER_RPC_URL``)."""
        return self.rpc_url is None

    @property
    def effective_rpc_url(self) -> str:
        """The JSON-RPC URL of the chain the service writes to."""
        return self.rpc_url or f"http://127.0.0.1:{self.chain_port}"

    @property
    def effective_database_url(self) -> str:
        """The SQLAlchemy URL of the off-chain store (SQLite in the data dir by default)."""
        return self.database_url or f"sqlite:///{self.data_dir / 'tracer.db'}"
