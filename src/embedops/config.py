"""``embedops.toml`` → typed settings.

Environment overrides: ``EMBEDOPS_DATABASE`` replaces ``database``. Secrets are
never stored here, only the names of environment variables holding them
(``api_key_env`` of an ``[embedders.NAME]`` section).
"""

from __future__ import annotations

import logging
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from embedops.catalog.secrets import strip_password
from embedops.curate.settings import CurateSettings
from embedops.embedding.providers import EmbedderConfig, parse_embedder_config, section_for_model
from embedops.errors import ConfigError, WorkspaceNotFound
from embedops.monitor.settings import MonitorSettings, optional_duration
from embedops.vectors.base import MAX_EF_SEARCH

if TYPE_CHECKING:
    from embedops.embedding.spend import Price

log = logging.getLogger("embedops")

CONFIG_NAME = "embedops.toml"
DEFAULT_DATABASE = ".embedops/catalog.db"
PLAN_MEMORY_CHARS = 4 * 2**20  # a sync plan's texts held in memory before the rest is spooled to disk
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
class BudgetSettings:
    """``[budget]``: the workspace's monthly spend limit, and prices of embedders without an [embedders.NAME] price."""

    monthly_usd: float | None = None
    # USD per million tokens by embedder name (in-process models cost 0 unless priced here).
    prices: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_toml(cls, raw: dict[str, Any]) -> BudgetSettings:
        unknown = sorted(set(raw) - {"monthly_usd", "prices"})
        if unknown:
            raise ConfigError(f"unknown setting(s) [budget] {', '.join(unknown)}", hint="valid settings: monthly_usd, prices")
        monthly = raw.get("monthly_usd")
        if monthly is not None and not _non_negative(monthly):
            raise ConfigError(f"[budget] monthly_usd must be a number >= 0 (got {monthly!r})", hint="e.g. monthly_usd = 50")
        prices = raw.get("prices", {})
        if not isinstance(prices, dict) or not all(_non_negative(v) for v in prices.values()):
            raise ConfigError("[budget] prices must map embedder names to USD per million tokens (numbers >= 0)",
                              hint='e.g. [budget.prices] then minilm-l6 = 0.01')
        return cls(None if monthly is None else float(monthly), {str(k): float(v) for k, v in prices.items()})

    def to_toml(self) -> dict[str, Any]:
        out: dict[str, Any] = {} if self.monthly_usd is None else {"monthly_usd": self.monthly_usd}
        if self.prices:
            out["prices"] = dict(self.prices)
        return out


