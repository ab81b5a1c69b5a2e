"""Evaluation core: metrics equal pytrec_eval's, paired comparisons, eval-set parsing."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import pytrec_eval

from embedops.errors import ConfigError, SourceError
from embedops.evaluate.compare import (
    UNLABELED,
    compare_runs,
    segment_metrics,
    worst_segment,
)
from embedops.evaluate.metrics import (
    Qrels,
    Run,
    evaluate,
    evaluate_run,
    mean_metrics,
    metric_keys,
    rank,
    run_from_rankings,
)
from embedops.evaluate.qrels import (
    Problem,
    drop_summary,
    load_beir_evalset,
    load_beir_qrels,
    load_beir_queries,
    load_jsonl_evalset,
    validate,
)

KS = (1, 3, 10, 50)
TREC_NAMES = {"ndcg": "ndcg_cut", "recall": "recall", "precision": "P", "map": "map_cut"}


def _random_case(seed: int, n_queries: int = 60) -> tuple[Qrels, Run]:
    """Graded (incl. negative) qrels and runs with many score ties and varied lengths."""
    rng = random.Random(seed)
    qrels: Qrels = {}
    run: Run = {}
    for q in range(n_queries):
        pool = [f"d{rng.randrange(400)}" for _ in range(120)]
        n_results = rng.choice([0, 1, 5, 20, 80])
        # Scores from a small set of values so that ties are frequent.
        run[f"q{q}"] = {doc: rng.randrange(6) / 3 for doc in rng.sample(pool, n_results)}
        n_judged = rng.randrange(1, 30)
        qrels[f"q{q}"] = {doc: rng.choice([-1, 0, 0, 1, 2, 3]) for doc in rng.sample(pool, n_judged)}
    return qrels, run


def _trec(qrels: Qrels, run: Run) -> dict[str, dict[str, float]]:
    ks = ",".join(map(str, KS))
    measures = {f"ndcg_cut.{ks}", f"recall.{ks}", f"P.{ks}", f"map_cut.{ks}", "map"}
    return pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)


def _trec_mrr(qrels: Qrels, run: Run, k: int) -> dict[str, float]:
    """trec_eval's recip_rank on the run cut to its top k (ranked the trec way)."""
    cut = {q: {d: scores[d] for d in rank(scores)[:k]} for q, scores in run.items()}
    result = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut)
    return {q: v["recip_rank"] for q, v in result.items()}


# --------------------------------------------------------------------- metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_pytrec_eval_on_random_graded_runs_with_ties(seed: int) -> None:
    qrels, run = _random_case(seed)
    ours = evaluate_run(qrels, run, k_values=KS)
    ref = _trec(qrels, run)
    scored = {q for q, j in qrels.items() if any(g > 0 for g in j.values())}
    assert set(ours) == scored
    checked = 0
    for k in KS:
        mrr = _trec_mrr(qrels, run, k)
        for qid, values in ours.items():
            for name, trec_name in TREC_NAMES.items():
                assert values[f"{name}@{k}"] == pytest.approx(ref[qid][f"{trec_name}_{k}"], abs=1e-6)
            assert values[f"mrr@{k}"] == pytest.approx(mrr[qid], abs=1e-6)
            checked += 5
    for qid, values in ours.items():
        assert values["map"] == pytest.approx(ref[qid]["map"], abs=1e-6)
    assert checked > 500
    # The case must actually exercise ties, graded gains and misses.
    assert any(len(set(s.values())) < len(s) for s in run.values())
    assert any(v["ndcg@10"] == 0.0 for v in ours.values())
    assert any(0.0 < v["ndcg@10"] < 1.0 for v in ours.values())


def test_ties_are_broken_by_doc_id_descending_like_trec_eval() -> None:
    qrels = {"q": {"a": 1, "B": 1}}
    run = {"q": {"a": 1.0, "c": 1.0, "B": 1.0, "b": 2.0}}
    assert rank(run["q"]) == ["b", "c", "a", "B"]
    ours = evaluate_run(qrels, run, k_values=(2, 3), metrics=("mrr", "precision"))
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"P.2,3", "recip_rank"}).evaluate(run)
    assert ours["q"]["precision@2"] == ref["q"]["P_2"] == 0.0
    assert ours["q"]["precision@3"] == pytest.approx(ref["q"]["P_3"])
    assert ours["q"]["mrr@3"] == pytest.approx(ref["q"]["recip_rank"]) == pytest.approx(1 / 3)
    assert ours["q"]["mrr@2"] == 0.0


