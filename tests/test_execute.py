"""Where embedding runs (execute/): the in-process executor, the options, and Ray Data on a local instance.

The Ray tests start one local Ray instance (2 CPUs) for the module. They sync and
backfill real SQLite workspaces with the ``hashing`` embedder and compare every
vector with what the in-process executor stored: the same texts, the same calls,
the same bytes.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from embedops.catalog import schema
from embedops.cli import app
from embedops.compose import migrator
from embedops.embedding.registry import load_embedder
from embedops.errors import ConfigError, ProviderError
from embedops.execute import ExecutorOptions, LocalExecutor, Model, embed_batch, make_executor
from embedops.workspace import Workspace
from tests.conftest import write_corpus
from tests.test_workspace import check_invariant_2


class RejectingProvider:
    """Stands in for a remote provider that rejects one input (a network service cannot run here)."""

    def __init__(self) -> None:
        inner = load_embedder("hashing:dims=16")
        self.ref, self.tokenizer_name, self.count_tokens, self._inner = inner.ref, None, inner.count_tokens, inner

    def embed(self, texts: list[str]) -> np.ndarray:
        if any("poison" in t for t in texts):
            raise ProviderError("400 Bad Request: input rejected")
        return self._inner.embed(texts)


def test_embed_batch_isolates_the_text_a_provider_rejects(monkeypatch: pytest.MonkeyPatch) -> None:
    import embedops.execute.base as base

    monkeypatch.setattr(base, "EMBED_RETRIES", 1)
    done = embed_batch(RejectingProvider(), {"a": "fine text", "b": "poison pill", "c": "also fine"})
    assert sorted(done.vectors) == ["a", "c"] and list(done.failed) == ["b"]
    assert "rejected" in done.failed["b"]


def test_the_local_executor_yields_in_order_and_pulls_one_job_ahead() -> None:
    embedder = load_embedder("hashing:dims=16")
    models = {embedder.ref.key: Model.of(embedder, "hashing:dims=16")}
    pulled: list[int] = []

    def jobs() -> Iterator[tuple[int, dict[str, dict[str, str]]]]:
        for i in range(6):
            pulled.append(i)
            yield i, {embedder.ref.key: {f"h{i}": f"text number {i}"}}

    seen = []
    for item, result in LocalExecutor().stream(models, jobs()):
        # Bounded memory: while job i is handed back, at most job i+1 has been read.
        assert max(pulled) <= item + 1
        seen.append(item)
        np.testing.assert_array_equal(result[embedder.ref.key].vectors[f"h{item}"],
                                      embedder.embed([f"text number {item}"])[0])
    assert seen == list(range(6))


def test_executor_options_are_checked() -> None:
    assert make_executor(ExecutorOptions()).kind == "local"
    with pytest.raises(ConfigError, match="need --executor ray"):
        ExecutorOptions(actors=2)
    with pytest.raises(ConfigError, match="unknown executor"):
        ExecutorOptions("spark")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="at least 1"):
        ExecutorOptions("ray", actors=0)


def test_the_cli_refuses_ray_options_without_the_ray_executor(tmp_path: Path) -> None:
    Workspace.init(tmp_path / "ws", embedder="hashing").close()
    result = CliRunner().invoke(app, ["sync", "--actors", "2", "--workspace", str(tmp_path / "ws")])
    assert result.exit_code == 1 and "--executor ray" in result.output


def test_sync_batch_size_sets_the_transactional_batch(tmp_path: Path) -> None:
    write_corpus(tmp_path / "docs", 12)
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("docs", tmp_path / "docs")
    ws.sync(executor=ExecutorOptions(batch_size=5))
    assert [r["kind"] for r in ws.history()].count("sync.batch") == 3  # 12 documents in batches of 5
    ws.close()


# -- Ray Data on a local instance ------------------------------------------------------
@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    # A loaded 2-core machine starts Ray's agents slowly; the defaults give them 10-30 s.
    os.environ.setdefault("RAY_agent_register_timeout_ms", "300000")
    os.environ.setdefault("RAY_raylet_start_wait_time_s", "300")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def _vectors(ws: Workspace) -> dict[str, bytes]:
    with ws.engine.connect() as conn:
        e = schema.embeddings
        return dict(conn.execute(sa.select(e.c.content_hash, e.c.vector)).all())


def _vector_rows(ws: Workspace) -> tuple[int, int]:
    """(vector rows, distinct (index, chunk) pairs): equal when nothing is duplicated."""
    v = schema.vectors
    with ws.engine.connect() as conn:
        pairs = sa.select(v.c.index_id, v.c.chunk_id).distinct().subquery()
        rows = conn.execute(sa.select(sa.func.count()).select_from(v)).scalar_one()
        return int(rows), int(conn.execute(sa.select(sa.func.count()).select_from(pairs)).scalar_one())


def _twin_workspaces(tmp_path: Path, n_docs: int) -> tuple[Workspace, Workspace]:
    write_corpus(tmp_path / "docs", n_docs)
    out = []
    for name in ("local", "ray"):
        ws = Workspace.init(tmp_path / name, embedder="hashing")
        ws.add_source("docs", tmp_path / "docs")
        out.append(ws)
    return out[0], out[1]


def test_a_ray_sync_stores_the_same_vectors_as_a_local_one(tmp_path: Path, ray_local: Any) -> None:
    local, remote = _twin_workspaces(tmp_path, 40)
    expected = local.sync(executor=ExecutorOptions(batch_size=8))
    result = remote.sync(executor=ExecutorOptions("ray", actors=2, batch_size=8))
    assert result.counts.added == 40 and result.counts.embedded == expected.counts.embedded > 0
    assert _vectors(remote) == _vectors(local)  # byte for byte
    rows, distinct = _vector_rows(remote)
    assert rows == distinct == _vector_rows(local)[0]
    check_invariant_2(remote)
    # invariant 3 holds whatever runs the model: a no-op sync embeds nothing
    assert remote.sync(executor=ExecutorOptions("ray", actors=2)).counts.embedded == 0
    local.close()
    remote.close()


def test_a_ray_worker_with_another_model_under_the_same_name_is_refused(ray_local: Any) -> None:
    from embedops.embedding.fingerprint import take_fingerprint, to_bytes
    from embedops.embedding.verify import ModelChanged

    embedder = load_embedder("hashing:dims=16")
    other = load_embedder("hashing:dims=16,seed=7")  # the "same" model, other weights
    model = Model.of(embedder, "hashing:dims=16", to_bytes(take_fingerprint(other).vectors))
    jobs = [(0, {embedder.ref.key: {"h": "some text"}})]
    executor = make_executor(ExecutorOptions("ray", actors=1))
    with pytest.raises(ModelChanged, match="on Ray node"):
        list(executor.stream({embedder.ref.key: model}, jobs, expected=1))


def _kill_one_embed_worker() -> int:
    """SIGKILL one Ray Data embedding actor's process (as an OOM kill or a lost node would)."""
    import psutil

    for proc in psutil.process_iter(["pid", "cmdline"]):
        if any("MapBatches(_EmbedWorker)" in part for part in proc.info["cmdline"] or ()):
            os.kill(proc.info["pid"], signal.SIGKILL)
            return int(proc.info["pid"])
    raise AssertionError("no Ray embedding worker process found")


