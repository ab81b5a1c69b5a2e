"""ANN graphs at scale: parameters by size, growth while a sync writes, tombstones and compaction."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import embedops.vectors.ann as ann_module
from embedops import commands
from embedops.vectors.ann import AnnIndex, hnsw_params
from embedops.workspace import Workspace
from tests.conftest import write_corpus


@pytest.fixture
def small_hnsw(monkeypatch: pytest.MonkeyPatch) -> None:
    """Graphs (not exact search) from 10 vectors, compaction from 1 tombstone: small corpora act big."""
    monkeypatch.setattr(ann_module, "EXACT_MAX", 10)
    monkeypatch.setattr(ann_module, "COMPACT_MIN", 1)


@pytest.fixture
def corpus_ws(tmp_path: Path, small_hnsw: None) -> Iterator[tuple[Workspace, Path]]:
    write_corpus(tmp_path / "docs", 60)
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("docs", tmp_path / "docs")
    yield ws, tmp_path / "docs"
    ws.close()


def _exact_ids(ws: Workspace, query: np.ndarray, k: int) -> list[int]:
    index = ws.searcher.resolve("prod")
    raw = ws.store.raw().driver_connection
    seqs = [r[0] for r in raw.execute("SELECT seq FROM vectors WHERE index_id = ?", (index.id,))]
    keys, vecs = ann_module.read_vectors(raw, seqs, index.dims)
    return [int(x) for x in ann_module.top_k_exact(keys, vecs, query, k)[0]]


def test_graph_parameters_follow_the_index_size() -> None:
    assert hnsw_params(50_000) == (ann_module.HNSW_CONNECTIVITY, ann_module.HNSW_EXPANSION_ADD)
    assert hnsw_params(ann_module.HNSW_LARGE) == (ann_module.HNSW_LARGE_CONNECTIVITY, ann_module.HNSW_LARGE_EXPANSION_ADD)


def test_the_graph_grows_while_the_sync_writes_and_is_saved_with_its_parameters(
    corpus_ws: tuple[Workspace, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, _ = corpus_ws
    threads: list[str] = []
    real = AnnIndex.refresh

    def recording(self: AnnIndex, raw: Any) -> None:
        threads.append(threading.current_thread().name)
        real(self, raw)

    monkeypatch.setattr(AnnIndex, "refresh", recording)
    monkeypatch.setattr(ann_module, "CALIBRATE_MIN", 30)  # built at 10 vectors, grown past 30 by catch-ups
    ws.settings.batch_size = 5
    result = ws.sync()
    assert "ann-grow" in threads  # batches went into the graph while later ones were written
    info = result.indexes[0]
    ann = ws.store.ann(ws.searcher.resolve("prod"))
    assert ann.calibrated == (ann.ef_search, info["vectors"])  # the grown graph was measured at the end
    assert info["mode"] == "hnsw" and info["build_seconds"] > 0
    with ws.engine.connect() as conn:
        assert info["vectors"] == ws.store.count(conn, info["id"])
    meta = ws.store.ann(ws.searcher.resolve("prod")).saved_meta()
    assert (meta["connectivity"], meta["ef_construction"]) == hnsw_params(info["vectors"])


def test_deletes_leave_tombstones_that_status_reports_and_a_sync_compacts(
    corpus_ws: tuple[Workspace, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, docs = corpus_ws
    ws.sync()
    monkeypatch.setattr(ann_module, "COMPACT_SHARE", 0.9)  # not due yet
    for path in sorted(docs.rglob("*.md"))[:20]:
        path.unlink()
    ws.sync(allow_mass_delete=True)
    [ann] = ws.status()["ann"]
    assert ann["tombstones"] > 0 and ann["compaction"] == "not needed"
    reopened = commands.status(ws.root)["ann"][0]  # another process sees the saved graph's tombstones
    assert reopened["tombstones"] == ann["tombstones"] and reopened["graph"] == "saved"

    monkeypatch.setattr(ann_module, "COMPACT_SHARE", 0.1)
    assert ws.status()["ann"][0]["compaction"] == "due"
    info = ws.sync().indexes[0]  # nothing changed in the sources: the flush compacts
    assert info["tombstones"] == 0 and info["compactions"] == 1
    query = ws.embedder("hashing").embed(["immune antibody vaccine"])[0]
    found = [h.seq for h in ws.store.search(ws.searcher.resolve("prod"), query, 5)]
    assert found == _exact_ids(ws, query, 5)
    assert commands.status(ws.root)["ann"][0]["tombstones"] == 0  # the compacted graph was saved


def test_searches_go_on_on_the_old_graph_while_a_compaction_builds_the_new_one(
    corpus_ws: tuple[Workspace, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, docs = corpus_ws
    ws.sync()
    monkeypatch.setattr(ann_module, "COMPACT_SHARE", 0.99)
    for path in sorted(docs.rglob("*.md"))[:25]:
        path.unlink()
    ws.sync(allow_mass_delete=True)
    index = ws.searcher.resolve("prod")
    ann = ws.store.refresh(index)
    assert ann.tombstones > 0
    building, release = threading.Event(), threading.Event()
    real_build = AnnIndex._build

    def held_build(self: AnnIndex, raw: Any, db: Any) -> Any:
        building.set()
        assert release.wait(60)
        return real_build(self, raw, db)

    monkeypatch.setattr(AnnIndex, "_build", held_build)
    monkeypatch.setattr(ann_module, "COMPACT_SHARE", 0.1)
    assert ws.store.maintainer.maybe_compact(ann)
    assert building.wait(60)
    query = ws.embedder("hashing").embed(["planet galaxy orbit"])[0]
    during = [h.seq for h in ws.store.search(index, query, 5)]  # answered while the new graph is held back
    assert ws.status()["ann"][0]["compaction"] == "running"
    release.set()
    ws.store.maintainer.settle(ann)
    assert ann.compactions == 1 and ann.tombstones == 0
    assert during == [h.seq for h in ws.store.search(index, query, 5)] == _exact_ids(ws, query, 5)


def _graph(vectors: np.ndarray, m: int = 8, efc: int = 32) -> Any:
    hnsw = ann_module.usearch_index()(ndim=vectors.shape[1], metric="cos", dtype="f32", connectivity=m, expansion_add=efc)
    hnsw.add(np.arange(len(vectors), dtype=np.uint64), vectors, threads=1)  # one thread: the same graph every run
    return hnsw


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_the_recall_probe_asks_more_candidates_of_structureless_vectors() -> None:
    from embedops.vectors.calibrate import EF_STEPS, RecallProbe

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 48))
    clustered = _unit(centres[rng.integers(0, 20, 4000)] + 0.05 * rng.standard_normal((4000, 48)))
    flat = _unit(rng.standard_normal((4000, 48)))
    chosen = {}
    for name, data in (("clustered", clustered), ("flat", flat)):
        hnsw, probe = _graph(data), RecallProbe(probes=60)
        for lo in range(0, len(data), 1000):  # the blocks a build reads
            probe.see(np.arange(lo, lo + 1000, dtype=np.uint64), data[lo : lo + 1000])
        chosen[name] = probe.ef_for(hnsw, target=0.95)
        if chosen[name] != EF_STEPS[-1]:
            assert probe.recall(hnsw, chosen[name]) >= 0.95
            smaller = [ef for ef in EF_STEPS if ef < chosen[name]]
            assert not smaller or probe.recall(hnsw, smaller[-1]) < 0.95  # the smallest that reaches it
    assert chosen["flat"] > chosen["clustered"]


def test_a_grown_graph_is_measured_from_probes_fed_while_it_grew(
    corpus_ws: tuple[Workspace, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The end-of-sync measurement of a graph grown by catch-ups reads no vector again, and finds what a pass
    over the vectors finds (same probes: the first block; same exact neighbours: every vector)."""
    ws, _ = corpus_ws
    monkeypatch.setattr(ann_module, "CALIBRATE_MIN", 30)
    monkeypatch.setattr(ann_module, "_FETCH_ROWS", 10)  # a block is the first 10 vectors, as a build's is
    passes: list[int] = []
    real_batches = ann_module._batches

    def counting(raw: Any, sql: str, params: tuple[Any, ...], dims: int) -> Iterator[Any]:
        if params[1] == 0:  # from the first vector: a build, or a measurement's pass
            passes.append(1)
        yield from real_batches(raw, sql, params, dims)

    monkeypatch.setattr(ann_module, "_batches", counting)
    ws.settings.batch_size = 5
    info = ws.sync().indexes[0]
    ann = ws.store.ann(ws.searcher.resolve("prod"))
    assert info["vectors"] >= 30 and ann.calibrated is not None and ann.calibrated[1] == info["vectors"]
    assert len(passes) == ann.rebuilds  # the builds' passes only: the measurement used the grown probes
    grown = ann.calibrated
    ann._growing_probe = None  # as a graph restored from its file would be
    ann.calibrate(ws.store.raw().driver_connection)
    assert len(passes) == ann.rebuilds + 1 and ann.calibrated == grown


