"""An embedder over the OpenAI embeddings protocol: ``POST {base_url}/embeddings``.

Speaks to OpenAI and to the servers that copy its protocol (vLLM, Hugging Face
TEI, infinity, Ollama, LiteLLM). One ``embed`` call is split into requests by
count and by (estimated) tokens, sent ``max_concurrency`` at a time, paced by
client-side per-minute budgets, and retried with backoff on 429, 5xx,
timeouts, dropped connections and responses that do not hold one vector per
input. Inputs the provider refuses are isolated by splitting the request and
reported in :class:`~embedops.errors.InputsRejected`; nothing refused, empty or
zero ever becomes a vector.

httpx does what a client library does: connection pooling bounded by
``max_concurrency``, timeouts, and re-trying connections that could not be
opened (its transport's ``retries``). What it does not do, since it is about
this protocol, is here: retry on status codes and short responses with one
budget shared with the rate limiter, ``Retry-After`` that pauses every worker,
and splitting a refused batch to find the refused input.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from math import ceil
from typing import Any

import httpx
import numpy as np

from embedops.chunking.tokens import count_regex_tokens
from embedops.embedding.providers import EmbedderConfig, declared_ref
from embedops.embedding.ratelimit import Limiter, RateLimiter, RetryPolicy, parse_retry_after
from embedops.errors import EmbeddingError, InputsRejected, ProviderRefused, ProviderUnavailable

# Connections that cannot be opened are retried by httpx's transport before our own backoff sees them.
CONNECT_RETRIES = 2
_REJECTED_STATUS = (400, 413, 422)
_PROBE_TEXT = "dimension probe"


@dataclass
class Usage:
    """What an embedder spent: requests, retries and tokens (as the provider's ``usage`` reports them).

    ``estimated_tokens`` counts inputs of responses that carried no ``usage``
    (counted with the embedder's tokenizer or estimate). ``requests`` includes
    retries; ``failed_requests`` those that brought no vectors.
    """

    calls: int = 0
    inputs: int = 0
    requests: int = 0
    failed_requests: int = 0
    retries: int = 0
    tokens: int = 0
    estimated_tokens: int = 0
    rejected: int = 0
    retry_causes: dict[str, int] = field(default_factory=dict)

    def add(self, other: Usage) -> None:
        for f in fields(self):
            if f.name != "retry_causes":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        for cause, n in other.retry_causes.items():
            self.retry_causes[cause] = self.retry_causes.get(cause, 0) + n

    def __sub__(self, earlier: Usage) -> Usage:
        """The usage between two snapshots: ``after - before``."""
        diff = Usage(**{f.name: getattr(self, f.name) - getattr(earlier, f.name) for f in fields(self)
                        if f.name != "retry_causes"})
        diff.retry_causes = {c: n - earlier.retry_causes.get(c, 0) for c, n in self.retry_causes.items()
                             if n != earlier.retry_causes.get(c, 0)}
        return diff

    def copy(self) -> Usage:
        clone = Usage()
        clone.add(self)
        return clone

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class _Meter:
    """Counts into one call's usage and the embedder's running total together."""

    def __init__(self, total: Usage, lock: threading.Lock) -> None:
        self.call, self._total, self._lock = Usage(), total, lock

    def count(self, cause: str | None = None, **counts: int) -> None:
        with self._lock:
            for usage in (self.call, self._total):
                for name, n in counts.items():
                    setattr(usage, name, getattr(usage, name) + n)
                if cause is not None:
                    usage.retry_causes[cause] = usage.retry_causes.get(cause, 0) + 1


class _Rejected(Exception):
    """The provider refused a request's inputs (400/413/422): split it to find which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class _Retry:
    cause: str
    retry_after: float | None = None


def estimate_tokens(text: str) -> int:
    """Tokens of ``text`` without the model's tokenizer: an upper-leaning estimate for batching and pacing.

    BPE vocabularies average about four bytes of English per token; CJK runs
    about one token per character, which the regex count gives.
    """
    return max(count_regex_tokens(text), ceil(len(text.encode("utf-8")) / 4))


def plan_batches(counts: Sequence[int], max_size: int, max_tokens: int) -> list[list[int]]:
    """Positions grouped into requests of at most ``max_size`` inputs and ``max_tokens`` tokens.

    Inputs go shortest first, so each request pads little on the server; an
    input over ``max_tokens`` travels alone (the provider accepts or refuses it).

    >>> plan_batches([5, 1, 3, 9], max_size=2, max_tokens=10)
    [[1, 2], [0], [3]]
    """
    batches: list[list[int]] = []
    current: list[int] = []
    used = 0
    for i in sorted(range(len(counts)), key=lambda j: counts[j]):
        if current and (len(current) >= max_size or used + counts[i] > max_tokens):
            batches.append(current)
            current, used = [], 0
        current.append(i)
        used += counts[i]
    if current:
        batches.append(current)
    return batches


class OpenAIEmbedder:
    """Embeds through an OpenAI-compatible ``/embeddings`` endpoint; thread-safe.

    ``usage`` is the running total since the embedder was built;
    ``embed_with_usage`` returns one call's share. The API key comes in as an
    argument (read from the environment by the caller) and lives only in the
    HTTP client's headers. ``limiter`` paces the requests (default: the
    section's per-minute budgets, for this embedder alone; a Ray worker passes
    one shared by every worker). ``dims``: the space's dimensions when the
    caller knows them (a Ray worker), which spares the probe request.
    """

    def __init__(
        self,
        config: EmbedderConfig,
        *,
        api_key: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        limiter: Limiter | None = None,
        dims: int | None = None,
    ) -> None:
        self.config = config
        self.tokenizer_name, self._count = _token_counter(config)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._policy = RetryPolicy(max_retries=config.max_retries)
        self._limiter: Limiter = limiter if limiter is not None else RateLimiter(
            config.max_requests_per_minute, config.max_tokens_per_minute, sleep=sleep)
        self._client = _client(config, api_key)
        self._lock = threading.Lock()
        self._usage = Usage()
        self._pool: ThreadPoolExecutor | None = None
        self._dims = config.dimensions or dims
        if self._dims is None:
            # The provider's default dimension is only known by asking: one tiny request.
            self._dims = int(self._request([_PROBE_TEXT], _Meter(self._usage, self._lock)).shape[1])
        self.ref = declared_ref(config, self._dims)

    # -- the Embedder protocol ------------------------------------------------------------
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 vectors, shape ``(len(texts), dims)``, in input order.

        Raises :class:`InputsRejected` (carrying the other inputs' vectors) when the
        provider refuses some inputs, :class:`ProviderUnavailable` when it keeps
        failing through every retry, :class:`ProviderRefused` when it refuses the
        request itself (key, URL, model).
        """
        return self.embed_with_usage(texts)[0]

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Query vectors: each text after ``query_prompt`` (if set); else as :meth:`embed`."""
        return self.embed_with_usage(texts, query=True)[0]

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` with the configured tokenizer (special tokens included), else an estimate."""
        return self._count(text)

    # -- accounting ------------------------------------------------------------------------
    @property
    def usage(self) -> Usage:
        """A snapshot of everything this embedder spent so far (subtract two snapshots for a job's share)."""
        with self._lock:
            return self._usage.copy()

    def embed_with_usage(self, texts: Sequence[str], *, query: bool = False) -> tuple[np.ndarray, Usage]:
        """``embed`` (documents after ``document_prompt``; queries, with ``query``, after ``query_prompt``), with
        this call's share of the usage; an :class:`EmbeddingError` it raises carries that share as ``usage``
        (refused inputs and failed retries were still billed)."""
        prompt = self.ref.query_prompt if query else self.ref.document_prompt
        texts = [prompt + t if t.strip() else t for t in texts] if prompt else list(texts)
        meter = _Meter(self._usage, self._lock)
        try:
            return self._embed_metered(list(texts), meter)
        except EmbeddingError as exc:
            exc.usage = meter.call
            raise

    def _embed_metered(self, texts: list[str], meter: _Meter) -> tuple[np.ndarray, Usage]:
        meter.count(calls=1, inputs=len(texts))
        out = np.empty((len(texts), self.ref.dims), dtype=np.float32)
        rejected = {i: "empty input: nothing to embed" for i, t in enumerate(texts) if not t.strip()}
        todo = [i for i in range(len(texts)) if i not in rejected]
        counts = [self._count(texts[i]) for i in todo]
        batches = [[todo[j] for j in b] for b in plan_batches(counts, self.config.max_batch_size, self.config.max_batch_tokens)]
        for vectors, refused in self._run_batches(texts, batches, meter):
            for i, vector in vectors.items():
                out[i] = vector
            rejected.update(refused)
        if rejected:
            meter.count(rejected=len(rejected))
            raise _rejection(self.config.host, texts, rejected, out)
        return out, meter.call

    def close(self) -> None:
        """Close the connection pool and the request threads."""
        self._client.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    # -- batches ---------------------------------------------------------------------------
    def _run_batches(
        self, texts: list[str], batches: list[list[int]], meter: _Meter
    ) -> list[tuple[dict[int, np.ndarray], dict[int, str]]]:
        if len(batches) <= 1 or self.config.max_concurrency == 1:
            return [self._embed_batch(texts, b, meter) for b in batches]
        pool = self._executor()
        futures: list[Future[tuple[dict[int, np.ndarray], dict[int, str]]]] = [
            pool.submit(self._embed_batch, texts, b, meter) for b in batches
        ]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:  # the call fails as a whole: do not send what has not started
                f.cancel()
            raise

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.config.max_concurrency, thread_name_prefix=f"embed-{self.config.name}")
            return self._pool

    def _embed_batch(self, texts: list[str], batch: list[int], meter: _Meter) -> tuple[dict[int, np.ndarray], dict[int, str]]:
        """Vectors of ``batch`` (positions in ``texts``); a refused request is halved until the refused input is alone."""
        try:
            matrix = self._request([texts[i] for i in batch], meter)
        except _Rejected as exc:
            if len(batch) == 1:
                return {}, {batch[0]: exc.reason}
            half = len(batch) // 2
            left, right = self._embed_batch(texts, batch[:half], meter), self._embed_batch(texts, batch[half:], meter)
            return {**left[0], **right[0]}, {**left[1], **right[1]}
        vectors: dict[int, np.ndarray] = {}
        refused: dict[int, str] = {}
        for i, row in zip(batch, matrix, strict=True):
            norm = float(np.linalg.norm(row))
            if not np.isfinite(norm) or norm == 0.0:
                refused[i] = "the provider returned a zero or non-finite vector for it"
            else:
                vectors[i] = row / norm
        return vectors, refused

    # -- one request, with retries -------------------------------------------------------------
    def _request(self, texts: list[str], meter: _Meter) -> np.ndarray:
        estimate = sum(self._count(t) for t in texts)
        last: _Retry | None = None
        for attempt in range(self._policy.max_retries + 1):
            if last is not None:
                if last.retry_after is not None and last.retry_after > self._policy.max_retry_after:
                    break
                meter.count(cause=last.cause, retries=1)
                self._sleep(self._policy.delay(attempt - 1, last.retry_after, self._rng))
            self._limiter.acquire(estimate)
            outcome = self._attempt(texts, estimate, meter)
            if not isinstance(outcome, _Retry):
                return outcome
            if outcome.retry_after is not None:
                self._limiter.pause(outcome.retry_after)  # a rate limit applies to every worker, not just this one
            last = outcome
        assert last is not None
        raise ProviderUnavailable(
            f"provider {self.config.host} ({self.config.model}) kept failing: {last.cause} after"
            f" {self._policy.max_retries} retries"
            + (f" (it asked to wait {last.retry_after:.0f} s)" if last.retry_after else ""),
            hint="what was embedded before is committed; run the command again later to resume, or raise max_retries"
                 f" / lower max_concurrency and the per-minute limits in [embedders.{self.config.name}]",
            embedder=self.config.name, cause=last.cause,
        )

    def _attempt(self, texts: list[str], estimate: int, meter: _Meter) -> np.ndarray | _Retry:
        body: dict[str, Any] = {"model": self.config.model, "input": texts, "encoding_format": "float"}
        if self.config.dimensions is not None:
            body["dimensions"] = self.config.dimensions
        try:
            response = self._client.post("embeddings", json=body)
        except httpx.TimeoutException:
            meter.count(requests=1, failed_requests=1)
            return _Retry("timeout")
        except httpx.TransportError:  # refused, reset or dropped connections, broken responses
            meter.count(requests=1, failed_requests=1)
            return _Retry("connection")
        status = response.status_code
        if status == 200:
            outcome = self._parse(response, len(texts), estimate, meter)
            meter.count(requests=1, failed_requests=int(isinstance(outcome, _Retry)))
            return outcome
        meter.count(requests=1, failed_requests=1)
        if status == 429 or status == 408 or status >= 500:
            return _Retry(str(status), parse_retry_after(response.headers))
        if status in _REJECTED_STATUS:
            raise _Rejected(f"{status} {_error_message(response)}")
        raise self._refused(response)

    def _parse(self, response: httpx.Response, n: int, estimate: int, meter: _Meter) -> np.ndarray | _Retry:
        try:
            payload = response.json()
            rows = sorted(payload["data"], key=lambda item: int(item["index"]))
            indices = [int(item["index"]) for item in rows]
            matrix = np.asarray([item["embedding"] for item in rows], dtype=np.float32)
        except (ValueError, KeyError, TypeError):
            return _Retry("malformed response")
        self._count_usage(payload, estimate, meter)  # billed even when the vectors cannot be used
        if indices != list(range(n)) or matrix.ndim != 2:
            # Fewer (or other) vectors than inputs: aligning them by position would mislabel vectors.
            return _Retry("short response")
        if self._dims is not None and matrix.shape[1] != self._dims:
            raise ProviderRefused(
                f"provider {self.config.host} returned {matrix.shape[1]}-d vectors for {self.config.model}, expected"
                f" {self._dims}-d", embedder=self.config.name,
                hint=f"check model and dimensions in [embedders.{self.config.name}]; a new dimension is a new space"
                     " (`embedops migrate plan --to <new name>`)")
        return matrix

    def _count_usage(self, payload: Any, estimate: int, meter: _Meter) -> None:
        tokens = _usage_tokens(payload)
        if tokens is None:
            meter.count(estimated_tokens=estimate)
        else:
            meter.count(tokens=tokens)
            self._limiter.settle(tokens - estimate)

    def _refused(self, response: httpx.Response) -> ProviderRefused:
        status = response.status_code
        name = self.config.name
        hints = {
            401: f"check the key in ${self.config.api_key_env}" if self.config.api_key_env
                 else f"the provider wants a key: set api_key_env in [embedders.{name}] and export that variable",
            403: f"the key in ${self.config.api_key_env} may not use model {self.config.model}",
            404: f"check base_url in [embedders.{name}] (requests go to base_url + /embeddings) and the model name",
        }
        return ProviderRefused(
            f"provider {self.config.host} refused embedder {name!r}: {status} {_error_message(response)}",
            hint=hints.get(status, f"check [embedders.{name}] in embedops.toml"), embedder=name, status=status,
        )


def _client(config: EmbedderConfig, api_key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=config.max_concurrency, max_keepalive_connections=config.max_concurrency)
    return httpx.Client(
        base_url=config.base_url.rstrip("/") + "/",
        headers=headers,
        timeout=httpx.Timeout(config.timeout, connect=min(config.timeout, 10.0)),
        transport=httpx.HTTPTransport(retries=CONNECT_RETRIES, limits=limits),
    )


def _token_counter(config: EmbedderConfig) -> tuple[str | None, Callable[[str], int]]:
    """(tokenizer name for chunkers, counter): the configured tokenizer, else the estimate."""
    path = config.tokenizer_path
    if path is None:
        return None, estimate_tokens
    from embedops.embedding.onnx import load_tokenizer

    tokenizer = load_tokenizer(path, None)

    def count(text: str) -> int:
        return len(tokenizer.encode(text).ids)

    return config.tokenizer if config.tokenizer == "bert-base-uncased" else str(path), count


def _usage_tokens(payload: Any) -> int | None:
    usage = payload.get("usage") if isinstance(payload, dict) else None
    if not isinstance(usage, dict):
        return None
    value = usage.get("total_tokens", usage.get("prompt_tokens"))
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _error_message(response: httpx.Response) -> str:
    """The provider's own words: OpenAI's ``{"error": {"message": ...}}``, FastAPI's ``detail``, else the body."""
    try:
        payload = response.json()
    except ValueError:
        return response.text[:300].strip() or response.reason_phrase
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
        if isinstance(error, str):
            return error[:300]
        if payload.get("detail"):
            return str(payload["detail"])[:300]
    return str(payload)[:300]


def _rejection(host: str, texts: list[str], rejected: dict[int, str], out: np.ndarray) -> InputsRejected:
    first = min(rejected)
    vectors = {i: out[i] for i in range(len(texts)) if i not in rejected}
    return InputsRejected(
        f"provider {host} refused {len(rejected)} of {len(texts)} inputs (input {first}: {rejected[first]})",
        rejected=rejected, vectors=vectors,
        hint="the documents holding them are skipped and reported; shorten or fix them (or chunk smaller with"
             " chunker_params max_tokens), then sync again",
    )
