"""The HTTP service (``embedops serve``): FastAPI routes over the library; nothing else.

>>> from embedops.server import ServerConfig, create_app   # doctest: +SKIP
>>> app = create_app("path/to/workspace", ServerConfig(auth_reads=True))   # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from embedops.server.config import ServerConfig

if TYPE_CHECKING:
    from embedops.server.app import create_app

__all__ = ["ServerConfig", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":  # fastapi loads only when an app is built
        from embedops.server.app import create_app

        return create_app
    raise AttributeError(f"module 'embedops.server' has no attribute {name!r}")
