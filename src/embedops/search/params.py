"""Search parameters as users type them, parsed once for the CLI and the HTTP service.

>>> parse_where(["lang=en", "path=a=b"])
{'lang': 'en', 'path': 'a=b'}
>>> parse_time("2024-05-01T10:00:00").isoformat()
'2024-05-01T10:00:00+00:00'
>>> parse_time("2024-05-01T10:00:00+02:00").isoformat()
'2024-05-01T10:00:00+02:00'
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from embedops.errors import SearchError

if TYPE_CHECKING:
    from embedops.search.engine import Filters


def parse_where(items: Iterable[str]) -> dict[str, str]:
    """``KEY=VALUE`` metadata filters (the value may contain ``=``)."""
    parsed = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SearchError(f"bad metadata filter {item!r}", hint="use KEY=VALUE, e.g. --where ext=md")
        parsed[key] = value
    return parsed


def utc(moment: datetime | None) -> datetime | None:
    """``moment`` with a time zone: a naive time is UTC, everywhere (CLI, HTTP, library)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=timezone.utc)


def parse_time(text: str) -> datetime:
    """An ISO 8601 date or time (``2024-05-01``, ``2024-05-01T10:00``, ``...Z``, ``...+02:00``); naive = UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise SearchError(f"bad time {text!r}", hint="use ISO 8601, e.g. 2024-05-01 or 2024-05-01T10:00:00Z"
                          " (a time without a zone is UTC)") from None
    aware = utc(moment)
    assert aware is not None
    return aware


def refuse_nul(texts: Iterable[str], alias: str | None, index: str | None, filters: Filters | None) -> None:
    """A :class:`SearchError` when a query, name or filter value holds a NUL: none stored here holds one, and
    PostgreSQL refuses one even in a value it only compares."""
    values = [*texts, alias or "", index or ""]
    if filters is not None:
        values += [filters.source or "", *map(str, filters.metadata.values())]
    if any("\x00" in value for value in values):
        raise SearchError("a query, alias, index, source or filter value holds a NUL character",
                          hint="remove it: no text, name or metadata value stored here holds one")
