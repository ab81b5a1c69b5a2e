"""embedops: operate an embedding pipeline like a primary database.

``import embedops`` is cheap: the Workspace and its dependencies load on first
use, and model libraries (torch, onnxruntime) only inside embedder factories.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from embedops.errors import EmbedopsError
    from embedops.search.engine import Filters, SearchResult
    from embedops.workspace import Workspace

__all__ = ["EmbedopsError", "Filters", "SearchResult", "Workspace", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Workspace":
        from embedops.workspace import Workspace

        return Workspace
    if name in ("Filters", "SearchResult"):
        from embedops.search import engine

        return getattr(engine, name)
    if name == "EmbedopsError":
        from embedops.errors import EmbedopsError

        return EmbedopsError
    raise AttributeError(f"module 'embedops' has no attribute {name!r}")
