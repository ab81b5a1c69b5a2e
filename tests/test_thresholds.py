"""Thresholds: the pure maths with literals, the registry on real SQLite, recalibration across two
hashing spaces (seeds 0 and 1), the cutover gate, labels files and the CLI's JSON."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from embedops.catalog import schema
from embedops.catalog.db import create_engine, ensure_schema
from embedops.catalog.ledger import read_ledger
from embedops.cli import app
from embedops.errors import ConfigError, GateFailed, NotFound
from embedops.compose import migrator
from embedops.thresholds.calibrate import (
    PairScores, behaviour, cuts, fraction_above, match_distribution, match_labels, operating_point, quantile_map,
    threshold_for_f1, threshold_for_precision,
)
from embedops.thresholds.labels import read_labels
from embedops.thresholds.recalibrate import SampleConfig, calibrate
from embedops.workspace import Workspace
from tests.conftest import sentence

NEW = "hashing:seed=1"


# -- pure maths ---------------------------------------------------------------------------------
def test_quantile_matching_maps_a_linear_change_of_scale_exactly() -> None:
    old = [i / 10 for i in range(11)]
    new = [0.5 * x + 0.2 for x in old]
    for t in (0.05, 0.35, 0.85):
        value, extrapolated = quantile_map(old, new, t)
        assert value == pytest.approx(0.5 * t + 0.2) and not extrapolated
    m = match_distribution(old, new, 0.85, bootstrap=0)
    assert m.fraction_above == fraction_above(new, m.value) == pytest.approx(2 / 11)
    assert m.interval is None and m.pairs == 11


def test_quantile_matching_is_about_the_pairs_not_the_numbers() -> None:
    # A monotone but non-linear change: the same pairs stay above, whatever the scale.
    old = [0.1, 0.3, 0.5, 0.7, 0.9]
    new = [x**3 for x in old]
    value, _ = quantile_map(old, new, 0.6)
    assert 0.5**3 < value < 0.7**3
    assert fraction_above(new, value) == fraction_above(old, 0.6) == 0.4
    # the pairing matters: pairs given in another order are still matched by rank
    value2, _ = quantile_map(old[::-1], new[::-1], 0.6)
    assert value2 == pytest.approx(value)


def test_quantile_matching_flags_a_threshold_outside_the_sample() -> None:
    value, extrapolated = quantile_map([0.1, 0.5, 0.8], [0.2, 0.4, 0.6], 0.95)
    assert extrapolated and value == pytest.approx(0.6 + 0.15)
    value, extrapolated = quantile_map([0.1, 0.5, 0.8], [0.2, 0.4, 0.6], 0.0)
    assert extrapolated and value == pytest.approx(0.2 - 0.1)
    with pytest.raises(ValueError, match="same pairs"):
        quantile_map([0.1, 0.2], [0.1], 0.1)


def test_cuts_and_precision_matching_with_literals() -> None:
    scores = [0.9, 0.8, 0.8, 0.6, 0.4]
    labels = [True, True, False, True, False]
    c = cuts(scores, labels)
    assert c.thresholds.tolist() == pytest.approx([0.85, 0.7, 0.5, 0.4])  # ties are never split
    assert c.above.tolist() == [1, 3, 4, 5] and c.true_pos.tolist() == [1, 2, 3, 3]
    assert threshold_for_precision(scores, labels, 0.75) == pytest.approx((0.5, 0.75, True))
    assert threshold_for_precision(scores, labels, 0.7) == pytest.approx((0.5, 0.75, True))
    assert threshold_for_precision(scores, labels, 1.0) == pytest.approx((0.85, 1.0, True))
    assert threshold_for_precision([0.9, 0.5], [False, True], 0.9)[2] is False  # unreachable, flagged
    point = operating_point(scores, 0.7, labels)
    assert (point.above, point.precision, point.recall) == (3, pytest.approx(2 / 3), pytest.approx(2 / 3))


def _noisy_pairs(n: int = 600, seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.3
    old = np.where(labels, 0.8, 0.55) + rng.normal(0, 0.08, n)
    new = 0.6 * old + 0.3 + rng.normal(0, 0.03, n)  # another scale, a little disagreement
    return old, new, labels


def test_label_matching_keeps_precision_with_a_bootstrap_interval_around_it() -> None:
    old, new, labels = _noisy_pairs()
    t_old, p_old, _ = threshold_for_precision(old, labels, 0.9)
    m = match_labels(old, new, labels, t_old, bootstrap=200, seed=1)
    assert m.objective == "precision" and m.target == pytest.approx(p_old, abs=1e-6) and m.reachable
    assert m.achieved >= m.target - 1e-9
    assert operating_point(new, m.value, labels).precision == pytest.approx(m.achieved, abs=1e-6)
    assert m.interval is not None and m.interval.low <= m.value <= m.interval.high
    assert m.interval.resamples == 200
    # the unchanged number in the new space means something else entirely
    assert (operating_point(new, t_old, labels).precision or 0) < m.target - 0.1


def test_f1_matching_stays_on_the_old_thresholds_side_of_the_peak() -> None:
    old, new, labels = _noisy_pairs()
    c = cuts(old, labels)
    peak = float(c.thresholds[int(np.argmax(c.f1))])
    strict = peak + 0.05
    m = match_labels(old, new, labels, strict, objective="f1", bootstrap=0)
    new_peak = float(cuts(new, labels).thresholds[int(np.argmax(cuts(new, labels).f1))])
    assert m.value >= new_peak and abs(m.achieved - m.target) < 0.05
    value, _, _ = threshold_for_f1(new, labels, m.target, "low")
    assert value <= new_peak


def test_behaviour_counts_flips_and_shows_the_clearest_first() -> None:
    pairs = PairScores(
        old=np.array([0.90, 0.70, 0.95, 0.20, 0.81]), new=np.array([0.60, 0.80, 0.90, 0.10, 0.74]),
        texts=[("a0", "b0"), ("a1", "b1"), ("a2", "b2"), ("a3", "b3"), ("a4", "b4")],
        labels=np.array([True, False, True, False, True]),
    )
    effect = behaviour(pairs, 0.8, 0.75, examples=1)
    assert (effect.now_above, effect.now_below) == (1, 2)
    assert effect.examples_now_above[0].text_a == "a1" and effect.examples_now_above[0].label is False
    assert [f.text_a for f in effect.examples_now_below] == ["a0"]  # a0 fell further than a4
    assert effect.before.above == 3 and effect.after.above == 2
    assert effect.before.precision == 1.0 and effect.after.precision == 0.5
    assert effect.after.recall == pytest.approx(1 / 3)


# -- labels files ---------------------------------------------------------------------------------
def test_bad_labels_lines_are_reported_with_their_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "pairs.tsv"
    path.write_bytes(
        b"text_a\ttext_b\tlabel\n"
        b"A cat sits.\tA cat is sitting.\t1\n"
        b"only two\tfields\n"
        b"A dog.\tA hound.\tmaybe\n"
        b"\tempty left\t0\n"
        b"bad \xff bytes\tx\t1\n"
        b"Stocks fell.\tIt rained.\tno\n"
    )
    labels = read_labels(path)
    assert labels.pairs == [("A cat sits.", "A cat is sitting.", True), ("Stocks fell.", "It rained.", False)]
    joined = "\n".join(labels.problems)
    for line in (3, 4, 5, 6):
        assert f"line {line}:" in joined
    assert "maybe" in joined and "invalid UTF-8" in joined
    assert labels.origin["problems"] == labels.problems and labels.origin["pairs"] == 2

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text_a": "x", "text_b": "y", "label": 1}\n{not json\n{"text_a": "x", "text_b": "z", "label": 7}\n')
    with pytest.raises(ConfigError, match="both positive and negative"):
        read_labels(bad)
    empty = tmp_path / "empty.csv"
    empty.write_text("a,b\nc\n")
    with pytest.raises(ConfigError, match="line 1: expected 3 fields") as info:
        read_labels(empty)
    assert "text_a, text_b, label" in (info.value.hint or "")


def test_labels_in_csv_and_jsonl(tmp_path: Path) -> None:
    csv_path = tmp_path / "p.csv"
    csv_path.write_text('label,sentence1,sentence2\n1,"A, with comma",B\nfalse,C,D\n')
    assert read_labels(csv_path).pairs == [("A, with comma", "B", True), ("C", "D", False)]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"text_a": "a", "text_b": "b", "label": true}\n\n{"text_a": "c", "text_b": "d", "label": 0}\n[1]\n')
    labels = read_labels(jsonl)
    assert len(labels.pairs) == 2 and labels.problems == ["line 4: expected an object with text_a, text_b, label"]


# -- catalog --------------------------------------------------------------------------------------
def test_v3_catalog_is_upgraded_with_the_threshold_tables(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'v3.db'}")
    later = {t.name for t in schema.THRESHOLD_TABLES} | {t.name for t in getattr(schema, "MONITOR_TABLES", [])}
    with engine.begin() as conn:
        schema.metadata.create_all(conn, tables=[t for t in schema.metadata.sorted_tables if t.name not in later])
        conn.execute(sa.insert(schema.meta).values(key="schema_version", value="3"))
    assert ensure_schema(engine) == schema.SCHEMA_VERSION >= 4
    with engine.connect() as conn:
        assert sa.inspect(conn).has_table("thresholds") and sa.inspect(conn).has_table("threshold_values")
        assert 4 in [r["details"]["schema_version"] for r in read_ledger(conn, kind_prefix="catalog.upgrade")]


# -- registry -------------------------------------------------------------------------------------
def test_registry_keeps_every_value_and_the_latest_wins(ws: Workspace) -> None:
    ws.sync()
    reg = ws.thresholds
    assert reg.add("dedup", 0.9, plan_only=True).value == 0.9 and reg.list() == []
    added = reg.add("dedup", 0.9, description="near-duplicate tickets")
    reg.set("dedup", 0.92, space="hashing", reason="too many false merges")
    reg.set("dedup", 0.93, space=added.space_key)
    assert reg.get("dedup") == 0.93 and reg.current("dedup").method == "manual"
    assert [v.value for v in reg.history("dedup")] == [0.9, 0.92, 0.93]
    assert reg.history("dedup")[1].reason == "too many false merges"
    assert [r["kind"] for r in ws.history(kind="thresholds")] == ["thresholds.set", "thresholds.set", "thresholds.add"]
    [info] = reg.list()
    assert info.serving_value == 0.93 and len(info.values) == 1 and info.description == "near-duplicate tickets"
    with pytest.raises(ConfigError, match="already exists"):
        reg.add("dedup", 0.5)
    with pytest.raises(ConfigError, match="finite"):
        reg.add("nan", math.nan)
    with pytest.raises(NotFound, match="no threshold 'cache'") as info_err:
        reg.get("cache")
    assert "dedup" in (info_err.value.hint or "")
    with pytest.raises(NotFound, match="not a space key"):
        reg.set("dedup", 0.5, space="no-such-model")


def test_plan_lists_the_thresholds_bound_to_the_old_space(ws: Workspace) -> None:
    ws.sync()
    ws.thresholds.add("dedup", 0.9)
    ws.thresholds.add("cache", 0.8)
    ws.thresholds.set("dedup", 0.7, space=NEW)  # before any index of that model exists
    plan = migrator(ws).plan(NEW).to_dict()["thresholds"]
    assert {(t["name"], t["value"], t["new_value"], t["has_new_value"]) for t in plan} == {
        ("cache", 0.8, None, False), ("dedup", 0.9, 0.7, True)}


def test_cutover_waits_for_calibration_and_reads_follow_the_alias(ws: Workspace) -> None:
    ws.sync()
    ws.thresholds.add("dedup", 0.9)
    m = migrator(ws)
    shadow = m.start(NEW).shadow_index
    m.backfill()
    with pytest.raises(GateFailed, match=f"thresholds calibrate --to {shadow} --apply"):
        m.cutover()
    with pytest.raises(NotFound, match="embedops thresholds calibrate"):
        ws.thresholds.get("dedup", space=shadow)

    before = ws.history()
    proposed = calibrate(ws, shadow, bootstrap=50)
    assert ws.history() == before and proposed.plan and proposed.applied == []
    [p] = proposed.proposals
    assert p.recommended == "distribution" and p.labels is None and "no labelled pairs" in p.notes[0]
    assert proposed.sample["neighbour_pairs"] > 0 and proposed.sample["random_pairs"] > 0
    assert proposed.sample["re_embedded"] == {"from": 0, "to": 0}  # both spaces read from the catalog
    assert p.distribution is not None and p.distribution.interval is not None
    assert p.distribution.fraction_above_new == pytest.approx(p.distribution.fraction_above, abs=0.01)
    assert set(p.report) == {"unchanged", "distribution"}

    applied = calibrate(ws, "hashing:seed=1", apply=True, bootstrap=50).applied[0]  # by embedder name
    assert applied.method == "distribution" and applied.value == p.value
    entry = ws.history(kind="thresholds.calibrate")[0]["details"]
    assert entry["value"] == applied.value and entry["from_value"] == 0.9 and entry["to_index"] == shadow
    assert ws.thresholds.get("dedup") == 0.9  # still the old space until cutover

    gate = m.cutover().gate.to_dict()
    assert next(c for c in gate["checks"] if c["name"] == "thresholds")["passed"]
    assert ws.thresholds.get("dedup") == applied.value
    m.rollback()
    assert ws.thresholds.get("dedup") == 0.9


def test_a_forced_cutover_overrides_a_missing_threshold(ws: Workspace) -> None:
    ws.sync()
    ws.thresholds.add("dedup", 0.9)
    m = migrator(ws)
    m.start(NEW)
    m.backfill()
    assert m.cutover(plan_only=True).would_cut_over is False
    done = m.cutover(force=True, reason="dedup rule disabled during the move")
    assert done.forced is True
    with pytest.raises(NotFound, match="thresholds calibrate"):
        ws.thresholds.get("dedup")


def _labelled_file(path: Path, n: int = 60) -> Path:
    rng = random.Random(5)
    rows = []
    for i in range(n):
        a = sentence(rng)
        if i % 2:
            words = a.rstrip(".").split()
            words[rng.randrange(len(words))] = "comet"
            rows.append({"text_a": a, "text_b": " ".join(words) + ".", "label": 1})
        else:
            rows.append({"text_a": a, "text_b": sentence(rng), "label": 0})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_label_matching_through_the_workspace(ws: Workspace, tmp_path: Path) -> None:
    ws.sync()
    ws.thresholds.add("dedup", 0.85, labels=read_labels(_labelled_file(tmp_path / "pairs.jsonl")))
    m = migrator(ws)
    shadow = m.start(NEW).shadow_index
    m.backfill()
    result = calibrate(ws, shadow, method="labels", bootstrap=100)
    [p] = result.proposals
    assert p.distribution is None and p.labels is not None and p.recommended == "labels"
    assert p.labels.pairs == 60 and p.labels.positives == 30
    assert p.labels.interval is not None and p.labels.interval.low <= p.labels.value <= p.labels.interval.high
    assert result.sample["re_embedded"]["to"] > 0  # the labelled texts are not in the catalog
    report = p.report["labels"]["labels"]
    assert report["after"]["precision"] == pytest.approx(p.labels.achieved, abs=1e-6)
    both = calibrate(ws, shadow, use="distribution", apply=True, bootstrap=20, sample=SampleConfig(anchors=10, random_pairs=100))
    assert both.applied[0].method == "distribution" and both.proposals[0].labels is not None
    with pytest.raises(ConfigError, match="--use labels does not fit"):
        calibrate(ws, shadow, method="distribution", use="labels")


# -- CLI ------------------------------------------------------------------------------------------------
def _run(*args: str) -> tuple[int, object]:
    result = CliRunner().invoke(app, list(args))
    try:
        return result.exit_code, json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"stdout is not JSON: {result.stdout!r}") from exc


def test_thresholds_cli_json(tmp_path: Path, corpus: Path) -> None:
    ws = str(tmp_path / "ws")
    labels = tmp_path / "pairs.tsv"
    labels.write_text("text_a\ttext_b\tlabel\nA cat sits.\tA cat is sitting.\t1\nA dog runs.\tStocks fell.\t0\nbroken\n")
    assert _run("init", ws, "--embedder", "hashing", "--json")[0] == 0
    assert _run("source", "add", "docs", str(corpus), "-w", ws, "--json")[0] == 0
    assert _run("sync", "-w", ws, "--json")[0] == 0
    code, added = _run("thresholds", "add", "dedup", "0.9", "--labels", str(labels), "--description", "dups", "-w", ws, "--json")
    assert code == 0 and added["value"] == 0.9 and added["labelled_pairs"] == 2  # type: ignore[index]
    assert added["problems"] == ["line 4: expected at least 3 fields, got 1"]  # type: ignore[index]
    code, got = _run("thresholds", "get", "dedup", "-w", ws, "--json")
    assert code == 0 and got["value"] == 0.9 and got["method"] == "manual"  # type: ignore[index]
    code, err = _run("thresholds", "get", "dedup", "--space", NEW, "-w", ws, "--json")
    assert code == 1 and err["error"] == "NotFound" and "thresholds calibrate" in err["hint"]  # type: ignore[index]
    assert _run("migrate", "start", "--to", NEW, "-w", ws, "--json")[0] == 0
    assert _run("migrate", "backfill", "-w", ws, "--json")[0] == 0
    code, proposed = _run("thresholds", "calibrate", "--to", NEW, "--pairs", "200", "-w", ws, "--json")
    assert code == 0 and proposed["plan"] is True and proposed["applied"] == []  # type: ignore[index]
    assert {"distribution", "labels", "report", "notes"} <= set(proposed["proposals"][0])  # type: ignore[index]
    code, _ = _run("thresholds", "set", "dedup", "0.88", "--space", NEW, "--reason", "by hand", "-w", ws, "--json")
    assert code == 0
    code, listed = _run("thresholds", "list", "-w", ws, "--json")
    assert code == 0 and len(listed[0]["values"]) == 2  # type: ignore[index]
    code, cut = _run("migrate", "cutover", "-w", ws, "--json")
    assert code == 0
    assert _run("thresholds", "get", "dedup", "-w", ws, "--json")[1]["value"] == 0.88  # type: ignore[index]
    code, history = _run("thresholds", "list", "--all", "-w", ws, "--json")
    assert code == 0 and [v["value"] for v in history] == [0.9, 0.88]  # type: ignore[union-attr, index]