def test_literal_values_for_a_graded_query() -> None:
    qrels = {"q": {"d1": 3, "d2": 1, "d3": 0, "d4": 2}}
    run = {"q": {"d3": 0.9, "d2": 0.8, "d9": 0.7, "d1": 0.6}}
    values = evaluate_run(qrels, run, k_values=(2, 4))["q"]
    assert values["precision@2"] == 0.5
    assert values["recall@4"] == pytest.approx(2 / 3)
    assert values["mrr@2"] == 0.5
    assert values["map"] == pytest.approx((1 / 2 + 2 / 4) / 3)
    assert values["map@2"] == pytest.approx((1 / 2) / 3)
    ideal = 3 + 2 / np.log2(3)
    assert values["ndcg@2"] == pytest.approx((1 / np.log2(3)) / ideal)


def test_no_relevant_retrieved_scores_zero() -> None:
    values = evaluate_run({"q": {"rel": 2}}, {"q": {"x": 3.0, "y": 2.0}}, k_values=(1, 10))["q"]
    assert values and all(v == 0.0 for v in values.values())


def test_k_larger_than_run_follows_trec_eval() -> None:
    qrels = {"q": {"a": 1, "b": 1, "z": 1}}
    run = {"q": {"a": 2.0, "b": 1.0}}
    values = evaluate_run(qrels, run, k_values=(100,))["q"]
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"P.100", "recall.100", "ndcg_cut.100"}).evaluate(run)
    # Precision divides by k even though only two results exist.
    assert values["precision@100"] == pytest.approx(0.02) == pytest.approx(ref["q"]["P_100"])
    assert values["recall@100"] == pytest.approx(ref["q"]["recall_100"]) == pytest.approx(2 / 3)
    assert values["ndcg@100"] == pytest.approx(ref["q"]["ndcg_cut_100"])


def test_empty_and_missing_runs_score_zero_and_unscorable_queries_are_reported() -> None:
    qrels = {"empty": {"d": 1}, "absent": {"d": 1}, "nonrel": {"d": 0}, "neg": {"d": -1}, "ok": {"d": 1}}
    run = {"empty": {}, "nonrel": {"d": 1.0}, "ok": {"d": 1.0}, "stray": {"d": 1.0}}
    result = evaluate(qrels, run, k_values=(10,))
    assert set(result.per_query) == {"empty", "absent", "ok"}
    assert all(v == 0.0 for v in result.per_query["empty"].values())
    assert all(v == 0.0 for v in result.per_query["absent"].values())
    assert result.per_query["ok"]["ndcg@10"] == 1.0
    assert result.excluded == ["nonrel", "neg"]
    assert result.unretrieved == ["empty", "absent"]
    assert result.unjudged == ["stray"]
    assert result.means["recall@10"] == pytest.approx(1 / 3)
    assert json.loads(json.dumps(result.to_dict()))["excluded"] == ["nonrel", "neg"]


def test_metric_selection_keys_and_argument_errors() -> None:
    values = evaluate_run({"q": {"d": 1}}, {"q": {"d": 1.0}}, k_values=(5, 1), metrics=("map", "mrr"))
    assert list(values["q"]) == ["map", "map@5", "map@1", "mrr@5", "mrr@1"]
    assert metric_keys((10,), ("ndcg", "map")) == ["ndcg@10", "map", "map@10"]
    with pytest.raises(ConfigError, match="unknown metric"):
        evaluate_run({}, {}, metrics=("ndcg", "bleu"))
    with pytest.raises(ConfigError, match="positive integer"):
        evaluate_run({}, {}, k_values=(0,))


def test_mean_metrics_and_run_from_rankings() -> None:
    per_query = {"a": {"m": 1.0, "n": 0.5}, "b": {"m": 0.0}}
    assert mean_metrics(per_query) == {"m": 0.5, "n": 0.5}
    assert mean_metrics({}) == {}
    run = run_from_rankings({"q": ["x", "y", "x", "z"]})
    assert rank(run["q"]) == ["x", "y", "z"]


