"""``python -m api``: the service as ``scripts/run`` starts it: the chain, the registry, the API."""

from __future__ import annotations

import logging
import sys
import time

import uvicorn

from api.main import create_app
from tracer.chain.anvil import AnvilSupervisor, find_anvil_binary
from tracer.config import Settings
from tracer.exceptions import TracerError
from tracer.service import describe, open_service


def main() -> int:
    """Runs until Ctrl-C; the supervised anvil stops with it."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("tracer")
    settings = Settings()
    supervisor: AnvilSupervisor | None = None
    try:
        if settings.embedded_chain:
            chain_dir = settings.data_dir / "chain"
            chain_dir.mkdir(parents=True, exist_ok=True)
            supervisor = AnvilSupervisor(
                binary=find_anvil_binary(),
                port=settings.chain_port,
                state_path=chain_dir / "anvil-state.json",
                log_path=chain_dir / "anvil.log",
            )
            supervisor.start()
        service = open_service(settings)
        if supervisor is not None and service.deployed_now:
            # A hard kill right after the first start must not lose the deployment: wait for a state dump
            # that began after the deployment was mined.
            supervisor.wait_for_state_dump(after=time.time())
        for key, value in describe(service).items():
            log.info("%s: %s", key, value)
        app = create_app(service)
        uvicorn.run(app, host="127.0.0.1", port=settings.port, log_level="info")
        return 0
    except TracerError as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if supervisor is not None:
            supervisor.stop()


if __name__ == "__main__":
    sys.exit(main())