@pytest.mark.slow
def test_a_ray_backfill_survives_a_killed_worker(tmp_path: Path, ray_local: Any) -> None:
    local, remote = _twin_workspaces(tmp_path, 60)
    for ws in (local, remote):
        ws.sync()
        migrator(ws).start("hashing:seed=1")
    migrator(local).backfill(batch=10)
    killed: list[int] = []
    lock = threading.Lock()

    def progress(label: str, total: int) -> Any:
        def step(n: int) -> None:
            with lock:
                if not killed:  # after the first committed batch, while the others are in flight
                    killed.append(_kill_one_embed_worker())
        return step

    migrator(remote).backfill(executor=ExecutorOptions("ray", actors=2, batch_size=10), progress=progress)
    assert killed
    assert migrator(remote).status().phase == "ready"  # 0 missing
    rows, distinct = _vector_rows(remote)
    assert rows == distinct == _vector_rows(local)[0]  # 0 duplicated
    assert _vectors(remote) == _vectors(local)
    check_invariant_2(remote)
    local.close()
    remote.close()


# -- HTTP embedders on Ray: one rate limit for the pool ------------------------------------
def test_a_shared_limiter_holds_one_budget_and_one_pause_for_every_worker(ray_local: Any) -> None:
    from embedops.execute.raydata import SharedRateLimiter, _SharedLimit

    actor = ray_local.remote(_SharedLimit).options(num_cpus=0).remote(2, None)  # 2 requests a minute
    slept: list[float] = []
    one, other = SharedRateLimiter(actor), SharedRateLimiter(actor, sleep=slept.append)
    try:
        assert one.acquire() == 0.0 and other.acquire() == 0.0
        assert ray_local.get(actor.try_acquire.remote(0)) > 25.0  # the pool's budget is spent, whoever asks next
        pause = ray_local.remote(_SharedLimit).options(num_cpus=0).remote(None, None)
        SharedRateLimiter(pause).pause(30.0)  # a Retry-After seen by one worker...
        assert ray_local.get(pause.try_acquire.remote(0)) > 25.0  # ...holds every other back too
        ray_local.kill(pause)
        assert not slept
    finally:
        ray_local.kill(actor)