def test_300_queries_by_1000_results_are_all_evaluated() -> None:
    """A gate's scale (its speed is measured in bench/migration_gate.py, not timed here)."""
    rng = random.Random(7)
    run = {f"q{q}": {f"d{rng.randrange(5000)}": rng.random() for _ in range(1000)} for q in range(300)}
    qrels = {q: {f"d{rng.randrange(5000)}": rng.randrange(1, 3) for _ in range(20)} for q in run}
    per_query = evaluate_run(qrels, run, k_values=(10, 100))
    assert sorted(per_query) == sorted(run)
    assert all(0.0 <= m["ndcg@10"] <= 1.0 and 0.0 <= m["recall@100"] <= 1.0 for m in per_query.values())
    assert any(m["recall@100"] > 0 for m in per_query.values())


# --------------------------------------------------------------------- compare


def _per_query(values: np.ndarray, metric: str = "ndcg@10") -> dict[str, dict[str, float]]:
    return {f"q{i:03d}": {metric: float(v)} for i, v in enumerate(values)}


def test_bootstrap_ci_contains_the_true_delta_and_p_is_small_for_a_clear_gain() -> None:
    rng = np.random.default_rng(11)
    a = rng.uniform(0.2, 0.8, 300)
    b = a + 0.05 + rng.normal(0.0, 0.05, 300)
    result = compare_runs(_per_query(a), _per_query(b), "ndcg@10", n_boot=5000, seed=3)
    assert result.n == 300
    assert result.delta == pytest.approx(float(np.mean(b - a)))
    assert result.ci_low < 0.05 < result.ci_high
    assert result.ci_low > 0.0
    assert result.p_value < 0.001
    assert result.significant()
    assert result.wins > 250 and result.wins + result.losses + result.ties == 300


def test_p_value_is_large_for_noise_and_one_for_zero_mean_delta() -> None:
    rng = np.random.default_rng(5)
    a = rng.uniform(0.2, 0.8, 200)
    noisy = compare_runs(_per_query(a), _per_query(a + rng.normal(0, 0.1, 200)), "ndcg@10")
    assert noisy.p_value > 0.2
    assert noisy.ci_low < 0.0 < noisy.ci_high
    assert not noisy.significant()
    swapped = np.concatenate([a[100:], a[:100]])
    balanced = compare_runs(_per_query(a), _per_query(swapped), "ndcg@10")
    assert balanced.p_value == 1.0


def test_small_n_uses_the_exact_permutation_distribution() -> None:
    a = _per_query(np.array([0.1, 0.2, 0.3]))
    b = _per_query(np.array([0.2, 0.4, 0.6]))
    # All 8 sign assignments: only all-plus and all-minus reach |mean| = 0.2.
    assert compare_runs(a, b, "ndcg@10").p_value == pytest.approx(2 / 8)


def test_constant_delta_gives_a_degenerate_ci() -> None:
    a = np.linspace(0.1, 0.9, 50)
    result = compare_runs(_per_query(a), _per_query(a + 0.1), "ndcg@10", n_boot=500)
    assert result.ci_low == pytest.approx(0.1) and result.ci_high == pytest.approx(0.1)
    assert (result.wins, result.losses, result.ties) == (50, 0, 0)


def test_comparison_is_deterministic_for_a_seed() -> None:
    rng = np.random.default_rng(1)
    a, b = _per_query(rng.random(80)), _per_query(rng.random(80))
    first = compare_runs(a, b, "ndcg@10", seed=9, n_boot=2000)
    again = compare_runs(a, b, "ndcg@10", seed=9, n_boot=2000)
    other = compare_runs(a, b, "ndcg@10", seed=10, n_boot=2000)
    assert first == again
    assert (first.ci_low, first.p_value) != (other.ci_low, other.p_value)


