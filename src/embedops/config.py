"""``embedops.toml`` → typed settings.

Environment overrides: ``EMBEDOPS_DATABASE`` replaces ``database``. Secrets are
never stored here, only the names of environment variables holding them.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from embedops.errors import ConfigError, WorkspaceNotFound
from embedops.monitor.settings import MonitorSettings, optional_duration
from embedops.vectors.base import MAX_EF_SEARCH

CONFIG_NAME = "embedops.toml"
DEFAULT_DATABASE = ".embedops/catalog.db"
DEFAULT_EMBEDDER = "minilm-l6"
# `embedops init` gives new workspaces the `auto` chunker (code by syntax, the rest as prose).
DEFAULT_CHUNKER = "auto"
# An embedops.toml without `chunker` means what it meant before `auto` existed: an existing
# workspace keeps its chunker, since changing it is a migration, never a silent re-chunk.
UNNAMED_CHUNKER = "structured"
DEFAULT_ALIAS = "prod"


@dataclass
class SourceConfig:
    name: str
    kind: str
    path: str
    options: dict[str, Any] = field(default_factory=dict)
    # Freshness SLO of this source (overrides [monitor] max_lag), e.g. "1h"; "off" for none.
    max_lag: str | None = None

    def to_toml(self) -> dict[str, Any]:
        extra = {} if self.max_lag is None else {"max_lag": self.max_lag}
        return {"kind": self.kind, "path": self.path, **self.options, **extra}


@dataclass
class Settings:
    root: Path
    database: str = DEFAULT_DATABASE
    embedder: str = DEFAULT_EMBEDDER
    chunker: str = UNNAMED_CHUNKER
    chunker_params: dict[str, Any] = field(default_factory=dict)
    alias: str = DEFAULT_ALIAS
    batch_size: int = 256
    # HNSW candidates per query (usearch / pgvector hnsw.ef_search); None: the default, which
    # grows with the index (embedops.vectors.base.default_ef_search).
    ann_ef_search: int | None = None
    sources: dict[str, SourceConfig] = field(default_factory=dict)
    monitor: MonitorSettings = field(default_factory=MonitorSettings)

    @property
    def path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def state_dir(self) -> Path:
        """Derived state (ANN files) lives here, next to the default catalog."""
        return self.root / ".embedops"

    @property
    def database_value(self) -> str:
        return os.environ.get("EMBEDOPS_DATABASE") or self.database

    def to_toml(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "embedops": {
                "database": self.database,
                "embedder": self.embedder,
                "chunker": self.chunker,
                "alias": self.alias,
                "batch_size": self.batch_size,
            }
        }
        if self.chunker_params:
            doc["embedops"]["chunker_params"] = self.chunker_params
        if self.ann_ef_search is not None:
            doc["embedops"]["ann_ef_search"] = self.ann_ef_search
        if self.sources:
            doc["sources"] = {name: s.to_toml() for name, s in self.sources.items()}
        if self.monitor.to_toml():
            doc["monitor"] = self.monitor.to_toml()
        return doc

    def save(self) -> None:
        tmp = self.path.with_suffix(".toml.tmp")
        tmp.write_text(tomli_w.dumps(self.to_toml()), encoding="utf-8")
        os.replace(tmp, self.path)


_KNOWN_KEYS = {"database", "embedder", "chunker", "chunker_params", "alias", "batch_size", "ann_ef_search"}


def load_settings(root: Path) -> Settings:
    path = root / CONFIG_NAME
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise WorkspaceNotFound(f"no {CONFIG_NAME} in {root}", hint="run `embedops init` there") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}", hint="fix the file's syntax") from exc
    main = data.get("embedops", {})
    unknown = set(main) - _KNOWN_KEYS
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting(s) {sorted(unknown)} in [embedops]",
            hint=f"valid settings: {sorted(_KNOWN_KEYS)}",
        )
    settings = Settings(root=root, **main)
    ef = settings.ann_ef_search
    if ef is not None and (not isinstance(ef, int) or isinstance(ef, bool) or not 10 <= ef <= MAX_EF_SEARCH):
        raise ConfigError(f"{path}: ann_ef_search must be an integer from 10 to {MAX_EF_SEARCH} (got {ef!r})",
                          hint="more candidates: higher recall, slower queries; remove the key for the default")
    settings.monitor = MonitorSettings.from_toml(dict(data.get("monitor", {})))
    for name, raw in data.get("sources", {}).items():
        raw = dict(raw)
        try:
            kind, spath = raw.pop("kind"), raw.pop("path")
        except KeyError as exc:
            raise ConfigError(f"{path}: source {name!r} needs `kind` and `path`") from exc
        max_lag = raw.pop("max_lag", None)
        optional_duration(max_lag, what=f"[sources.{name}] max_lag")
        settings.sources[name] = SourceConfig(name, kind, spath, raw, max_lag)
    return settings


def find_workspace(start: Path | None = None) -> Path:
    """The nearest directory at or above ``start`` holding embedops.toml, or $EMBEDOPS_WORKSPACE."""
    env = os.environ.get("EMBEDOPS_WORKSPACE")
    if start is None and env:
        return Path(env).resolve()
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / CONFIG_NAME).is_file():
            return candidate
    raise WorkspaceNotFound(
        f"no {CONFIG_NAME} found in {here} or any parent directory",
        hint="run `embedops init` or pass --workspace DIR (or set EMBEDOPS_WORKSPACE)",
    )
