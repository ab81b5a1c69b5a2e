"""Content hashing used for documents, chunks and refs (blake2b, 128-bit)."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def content_hash(text: str) -> str:
    """Stable hash of a piece of text: identical text has the same hash everywhere."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def params_hash(params: dict[str, Any]) -> str:
    """Short hash of a parameter dict, independent of key order."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(canonical.encode(), digest_size=6).hexdigest()