def test_common_queries_per_query_deltas_and_errors() -> None:
    a = {"q1": {"m": 0.5}, "q2": {"m": 0.5}, "only_a": {"m": 1.0}}
    b = {"q1": {"m": 0.7}, "q2": {"m": 0.4}, "only_b": {"m": 0.0}}
    result = compare_runs(a, b, "m", n_boot=100)
    assert result.per_query == pytest.approx({"q1": 0.2, "q2": -0.1})
    assert (result.wins, result.losses, result.ties) == (1, 1, 0)
    assert (result.only_a, result.only_b) == (["only_a"], ["only_b"])
    assert result.mean_a == pytest.approx(0.5) and result.mean_b == pytest.approx(0.55)
    with pytest.raises(ConfigError, match="no 'ndcg@10'"):
        compare_runs(a, b, "ndcg@10")
    with pytest.raises(ConfigError, match="share no query"):
        compare_runs({"x": {"m": 1.0}}, {"y": {"m": 1.0}}, "m")


def test_segment_deltas_in_a_comparison() -> None:
    a = {"en1": {"m": 0.8}, "en2": {"m": 0.6}, "de1": {"m": 0.5}, "x": {"m": 0.1}}
    b = {"en1": {"m": 0.9}, "en2": {"m": 0.7}, "de1": {"m": 0.1}, "x": {"m": 0.1}}
    segments = {"en1": "en", "en2": "en", "de1": "de"}
    result = compare_runs(a, b, "m", segments=segments, n_boot=100)
    assert list(result.segments) == [UNLABELED, "de", "en"]
    en, de = result.segments["en"], result.segments["de"]
    assert (en.n, en.mean_a, en.mean_b, en.delta) == pytest.approx((2, 0.7, 0.8, 0.1))
    assert (de.n, de.delta, de.losses) == pytest.approx((1, -0.4, 1))
    assert result.segments[UNLABELED].ties == 1
    payload = json.loads(json.dumps(result.to_dict()))
    assert payload["segments"]["de"]["delta"] == pytest.approx(-0.4)
    assert compare_runs(a, b, "m", n_boot=100).segments == {}


def test_segment_metrics_and_worst_segment() -> None:
    per_query = {
        "q1": {"ndcg@10": 0.9, "recall@10": 1.0},
        "q2": {"ndcg@10": 0.7, "recall@10": 0.5},
        "q3": {"ndcg@10": 0.2, "recall@10": 0.0},
        "q4": {"ndcg@10": 0.4, "recall@10": 1.0},
    }
    segs = segment_metrics(per_query, {"q1": "en", "q2": "en", "q3": "de"})
    assert segs["en"] == pytest.approx({"n": 2, "ndcg@10": 0.8, "recall@10": 0.75})
    assert segs["de"] == pytest.approx({"n": 1, "ndcg@10": 0.2, "recall@10": 0.0})
    assert segs[UNLABELED]["n"] == 1
    assert worst_segment(segs, "ndcg@10") == "de"
    assert worst_segment(segs, "ndcg@10", min_n=2) == "en"
    assert worst_segment(segs, "mrr@10") is None
    assert worst_segment({}, "ndcg@10") is None


def test_compare_300_queries_with_10k_resamples() -> None:
    """The gate's resampling at its scale (timed in bench/migration_gate.py, not here)."""
    rng = np.random.default_rng(0)
    a, b = _per_query(rng.random(300)), _per_query(rng.random(300))
    result = compare_runs(a, b, "ndcg@10", n_boot=10_000)
    assert result.n == 300 and result.ci_low <= result.delta <= result.ci_high


# ----------------------------------------------------------------- qrels files


def _write(path: Path, content: bytes | str) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def _lines_and_reasons(problems: list[Problem]) -> list[tuple[int | None, str]]:
    return [(p.line, p.reason) for p in problems]


