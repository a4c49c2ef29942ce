"""Service configuration, read once from the environment (``TRACER_*``) and passed in where needed.

Nothing in the core reads the environment by itself: ``Settings`` is built at start-up (CLI, service,
tests) and handed down.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

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
    # Relayer keys (nonce lanes) the writer spreads lots over: the deployer's, and keys derived from it, funded by
    # it (tracer.chain.writer.relayer_lanes). More than one where a node caps one sender's pooled transactions.
    writer_lanes: int = Field(default=1, ge=1, le=32)
    # "production" refuses what is only fit for development (the generated key passphrase).
    env: Literal["development", "production"] = "development"
    # Write requests (POST) per second and burst, per API key and per client address (token buckets, per
    # process; 0 turns one off). Generous defaults: the benchmarks' load must not be throttled.
    rate_limit_key_per_second: float = Field(default=1000.0, ge=0)
    rate_limit_key_burst: int = Field(default=5000, ge=1)
    rate_limit_address_per_second: float = Field(default=2000.0, ge=0)
    rate_limit_address_burst: int = Field(default=10000, ge=1)

    # How often the chain's head is checked for the scans' cached per-lot logs (tracer.scan_cache, docs/scan.md).
    # A reorg or a node gone down goes unseen by scans for this long plus the check, and never longer than
    # staleness_bound (1 s, or 4 intervals). 0 turns the scan caches off (every scan reads the lot's logs and
    # hashes its events afresh, the benchmark's baseline).
    scan_check_seconds: float = Field(default=0.25, ge=0, le=5)

    # What one request may carry (docs/api.md, "Limits"); past them it is refused before any work is done.
    # The bytes and events are advertised on capture responses (GS1-EPCIS-Capture-File-Size-Limit and
    # GS1-EPCIS-Capture-Limit); deeper nesting or longer strings than any real EPCIS document has are refused
    # too, so no parser, hash or column ever sees them.
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    capture_limit: int = Field(default=500, ge=1)
    max_json_depth: int = Field(default=32, ge=8)
    max_string_length: int = Field(default=2048, ge=64)

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
    def production(self) -> bool:
        """True when told it runs in production (``TRACER_ENV=production``)."""
        return self.env == "production"

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
