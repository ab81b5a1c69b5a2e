"""Source kinds by name: build a source from configuration, checking its options.

>>> src = make_source("docs", "folder", "./docs", include=["**/*.md"])   # doctest: +SKIP
>>> source_options("jsonl")
['id_field', 'metadata_fields', 'text_field', 'title_field', 'updated_field']
>>> source_needs_path("sql")
False
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedops.errors import ConfigError
from embedops.sources.base import Source
from embedops.sources.beir import BeirSource
from embedops.sources.folder import FolderSource
from embedops.sources.jsonl import JsonlSource
from embedops.sources.push import PushSource

SOURCE_KINDS: tuple[str, ...] = ("folder", "jsonl", "parquet", "beir", "push", "sql")


@dataclass(frozen=True)
class _OptionType:
    """What an option's value must be, as a check and as words for the error."""

    described: str
    check: Callable[[Any], bool]


_STRING = _OptionType("a non-empty string", lambda v: isinstance(v, str) and bool(v.strip()))
_STRING_LIST = _OptionType(
    "a list of strings",
    lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v),
)
_POSITIVE_INT = _OptionType(
    "a positive integer", lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0
)
_BOOL = _OptionType("true or false", lambda v: isinstance(v, bool))


def _sql_source(name: str, path: Path | None, **options: Any) -> Source:
    from embedops.sources.sql import SqlSource  # SQLAlchemy dialects load only for a sql source

    return SqlSource(name, path, **options)


def _parquet_source(name: str, path: Path, **options: Any) -> Source:
    from embedops.sources.parquet import ParquetSource

    return ParquetSource(name, path, **options)


@dataclass(frozen=True)
class _Kind:
    factory: Callable[..., Source]
    options: dict[str, _OptionType]
    needs_path: bool = True  # False: documents arrive through the API (push) or from a database (sql)


_KINDS: dict[str, _Kind] = {
    "folder": _Kind(
        FolderSource,
        {
            "include": _STRING_LIST,
            "exclude": _STRING_LIST,
            "max_bytes": _POSITIVE_INT,
            "default_excludes": _BOOL,
            "follow_external_symlinks": _BOOL,
        },
    ),
    "jsonl": _Kind(
        JsonlSource,
        {
            "id_field": _STRING,
            "text_field": _STRING,
            "title_field": _STRING,
            "metadata_fields": _STRING_LIST,
            "updated_field": _STRING,
        },
    ),
    "parquet": _Kind(
        _parquet_source,
        {
            "id_field": _STRING,
            "text_field": _STRING,
            "title_field": _STRING,
            "metadata_fields": _STRING_LIST,
            "updated_field": _STRING,
        },
    ),
    "beir": _Kind(BeirSource, {}),
    "push": _Kind(PushSource, {}, needs_path=False),
    "sql": _Kind(
        _sql_source,
        {
            "url": _STRING,
            "url_env": _STRING,
            "table": _STRING,
            "query": _STRING,
            "id_column": _STRING,
            "text": _STRING,
            "title": _STRING,
            "updated_at": _STRING,
            "where": _STRING,
            "metadata": _STRING_LIST,
        },
        needs_path=False,
    ),
}


def source_options(kind: str) -> list[str]:
    """The option names a source kind accepts, sorted."""
    return sorted(_kind(kind).options)


def source_needs_path(kind: str) -> bool:
    """Whether a source of ``kind`` reads a path (every kind but ``push``)."""
    return _kind(kind).needs_path


def make_source(name: str, kind: str, path: str | Path | None, **options: Any) -> Source:
    """Build a source of ``kind`` reading ``path``, after checking every option.

    An option set to None means "use the default". Raises :class:`ConfigError`
    for an unknown kind, an unknown option (naming the valid ones) or a value
    of the wrong type.
    """
    spec = _kind(kind)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(
            f"a {kind} source needs a non-empty name", hint="give the source a name, e.g. 'docs'"
        )
    given = {key: value for key, value in options.items() if value is not None}
    for key, value in given.items():
        _check_option(name, kind, spec, key, value)
    if path is None and spec.needs_path:
        raise ConfigError(
            f"source {name!r}: a {kind} source needs a path", hint="give the folder or file it reads", source=name
        )
    return spec.factory(name, None if path is None else Path(path), **given)


def _kind(kind: str) -> _Kind:
    try:
        return _KINDS[kind]
    except KeyError:
        raise ConfigError(
            f"unknown source kind {kind!r}; valid kinds: {', '.join(SOURCE_KINDS)}",
            hint="set kind to one of: " + ", ".join(SOURCE_KINDS),
            kind=kind,
        ) from None


def _check_option(name: str, kind: str, spec: _Kind, key: str, value: Any) -> None:
    valid = ", ".join(sorted(spec.options)) or "none"
    option_type = spec.options.get(key)
    if option_type is None:
        raise ConfigError(
            f"source {name!r}: unknown option {key!r} for a {kind} source; valid options: {valid}",
            hint=f"remove {key!r} from the source's configuration or fix its spelling",
            source=name,
            option=key,
        )
    if not option_type.check(value):
        raise ConfigError(
            f"source {name!r}: option {key!r} must be {option_type.described}, got {value!r}",
            hint=f"set {key} to {option_type.described} in the source's configuration",
            source=name,
            option=key,
        )