def test_an_http_embedder_on_ray_keeps_the_sections_rate_limit_for_the_whole_pool(
    ray_local: Any, fault_proxy: Any
) -> None:
    """Two actors, one budget: a limit per worker would let both send a full minute's burst at once."""
    from embedops.embedding.providers import build, parse_embedder_config
    from tests.test_http_sync import section

    rpm = 30
    config = parse_embedder_config("inf", section(fault_proxy.url, max_requests_per_minute=rpm, max_batch_size=1))
    embedder = build(config)  # the driver's copy: its dimension probe is not part of the run
    model = Model.of(embedder, "inf", config=config)
    texts = {f"h{i}": f"document number {i} about rate limits and shared budgets" for i in range(40)}
    jobs = [(j, {model.space_key: dict(list(texts.items())[j * 5 : j * 5 + 5])}) for j in range(8)]
    fault_proxy.set()
    executor = make_executor(ExecutorOptions("ray", actors=2))
    done = {h: v for _, result in executor.stream({model.space_key: model}, jobs, expected=8)
            for h, v in result[model.space_key].vectors.items()}
    arrivals = sorted(fault_proxy.stats.arrivals)
    assert len(done) == 40 and len(arrivals) == 40  # one request per text (max_batch_size 1), none lost
    # Token bucket of the pool: at most rpm at once, then rpm per minute (+1 for clock jitter).
    for i, t in enumerate(arrivals):
        assert i + 1 <= rpm + (t - arrivals[0]) * rpm / 60 + 1, f"request {i + 1} at {t - arrivals[0]:.1f} s"
    assert arrivals[-1] - arrivals[0] > (40 - rpm - 1) * 60 / rpm - 1  # the pool waited for its budget
    expected = embedder.embed(list(texts.values()))
    got = np.stack([done[h] for h in texts])
    assert float(np.min(np.sum(got * expected, axis=1))) > 0.9999  # the same model's vectors


def test_a_ray_sync_with_an_http_embedder_stores_the_local_syncs_vectors(
    tmp_path: Path, ray_local: Any, fault_proxy: Any
) -> None:
    from tests.test_http_sync import http_workspace

    for name in ("local", "ray"):
        (tmp_path / name).mkdir()
    local = http_workspace(tmp_path / "local", fault_proxy.url, docs=10)
    remote = http_workspace(tmp_path / "ray", fault_proxy.url, docs=10)
    try:
        expected = local.sync()
        result = remote.sync(executor=ExecutorOptions("ray", actors=2, batch_size=4))
        assert result.counts.added == 10 and result.counts.embedded == expected.counts.embedded > 0
        mine, theirs = _vectors(remote), _vectors(local)
        assert sorted(mine) == sorted(theirs)
        for h, blob in mine.items():  # infinity batches concurrent requests together: equal to float rounding
            assert float(np.frombuffer(blob, np.float32) @ np.frombuffer(theirs[h], np.float32)) > 0.9999
        rows, distinct = _vector_rows(remote)
        assert rows == distinct == _vector_rows(local)[0]
        check_invariant_2(remote)
    finally:
        local.close()
        remote.close()
