"""Named embedders from ``[embedders.NAME]`` sections of embedops.toml (remote providers).

>>> cfg = parse_embedder_config("oai", {"kind": "openai", "model": "text-embedding-3-small",
...                                     "base_url": "https://api.openai.com/v1", "api_key_env": "OPENAI_API_KEY"})
>>> cfg.host, declared_ref(cfg, 1536).key.split("#")[0]
('api.openai.com', 'openai:text-embedding-3-small@api.openai.com')

A section holds the *name* of the environment variable with the API key,
never the key. The space of an HTTP embedder is its base URL's host (and
port), model and dimensions: a key rotation or a different path on the same
host is the same space, and the sentinel fingerprint catches a model changed
behind the same name. No HTTP client is imported here: ``build`` does that.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, urlsplit

from embedops.errors import ConfigError
from embedops.refs import EmbedderRef

if TYPE_CHECKING:
    from embedops.embedding.http import OpenAIEmbedder
    from embedops.embedding.ratelimit import Limiter

OPENAI_BASE_URL = "https://api.openai.com/v1"
OPENAI_KEY_ENV = "OPENAI_API_KEY"
#: ``tokenizer = "bert-base-uncased"``: the packaged BERT uncased vocabulary (the MiniLM models').
BERT_UNCASED = "bert-base-uncased"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_EMBEDDER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Query parameters that carry credentials: a base_url holding one would write a secret to embedops.toml.
_SECRET_PARAMS = {"key", "api_key", "api-key", "apikey", "token", "access_token", "secret", "sig", "signature"}


@dataclass(frozen=True)
class OpenAIConfig:
    """One ``[embedders.NAME]`` section with ``kind = "openai"`` (the OpenAI embeddings protocol)."""

    name: str
    model: str
    base_url: str = OPENAI_BASE_URL
    api_key_env: str | None = None
    dimensions: int | None = None
    price_per_million_tokens: float | None = None
    max_requests_per_minute: int | None = None
    max_tokens_per_minute: int | None = None
    max_batch_size: int = 128
    max_batch_tokens: int = 100_000
    max_concurrency: int = 4
    timeout: float = 60.0
    max_retries: int = 6
    tokenizer: str | None = None
    # Put before each query / each document (an asymmetric model behind the server: e5, bge, nomic).
    query_prompt: str | None = None
    document_prompt: str | None = None
    kind: Literal["openai"] = "openai"
    # Where a relative tokenizer path is read from (the workspace); not written back.
    base_dir: str | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def host(self) -> str:
        """``host`` or ``host:port``, lower-cased: the part of the URL that names the provider."""
        return space_host(self.base_url)

    @property
    def tokenizer_path(self) -> Path | None:
        """The ``tokenizer.json`` to count tokens with (``None``: estimate)."""
        if self.tokenizer is None:
            return None
        if self.tokenizer == BERT_UNCASED:
            from embedops.embedding.onnx import bert_uncased_tokenizer

            return bert_uncased_tokenizer()
        path = Path(self.tokenizer).expanduser()
        return path if path.is_absolute() or self.base_dir is None else Path(self.base_dir) / path

    def to_toml(self) -> dict[str, Any]:
        """The section as written to embedops.toml: set values only, no name, no base_dir."""
        defaults = {f.name: f.default for f in dataclasses.fields(OpenAIConfig)}
        out: dict[str, Any] = {"kind": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("name", "kind", "base_dir") or value is None:
                continue
            if f.name in ("model", "base_url") or value != defaults[f.name]:
                out[f.name] = value
        return out


EmbedderConfig = OpenAIConfig
_KINDS: dict[str, type[OpenAIConfig]] = {"openai": OpenAIConfig}
_INTS = ("dimensions", "max_requests_per_minute", "max_tokens_per_minute", "max_batch_size", "max_batch_tokens",
         "max_concurrency")
_NUMBERS = ("price_per_million_tokens", "timeout")


def parse_embedder_config(name: str, raw: Mapping[str, Any], base_dir: Path | None = None) -> EmbedderConfig:
    """Validate one ``[embedders.NAME]`` section; :class:`ConfigError` names the key and the fix."""
    where = f"[embedders.{name}]"
    check_embedder_name(name)
    data = dict(raw)
    if "api_key" in data:
        raise ConfigError(f"{where}: api_key is not a setting: the key is never written to embedops.toml",
                          hint="put the key in an environment variable and name that variable: api_key_env = \"OPENAI_API_KEY\"")
    kind = data.pop("kind", None)
    if kind not in _KINDS:
        raise ConfigError(f"{where}: kind must be one of {sorted(_KINDS)} (got {kind!r})", hint='kind = "openai"')
    cls = _KINDS[kind]
    allowed = {f.name for f in dataclasses.fields(cls)} - {"name", "kind", "base_dir"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {unknown}", hint=f"valid settings: {sorted(allowed)}")
    if not isinstance(data.get("model"), str) or not data["model"].strip():
        raise ConfigError(f"{where}: model is required (the provider's model name)", hint='model = "text-embedding-3-small"')
    _check_values(where, data)
    return cls(name=name, kind=kind, base_dir=str(base_dir) if base_dir else None, **data)


def _check_values(where: str, data: dict[str, Any]) -> None:
    for key in _INTS:
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{where}: {key} must be a positive integer (got {value!r})", hint=f"fix or remove {key}")
    for key in _NUMBERS:
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0
                                  or (key == "timeout" and value == 0)):
            raise ConfigError(f"{where}: {key} must be a positive number (got {value!r})", hint=f"fix or remove {key}")
    retries = data.get("max_retries")
    if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int) or retries < 0):
        raise ConfigError(f"{where}: max_retries must be an integer >= 0 (got {retries!r})", hint="e.g. max_retries = 6")
    if "base_url" in data:
        check_base_url(where, data["base_url"])
    if data.get("api_key_env") is not None:
        check_key_env(where, data["api_key_env"])
    for key in ("query_prompt", "document_prompt"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise ConfigError(f"{where}: {key} must be a string (got {data[key]!r})", hint=f'e.g. {key} = "query: "')
    if data.get("tokenizer") is not None and not isinstance(data["tokenizer"], str):
        raise ConfigError(f"{where}: tokenizer must be {BERT_UNCASED!r} or a path to a tokenizer.json")


def check_embedder_name(name: str) -> None:
    """A configured name must not shadow a built-in one or look like ``provider:target``."""
    from embedops.embedding.registry import PACKAGED

    if not _EMBEDDER_NAME.match(name) or name in PACKAGED or name == "hashing":
        raise ConfigError(
            f"[embedders.{name}]: {name!r} cannot name a configured embedder",
            hint="use letters, digits, '.', '_' or '-', and none of the built-in names (minilm-l6, minilm-l3,"
                 " minilm-l6-int8, wordllama-256, e5-small-multilingual, use-multilingual, hashing)",
        )


def check_base_url(where: str, url: Any) -> None:
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}: base_url must be an http(s) URL with a host (got {url!r})",
                          hint="e.g. base_url = \"https://api.openai.com/v1\" (POST {base_url}/embeddings)")
    if parts.username or parts.password or any(k.lower() in _SECRET_PARAMS for k, _ in parse_qsl(parts.query)):
        raise ConfigError(f"{where}: base_url carries credentials; they would be written to embedops.toml",
                          hint="remove them from the URL; put the key in an environment variable named by api_key_env")


def check_key_env(where: str, value: Any) -> None:
    if not isinstance(value, str) or not _ENV_NAME.match(value):
        # A value that is not a variable name is most likely the key itself: say so without echoing it.
        raise ConfigError(f"{where}: api_key_env must be the NAME of an environment variable (letters, digits, _)",
                          hint="api_key_env = \"OPENAI_API_KEY\", with the key exported in that variable; never the key itself")


def space_host(base_url: str) -> str:
    """``host[:port]`` of a URL, lower-cased; the port only when the URL names one."""
    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower()
    return f"{host}:{parts.port}" if parts.port else host


def declared_ref(config: EmbedderConfig, dims: int) -> EmbedderRef:
    """The space of an HTTP embedder: provider kind, model, host (as revision), dimensions and prompts."""
    return EmbedderRef(
        provider=config.kind,
        model=config.model,
        revision=config.host,
        dims=dims,
        metric="cosine",
        normalized=True,
        max_tokens=None,
        extra={"name": config.name, "host": config.host, "kind": config.kind},
        query_prompt=config.query_prompt or "",
        document_prompt=config.document_prompt or "",
    )


def api_key(config: EmbedderConfig) -> str | None:
    """The key from the environment variable the section names (read at build time, kept in memory only)."""
    if config.api_key_env is None:
        return None
    value = os.environ.get(config.api_key_env)
    if not value:
        raise ConfigError(
            f"embedder {config.name!r} reads its API key from ${config.api_key_env}, which is not set",
            hint=f"export {config.api_key_env}=... in the environment that runs embedops (the key is never stored)",
            embedder=config.name,
        )
    return value


def build(config: EmbedderConfig, *, limiter: Limiter | None = None, dims: int | None = None) -> OpenAIEmbedder:
    """The live embedder for a section (imports httpx; a probe request when neither ``dimensions`` nor
    ``dims`` is set). ``limiter``: one shared with other workers (a Ray run), else the embedder's own."""
    from embedops.embedding.http import OpenAIEmbedder

    return OpenAIEmbedder(config, api_key=api_key(config), limiter=limiter, dims=dims)


def section_for_model(model: str, *, base_url: str | None, api_key_env: str | None) -> EmbedderConfig:
    """The section ``embedops init --embedder openai:MODEL`` writes: named after the model.

    The OpenAI API is the default ``base_url``, with its key in ``$OPENAI_API_KEY``;
    another ``base_url`` (a self-hosted server) needs no key unless ``api_key_env`` is given.
    """
    model = model.strip()
    name = re.sub(r"[^a-z0-9._-]+", "-", model.rsplit("/", 1)[-1].lower()).strip("-.") or "openai"
    url = base_url or OPENAI_BASE_URL
    key_env = api_key_env if api_key_env is not None else (OPENAI_KEY_ENV if space_host(url) == "api.openai.com" else None)
    raw: dict[str, Any] = {"kind": "openai", "model": model, "base_url": url}
    if key_env is not None:
        raw["api_key_env"] = key_env
    return parse_embedder_config(name, raw)
