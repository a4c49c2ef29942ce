"""Ganache 7 (npm ``ganache``) as a supervised node, for tests and for running the service on Ganache.

Ganache 7 stops at the Shanghai EVM (its newest ``--chain.hardfork``), which is why the contracts are
compiled for ``evmVersion: shanghai``. It is started with the development mnemonic, so anvil's first
dev key (``config.DEV_DEPLOYER_KEY``) is funded here too, and with ``--database.dbPath`` so its chain
survives a restart, a kill -9 included. See hardhat-free-ganache.md.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tracer.chain.anvil import DEV_MNEMONIC
from tracer.chain.supervisor import NodeSupervisor
from tracer.config import PROJECT_ROOT
from tracer.exceptions import ConfigurationError

#: Ganache's command-line entry point inside ``node_modules`` (run with ``node`` directly).
GANACHE_CLI_RELATIVE = Path("node_modules/ganache/dist/node/cli.js")


class GanacheSupervisor(NodeSupervisor):
    """Ganache 7 on ``127.0.0.1:port`` with its chain database in ``db_path`` (a directory).

    ``block_time=0`` (the default) is Ganache's "eager instamine": each transaction is mined into its
    own block before ``eth_sendRawTransaction`` returns, which keeps tests fast and deterministic.
    ``block_time=1`` mines once a second like the embedded anvil (transactions wait for the block).
    """

    name = "ganache"

    def __init__(
        self,
        *,
        port: int,
        db_path: Path | str,
        log_path: Path | str | None = None,
        chain_id: int = 1337,
        block_time: int = 0,
        mnemonic: str = DEV_MNEMONIC,
        balance_ether: int = 1_000_000,
        root: Path = PROJECT_ROOT,
        node: str = "node",
    ) -> None:
        db_path = Path(db_path)
        super().__init__(
            port=port, log_path=Path(log_path) if log_path else db_path.parent / "ganache.log", chain_id=chain_id
        )
        self.db_path = db_path
        self.block_time = block_time
        self.mnemonic = mnemonic
        self.balance_ether = balance_ether
        self.cli = root / GANACHE_CLI_RELATIVE
        self.node = node

    def command(self) -> list[str]:
        """The Ganache argv (see ``node node_modules/ganache/dist/node/cli.js --help``)."""
        return [
            self.node, str(self.cli),
            "--server.host", "127.0.0.1",
            "--server.port", str(self.port),
            "--server.ws", "false",
            "--chain.chainId", str(self.chain_id),
            "--chain.hardfork", "shanghai",
            "--wallet.mnemonic", self.mnemonic,
            "--wallet.defaultBalance", str(self.balance_ether),
            "--database.dbPath", str(self.db_path),
            "--miner.blockTime", str(self.block_time),
        ]  # fmt: skip

    def prepare(self) -> None:
        """Checks that node and Ganache are installed and creates the database directory."""
        if shutil.which(self.node) is None:
            raise ConfigurationError(f"{self.node!r} (Node.js 20) is not on PATH; Ganache needs it")
        if not self.cli.is_file():
            raise ConfigurationError(
                f"Ganache is not installed ({self.cli} is missing); run scripts/run or scripts/test to install it"
            )
        self.db_path.mkdir(parents=True, exist_ok=True)
