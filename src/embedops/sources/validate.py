"""What a document must be before it enters the catalog: checked once, at the edge.

Every source (and every push) runs a record through :func:`document_problem`
before yielding it, so a record that would break a later step is skipped with
a reason instead: a lone surrogate (``"\\ud800"`` in JSON) cannot be encoded as
UTF-8, so it fails the database driver, a JSON response or a terminal long
after it was accepted; a NUL character is refused by PostgreSQL; metadata
nested hundreds of levels deep, or megabytes large, is returned with every
search hit of its document.

The limits below are on metadata, which is stored with its document and
returned with each of its search results; text has its own limits (a folder
source's ``max_bytes``, the service's request size).

>>> document_problem(Document("a", "fine", {"lang": "en", "tags": ["x", "y"]})) is None
True
>>> document_problem(Document("a", "fine", {"k": "\\ud800"})).problem
'metadata "k": lone surrogate \\\\ud800 at character 0 cannot be encoded as UTF-8'
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from embedops.sources.base import Document

MAX_ID_CHARS = 1024
MAX_METADATA_DEPTH = 20  # as Elasticsearch's default mapping depth limit
MAX_METADATA_KEYS = 1000  # keys at every level together; as Elasticsearch's default total fields limit
MAX_METADATA_BYTES = 65_536  # the metadata as compact JSON in UTF-8

LIMITS_HINT = (
    f"metadata may nest at most {MAX_METADATA_DEPTH} levels, hold at most {MAX_METADATA_KEYS:,} keys and "
    f"{MAX_METADATA_BYTES:,} bytes as JSON"
)


@dataclass(frozen=True)
class Problem:
    """Why a record cannot be used (naming the field), and what to do about it."""

    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.problem}; {self.fix}"


_UNICODE_FIX = "store valid Unicode (a lone surrogate is usually half of an emoji whose escape was cut in two)"
_NUL_FIX = "remove the NUL characters (PostgreSQL cannot store them)"
_METADATA_FIX = f"shrink or flatten the metadata ({LIMITS_HINT})"


def document_problem(doc: Document) -> Problem | None:
    """The first reason ``doc`` cannot be stored and served as it is, or None when it can."""
    return id_problem(doc.external_id) or text_problem(doc.text) or metadata_problem(doc.metadata)


def id_problem(external_id: str) -> Problem | None:
    """A usable id: 1 to :data:`MAX_ID_CHARS` characters of valid Unicode, no NUL."""
    if not external_id:
        return Problem("id: empty", "give the record a non-empty id")
    if external_id.isspace():
        return Problem("id: blank (only whitespace)", "give the record an id with some text")
    if len(external_id) > MAX_ID_CHARS:
        return Problem(f"id: longer than {MAX_ID_CHARS:,} characters ({len(external_id):,})", "use a shorter id")
    return _string_problem("id", external_id)


def text_problem(text: str, field: str = "text") -> Problem | None:
    """Text that encodes as UTF-8 and holds no NUL (emptiness is each source's own, more specific, check)."""
    return _string_problem(field, text)


def metadata_problem(metadata: Mapping[str, Any]) -> Problem | None:
    """Metadata that is a JSON object within the limits, every string valid Unicode without NUL.

    Depth and key count are checked while walking, so a structure nested thousands
    of levels deep is refused at level :data:`MAX_METADATA_DEPTH` + 1, without recursion.
    """
    root = metadata if type(metadata) is dict else dict(metadata)
    if _plain_and_small(root):  # the common case (a JSONL record's scalar fields): nothing to walk
        return None
    keys = 0
    for path, depth, value in _walk(root):
        if depth > MAX_METADATA_DEPTH:
            return Problem(f"metadata {_path(path)}: nested more than {MAX_METADATA_DEPTH} levels", _METADATA_FIX)
        if isinstance(value, dict):
            keys += len(value)
            if keys > MAX_METADATA_KEYS:
                return Problem(f"metadata: more than {MAX_METADATA_KEYS:,} keys", _METADATA_FIX)
            for key in value:
                if (found := _key_problem(path, key)) is not None:
                    return found
        elif not isinstance(value, (list, tuple)) and (found := _value_problem(path, value)) is not None:
            return found
    return _size_problem(root)


def _plain_and_small(root: dict[str, Any]) -> bool:
    """Flat, of ASCII strings without NUL, 64-bit integers, finite floats, booleans and nulls, and surely
    under the size limit (every character counted as a 6-byte escape): nothing else to check."""
    if len(root) > MAX_METADATA_KEYS:
        return False
    budget = MAX_METADATA_BYTES - 2
    for key, value in root.items():
        if type(key) is not str or not key.isascii() or "\x00" in key:
            return False
        kind = type(value)
        if kind is str:
            if not value.isascii() or "\x00" in value:
                return False
            chars = len(value)
        elif kind is int:
            if value.bit_length() > 64:
                return False
            chars = 20
        elif kind is float:
            if not math.isfinite(value):
                return False
            chars = 24
        elif kind is bool or value is None:
            chars = 5
        else:
            return False
        budget -= 6 * (len(key) + chars) + 6
        if budget < 0:
            return False
    return True


def _size_problem(root: dict[str, Any]) -> Problem | None:
    try:
        size = len(json.dumps(root, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    except ValueError as exc:  # e.g. an integer of more digits than Python writes
        return Problem(f"metadata: cannot be written as JSON ({exc})", _METADATA_FIX)
    if size > MAX_METADATA_BYTES:
        return Problem(f"metadata: {size:,} bytes as JSON, over {MAX_METADATA_BYTES:,} bytes", _METADATA_FIX)
    return None


Steps = tuple[str | int, ...]  # the keys and indexes from the metadata object to a value


def _walk(root: dict[str, Any]) -> Iterator[tuple[Steps, int, Any]]:
    """(path, depth, value) of every value, containers before their contents; depth 1 is the object itself.

    Containers deeper than one past the limit are not entered: the caller stops there.
    """
    stack: list[tuple[Steps, int, Any]] = [((), 1, root)]
    while stack:
        path, depth, value = stack.pop()
        yield path, depth, value
        if depth > MAX_METADATA_DEPTH:
            continue
        items: list[tuple[str | int, Any]]
        if isinstance(value, dict):
            items = [(k, v) for k, v in value.items() if isinstance(k, str)]
        elif isinstance(value, (list, tuple)):
            items = list(enumerate(value))
        else:
            continue
        stack.extend(((*path, k), depth + 1, v) for k, v in reversed(items))


def _path(path: Steps) -> str:
    """``"a"[0]["b"]``: keys in JSON quotes, ASCII only, so a surrogate or control character shows escaped."""
    first, *rest = path  # the first step is a key of the metadata object itself
    return json.dumps(first) + "".join(f"[{s}]" if isinstance(s, int) else f"[{json.dumps(s)}]" for s in rest)


def _key_problem(path: Steps, key: Any) -> Problem | None:
    where = f"metadata {_path(path)}" if path else "metadata"
    if not isinstance(key, str):
        return Problem(f"{where}: key {key!r} is {type(key).__name__}, not a string", "use string keys")
    return _string_problem(f"{where} key {json.dumps(key)}", key)


def _value_problem(path: Steps, value: Any) -> Problem | None:
    if value is None or isinstance(value, bool) or isinstance(value, int):
        return None
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        shown = "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
        return Problem(f"metadata {_path(path)}: {shown} is not a JSON number", "store a finite number, a string or null")
    if isinstance(value, str):
        return _string_problem(f"metadata {_path(path)}", value)
    return Problem(f"metadata {_path(path)}: {type(value).__name__} is not a JSON value",
                   "use strings, numbers, booleans, null, arrays and objects")


def _string_problem(field: str, value: str) -> Problem | None:
    if value.isascii():  # the common case, checked in C: no surrogate can hide here
        nul = value.find("\x00")
        return None if nul == -1 else Problem(f"{field}: contains a NUL character at character {nul}", _NUL_FIX)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        char = value[exc.start]
        return Problem(f"{field}: lone surrogate {ascii(char)[1:-1]} at character {exc.start} cannot be encoded"
                       " as UTF-8", _UNICODE_FIX)
    nul = value.find("\x00")
    return None if nul == -1 else Problem(f"{field}: contains a NUL character at character {nul}", _NUL_FIX)


__all__ = [
    "LIMITS_HINT", "MAX_ID_CHARS", "MAX_METADATA_BYTES", "MAX_METADATA_DEPTH", "MAX_METADATA_KEYS", "Problem",
    "document_problem", "id_problem", "metadata_problem", "text_problem",
]
