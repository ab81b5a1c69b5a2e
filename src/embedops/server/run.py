"""Running the service with uvicorn (``embedops serve``)."""

from __future__ import annotations

import logging
from pathlib import Path

from embedops.config import find_workspace, load_settings
from embedops.server.config import ServerConfig

log = logging.getLogger("embedops.server")


def serve(
    workspace: Path | None,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    config: ServerConfig | None = None,
    access_log: bool = False,
    log_level: str = "info",
) -> None:
    """Serve ``workspace`` over HTTP until interrupted (one process: writes are serialized in it)."""
    import uvicorn

    from embedops.server.app import create_app

    config = config or ServerConfig()
    root = find_workspace(workspace)  # fail before binding the port when there is no workspace
    load_settings(root)  # ... or when its embedops.toml is invalid
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if config.token() is None:
        log.warning("%s is not set: writes (and reads, with --auth-reads) are refused with 503 until it is",
                    config.token_env)
    uvicorn.run(create_app(root, config), host=host, port=port, log_level=log_level, access_log=access_log,
                timeout_graceful_shutdown=10)