def test_beir_qrels_parse_and_report_each_malformed_line(tmp_path: Path) -> None:
    content = (
        b"query-id\tcorpus-id\tscore\r\n"  # 1 header (CRLF line endings)
        b"q1\td1\t1\r\n"  # 2
        b"q1\td2\t2.0\r\n"  # 3 integral float accepted
        b"q1\td3\n"  # 4 two fields
        b"q2\td1\tabc\n"  # 5 not a number
        b"q2\td2\t0.5\n"  # 6 not an integer
        b"\n"  # 7 blank, skipped silently
        b"q1\td1\t0\n"  # 8 duplicate pair
        b"\td4\t1\n"  # 9 empty query id
        b"q3\t\xff\xfe\t1\n"  # 10 invalid UTF-8
        b"q3 \td9\t0\n"  # 11 stray space stripped
    )
    path = _write(tmp_path / "test.tsv", content)
    qrels, problems = load_beir_qrels(path)
    assert qrels == {"q1": {"d1": 1, "d2": 2}, "q3": {"d9": 0}}
    found = _lines_and_reasons(problems)
    assert [line for line, _ in found] == [4, 5, 6, 8, 9, 10]
    assert "expected 3 tab-separated fields" in found[0][1] and "got 2" in found[0][1]
    assert "'abc' is not an integer" in found[1][1]
    assert "'0.5' is not an integer" in found[2][1]
    assert "duplicate judgment" in found[3][1] and "keeping line 2" in found[3][1]
    assert "empty query-id" in found[4][1]
    assert "invalid UTF-8" in found[5][1]
    assert all(p.file == str(path) for p in problems)
    assert str(problems[0]) == f"{path}:4: {problems[0].reason}"


def test_beir_qrels_without_header_and_unreadable_file(tmp_path: Path) -> None:
    qrels, problems = load_beir_qrels(_write(tmp_path / "q.tsv", "\ufeffq1\td1\t1\n"))
    assert (qrels, problems) == ({"q1": {"d1": 1}}, [])
    with pytest.raises(SourceError, match="cannot read eval-set file") as info:
        load_beir_qrels(tmp_path / "missing.tsv")
    assert info.value.hint


def test_beir_queries_parse_and_report_each_malformed_line(tmp_path: Path) -> None:
    lines = [
        json.dumps({"_id": "q1", "text": "what is a wal", "metadata": {}}),  # 1
        "{not json",  # 2
        json.dumps(["q2", "text"]),  # 3
        json.dumps({"text": "no id"}),  # 4
        json.dumps({"_id": "q3", "text": "   "}),  # 5
        json.dumps({"_id": "q4"}),  # 6
        json.dumps({"_id": "q1", "text": "again"}),  # 7
        json.dumps({"_id": 42, "text": "numeric id"}),  # 8
    ]
    path = _write(tmp_path / "queries.jsonl", "\n".join(lines) + "\n")
    queries, problems = load_beir_queries(path)
    assert queries == {"q1": "what is a wal", "42": "numeric id"}
    found = _lines_and_reasons(problems)
    assert [line for line, _ in found] == [2, 3, 4, 5, 6, 7]
    assert found[0][1].startswith("invalid JSON")
    assert "expected a JSON object, got list" in found[1][1]
    assert '"_id"' in found[2][1]
    assert "empty query text" in found[3][1]
    assert "missing or non-string 'text'" in found[4][1]
    assert "duplicate query id 'q1'; keeping line 1" in found[5][1]


def test_jsonl_evalset_parse_and_report_each_malformed_line(tmp_path: Path) -> None:
    lines = [
        {"id": "a", "query": "graded", "relevant_ids": ["d1", "d2"], "grades": [2, 1]},  # 1
        {"query": "no id given", "relevant_ids": ["d3"]},  # 2
        {"id": "b", "query": "bad grades", "relevant_ids": ["d1", "d2"], "grades": [1]},  # 3
        {"id": "c", "query": "no ids"},  # 4
        {"id": "d", "query": "", "relevant_ids": ["d1"]},  # 5
        {"id": "a", "query": "dup", "relevant_ids": ["d1"]},  # 6
        {"id": "e", "query": "repeat doc", "relevant_ids": ["d1", "d1"], "grades": [2, 1]},  # 7
        {"id": "f", "query": "bad grade", "relevant_ids": ["d1"], "grades": ["high"]},  # 8
        {"id": "", "query": "empty id", "relevant_ids": ["d1"]},  # 9
        {"id": "g", "query": "nothing relevant yet", "relevant_ids": []},  # 10
        {"query": "no id given", "relevant_ids": ["d4"]},  # 11 same text: same generated id
    ]
    path = _write(tmp_path / "eval.jsonl", "".join(json.dumps(x) + "\n" for x in lines))
    queries, qrels, problems = load_jsonl_evalset(path)
    generated = [qid for qid in queries if qid.startswith("q-")]
    assert len(generated) == 1
    assert set(queries) == {"a", "e", "g", generated[0]}
    assert qrels == {"a": {"d1": 2, "d2": 1}, generated[0]: {"d3": 1}, "e": {"d1": 2}}
    found = _lines_and_reasons(problems)
    assert [line for line, _ in found] == [3, 4, 5, 6, 7, 8, 9, 11]
    assert '"grades" must be a list of 2 integers' in found[0][1]
    assert '"relevant_ids"' in found[1][1]
    assert "empty query text" in found[2][1]
    assert "duplicate query id 'a'; keeping line 1" in found[3][1]
    assert "'d1' listed twice" in found[4][1]
    assert "invalid judgment ('d1', grade 'high')" in found[5][1]
    assert 'invalid "id"' in found[6][1]
    assert "keeping line 2" in found[7][1]
    # The generated id depends on the text only, so it survives edits elsewhere in the file.
    again, _, _ = load_jsonl_evalset(_write(tmp_path / "other.jsonl", json.dumps(lines[1]) + "\n"))
    assert list(again) == generated


