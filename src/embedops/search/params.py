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

from embedops.errors import SearchError
from embedops.sources.validate import time_problem


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
    if (found := time_problem(aware, None)) is not None:
        raise SearchError(f"bad time {text!r}: {found.problem}", hint=found.fix)
    return aware