def test_the_ef_search_measurement_bisects_past_the_first_step() -> None:
    """The smallest step reaching the target, as a scan would find it, in at most 5 measurements
    (a scan took up to 13, at the largest ef_search values, on vectors without structure)."""
    from embedops.vectors.calibrate import EF_STEPS, RecallProbe

    class Measured(RecallProbe):
        def __init__(self, needed: int) -> None:
            super().__init__()
            self.needed, self.asked = needed, []

        def recall(self, hnsw: object, ef: int) -> float:
            self.asked.append(ef)
            return 0.97 if ef >= self.needed else 0.5

    for needed in [*EF_STEPS, EF_STEPS[-1] + 1]:
        probe = Measured(needed)
        expected = next((ef for ef in EF_STEPS if ef >= needed), EF_STEPS[-1])
        assert probe.ef_for(None) == expected
        assert len(probe.asked) <= 5 and probe.asked[0] == EF_STEPS[0]
    easy = Measured(EF_STEPS[0])
    easy.ef_for(None)
    assert easy.asked == [EF_STEPS[0]]  # real embeddings: one measurement


@pytest.mark.parametrize("key", ["b1", "i8:d32", "f16"])
def test_a_storage_variants_graph_is_measured_against_exact_search_over_what_it_holds(key: str) -> None:
    """ef_search brings a graph close to exact search over its own encoded vectors; the precision lost
    by encoding is rescoring's business. Measured against the float neighbours, a binary graph never
    reaches the target and would be searched at the largest ef_search."""
    from embedops.vectors.calibrate import EF_STEPS, RecallProbe
    from embedops.vectors.storage import Codec, StorageSpec

    rng = np.random.default_rng(1)
    centres = rng.standard_normal((20, 64))
    data = _unit(centres[rng.integers(0, 20, 4000)] + 0.3 * rng.standard_normal((4000, 64)))
    codec = Codec(StorageSpec.parse(key), 64)
    hnsw = ann_module.usearch_index()(ndim=codec.ndim, metric=codec.usearch_metric, dtype=codec.usearch_dtype,
                                      connectivity=8, expansion_add=32)
    own = RecallProbe(probes=60, encode=codec.encode, scores=codec.scores)
    for lo in range(0, len(data), 1000):  # as AnnIndex._build reads and adds them
        keys, encoded = np.arange(lo, lo + 1000, dtype=np.uint64), codec.ann_vectors(data[lo : lo + 1000])
        hnsw.add(keys, encoded, threads=1)  # one thread: the same graph every run
        own.see(keys, codec.compared(encoded))
    ef = own.ef_for(hnsw, target=0.95)
    assert ef < EF_STEPS[-1] and own.recall(hnsw, ef) >= 0.95
    if key == "b1":
        floats = RecallProbe(probes=60, encode=codec.encode)  # what calibration measured before
        for lo in range(0, len(data), 1000):
            floats.see(np.arange(lo, lo + 1000, dtype=np.uint64), data[lo : lo + 1000])
        assert floats.recall(hnsw, EF_STEPS[-1]) < 0.95


