"""Running the service with uvicorn (``embedops serve``).

Two guards sit here, before and around uvicorn. Reads (search, ``/status`` with the
workspace's absolute paths, ``/metrics``) are open unless ``--auth-reads``: fine on
loopback, a leak on a network interface, so a public ``--host`` without
``--auth-reads`` is refused unless ``--allow-public-reads`` says it is meant. And the
access log never shows a query string's values: a client may put a token (or private
search text) in a URL, and log files travel further than the service.
"""

from __future__ import annotations

import copy
import ipaddress
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from embedops.config import find_workspace, load_settings
from embedops.errors import ConfigError
from embedops.server.config import ServerConfig

log = logging.getLogger("embedops.server")

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def serve(
    workspace: Path | None,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    config: ServerConfig | None = None,
    access_log: bool = False,
    log_level: str = "info",
    allow_public_reads: bool = False,
) -> None:
    """Serve ``workspace`` over HTTP until interrupted (one process: writes are serialized in it)."""
    import uvicorn

    from embedops.server.app import create_app

    config = config or ServerConfig()
    exposure = check_exposure(host, config, allow_public_reads=allow_public_reads)  # before anything binds
    root = find_workspace(workspace)  # fail before binding the port when there is no workspace
    load_settings(root)  # ... or when its embedops.toml is invalid
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if exposure is not None:
        log.warning(exposure)
    if config.token() is None:
        log.warning("%s is not set: writes (and reads, with --auth-reads) are refused with 503 until it is",
                    config.token_env)
    app = create_app(root, config)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log,
                log_config=log_config(query_parameter_names(app.openapi())), timeout_graceful_shutdown=10)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (a loopback address or name)."""
    name = host.strip().strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # another host name: it may resolve to any interface


def check_exposure(host: str, config: ServerConfig, *, allow_public_reads: bool) -> str | None:
    """Refuse open reads on a network interface; with ``allow_public_reads``, the warning to log.

    None when there is nothing to say: loopback only, or reads need the token.
    """
    if config.auth_reads or is_loopback(host):
        return None
    if not allow_public_reads:
        raise ConfigError(
            f"refusing to serve {host} with reads open to the network: anyone who can reach it could search every"
            " document and read /status (the workspace's absolute paths), /metrics and /docs",
            hint=f"add --auth-reads (clients then send the token in ${config.token_env} as `Authorization: Bearer"
            " <token>`), serve 127.0.0.1 behind a proxy that authenticates, or pass --allow-public-reads if every"
            " reader of that network may see all of it",
            host=host,
        )
    return (f"PUBLIC READS: serving {host} without --auth-reads (allowed by --allow-public-reads): anyone who can"
            " reach it can search every document and read /status (absolute paths), /metrics and /docs; writes"
            f" still need ${config.token_env}")


# -- the access log ---------------------------------------------------------------------------
class RedactQueryValues(logging.Filter):
    """Access-log lines keep a request's path and the names of its query parameters, never a value.

    uvicorn logs ``(client, method, path?query, http_version, status)``. A parameter name
    the API does not declare is written ``…`` too, since a bare ``?<token>`` is a name.
    """

    def __init__(self, names: Iterable[str]) -> None:
        super().__init__()
        self.names = frozenset(names)

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (args[0], args[1], self.redact(args[2]), *args[3:])
        return True

    def redact(self, path_with_query: str) -> str:
        path, _, query = path_with_query.partition("?")
        names = (part.partition("=")[0] for part in re.split("[&;]", query) if part)
        return path + "?" + "&".join(f"{name}=…" if name in self.names else "…" for name in names)


def query_parameter_names(openapi: dict[str, Any]) -> set[str]:
    """Every query parameter name an OpenAPI document declares."""
    return {
        parameter["name"]
        for operations in openapi.get("paths", {}).values()
        for operation in operations.values() if isinstance(operation, dict)
        for parameter in operation.get("parameters", []) if parameter.get("in") == "query"
    }


def log_config(query_names: Iterable[str]) -> dict[str, Any]:
    """uvicorn's own logging configuration, with :class:`RedactQueryValues` on the access log."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_query_values"] = {"()": RedactQueryValues, "names": sorted(query_names)}
    config["handlers"]["access"].setdefault("filters", []).append("redact_query_values")
    return config