def _non_negative(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


@dataclass
class Settings:
    root: Path
    database: str = DEFAULT_DATABASE
    # Name of an environment variable holding the catalog URL (with its password); never the value.
    database_env: str | None = None
    # A password given to this process (init --database URL) and never written to the file.
    database_secret: str | None = field(default=None, repr=False)
    embedder: str = DEFAULT_EMBEDDER
    chunker: str = UNNAMED_CHUNKER
    chunker_params: dict[str, Any] = field(default_factory=dict)
    alias: str = DEFAULT_ALIAS
    batch_size: int = 256
    # HNSW candidates per query (usearch / pgvector hnsw.ef_search); None: the default, which
    # grows with the index (embedops.vectors.base.default_ef_search).
    ann_ef_search: int | None = None
    # A sync that would delete more than this share of a source's documents is refused (an unmounted share).
    max_delete_share: float = 0.5
    # Characters of new and changed documents' text a sync plan holds in memory (each of its two lists);
    # past them it spools the documents to a file in the state directory (sync/spool.py). 0: spool every one.
    plan_memory_chars: int = PLAN_MEMORY_CHARS
    # The storage variant (vectors/storage.py) of the index the first sync creates; None: f32, and no check
    # against the serving index. Written by `init --storage` and by cutover/rollback to what the alias serves.
    storage: str | None = None
    sources: dict[str, SourceConfig] = field(default_factory=dict)
    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    # Named embedders ([embedders.NAME]): HTTP providers, used wherever an embedder name is.
    embedders: dict[str, EmbedderConfig] = field(default_factory=dict)
    # [curate]; None: no table, which means off (a workspace made before curation existed keeps
    # embedding every document). `embedops init` writes `enabled = true`.
    curate: CurateSettings | None = None
    budget: BudgetSettings = field(default_factory=BudgetSettings)

    @property
    def curation(self) -> CurateSettings | None:
        """The curation settings when curation is on, else None."""
        return self.curate if self.curate is not None and self.curate.enabled else None

    def price(self, embedder: str) -> float | None:
        """USD per million tokens of ``embedder`` (None: unknown); :meth:`pricing` says where it comes from."""
        return self.pricing(embedder).per_million

    def pricing(self, embedder: str) -> Price:
        """The price of ``embedder`` and its source (embedding/spend.py's ``pricing``): its section, then
        ``[budget.prices]``, then the shipped list price of its host and model."""
        from embedops.embedding.spend import pricing

        return pricing(embedder, self.embedders, self.budget.prices)

    @property
    def first_index_storage(self) -> str:
        """The storage key the first sync creates its index with (``storage``, else the default, f32)."""
        from embedops.vectors.storage import DEFAULT_KEY

        return self.storage or DEFAULT_KEY

    @property
    def path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def state_dir(self) -> Path:
        """Derived state (ANN files) lives here, next to the default catalog."""
        return self.root / ".embedops"

    @property
    def database_value(self) -> str:
        """The catalog URL to connect with: $EMBEDOPS_DATABASE, else the variable ``database_env``
        names, else the password given to this process (``init``), else ``database``."""
        if os.environ.get("EMBEDOPS_DATABASE"):
            return os.environ["EMBEDOPS_DATABASE"]
        if self.database_env:
            value = os.environ.get(self.database_env)
            if not value:
                raise ConfigError(f"database_env names ${self.database_env}, which is not set",
                                  hint=f"export {self.database_env}=postgresql://USER:PASSWORD@HOST/DB")
            return value
        return self.database_secret or self.database

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
        if self.database_env:
            doc["embedops"]["database_env"] = self.database_env
        if self.max_delete_share != 0.5:
            doc["embedops"]["max_delete_share"] = self.max_delete_share
        if self.plan_memory_chars != PLAN_MEMORY_CHARS:
            doc["embedops"]["plan_memory_chars"] = self.plan_memory_chars
        if self.storage is not None:
            doc["embedops"]["storage"] = self.storage
        if self.embedders:
            doc["embedders"] = {name: e.to_toml() for name, e in self.embedders.items()}
        if self.sources:
            doc["sources"] = {name: s.to_toml() for name, s in self.sources.items()}
        if self.monitor.to_toml():
            doc["monitor"] = self.monitor.to_toml()
        if self.curate is not None:
            doc["curate"] = {"enabled": self.curate.enabled,
                             **{k: v for k, v in self.curate.to_toml().items() if k != "enabled"}}
        if self.budget.to_toml():
            doc["budget"] = self.budget.to_toml()
        return doc

    def save(self) -> None:
        tmp = self.path.with_suffix(".toml.tmp")
        tmp.write_text(tomli_w.dumps(self.to_toml()), encoding="utf-8")
        os.replace(tmp, self.path)


NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


class EmbedopsTable(BaseModel):
    """The ``[embedops]`` table: every key typed and bounded, checked when a workspace opens."""

    model_config = ConfigDict(extra="forbid", strict=True)

    database: str = Field(DEFAULT_DATABASE, min_length=1)
    database_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    embedder: str = Field(DEFAULT_EMBEDDER, min_length=1)
    chunker: str = Field(UNNAMED_CHUNKER, min_length=1)
    chunker_params: dict[str, Any] = Field(default_factory=dict)
    alias: str = Field(DEFAULT_ALIAS, pattern=NAME_PATTERN)
    batch_size: int = Field(256, ge=1, le=100_000)
    ann_ef_search: int | None = Field(None, ge=10, le=MAX_EF_SEARCH)
    max_delete_share: float = Field(0.5, ge=0.0, le=1.0)
    plan_memory_chars: int = Field(PLAN_MEMORY_CHARS, ge=0)
    storage: str | None = Field(None, min_length=1)


def _table(path: Path, data: dict[str, Any]) -> EmbedopsTable:
    try:
        return EmbedopsTable.model_validate(data)
    except ValidationError as exc:
        problems = [_problem(e) for e in exc.errors()]
        raise ConfigError(f"{path}: " + "; ".join(problems),
                          hint="fix the value in [embedops]; `docs/configuration.md` lists every setting and its range",
                          problems=problems) from None


def _problem(error: Any) -> str:
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"unknown setting [embedops] {key} (valid settings: {', '.join(EmbedopsTable.model_fields)})"
    return f"[embedops] {key} = {error['input']!r}: {error['msg'].lower()}{_allowed(key)}"


def _allowed(key: str) -> str:
    """`` (allowed: LOW to HIGH)`` from the field's bounds, when it has any."""
    field_info = EmbedopsTable.model_fields.get(key)
    bounds = {type(m).__name__: getattr(m, type(m).__name__.lower()) for m in (field_info.metadata if field_info else [])
              if type(m).__name__ in ("Ge", "Le")}
    if not bounds:
        return ""
    return f" (allowed: {bounds.get('Ge', '-inf')} to {bounds.get('Le', 'inf')})"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise WorkspaceNotFound(f"no {CONFIG_NAME} in {path.parent}", hint="run `embedops init` there") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}", hint="fix the file's syntax") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text: {exc}", hint="save the file as UTF-8") from exc