def test_a_large_graph_keeps_its_measured_ef_search_across_a_reload(
    corpus_ws: tuple[Workspace, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ann_module, "CALIBRATE_MIN", 10)  # this small graph counts as large
    ws, _ = corpus_ws
    info = ws.sync().indexes[0]
    ann = ws.store.ann(ws.searcher.resolve("prod"))
    assert ann.calibrated is not None and ann.calibrated[1] == info["vectors"]
    assert ann.ef_search == ann.calibrated[0] == ann._hnsw.expansion_search
    root = ws.root
    fresh = Workspace.open(root)
    try:
        again = fresh.store.refresh(fresh.searcher.resolve("prod"))
        assert again.rebuilds == 0 and again.calibrated == ann.calibrated and again.ef_search == ann.ef_search
    finally:
        fresh.close()


def test_a_no_op_sync_leaves_a_current_graph_on_disk_and_a_change_loads_it(
    corpus_ws: tuple[Workspace, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, docs = corpus_ws
    first = ws.sync().indexes[0]
    assert first["mode"] == "hnsw" and first["saved"]
    root = ws.root
    ws.close()
    loads: list[str] = []
    real = AnnIndex._load_file

    def recording(self: AnnIndex, db: Any) -> None:
        loads.append(self.index_id)
        real(self, db)

    monkeypatch.setattr(AnnIndex, "_load_file", recording)
    with Workspace.open(root) as again:
        noop = again.sync()
        assert noop.counts.embedded == 0 and loads == []  # the graph file already held the catalog's state
        info = noop.indexes[0]
        assert info["mode"] == "hnsw" and not info["saved"] and info["vectors"] == first["vectors"]
        (docs / "sub0/doc000.md").write_text("an edited document about something else entirely\n")
        changed = again.sync()
        assert changed.counts.embedded > 0 and loads  # now the graph is read, brought up to date and saved
        assert changed.indexes[0]["saved"]
        hits = again.search("something else entirely", k=3)
        assert hits and hits[0].document_id == "sub0/doc000.md"


def test_the_switch_interval_is_lowered_only_while_usearch_calls_run() -> None:
    """Overlapping calls (a sync's graph add, a server's searches) share one lowering; the last to end
    restores the interval it found, and an interval already below the handoff's is left as it is."""
    import sys

    handoff = ann_module._GilHandoff()
    original = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        with handoff:
            assert sys.getswitchinterval() == pytest.approx(ann_module.GIL_HANDOFF_S)
            with handoff:
                assert sys.getswitchinterval() == pytest.approx(ann_module.GIL_HANDOFF_S)
            assert sys.getswitchinterval() == pytest.approx(ann_module.GIL_HANDOFF_S)  # one call still runs
        assert sys.getswitchinterval() == pytest.approx(0.005)
        sys.setswitchinterval(ann_module.GIL_HANDOFF_S / 5)
        low = sys.getswitchinterval()  # as the interpreter stores it (whole microseconds)
        with handoff:
            assert sys.getswitchinterval() == low
        assert sys.getswitchinterval() == low
        with pytest.raises(RuntimeError), handoff:  # a call that fails restores it too
            sys.setswitchinterval(ann_module.GIL_HANDOFF_S)
            raise RuntimeError("usearch failed")
        assert sys.getswitchinterval() == low
    finally:
        sys.setswitchinterval(original)


def test_graph_searches_beside_a_busy_python_thread_do_not_wait_out_the_switch_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """usearch takes the GIL back for every query; beside a thread running Python, each search would wait
    for the 5 ms switch interval (about 20x a search's own time here). Compared in the same test: the same
    searches of the same graph with the handoff disabled."""
    import time

    from embedops.vectors.storage import Codec, StorageSpec

    rng = np.random.default_rng(1)
    data = _unit(rng.standard_normal((4000, 384))).astype(np.float32)
    ann = AnnIndex("ix", 384, tmp_path, codec=Codec(StorageSpec.parse("f32"), 384))
    ann._hnsw = _graph(data, m=16, efc=64)  # as a build leaves it
    ann._stamp = ann_module.Stamp(len(data), 0, len(data))
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            sum(range(1000))

    def searches() -> float:
        started = time.perf_counter()
        for q in data[:200]:
            assert len(ann.search(q, 10)[0]) == 10
        return time.perf_counter() - started

    thread = threading.Thread(target=busy, daemon=True)
    thread.start()
    try:
        handed = searches()
        monkeypatch.setattr(ann_module, "GIL_HANDOFF_S", 1.0)  # never lowers the interval: usearch alone
        default = searches()
    finally:
        stop.set()
        thread.join()
    assert handed < default / 3, (handed, default)
