"""The OpenAI-compatible HTTP embedder against a real server (infinity-emb), with faults on purpose.

Pure parts (batching, pacing, backoff, Retry-After) are tested with literals; the
rest talks HTTP on loopback to infinity serving all-MiniLM-L6-v2, directly or
through ``FaultProxy`` (tests/http_doubles.py), the test double of the network.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pytest

from embedops.embedding.fingerprint import SENTINELS
from embedops.embedding.http import OpenAIEmbedder, estimate_tokens, plan_batches
from embedops.embedding.providers import declared_ref, parse_embedder_config
from embedops.embedding.ratelimit import RateLimiter, RetryPolicy, parse_retry_after
from embedops.embedding.registry import describe_embedder, load_embedder
from embedops.errors import ConfigError, InputsRejected, ProviderRefused, ProviderUnavailable
from embedops.refs import EmbedderRef
from tests.http_doubles import SERVED_MODEL, FaultProxy, InfinityServer

# What the proxy injected → the retry cause the embedder counts for it.
CAUSES = {"429": "429", "500": "500", "slow": "timeout", "drop": "connection", "short": "short response",
          "malformed": "malformed response"}


def embedder(url: str, api_key: str | None = None, **settings: Any) -> OpenAIEmbedder:
    """An embedder for ``url``; ``dimensions`` is declared (384) unless given, so no probe request is sent."""
    raw = {"kind": "openai", "model": SERVED_MODEL, "base_url": url, "tokenizer": "bert-base-uncased",
           "dimensions": 384, **settings}
    return OpenAIEmbedder(parse_embedder_config("inf", {k: v for k, v in raw.items() if v is not None}), api_key=api_key)


def texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = "cell protein gene membrane star planet orbit ocean climate carbon index query vector graph".split()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 40))) + f" (text {i})" for i in range(n)]


def assert_retries_match(usage: Any, injected: dict[str, int]) -> None:
    """Every injected fault was retried once, under its cause; beyond them, only real timeouts.

    A machine loaded far past its cores can answer slower than the timeout on its own: those
    timeouts are real ones, retried and counted the same way."""
    expected = {CAUSES[k]: n for k, n in injected.items()}
    extra_timeouts = usage.retry_causes.get("timeout", 0) - expected.get("timeout", 0)
    assert extra_timeouts >= 0
    assert {c: n for c, n in usage.retry_causes.items() if c != "timeout"} == \
        {c: n for c, n in expected.items() if c != "timeout"}
    assert usage.retries == sum(injected.values()) + extra_timeouts


# -- pure parts ---------------------------------------------------------------------------------
def test_batches_respect_count_and_token_limits_and_cover_every_input_once() -> None:
    counts = [random.Random(1).randint(1, 60) for _ in range(200)]
    batches = plan_batches(counts, max_size=16, max_tokens=300)
    assert sorted(i for b in batches for i in b) == list(range(200))
    assert all(len(b) <= 16 and (sum(counts[i] for i in b) <= 300 or len(b) == 1) for b in batches)
    assert plan_batches([500, 3], max_size=8, max_tokens=100) == [[1], [0]]  # an oversize input travels alone
    assert plan_batches([], max_size=8, max_tokens=100) == []


def test_token_estimate_leans_high_for_english_and_counts_cjk_per_character() -> None:
    assert estimate_tokens("The quick brown fox jumps over the lazy dog.") >= 10
    assert estimate_tokens("東京は日本の首都") == 8
    assert estimate_tokens("") == 0


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def test_rate_limiter_paces_requests_and_tokens_per_minute() -> None:
    clock = FakeClock()
    limiter = RateLimiter(requests_per_minute=600, tokens_per_minute=6000, now=clock.now, sleep=clock.sleep)
    assert limiter.acquire(6000) == 0.0  # a full minute's tokens at once
    assert limiter.acquire(100) == pytest.approx(1.0)  # 100 tokens at 100 tokens/s
    limiter.settle(200)  # the response said 300 tokens, not 100: the next caller pays for it
    assert limiter.acquire(100) == pytest.approx(3.0)
    limiter.settle(-100)  # an over-estimate is refunded
    assert limiter.acquire(100) == pytest.approx(0.0)


def test_rate_limiter_pause_holds_every_caller() -> None:
    clock = FakeClock()
    limiter = RateLimiter(now=clock.now, sleep=clock.sleep)
    assert limiter.acquire() == 0.0
    limiter.pause(2.5)
    assert limiter.acquire() == pytest.approx(2.5)
    assert limiter.acquire() == 0.0


def test_backoff_grows_with_jitter_and_obeys_retry_after() -> None:
    policy, rng = RetryPolicy(base=0.5, cap=8.0), random.Random(0)
    delays = [policy.delay(attempt, None, rng) for attempt in range(8)]
    for attempt, d in enumerate(delays):
        full = min(8.0, 0.5 * 2**attempt)
        assert full / 2 <= d <= full
    assert len({round(policy.delay(3, None, random.Random(s)), 6) for s in range(10)}) > 1  # jittered
    assert 2.0 <= policy.delay(0, 2.0, rng) <= 2.0 + 0.5


def test_retry_after_headers() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "150", "retry-after": "9"}) == 0.15
    assert parse_retry_after({"Retry-After": "Thu, 01 Jan 2026 12:00:05 GMT"}, now=now) == 5.0
    assert parse_retry_after({"Retry-After": "soon"}) is None and parse_retry_after({}) is None


# -- identity ------------------------------------------------------------------------------------
def test_space_is_host_port_model_and_dimensions_never_key_or_path() -> None:
    def key(**over: Any) -> str:
        raw = {"kind": "openai", "model": "text-embedding-3-small", "base_url": "https://api.example.com/v1",
               "api_key_env": "KEY_A", "dimensions": 512, **over}
        return describe_embedder("oai", {"oai": parse_embedder_config("oai", raw)}).key

    base = key()
    assert base.startswith("openai:text-embedding-3-small@api.example.com#")
    assert key(api_key_env="KEY_B") == base and key(base_url="https://API.example.com/other/path") == base
    assert key(max_concurrency=1, timeout=5) == base  # how we call it is not what it computes
    for changed in (key(dimensions=256), key(model="text-embedding-3-large"), key(base_url="https://api.example.com:8443/v1"),
                    key(base_url="https://other.example.com/v1")):
        assert changed != base
    assert "KEY_A" not in str(declared_ref(parse_embedder_config("oai", {"kind": "openai", "model": "m",
                                                                        "api_key_env": "KEY_A"}), 3).to_dict())


# -- against the real server ----------------------------------------------------------------------
def test_infinity_agrees_with_the_local_model(infinity: InfinityServer) -> None:
    remote = embedder(infinity.url)
    try:
        vectors = remote.embed(list(SENTINELS))
        local = load_embedder("minilm-l6").embed(list(SENTINELS))
        cosines = (vectors * local).sum(axis=1)
        assert vectors.shape == (len(SENTINELS), 384) and cosines.min() >= 0.999
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        usage = remote.usage
        assert usage.tokens > 0 and usage.estimated_tokens == 0 and usage.retries == 0
        # The tokenizer is the model's own: a chunker bounds chunks exactly as for minilm-l6.
        assert remote.tokenizer_name == "bert-base-uncased"
        assert remote.count_tokens(SENTINELS[4]) == load_embedder("minilm-l6").count_tokens(SENTINELS[4])
    finally:
        remote.close()


def test_prompts_are_part_of_an_http_space() -> None:
    def ref(**over: Any) -> EmbedderRef:
        raw = {"kind": "openai", "model": "e5", "base_url": "http://127.0.0.1:7997", "dimensions": 384, **over}
        return describe_embedder("e5", {"e5": parse_embedder_config("e5", raw)})

    base, prompted = ref(), ref(query_prompt="query: ", document_prompt="passage: ")
    assert not base.asymmetric and prompted.asymmetric and prompted.key != base.key
    assert ref(query_prompt="query: ", document_prompt="document: ").key != prompted.key
    with pytest.raises(ConfigError, match="query_prompt must be a string"):
        ref(query_prompt=3)


def test_queries_and_documents_are_sent_after_their_prompts(fault_proxy: FaultProxy) -> None:
    remote = embedder(fault_proxy.url, query_prompt="query: ", document_prompt="passage: ")
    try:
        docs, queries = remote.embed(["a cell divides", "orbit of a planet"]), remote.embed_queries(["cell"])
    finally:
        remote.close()
    sent = [t for b in fault_proxy.stats.bodies for t in b["input"]]
    assert sorted(sent) == ["passage: a cell divides", "passage: orbit of a planet", "query: cell"]
    assert docs.shape == (2, 384) and queries.shape == (1, 384)


def test_requests_carry_the_protocol_fields_and_respect_batch_limits(fault_proxy: FaultProxy) -> None:
    remote = embedder(f"{fault_proxy.url}/v1", max_batch_size=5, max_batch_tokens=120, dimensions=128, api_key="sk-test-123")
    try:
        batch = texts(23)
        vectors, usage = remote.embed_with_usage(batch)
    finally:
        remote.close()
    assert vectors.shape == (23, 128) and remote.ref.dims == 128
    bodies = fault_proxy.stats.bodies
    assert sorted(t for b in bodies for t in b["input"]) == sorted(batch)  # every input exactly once
    for body in bodies:
        assert body["model"] == SERVED_MODEL and body["dimensions"] == 128 and body["encoding_format"] == "float"
        assert len(body["input"]) <= 5
        assert sum(remote.count_tokens(t) for t in body["input"]) <= 120 or len(body["input"]) == 1
    assert set(fault_proxy.stats.authorizations) == {"Bearer sk-test-123"}
    assert usage.requests == len(bodies) == fault_proxy.stats.delivered_ok
    assert usage.tokens == fault_proxy.stats.delivered_tokens and usage.inputs == 23


@pytest.mark.slow
def test_requests_run_concurrently_up_to_the_limit(fault_proxy: FaultProxy) -> None:
    fault_proxy.set(delay_seconds=0.3)
    remote = embedder(fault_proxy.url, max_batch_size=2, max_concurrency=3)
    try:
        remote.embed(texts(18))  # nine requests, each held 0.3 s by the proxy
    finally:
        remote.close()
    assert fault_proxy.stats.requests == 9 and fault_proxy.stats.max_in_flight == 3


@pytest.mark.slow
def test_requests_per_minute_are_paced(fault_proxy: FaultProxy) -> None:
    remote = embedder(fault_proxy.url, max_batch_size=1, max_concurrency=1, max_requests_per_minute=20)
    try:
        started = time.perf_counter()
        remote.embed(texts(21))  # the first 20 fit the minute's budget, then one request per 3 s
        elapsed = time.perf_counter() - started
    finally:
        remote.close()
    assert fault_proxy.stats.requests == 21 and elapsed >= 2.9


def test_faults_are_retried_and_counted_and_vectors_stay_aligned(fault_proxy: FaultProxy) -> None:
    batch = texts(40, seed=3)
    fault_proxy.set(script=("429", "500", "slow", "ok", "drop", "short", "malformed", "short", "429"), rate_429=0.1,
                    rate_500=0.05, rate_drop=0.03, rate_short=0.05, retry_after="1", retry_after_ms=20,
                    slow_seconds=6.5, seed=11)
    remote = embedder(fault_proxy.url, max_batch_size=4, max_concurrency=1, timeout=6.0, max_retries=10)
    try:
        vectors, usage = remote.embed_with_usage(batch)
    finally:
        remote.close()
    injected = fault_proxy.stats.injected
    assert set(injected) == set(CAUSES)
    assert_retries_match(usage, injected)
    assert usage.requests == fault_proxy.stats.requests
    # Short responses are billed too: the client's tokens are the server's usage of every 200 it received.
    # (A real timeout, on a machine loaded far past its cores, may be answered and billed unseen.)
    if usage.retry_causes.get("timeout", 0) == injected.get("slow", 0):
        assert usage.tokens == fault_proxy.stats.delivered_tokens
    # Each row is its own text's vector (the local model's, to float noise): none moved to another input.
    assert ((vectors * load_embedder("minilm-l6").embed(batch)).sum(axis=1) >= 0.999).all()


def test_retry_after_is_honoured_then_the_provider_is_reported_unavailable(fault_proxy: FaultProxy) -> None:
    fault_proxy.set(rate_429=1.0, retry_after="1")
    remote = embedder(fault_proxy.url, max_retries=2)
    try:
        started = time.perf_counter()
        with pytest.raises(ProviderUnavailable, match="429 after 2 retries") as err:
            remote.embed(["one text"])
        assert time.perf_counter() - started >= 2.0  # two waits of at least Retry-After
        assert "run the command again" in (err.value.hint or "")
        assert remote.usage.retries == 2 and fault_proxy.stats.requests == 3
    finally:
        remote.close()


def test_a_retry_after_longer_than_the_limit_fails_fast(fault_proxy: FaultProxy) -> None:
    fault_proxy.set(rate_429=1.0, retry_after="3600")
    remote = embedder(fault_proxy.url)
    try:
        started = time.perf_counter()
        with pytest.raises(ProviderUnavailable, match="asked to wait 3600 s"):
            remote.embed(["one text"])
        assert time.perf_counter() - started < 5 and fault_proxy.stats.requests == 1
    finally:
        remote.close()


def test_refused_inputs_are_isolated_and_reported_never_zero_vectors(fault_proxy: FaultProxy) -> None:
    batch = texts(32, seed=5)
    batch[9] = "poison " + batch[9]
    batch[20] = "   "
    fault_proxy.set(reject_marker="poison")
    remote = embedder(fault_proxy.url, max_batch_size=32)
    try:
        with pytest.raises(InputsRejected) as err:
            remote.embed(batch)
    finally:
        remote.close()
    rejected = err.value.rejected
    assert set(rejected) == {9, 20}
    assert "maximum context length" in rejected[9] and "empty" in rejected[20]
    assert sorted(err.value.vectors) == [i for i in range(32) if i not in (9, 20)]
    assert all(abs(np.linalg.norm(v) - 1) < 1e-5 for v in err.value.vectors.values())
    assert "   " not in [t for b in fault_proxy.stats.bodies for t in b["input"]]  # empty input: never sent
    assert fault_proxy.stats.requests <= 1 + 2 * 5  # halving 31 inputs down to the refused one


def test_a_refused_key_is_terminal_and_names_the_variable(fault_proxy: FaultProxy) -> None:
    fault_proxy.set(require_key="sk-right")
    remote = OpenAIEmbedder(parse_embedder_config("inf", {"kind": "openai", "model": SERVED_MODEL, "dimensions": 384,
                                                          "base_url": fault_proxy.url, "api_key_env": "INF_KEY"}),
                            api_key="sk-wrong")
    try:
        with pytest.raises(ProviderRefused, match="401") as err:
            remote.embed(["text"])
        assert "$INF_KEY" in (err.value.hint or "") and remote.usage.retries == 0
        assert "sk-wrong" not in str(err.value)
    finally:
        remote.close()


def test_a_missing_key_variable_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EMBEDOPS_TEST_UNSET_KEY", raising=False)
    named = {"oai": parse_embedder_config("oai", {"kind": "openai", "model": "m", "api_key_env": "EMBEDOPS_TEST_UNSET_KEY"})}
    with pytest.raises(ConfigError, match=r"\$EMBEDOPS_TEST_UNSET_KEY, which is not set"):
        load_embedder("oai", named)


def test_the_default_dimension_is_measured_with_one_request(fault_proxy: FaultProxy) -> None:
    remote = embedder(fault_proxy.url, dimensions=None)
    try:
        assert remote.ref.dims == 384 and fault_proxy.stats.requests == 1 and remote.usage.requests == 1
    finally:
        remote.close()


def test_registry_builds_one_embedder_per_name_and_section(fault_proxy: FaultProxy) -> None:
    raw = {"kind": "openai", "model": SERVED_MODEL, "base_url": fault_proxy.url, "dimensions": 384}
    a = {"inf": parse_embedder_config("inf", raw)}
    b = {"inf": parse_embedder_config("inf", {**raw, "max_batch_size": 7})}
    assert load_embedder("inf", a) is load_embedder("inf", dict(a))
    assert load_embedder("inf", b) is not load_embedder("inf", a)
    assert load_embedder("inf", b).ref == load_embedder("inf", a).ref  # same space, another client


def test_a_zero_vector_is_refused_for_its_input_never_stored(fault_proxy: FaultProxy) -> None:
    fault_proxy.set(perturb="zero")
    remote = embedder(fault_proxy.url, max_batch_size=8)
    try:
        with pytest.raises(InputsRejected) as err:
            remote.embed(texts(5))
    finally:
        remote.close()
    assert len(err.value.rejected) == 1 and "zero" in next(iter(err.value.rejected.values()))
    assert len(err.value.vectors) == 4


def test_vectors_of_another_dimension_are_refused(fault_proxy: FaultProxy) -> None:
    fault_proxy.set(perturb="truncate")
    remote = embedder(fault_proxy.url)
    try:
        with pytest.raises(ProviderRefused, match="383-d vectors .* expected 384-d"):
            remote.embed(["text"])
    finally:
        remote.close()


def test_a_wrong_path_is_refused_with_a_hint_about_base_url(infinity: InfinityServer) -> None:
    remote = embedder(f"{infinity.url}/v1")  # infinity serves /embeddings, not /v1/embeddings
    try:
        with pytest.raises(ProviderRefused, match="404") as err:
            remote.embed(["text"])
        assert "base_url" in (err.value.hint or "") and remote.usage.retries == 0
    finally:
        remote.close()


def test_nothing_listening_is_retried_then_reported(tmp_path: Any) -> None:
    from tests.http_doubles import free_port

    remote = embedder(f"http://127.0.0.1:{free_port()}", max_retries=1)
    try:
        with pytest.raises(ProviderUnavailable, match="connection after 1 retries"):
            remote.embed(["text"])
        assert remote.usage.retry_causes == {"connection": 1}
    finally:
        remote.close()
