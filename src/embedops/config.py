"""``embedops.toml`` → typed settings.

Environment overrides: ``EMBEDOPS_DATABASE`` replaces ``database``. Secrets are
never stored here, only the names of environment variables holding them
(``api_key_env`` of an ``[embedders.NAME]`` section).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from embedops.embedding.providers import EmbedderConfig, parse_embedder_config, section_for_model
from embedops.errors import ConfigError, WorkspaceNotFound
from embedops.monitor.settings import MonitorSettings, optional_duration
from embedops.vectors.base import MAX_EF_SEARCH

CONFIG_NAME = "embedops.toml"
DEFAULT_DATABASE = ".embedops/catalog.db"
DEFAULT_EMBEDDER = "minilm-l6"
DEFAULT_CHUNKER = "structured"
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
    chunker: str = DEFAULT_CHUNKER
    chunker_params: dict[str, Any] = field(default_factory=dict)
    alias: str = DEFAULT_ALIAS
    batch_size: int = 256
    # HNSW candidates per query (usearch / pgvector hnsw.ef_search); None: the default, which
    # grows with the index (embedops.vectors.base.default_ef_search).
    ann_ef_search: int | None = None
    sources: dict[str, SourceConfig] = field(default_factory=dict)
    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    # Named embedders ([embedders.NAME]): HTTP providers, used wherever an embedder name is.
    embedders: dict[str, EmbedderConfig] = field(default_factory=dict)

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
        if self.embedders:
            doc["embedders"] = {name: e.to_toml() for name, e in self.embedders.items()}
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


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise WorkspaceNotFound(f"no {CONFIG_NAME} in {path.parent}", hint="run `embedops init` there") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}", hint="fix the file's syntax") from exc


def _embedder_sections(data: dict[str, Any], root: Path) -> dict[str, EmbedderConfig]:
    sections = data.get("embedders", {})
    if not isinstance(sections, dict) or not all(isinstance(v, dict) for v in sections.values()):
        raise ConfigError(f"{root / CONFIG_NAME}: [embedders] must hold one table per name, e.g. [embedders.oai-small]")
    return {name: parse_embedder_config(name, raw, root) for name, raw in sections.items()}


def load_settings(root: Path) -> Settings:
    path = root / CONFIG_NAME
    data = _read_toml(path)
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
    settings.embedders = _embedder_sections(data, root)
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


def init_settings(
    root: Path,
    *,
    embedder: str,
    chunker: str,
    database: str | None = None,
    chunker_params: dict[str, Any] | None = None,
    base_url: str | None = None,
    api_key_env: str | None = None,
) -> Settings:
    """Settings of a new workspace at ``root`` (not saved).

    An existing embedops.toml is kept when it holds only ``[embedders.*]``
    sections (written by hand before ``init``); one with a workspace in it is
    refused. ``embedder="openai:MODEL"`` adds a section named after the model
    (``base_url``, ``api_key_env``) and selects it.
    """
    path = root / CONFIG_NAME
    embedders: dict[str, EmbedderConfig] = {}
    if path.exists():
        data = _read_toml(path)
        if set(data) - {"embedders"}:
            raise ConfigError(f"{path} already exists", hint="use it as it is, or pick another directory")
        embedders = _embedder_sections(data, root)
    embedder = embedder.strip()
    if embedder.startswith("openai:"):
        section = section_for_model(embedder.partition(":")[2], base_url=base_url, api_key_env=api_key_env)
        if section.name in embedders and embedders[section.name].to_toml() != section.to_toml():
            raise ConfigError(f"{path} already has a different [embedders.{section.name}]",
                              hint=f"use it with `embedops init --embedder {section.name}`, or rename it")
        embedders[section.name] = section
        embedder = section.name
    elif base_url is not None or api_key_env is not None:
        raise ConfigError("--base-url and --api-key-env describe an HTTP embedder: pass --embedder openai:MODEL",
                          hint=f"or set them in the [embedders.{embedder}] section of {CONFIG_NAME}")
    settings = Settings(root=root, embedder=embedder, chunker=chunker, chunker_params=dict(chunker_params or {}),
                        embedders=embedders)
    if database:
        settings.database = database
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
