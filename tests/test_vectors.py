"""The SQLite vector store's derived ANN: reload, incremental refresh, threads (real SQLite files)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import embedops.vectors.ann as ann_module
from embedops.vectors.ann import AnnIndex, read_snapshot
from embedops.vectors.base import DEFAULT_EF_SEARCH, default_ef_search
from embedops.workspace import Workspace
from tests.conftest import CHILD_ENV, write_corpus


@pytest.fixture
def hnsw_ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    """A synced hashing workspace whose index is on the HNSW path (not exact) despite its size."""
    monkeypatch.setattr(ann_module, "EXACT_MAX", 10)
    write_corpus(tmp_path / "docs", 40)
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("docs", tmp_path / "docs")
    assert ws.sync().indexes[0]["mode"] == "hnsw"
    yield ws
    ws.close()


def _query(ws: Workspace, text: str) -> np.ndarray:
    return ws.embedder("hashing").embed([text])[0]


def test_reloaded_ann_keeps_its_search_settings_and_is_not_rebuilt(hnsw_ws: Workspace) -> None:
    root = hnsw_ws.root
    expected = [r.chunk_id for r in hnsw_ws.search("galaxy orbit star", k=5)]
    hnsw_ws.close()
    fresh = Workspace.open(root)
    try:
        assert [r.chunk_id for r in fresh.search("galaxy orbit star", k=5)] == expected
        ann = fresh.store.ann(fresh.searcher.resolve("prod"))
        assert ann.rebuilds == 0 and ann.mode == "hnsw"
        # usearch's restore() alone would leave ef_search at its default of 64
        assert ann._hnsw.expansion_search == ann.ef_search == DEFAULT_EF_SEARCH
    finally:
        fresh.close()


def test_rebuild_in_small_steps_holds_every_vector(hnsw_ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ann_module, "_FETCH_ROWS", 7)
    index = hnsw_ws.searcher.resolve("prod")
    ann = AnnIndex(index.id, index.dims, hnsw_ws.root / "elsewhere")  # no file: must rebuild
    raw = hnsw_ws.store.raw().driver_connection
    ann.refresh(raw)
    with hnsw_ws.engine.connect() as conn:
        n = hnsw_ws.store.count(conn, index.id)
    assert ann.rebuilds == 1 and len(ann) == n > 7
    keys, vecs = ann_module.read_vectors(raw, list(range(1, n + 1)), index.dims)
    for row in (0, n // 2, n - 1):
        found, scores = ann.search(vecs[row], 1)
        assert found[0] == keys[row] and scores[0] == pytest.approx(1.0, abs=1e-5)


def test_catalog_is_checked_only_after_a_commit(hnsw_ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real_stamp = AnnIndex.stamp

    def counting_stamp(self: AnnIndex, raw: object) -> object:
        calls.append(self.index_id)
        return real_stamp(self, raw)  # type: ignore[arg-type]

    monkeypatch.setattr(AnnIndex, "stamp", counting_stamp)
    q = _query(hnsw_ws, "cell protein gene")
    hnsw_ws.search(vector=q, k=3)
    before = len(calls)
    for _ in range(5):
        hnsw_ws.search(vector=q, k=3)
    assert len(calls) == before, "no commit happened: the catalog must not be re-checked"
    folder = Path(hnsw_ws.settings.sources["docs"].path)
    folder = folder if folder.is_absolute() else hnsw_ws.root / folder
    (folder / "fresh.md").write_text("# Fresh\n\nQuasar quasar quasar luminous distant nucleus.\n")
    hnsw_ws.sync()
    hits = hnsw_ws.search("quasar luminous distant nucleus", k=1)
    assert len(calls) > before and hits[0].document_id == "fresh.md"


def test_read_snapshot_nests_and_ends_its_transaction(hnsw_ws: Workspace) -> None:
    raw = hnsw_ws.store.raw().driver_connection
    with read_snapshot(raw):
        assert raw.in_transaction
        with read_snapshot(raw):
            assert raw.in_transaction
        assert raw.in_transaction
    assert not raw.in_transaction


def test_many_threads_search_while_a_sync_writes(hnsw_ws: Workspace) -> None:
    """More searching threads than the engine's pool holds (5 + 10), and a writer: no error, no rebuild."""
    ws = hnsw_ws
    folder = Path(ws.settings.sources["docs"].path)
    folder = folder if folder.is_absolute() else ws.root / folder
    q = _query(ws, "vector graph network")
    index = ws.searcher.resolve("prod")
    errors: list[BaseException] = []
    writing = threading.Event()
    start = threading.Barrier(25)

    def searcher() -> None:
        try:
            start.wait()
            while writing.is_set():
                results = ws.search(vector=q, k=5)
                assert results and all(r.tags["space"] == index.space_key for r in results)
        except BaseException as exc:  # noqa: BLE001 - collected and re-raised by the test
            errors.append(exc)

    def writer() -> None:
        try:
            start.wait()
            for i in range(4):
                write_corpus(folder / f"more{i}", 5, seed=100 + i)
                ws.sync()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            writing.clear()

    writing.set()
    threads = [threading.Thread(target=searcher) for _ in range(24)] + [threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[0]
    ann = ws.store.ann(index)
    assert ann.rebuilds == 1, "changes must be caught up incrementally, never by a rebuild"
    with ws.engine.connect() as conn:
        assert len(ann) == ws.store.count(conn, index.id)


def test_closed_read_connections_reopen(hnsw_ws: Workspace) -> None:
    q = _query(hnsw_ws, "ocean climate carbon")
    expected = [r.chunk_id for r in hnsw_ws.search(vector=q, k=3)]
    first = hnsw_ws.store.raw()
    hnsw_ws.store.close()
    assert first.closed
    assert [r.chunk_id for r in hnsw_ws.search(vector=q, k=3)] == expected
    assert hnsw_ws.store.raw() is not first


def test_expansion_search_applies_to_the_live_graph_and_to_a_reload(hnsw_ws: Workspace) -> None:
    index = hnsw_ws.searcher.resolve("prod")
    live = hnsw_ws.store.ann(index)
    live.set_expansion_search(200)
    assert live._hnsw.expansion_search == 200
    reloaded = AnnIndex(index.id, index.dims, live.path.parent, expansion_search=200)
    reloaded.refresh(hnsw_ws.store.raw().driver_connection)
    assert reloaded.rebuilds == 0 and reloaded._hnsw.expansion_search == 200


def test_default_ef_search_is_flat_for_small_indexes_then_grows_in_steps_up_to_the_cap() -> None:
    assert default_ef_search(0, 4096) == default_ef_search(100_000, 4096) == DEFAULT_EF_SEARCH
    assert default_ef_search(100_000, 100) == 100
    grown = [default_ef_search(n, 4096) for n in (200_000, 500_000, 1_000_000, 5_000_000)]
    assert grown == sorted(grown) and grown[0] > DEFAULT_EF_SEARCH and all(ef % 16 == 0 for ef in grown)
    assert 1000 < default_ef_search(1_000_000, 4096) < 1300  # recall@10 >= 0.95 at 1M: docs/benchmarks.md
    assert default_ef_search(10**9, 4096) == 4096 and default_ef_search(10**9, 1000) == 1000


def test_default_ef_search_follows_the_graph_size_and_a_setting_overrides_it(
    hnsw_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    import embedops.vectors.base as base

    index = hnsw_ws.searcher.resolve("prod")
    q = _query(hnsw_ws, "galaxy orbit star")
    hnsw_ws.search(vector=q, k=3)
    assert hnsw_ws.store.ann(index)._hnsw.expansion_search == DEFAULT_EF_SEARCH
    monkeypatch.setattr(base, "EF_SEARCH_FLAT_UP_TO", 4)  # this small graph now counts as a big one
    ann = AnnIndex(index.id, index.dims, hnsw_ws.store.ann(index).path.parent)
    ann.refresh(hnsw_ws.store.raw().driver_connection)
    expected = default_ef_search(len(ann), base.MAX_EF_SEARCH)
    assert ann.rebuilds == 0 and expected > DEFAULT_EF_SEARCH
    assert ann._hnsw.expansion_search == ann.ef_search == expected
    ann.search(q, 3)
    ann.set_expansion_search(64)
    ann.search(q, 3)
    assert ann._hnsw.expansion_search == ann.ef_search == 64
    ann.set_expansion_search(None)
    assert ann._hnsw.expansion_search == expected


def test_ann_ef_search_setting_reaches_the_graph_and_bad_values_are_refused(hnsw_ws: Workspace) -> None:
    from embedops.config import load_settings
    from embedops.errors import ConfigError

    root = hnsw_ws.root
    hnsw_ws.settings.ann_ef_search = 40
    hnsw_ws.settings.save()
    hnsw_ws.close()
    with Workspace.open(root) as ws:
        ws.search("galaxy orbit star", k=3)
        assert ws.store.ann(ws.searcher.resolve("prod"))._hnsw.expansion_search == 40
    for bad in ("0", "5000", '"many"', "true"):
        text = (root / "embedops.toml").read_text(encoding="utf-8")
        (root / "embedops.toml").write_text(text.replace("ann_ef_search = 40", f"ann_ef_search = {bad}"), encoding="utf-8")
        with pytest.raises(ConfigError, match="ann_ef_search"):
            load_settings(root)
        (root / "embedops.toml").write_text(text, encoding="utf-8")



def _assert_batched_equals_single(ws: Workspace) -> None:
    from embedops.search.modes import search_batch

    texts = ["galaxy orbit star", "cell membrane protein", "volcano lava", "x"]
    for mode in ("vector", "hybrid"):
        one_by_one = [[(r.chunk_id, r.score) for r in ws.search(t, k=7, mode=mode)] for t in texts]
        batched = search_batch(ws.searcher, texts, k=7, mode=mode)
        assert [[(r.chunk_id, r.score) for r in hits] for hits in batched] == one_by_one
        assert all(len(hits) == 7 for hits in batched)
    assert [len(h) for h in search_batch(ws.searcher, texts[:1], k=3)] == [3]


def test_batched_search_equals_one_query_at_a_time_on_the_hnsw_graph(hnsw_ws: Workspace) -> None:
    _assert_batched_equals_single(hnsw_ws)


def test_batched_search_equals_one_query_at_a_time_exact_and_on_every_backend(ws: Workspace) -> None:
    ws.sync()
    _assert_batched_equals_single(ws)


def test_an_onnx_model_loads_after_the_ann_index_was_used() -> None:
    """onnxruntime imported after usearch's extension kills the process (SIGSEGV): the ANN loads it first."""
    script = (
        "from embedops.vectors.ann import usearch_index\n"
        "usearch_index()\n"
        "import onnxruntime\n"
        "print('alive')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=CHILD_ENV, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "alive", done.stderr[-500:]