def test_load_beir_evalset_folder_and_missing_split(tmp_path: Path) -> None:
    (tmp_path / "qrels").mkdir()
    _write(tmp_path / "queries.jsonl", json.dumps({"_id": "q1", "text": "t"}) + "\n")
    _write(tmp_path / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\tx\n")
    queries, qrels, problems = load_beir_evalset(tmp_path)
    assert queries == {"q1": "t"} and qrels == {"q1": {"d1": 1}}
    assert [(p.file.endswith("test.tsv"), p.line) for p in problems] == [(True, 3)]
    with pytest.raises(SourceError, match="no qrels for split 'dev'") as info:
        load_beir_evalset(tmp_path, split="dev")
    assert info.value.hint == "choose one of: test"


def test_validate_drops_what_cannot_be_scored_and_counts_it() -> None:
    queries = {"ok": "t", "partial": "t", "ghost_docs": "t", "nonrel": "t", "unjudged": "t"}
    qrels = {
        "ok": {"d1": 2, "d2": 0},
        "partial": {"d1": 1, "gone": 1},
        "ghost_docs": {"gone": 1, "d2": 0},
        "nonrel": {"d1": 0},
        "orphan": {"d1": 1, "d2": 1},
    }
    snapshot = json.dumps([queries, qrels], sort_keys=True)
    kept_q, kept_r, dropped = validate(queries, qrels, {"d1", "d2"})
    assert kept_q == {"ok": "t", "partial": "t"}
    assert kept_r == {"ok": {"d1": 2, "d2": 0}, "partial": {"d1": 1}}
    assert drop_summary(dropped) == {
        "unknown document": 2,
        "all relevant documents are unknown": 1,
        "no relevant judgments": 1,
        "judgments without a query": 2,
        "no judgments": 1,
    }
    assert {"kind": "judgment", "id": "partial", "doc_id": "gone", "reason": "unknown document"} in dropped
    assert {"kind": "query", "id": "unjudged", "reason": "no judgments"} in dropped
    assert json.dumps([queries, qrels], sort_keys=True) == snapshot
    # Without a corpus, only the query/judgment pairing is checked.
    _, kept_all, dropped_all = validate(queries, qrels, None)
    assert kept_all["ghost_docs"] == {"gone": 1, "d2": 0}
    assert "unknown document" not in drop_summary(dropped_all)


def test_parsed_evalset_scores_end_to_end(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "eval.jsonl",
        json.dumps({"id": "q1", "query": "a", "relevant_ids": ["d1"]})
        + "\n"
        + json.dumps({"id": "q2", "query": "b", "relevant_ids": ["d9"], "grades": [3]})
        + "\n",
    )
    queries, qrels, problems = load_jsonl_evalset(path)
    queries, qrels, dropped = validate(queries, qrels, {"d1", "d2"})
    assert problems == [] and drop_summary(dropped) == {
        "unknown document": 1,
        "all relevant documents are unknown": 1,
    }
    run = run_from_rankings({"q1": ["d2", "d1"]})
    assert evaluate_run(qrels, run, k_values=(1, 2), metrics=("mrr",)) == {
        "q1": {"mrr@1": 0.0, "mrr@2": 0.5}
    }
