"""Capacity analysis: variants measured on an eval set, projections, the choice, CLI and report (both backends)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from embedops.capacity.analysis import analyze
from embedops.capacity.project import Candidate, Footprint, cheapest_within, parse_sizes, parse_variants
from embedops.cli import app
from embedops.errors import ConfigError
from embedops.evaluate.runner import run_evalset
from embedops.evaluate.store import import_evalset
from embedops.vectors.storage import StorageSpec
from embedops.workspace import Workspace
from tests.test_gate import make_corpus

runner = CliRunner()


# -- pure ----------------------------------------------------------------------------------------------------
def test_footprint_is_the_line_through_the_measured_points() -> None:
    f = Footprint.fit([(500, 1_000_000), (1_000, 1_500_000)])
    assert (f.bytes_per_vector, f.overhead_bytes) == (1000.0, 500_000.0)
    assert f.at(1_000_000) == 1_000_500_000.0
    assert Footprint.fit([(10, 100)]).at(20) == 200.0


def test_sizes_and_variants_parse_or_say_how() -> None:
    assert parse_sizes("100M,1M,2.5k") == [2_500, 1_000_000, 100_000_000]
    for bad in ("", "1X", "-3", "0"):
        with pytest.raises(ConfigError):
            parse_sizes(bad)
    assert [s.key for s in parse_variants("i8+r4,f32,b1", ("f32", "i8", "b1"))] == ["f32", "i8+r4", "b1"]
    with pytest.raises(ConfigError, match="no i8"):
        parse_variants("i8", ("f32", "f16", "b1"))


def test_the_choice_is_the_cheapest_within_the_budget() -> None:
    c = [Candidate("f32", 0.0, 0.01, 100.0, 1.0), Candidate("i8+r4", 0.004, 0.02, 30.0, 2.0),
         Candidate("b1:flat", 0.2, 0.3, 5.0, 900.0)]
    assert cheapest_within(c, 0.01).storage == "i8+r4"
    assert cheapest_within(c, 0.5).storage == "b1:flat"
    assert cheapest_within(c, 0.5, max_p50_ms=10.0).storage == "i8+r4"  # the scan is too slow at that size
    assert cheapest_within(c[1:], 0.001) is None


# -- measured ----------------------------------------------------------------------------------------------------
@pytest.fixture
def gold(tmp_path: Path, database: str | None) -> Workspace:
    queries = make_corpus(tmp_path, short=80)
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", database=database)
    ws.add_source("docs", tmp_path / "docs")
    ws.sync()
    import_evalset(ws, "gold", queries, alias="prod")
    yield ws
    ws.close()


def test_capacity_measures_each_variant_against_float32(gold: Workspace) -> None:
    keys = ["f16", "b1", "b1+r10", "f32:d64", "f32:pca64"] + (["i8+r4"] if "i8" in gold.store.capabilities.precisions else [])
    served_before = gold.status()
    run_evalset(gold, "gold")  # the queries' vectors are remembered: capacity then needs no model
    gold._embedders.clear()
    report = analyze(gold, sizes=[1_000_000, 10_000_000], variants=[StorageSpec.parse(k) for k in keys])
    assert gold._embedders == {}
    by = {v.storage.split("@")[0]: v for v in report.variants}
    f32 = report.variants[0]
    assert f32.storage == "f32" and f32.serving and f32.relative_loss == 0.0 and f32.ndcg.delta == 0.0
    assert f32.ann_recall >= 0.95 and report.queries == 80 and report.vectors == 80
    assert by["f32:pca64"].storage.startswith("f32:pca64@")  # fitted on the stored vectors
    # sizes: measured, ordered by precision, projected linearly
    assert f32.bytes_per_vector > by["f16"].bytes_per_vector > by["b1"].bytes_per_vector > 0
    for v in report.variants:
        small, large = v.projected
        assert large.memory_bytes > small.memory_bytes > 0 and large.disk_bytes > small.disk_bytes
        assert large.monthly_cost == pytest.approx(large.memory_bytes / 1e9 * 3.8, abs=0.01)
        assert v.p99_ms >= v.p50_ms > 0
        assert v.ndcg.ci_low <= v.ndcg.delta <= v.ndcg.ci_high
    # rescoring buys back what binary loses against exact float32 search
    assert by["b1+r10"].ann_recall > by["b1"].ann_recall
    assert report.choice is not None and report.choice in {v.storage for v in report.variants}
    chosen = next(v for v in report.variants if v.storage == report.choice)
    assert chosen.relative_loss <= 0.01 and "95% interval" in report.verdict
    assert all(chosen.projected[-1].memory_bytes <= v.projected[-1].memory_bytes
               for v in report.variants if v.relative_loss <= 0.01)
    after = gold.status()
    assert after["indexes"] == served_before["indexes"] and after["aliases"] == served_before["aliases"]


def test_capacity_needs_an_eval_set(tmp_path: Path, corpus: Path) -> None:
    ws = Workspace.init(tmp_path / "bare", embedder="hashing")
    ws.add_source("docs", corpus)
    ws.sync()
    with pytest.raises(ConfigError, match="no eval set is bound") as caught:
        analyze(ws)
    assert "eval bind" in (caught.value.hint or "")
    ws.close()


def test_cli_capacity_table_json_and_report(gold: Workspace, tmp_path: Path) -> None:
    page = tmp_path / "capacity.html"
    w = ["--workspace", str(gold.root)]
    done = runner.invoke(app, ["capacity", "--variants", "f16,b1+r4", "--sizes", "1M", "--report", str(page), *w])
    assert done.exit_code == 0, done.output
    assert "b1+r4" in done.output and "cheapest" in done.output
    html = page.read_text()
    assert "<svg" in html and "b1+r4" in html and "nDCG@10" in html
    as_json = runner.invoke(app, ["capacity", "--variants", "f16", "--eval-set", "gold", "--price-gb-month", "10",
                                  "--max-loss", "0.5", "--json", *w])
    data = json.loads(as_json.stdout)
    assert [v["storage"] for v in data["variants"]] == ["f32", "f16"] and data["price_gb_month"] == 10
    assert data["choice"] == "f16" and data["variants"][1]["projected"][0]["vectors"] == 1_000_000
    bad = runner.invoke(app, ["capacity", "--variants", "f64", *w])
    assert bad.exit_code != 0 and "storage key" in bad.output


def test_a_flat_variant_holds_its_codes_in_memory_and_nothing_on_disk(gold: Workspace) -> None:
    if "flat" not in gold.store.capabilities.layouts:
        pytest.skip("flat layouts are the SQLite store's")
    report = analyze(gold, sizes=[1_000_000], variants=[StorageSpec.parse(k) for k in ("b1:flat+r10", "f32:flat")])
    by = {v.storage: v for v in report.variants}
    dims = gold.searcher.resolve("prod").dims
    assert by["b1:flat+r10"].bytes_per_vector == 8 + dims // 8  # key and bits, measured from the arrays held
    assert by["f32:flat"].bytes_per_vector == 8 + 4 * dims
    (projected,) = by["b1:flat+r10"].projected
    assert projected.memory_bytes == 1_000_000 * (8 + dims // 8) and projected.disk_bytes == 0
    assert by["b1:flat+r10"].file_bytes == 0 and by["b1:flat+r10"].ann_recall >= 0.9
    # a scan grows with what it scans: p50 at 1M projected from the 80 vectors scanned now
    assert projected.p50_ms == pytest.approx(by["b1:flat+r10"].p50_ms * 1_000_000 / 80, rel=0.01)
    assert report.variants[0].projected[0].p50_ms is None  # a graph's latency is not projected
    fast = analyze(gold, sizes=[1_000_000], variants=[StorageSpec.parse("b1:flat+r10")], max_loss=0.5, max_p50_ms=1e-6)
    assert fast.choice is None and "p50" in fast.verdict