def _embedder_sections(data: dict[str, Any], root: Path) -> dict[str, EmbedderConfig]:
    sections = data.get("embedders", {})
    if not isinstance(sections, dict) or not all(isinstance(v, dict) for v in sections.values()):
        raise ConfigError(f"{root / CONFIG_NAME}: [embedders] must hold one table per name, e.g. [embedders.oai-small]")
    return {name: parse_embedder_config(name, raw, root) for name, raw in sections.items()}


def _curate_table(data: dict[str, Any], path: Path) -> CurateSettings | None:
    raw = data.get("curate")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: [curate] must be a table", hint="see docs/curation.md for its settings")
    return CurateSettings.from_toml(dict(raw))


def _section(data: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    """Top-level table ``name`` of the file (empty when absent); ConfigError when it is another value."""
    raw = data.get(name, {})
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: [{name}] must be a table, not {raw!r}",
                          hint=f"write it as a [{name}] section of key = value lines; docs/configuration.md lists them")
    return dict(raw)


def load_settings(root: Path) -> Settings:
    path = root / CONFIG_NAME
    data = _read_toml(path)
    table = _table(path, _section(data, "embedops", path))
    settings = Settings(root=root, **table.model_dump())
    if settings.storage is not None:
        first_index_storage(settings.storage, path)
    settings.monitor = MonitorSettings.from_toml(_section(data, "monitor", path))
    settings.embedders = _embedder_sections(data, root)
    settings.curate = _curate_table(data, path)
    settings.budget = BudgetSettings.from_toml(_section(data, "budget", path))
    for name, raw in _section(data, "sources", path).items():
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: [sources.{name}] must be a table with `kind` and `path`, not {raw!r}")
        raw = dict(raw)
        try:
            kind, spath = raw.pop("kind"), raw.pop("path")
        except KeyError as exc:
            raise ConfigError(f"{path}: source {name!r} needs `kind` and `path`") from exc
        max_lag = raw.pop("max_lag", None)
        optional_duration(max_lag, what=f"[sources.{name}] max_lag")
        settings.sources[name] = SourceConfig(name, kind, spath, raw, max_lag)
    settings.database, had_password = strip_password(settings.database)
    if had_password:  # written by an older embedops: take it out of the file, keep using it in this process
        settings.database_secret = table.database
        settings.save()
        log.warning("%s held the catalog database's password; it has been removed from the file. Give it through"
                    " $EMBEDOPS_DATABASE, [embedops] database_env or ~/.pgpass from now on", path)
    return settings


def first_index_storage(key: str, where: Path | str = "[embedops] storage") -> str:
    """``key`` checked as the storage of a first index: a valid variant key (vectors/storage.py) that needs
    no fit. Returns its canonical key."""
    from embedops.vectors.storage import StorageSpec

    try:
        spec = StorageSpec.parse(key)
    except ConfigError as exc:
        raise ConfigError(f"{where}: storage {key!r}: {exc.message}", hint=exc.hint) from None
    if spec.reduction == "pca":
        raise ConfigError(f"{where}: storage {key!r} needs a PCA fitted on the index's own vectors, which a first"
                          " index does not have yet",
                          hint="start with f32 (or i8+r4, f16 ...) and change to a PCA variant with"
                          " `embedops migrate start --storage ... --dims N --pca` once vectors are stored")
    return spec.key


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
    """The workspace directory: ``start`` exactly when given (``--workspace``), else $EMBEDOPS_WORKSPACE
    exactly, else the nearest directory at or above the current one holding embedops.toml."""
    explicit = start if start is not None else (Path(os.environ["EMBEDOPS_WORKSPACE"])
                                                if os.environ.get("EMBEDOPS_WORKSPACE") else None)
    if explicit is not None:
        where = explicit.expanduser().resolve()
        if (where / CONFIG_NAME).is_file():
            return where
        named = "--workspace" if start is not None else "$EMBEDOPS_WORKSPACE"
        what = "does not exist" if not where.exists() else f"holds no {CONFIG_NAME}"
        raise WorkspaceNotFound(f"{named} {where} {what}",
                                hint=f"an explicit workspace is used exactly, never a parent: check the path, or run"
                                     f" `embedops init {where}`")
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / CONFIG_NAME).is_file():
            return candidate
    raise WorkspaceNotFound(
        f"no {CONFIG_NAME} found in {here} or any parent directory",
        hint="run `embedops init` or pass --workspace DIR (or set EMBEDOPS_WORKSPACE)",
    )
