"""Storage variants: keys, codecs, PCA, and variant indexes served, rescored and migrated (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

import embedops.vectors.ann as ann_module
from embedops.catalog import schema
from embedops.compose import migrator
from embedops.errors import ConfigError
from embedops.evaluate.runner import run_evalset
from embedops.evaluate.store import import_evalset
from embedops.vectors.ann import AnnIndex, usearch_index
from embedops.vectors.storage import Codec, Projection, StorageOptions, StorageSpec, rescore
from embedops.workspace import Workspace
from tests.test_gate import make_corpus


def unit_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# -- keys ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["f32", "f16", "i8+r4", "b1+r10", "f32:d64", "i8:d128+r2", "f16:pca32", "f32:pca32@1a2b3c4d5e6f+r3",
                                 "b1:flat+r10", "i8:d128:flat"])
def test_a_key_names_one_spec_and_reads_back_the_same(key: str) -> None:
    assert StorageSpec.parse(key).key == key


@pytest.mark.parametrize("key", ["f64", "i8+r1", "b1+r0x", "f32:d0", "f32:d64@abcdef12", "i8 + r4", "f32:pca", "i8+r1000",
                                 "b1+r4:flat", "f32:flat:d64"])
def test_an_invalid_key_is_refused_with_the_grammar(key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        StorageSpec.parse(key)
    assert caught.value.hint


def test_options_apply_over_the_serving_variant() -> None:
    base = StorageSpec.parse("i8:pca64@abcdef123456+r4")
    assert StorageOptions(rescore=0).apply(base).key == "i8:pca64@abcdef123456"  # the fit is kept
    assert StorageOptions(dims=32, pca=True).apply(base).key == "i8:pca32+r4"  # another size: refitted
    assert StorageOptions(precision="b1", dims=128).apply(base).key == "b1:d128+r4"
    assert not StorageOptions().given() and StorageOptions(pca=True).given()
    with pytest.raises(ConfigError, match="--pca needs --dims"):
        StorageOptions(pca=True).apply(StorageSpec())
    with pytest.raises(ConfigError, match="only 64"):
        StorageSpec.parse("f32:d64").stored_dims(64)


def test_payload_bytes_per_precision() -> None:
    assert [StorageSpec.parse(k).payload_bytes(384) for k in ("f32", "f16", "i8", "b1", "f32:d256", "b1:d100")] == [
        1536, 768, 384, 48, 1024, 13]


# -- codecs ---------------------------------------------------------------------------------------------
def test_int8_uses_the_whole_range_per_vector_and_keeps_the_ranking_close() -> None:
    x = unit_rows(500, 64)
    codec = Codec(StorageSpec.parse("i8"), 64)
    encoded = codec.encode(codec.reduce(x))
    assert encoded.dtype == np.int8 and (np.abs(encoded).max(axis=1) == 127).all()
    approx = codec.prepare(x)
    assert np.abs((approx @ x[0]) - (x @ x[0])).max() < 0.02


def test_binary_scores_are_the_cosine_of_sign_vectors_as_usearch_measures_them() -> None:
    x = unit_rows(300, 100)
    codec = Codec(StorageSpec.parse("b1"), 100)
    Index = usearch_index()
    hnsw = Index(ndim=codec.ndim, metric=codec.usearch_metric, dtype=codec.usearch_dtype)
    hnsw.add(np.arange(300, dtype=np.uint64), codec.ann_vectors(x))
    found = hnsw.search(codec.ann_vectors(x[:1])[0], 300, exact=True)
    exact = codec.prepare(x) @ codec.prepare(x[:1])[0]
    assert np.allclose(codec.scores(found.distances), exact[np.asarray(found.keys, dtype=np.int64)], atol=1e-5)


@pytest.mark.parametrize("key", ["f32", "f16", "i8", "b1", "f32:d24", "i8:d40"])
def test_exact_scores_over_packed_rows_are_what_the_variants_graph_measures(key: str) -> None:
    x, q = unit_rows(400, 64), unit_rows(3, 64, seed=5)
    codec = Codec(StorageSpec.parse(key), 64)
    codes = codec.ann_vectors(x)
    assert codes.nbytes == 400 * StorageSpec.parse(key).payload_bytes(64)  # the variant's bytes, nothing more
    scores = codec.exact_scores(codes, q)
    for i, (rows, top) in enumerate(codec.exact_top_k(codes, q, 5)):  # the flat search ranks by those scores
        assert np.allclose(top, np.sort(scores[i])[::-1][:5], atol=2e-3) and np.allclose(scores[i][rows], top, atol=2e-3)
    Index = usearch_index()
    hnsw = Index(ndim=codec.ndim, metric=codec.usearch_metric, dtype=codec.usearch_dtype)
    hnsw.add(np.arange(400, dtype=np.uint64), codec.ann_vectors(x))
    for i in range(3):
        found = hnsw.search(codec.ann_vectors(q[i : i + 1])[0], 400, exact=True)
        assert np.allclose(codec.scores(found.distances), scores[i][np.asarray(found.keys, dtype=np.int64)], atol=2e-3)


def test_truncation_keeps_the_first_dimensions_renormalised() -> None:
    x = unit_rows(10, 32)
    out = Codec(StorageSpec.parse("f32:d8"), 32).prepare(x)
    assert out.shape == (10, 8) and np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    assert np.allclose(out[0] * np.linalg.norm(x[0, :8]), x[0, :8], atol=1e-6)


def test_pca_is_deterministic_and_keeps_the_directions_that_vary() -> None:
    rng = np.random.default_rng(1)
    basis = np.linalg.qr(rng.standard_normal((32, 32)))[0]
    x = (rng.standard_normal((400, 32)) * np.r_[np.full(4, 5.0), np.full(28, 0.05)]) @ basis.T
    a, b = Projection.fit(x, 4), Projection.fit(x.copy(), 4)
    assert a.id == b.id and np.array_equal(a.components, b.components)
    kept = np.linalg.norm(a.apply(x.astype(np.float32)), axis=1) / np.linalg.norm(x - a.mean, axis=1)
    assert kept.min() > 0.99  # four directions hold nearly all of the variance
    back = Projection.from_bytes(a.id, *a.to_bytes(), 4)
    assert np.array_equal(back.components, a.components)


def test_rescoring_orders_candidates_by_full_precision_cosine() -> None:
    x = unit_rows(50, 16)
    keys = np.arange(100, 150, dtype=np.uint64)
    top, scores = rescore(keys[::-1], x[::-1], x[7], 3)
    assert top[0] == 107 and scores[0] == pytest.approx(1.0, abs=1e-6)
    assert list(scores) == sorted(scores, reverse=True)


# -- served variants -------------------------------------------------------------------------------------
@pytest.fixture
def gold(tmp_path: Path, database: str | None) -> Workspace:
    queries = make_corpus(tmp_path)
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", database=database)
    ws.add_source("docs", tmp_path / "docs")
    ws.sync()
    import_evalset(ws, "gold", queries, alias="prod")
    yield ws
    ws.close()


def test_a_storage_change_is_a_migration_that_embeds_nothing(gold: Workspace) -> None:
    before = run_evalset(gold, "gold").metrics["ndcg@10"]
    m = migrator(gold)
    with pytest.raises(ConfigError, match="nothing to migrate"):
        m.plan(storage=StorageOptions(precision="f32"))
    plan = m.plan(storage=StorageOptions(precision="b1", rescore=8))
    assert plan.storage_only and plan.facts.chunks_to_embed == 0 and plan.facts.to_storage == "b1+r8"
    gold._embedders.clear()
    started = m.start(storage=StorageOptions(precision="b1", rescore=8))
    filled = m.backfill()
    assert filled.embedded == 0 and filled.vectors == plan.facts.from_vectors and filled.remaining == 0
    assert filled.gate is not None and filled.gate.passed, filled.gate.summary()
    assert gold._embedders == {}  # neither the shadow, the gate's eval runs nor its agreement loaded the model
    cut = m.cutover()
    assert cut.index == started.shadow_index
    served = gold.searcher.resolve("prod")
    assert served.storage == "b1+r8" and served.id == started.shadow_index
    after = run_evalset(gold, "gold").metrics["ndcg@10"]
    assert after >= before - 0.02
    status = {ix["id"]: ix for ix in gold.status()["indexes"]}
    assert status[served.id]["storage"] == "b1+r8" and status[served.id]["rescore"] == 8
    m.rollback()
    assert gold.searcher.resolve("prod").storage == "f32"


def test_rescored_results_carry_full_precision_scores(gold: Workspace) -> None:
    m = migrator(gold)
    precision = "i8" if "i8" in gold.store.capabilities.precisions else "f16"
    m.start(storage=StorageOptions(precision=precision, dims=32, rescore=4))
    m.backfill()
    shadow = gold.searcher.resolve(index_id=m.require().to_index)
    served = gold.searcher.resolve("prod")
    q = gold.embedder("hashing").embed(["alpha beta gamma"])[0]
    exact = gold.search(vector=q, k=5, index=served.id)
    variant = gold.search(vector=q, k=5, index=shadow.id)
    by_chunk = {r.chunk_id: r.score for r in exact}
    for r in variant:  # a rescored score is the full-precision cosine, whatever the ANN held
        if r.chunk_id in by_chunk:
            assert r.score == pytest.approx(by_chunk[r.chunk_id], abs=1e-5)
    batch = gold.searcher.search_many(shadow, q[None, :], 5)[0]
    assert [r.chunk_id for r in batch] == [r.chunk_id for r in variant]


def test_pca_migration_fits_once_and_queries_are_projected(gold: Workspace) -> None:
    m = migrator(gold)
    started = m.start(storage=StorageOptions(dims=48, pca=True, rescore=4))
    m.backfill()
    shadow = gold.searcher.resolve(index_id=started.shadow_index)
    spec = shadow.spec
    assert spec.reduction == "pca" and spec.dims == 48 and spec.projection
    with gold.engine.connect() as conn:
        fitted = conn.execute(sa.select(schema.projections.c.id, schema.projections.c.fitted_on)).all()
    assert [f.id for f in fitted] == [spec.projection] and fitted[0].fitted_on > 48
    ndcg = run_evalset(gold, "gold", index=shadow.id).metrics["ndcg@10"]
    assert ndcg > 0.5
    assert [r["details"]["projection"] for r in gold.history(kind="projection.fit")] == [spec.projection]


def test_truncating_a_model_not_trained_for_it_warns(gold: Workspace) -> None:
    plan = migrator(gold).plan(storage=StorageOptions(dims=64))
    assert plan.facts.to_storage == "f32:d64"
    assert any("not Matryoshka-trained" in w for w in plan.facts.warnings)
    assert migrator(gold).plan(storage=StorageOptions(dims=64, pca=True)).facts.warnings == []


def test_hnsw_of_a_variant_agrees_with_its_exact_search(gold: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    if not gold.store.capabilities.ann_file:
        pytest.skip("the derived ANN file is the SQLite store's")
    index = gold.searcher.resolve("prod")
    raw = gold.store.raw().driver_connection
    for key in ("f16", "i8", "b1", "f32:d64"):
        codec = Codec(StorageSpec.parse(key), index.dims)
        exact = AnnIndex(index.id, index.dims, gold.root / "x", codec=codec)
        exact.refresh(raw)
        graph = AnnIndex(index.id, index.dims, gold.root / "y", codec=codec, exact_max=0)
        samples = graph.build_measured(raw, sample_at=20)
        assert exact.mode == "exact" and graph.mode == "hnsw" and [s.vectors for s in samples] == [20, len(exact)]
        q = gold.embedder("hashing").embed(["alpha beta gamma delta"])[0]
        (_, es), (_, gs) = exact.search(q, 5), graph.search(q, 5)
        assert np.allclose(es, gs, atol=2e-3), key
        assert samples[1].serialized_bytes > samples[0].serialized_bytes


def test_a_flat_variant_is_searched_exactly_at_any_size_from_its_encoded_rows(
        gold: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    if "flat" not in gold.store.capabilities.layouts:
        with pytest.raises(ConfigError, match="no flat layout"):
            migrator(gold).plan(storage=StorageOptions(precision="b1", layout="flat"))
        return
    monkeypatch.setattr(ann_module, "EXACT_MAX", 10)
    m = migrator(gold)
    started = m.start(storage=StorageOptions(precision="b1", rescore=10, layout="flat"))
    filled = m.backfill()
    assert filled.gate is not None and filled.gate.passed, filled.gate.summary()
    shadow = gold.searcher.resolve(index_id=started.shadow_index)
    assert shadow.storage == "b1:flat+r10"
    ann = gold.store.refresh(shadow)
    assert ann.mode == "exact" and len(ann) > 10
    assert ann.exact_bytes() == len(ann) * (8 + StorageSpec.parse("b1").payload_bytes(shadow.dims))
    assert gold.store.flush(shadow)["saved"] is False  # nothing to save: rebuilt from the catalog


def test_a_saved_ann_file_of_another_variant_is_rebuilt(gold: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    if not gold.store.capabilities.ann_file:
        pytest.skip("the derived ANN file is the SQLite store's")
    monkeypatch.setattr(ann_module, "EXACT_MAX", 10)
    index = gold.searcher.resolve("prod")
    raw = gold.store.raw().driver_connection
    f32 = AnnIndex(index.id, index.dims, gold.root / "ann2")
    f32.refresh(raw)
    assert f32.save()
    as_i8 = AnnIndex(index.id, index.dims, gold.root / "ann2", codec=Codec(StorageSpec.parse("i8"), index.dims))
    as_i8.refresh(raw)
    assert as_i8.rebuilds == 1 and as_i8.mode == "hnsw"


def test_postgresql_index_is_over_the_variant_expression_and_measured_by_the_database(gold: Workspace) -> None:
    if gold.store.capabilities.ann_file:
        pytest.skip("pgvector only: the index lives in the database")
    with pytest.raises(ConfigError, match="no i8"):
        migrator(gold).plan(storage=StorageOptions(precision="i8"))
    sizes = {}
    for key in ("f16", "b1+r8"):
        m = migrator(gold)
        started = m.start(storage=StorageOptions(*_options(key)))
        m.backfill()
        shadow = gold.searcher.resolve(index_id=started.shadow_index)
        sizes[key] = gold.store.flush(shadow)["index_bytes"]
        with gold.engine.connect() as conn:
            definition = conn.exec_driver_sql(
                "SELECT indexdef FROM pg_indexes WHERE indexname = %s", (f"hnsw_{shadow.id.replace('-', '_')}",)).scalar_one()
            q = np.asarray(gold.embedder("hashing").embed(["alpha beta"])[0])
            plan = conn.exec_driver_sql(
                "EXPLAIN SELECT seq FROM pg_vector_data WHERE index_id = %s ORDER BY binary_quantize(embedding)::bit(384)"
                " <~> binary_quantize(%s::vector(384)) LIMIT 5", (shadow.id, str(q.tolist()))).scalars().all()
        assert ("halfvec" in definition) if key == "f16" else ("binary_quantize" in definition and "bit_hamming_ops" in definition)
        if key == "b1+r8":
            assert any("hnsw_" in line for line in plan)  # the planner uses the partial bit index
        assert run_evalset(gold, "gold", index=shadow.id).metrics["ndcg@10"] > 0.5
        m.abort()
    assert sizes["b1+r8"] < sizes["f16"]


def _options(key: str) -> tuple[str, None, bool, int]:
    spec = StorageSpec.parse(key)
    return spec.precision, None, False, spec.rescore


def test_a_version_7_catalog_gets_the_storage_column_and_keeps_its_indexes(tmp_path: Path) -> None:
    from embedops.catalog.db import create_engine, ensure_schema
    from embedops.catalog.ledger import read_ledger

    ws = Workspace.init(tmp_path / "old", embedder="hashing")
    ws.add_source("docs", make_corpus(tmp_path).parent / "docs")
    ws.sync()
    ws.close()
    path = tmp_path / "old" / ".embedops" / "catalog.db"
    plain = sa.create_engine(f"sqlite:///{path}")
    with plain.begin() as conn:  # back to version 7: no storage column, no projections table
        conn.exec_driver_sql("DROP TABLE projections")
        conn.exec_driver_sql("ALTER TABLE indexes DROP COLUMN storage")
        conn.exec_driver_sql("UPDATE meta SET value = '7' WHERE key = 'schema_version'")
    plain.dispose()
    engine = create_engine(f"sqlite:///{path}")
    assert ensure_schema(engine) == schema.SCHEMA_VERSION  # through 8 (storage), then the later steps
    with engine.connect() as conn:
        assert conn.execute(sa.select(schema.indexes.c.storage)).scalars().all() == ["f32"]
        assert {"schema_version": 8} in [r["details"] for r in read_ledger(conn, kind_prefix="catalog.upgrade")]
    engine.dispose()
    reopened = Workspace.open(tmp_path / "old")
    assert reopened.search("alpha", k=1) is not None and reopened.searcher.resolve("prod").storage == "f32"
    reopened.close()


def test_cli_plans_and_starts_a_storage_migration(gold: Workspace) -> None:
    import json

    from typer.testing import CliRunner

    from embedops.cli import app

    runner = CliRunner()
    w = ["--workspace", str(gold.root)]
    plan = runner.invoke(app, ["migrate", "plan", "--storage", "b1", "--rescore", "4", "--json", *w])
    assert plan.exit_code == 0, plan.output
    data = json.loads(plan.stdout)
    assert (data["from_storage"], data["to_storage"], data["chunks_to_embed"]) == ("f32", "b1+r4", 0)
    warned = runner.invoke(app, ["migrate", "plan", "--dims", "32", *w])
    assert warned.exit_code == 0 and "Matryoshka-trained" in warned.stderr and "f32:d32" in warned.stdout
    sampled = runner.invoke(app, ["migrate", "plan", "--storage", "b1", "--sample", "5", *w])
    assert sampled.exit_code != 0 and "embedops capacity" in sampled.stderr  # a storage change embeds nothing
    same = runner.invoke(app, ["migrate", "start", "--storage", "f32", *w])
    assert same.exit_code != 0 and "nothing to migrate" in same.output
    started = runner.invoke(app, ["migrate", "start", "--storage", "b1", "--rescore", "4", *w])
    assert started.exit_code == 0 and "b1-r4" in started.output
    status = runner.invoke(app, ["status", *w])
    assert "b1+r4" in status.output


def test_sync_keeps_a_variant_shadow_current_through_its_graph(gold: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ann_module, "EXACT_MAX", 10)
    m = migrator(gold)
    precision = "i8" if "i8" in gold.store.capabilities.precisions else "f16"
    started = m.start(storage=StorageOptions(precision=precision, rescore=4))
    m.backfill()
    shadow = gold.searcher.resolve(index_id=started.shadow_index)
    gold.search("anything", k=1, index=shadow.id)  # the graph exists before the change
    docs = gold.root.parent / "docs"
    (docs / "zz-new.txt").write_text("quokka wombat platypus echidna numbat bilby dingo.\n", encoding="utf-8")
    assert gold.sync().counts.added == 1
    hits = gold.search("quokka wombat platypus echidna numbat bilby dingo", k=1, index=shadow.id)
    assert hits[0].document_id == "zz-new.txt" and hits[0].score == pytest.approx(1.0, abs=1e-4)
    if gold.store.capabilities.ann_file:
        assert gold.store.refresh(shadow).mode == "hnsw"


def test_a_scratch_graph_is_the_same_graph_every_time(gold: Workspace) -> None:
    if not gold.store.capabilities.ann_file:
        pytest.skip("the derived ANN file is the SQLite store's")
    index = gold.searcher.resolve("prod")
    raw = gold.store.raw().driver_connection
    q = unit_rows(20, index.dims, seed=3)
    found = []
    for where in ("a", "b"):
        graph = AnnIndex(index.id, index.dims, gold.root / where, codec=Codec(StorageSpec.parse("i8"), index.dims),
                         exact_max=0, expansion_search=10)
        graph.build_measured(raw, sample_at=30)
        found.append([list(keys) for keys, _ in graph.search_many(q, 10)])
    assert found[0] == found[1]


def test_a_filtered_search_of_a_rescored_variant_ranks_by_full_precision(gold: Workspace) -> None:
    from embedops.search.engine import Filters

    m = migrator(gold)
    started = m.start(storage=StorageOptions(precision="b1", rescore=8))
    m.backfill()
    q = gold.embedder("hashing").embed(["alpha beta gamma delta epsilon"])[0]
    only = Filters(source="docs")  # every chunk: a small subset, searched exactly
    exact = gold.search(vector=q, k=5, index=gold.searcher.resolve("prod").id, filters=only)
    variant = gold.search(vector=q, k=5, index=started.shadow_index, filters=only)
    assert [r.chunk_id for r in variant] == [r.chunk_id for r in exact]
    assert [r.score for r in variant] == pytest.approx([r.score for r in exact], abs=1e-5)
