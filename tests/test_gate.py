"""The migration gate reads the evaluation: bound eval sets decide cutovers, overall and per segment.

A regressing model change (``hashing`` → ``hashing:dims=16``: collisions lose
ranking quality) must be refused with the metric, both values, the delta and its
interval; the reverse passes; a chunker change that collapses one document type
is refused by that segment even when the overall mean passes. The evidence is
kept with the migration and reused while neither index changes.
"""

from __future__ import annotations

import ast
import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from embedops.cli import app
from embedops.compose import migrator
from embedops.errors import GateFailed
from embedops.evaluate.runner import run_evalset
from embedops.evaluate.store import import_evalset
from embedops.migrate.gate import GateConfig
from embedops.workspace import Workspace

WORSE = "hashing:dims=16"
runner = CliRunner()


def _word(rng: random.Random) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(7))


def make_corpus(root: Path, *, short: int = 60, long: int = 0, seed: int = 0) -> Path:
    """Short one-sentence ``.txt`` documents and long, mutually similar ``.md`` ones; an eval set per document.

    Returns the eval set file (JSONL). Short queries are five words of their document;
    a long document's query is one of its sentences."""
    rng = random.Random(seed)
    docs = root / "docs"
    docs.mkdir(parents=True)
    vocab = [_word(rng) for _ in range(300)]
    topic = [_word(rng) for _ in range(40)]
    queries = []
    for i in range(short):
        sentence = " ".join(rng.choice(vocab) for _ in range(12))
        (docs / f"s{i:03d}.txt").write_text(sentence + ".\n", encoding="utf-8")
        queries.append({"id": f"qs{i}", "query": " ".join(rng.sample(sentence.split(), 5)), "relevant_ids": [f"s{i:03d}.txt"]})
    for i in range(long):
        sentences = [" ".join([rng.choice(topic) for _ in range(9)] + [_word(rng), _word(rng)]) + "." for _ in range(30)]
        (docs / f"l{i:03d}.md").write_text("# Notes\n\n" + "\n\n".join(sentences) + "\n", encoding="utf-8")
        queries.append({"id": f"ql{i}", "query": rng.choice(sentences), "relevant_ids": [f"l{i:03d}.md"]})
    path = root / "queries.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in queries), encoding="utf-8")
    return path


@pytest.fixture
def gated(tmp_path: Path, database: str | None) -> tuple[Workspace, Path]:
    queries = make_corpus(tmp_path)
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", database=database)
    ws.add_source("docs", tmp_path / "docs")
    ws.sync()
    import_evalset(ws, "gold", queries, alias="prod")
    yield ws, queries
    ws.close()


def test_a_regressing_model_is_refused_forced_with_a_reason_and_the_reverse_passes(gated: tuple[Workspace, Path]) -> None:
    ws, _ = gated
    m = migrator(ws)
    plan = m.plan(WORSE).to_dict()
    assert [(e["name"], e["version"], e["queries"]) for e in plan["eval_sets"]] == [("gold", 1, 60)]
    assert plan["gate"]["max_regression"] == 0.02 and plan["gate"]["metric"] == "ndcg@10"
    m.start(WORSE)
    backfilled = m.backfill()
    assert backfilled.gate is not None and not backfilled.gate.passed  # measured as soon as the shadow is complete
    old = run_evalset(ws, "gold").metrics["ndcg@10"]
    new = run_evalset(ws, "gold", index=m.require().to_index).metrics["ndcg@10"]
    assert old - new > 0.02
    with pytest.raises(GateFailed) as refused:
        m.cutover()
    message = refused.value.message
    assert f"ndcg@10 {old:.3f} -> {new:.3f} (delta {new - old:+.3f}, 95% CI [" in message
    assert "60 queries" in message and "on eval set gold@1" in message
    assert ws.status()["aliases"]["prod"] == m.require().from_index  # nothing swapped
    attempt = ws.history(kind="migrate.gate", limit=1)[0]["details"]
    assert attempt["passed"] is False and attempt["measured"] is False  # decided from the backfill's evidence

    forced = m.cutover(force=True, reason="accepting for a test")
    assert forced.forced and not forced.gate.passed
    entry = ws.history(kind="migrate.cutover", limit=1)[0]["details"]
    assert entry["forced"] is True and entry["reason"] == "accepting for a test"
    m.finalize()

    back = migrator(ws)
    back.start("hashing")
    assert back.backfill().gate.passed  # type: ignore[union-attr]
    cut = back.cutover()
    check = next(c for c in cut.gate.checks if c.name == "eval:gold:ndcg@10")
    assert check.passed and f"{new:.3f} -> {old:.3f}" in check.detail


def test_a_collapse_in_one_segment_is_refused_while_the_overall_mean_passes(tmp_path: Path) -> None:
    queries = make_corpus(tmp_path, short=100, long=24)
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", chunker_params={"max_tokens": 16, "overlap_tokens": 0})
    ws.add_source("docs", tmp_path / "docs")
    ws.sync()
    import_evalset(ws, "gold", queries, alias="prod")
    m = migrator(ws)
    # `whole` embeds a long document as one vector: its sentences drown among similar documents
    m.start("hashing", chunker="whole", gate=GateConfig(max_regression=0.2, segment_by=("doc.ext",)))
    m.backfill()
    report = m.gate()
    overall = next(c for c in report.gate.checks if c.name == "eval:gold:ndcg@10")
    md = next(c for c in report.gate.checks if c.name == "eval:gold:ndcg@10[doc.ext=md]")
    txt = next(c for c in report.gate.checks if c.name == "eval:gold:ndcg@10[doc.ext=txt]")
    assert overall.passed and txt.passed and not md.passed and md.gating
    assert "(24 queries)" in md.detail and "95% CI" in md.detail
    with pytest.raises(GateFailed, match=r"doc\.ext=md"):
        m.cutover()
    # a segment below min_segment_queries is reported, not gating
    relaxed = m.gate(config=m.require().gate_config.replace(min_segment_queries=25))
    assert relaxed.passed and not next(c for c in relaxed.gate.checks if c.name.endswith("[doc.ext=md]")).gating
    ws.close()


def test_evidence_is_kept_and_measured_again_only_when_an_index_changes(gated: tuple[Workspace, Path]) -> None:
    ws, _ = gated
    m = migrator(ws)
    m.start("hashing:seed=1")
    m.backfill()
    assert m.status().evidence_current is True
    again = m.gate()
    assert again.reused_evidence and again.passed
    (ws.root.parent / "docs" / "s000.txt").write_text("a brand new sentence about nothing else.\n", encoding="utf-8")
    ws.sync()  # dual-write changes both indexes: the kept evidence no longer describes them
    assert m.status().evidence_current is False
    fresh = m.gate()
    assert not fresh.reused_evidence
    assert m.gate().reused_evidence
    status = m.status().to_dict()
    assert status["gate"]["passed"] is True and status["evidence_current"] is True


def test_cli_gate_exit_codes_plan_listing_and_preview(gated: tuple[Workspace, Path]) -> None:
    ws, _ = gated
    w = ["--workspace", str(ws.root)]
    plan = runner.invoke(app, ["migrate", "plan", "--to", WORSE, "--json", *w])
    assert plan.exit_code == 0, plan.output
    assert json.loads(plan.stdout)["eval_sets"][0]["name"] == "gold"
    before = ws.history()
    preview = runner.invoke(app, ["migrate", "plan", "--to", WORSE, "--sample", "30", "--json", *w])
    assert preview.exit_code == 0, preview.output
    data = json.loads(preview.stdout)["preview"]
    assert data["documents"] == 60 and data["judged_documents"] == 60  # every judged document is in the sample
    assert data["evals"][0]["mean_new"] < data["evals"][0]["mean_old"] and data["would_pass"] is False
    assert ws.history() == before  # a plan, even with a preview, writes nothing
    assert runner.invoke(app, ["migrate", "start", "--to", WORSE, *w]).exit_code == 0
    assert runner.invoke(app, ["migrate", "backfill", *w]).exit_code == 0
    failed = runner.invoke(app, ["migrate", "gate", "--json", *w])
    assert failed.exit_code == 1 and json.loads(failed.stdout)["passed"] is False
    loose = runner.invoke(app, ["migrate", "gate", "--max-regression", "0.5", "--segment-by", "none", *w])
    assert loose.exit_code == 0, loose.output
    refused = runner.invoke(app, ["migrate", "cutover", *w])
    assert refused.exit_code != 0 and "on eval set gold@1" in " ".join(refused.output.split())


def test_eval_bind_and_compare_fail_if_worse(gated: tuple[Workspace, Path]) -> None:
    ws, queries = gated
    w = ["--workspace", str(ws.root)]
    assert runner.invoke(app, ["eval", "bind", "gold", "--unbind", *w]).exit_code == 0
    assert migrator(ws).plan(WORSE).facts.eval_sets == []
    bound = runner.invoke(app, ["eval", "bind", "gold", "--alias", "prod", "--json", *w])
    assert bound.exit_code == 0 and json.loads(bound.stdout)["alias"] == "prod"
    assert [r["details"]["alias"] for r in ws.history(kind="evalset.bind", limit=2)] == ["prod", None]
    m = migrator(ws)
    m.start(WORSE)
    m.backfill()
    shadow = m.require().to_index
    worse = runner.invoke(app, ["eval", "compare", "gold", "--b", shadow, "--fail-if-worse", "0.02", "--json", *w])
    assert worse.exit_code == 1 and json.loads(worse.stdout)["failed"] is True
    tolerated = runner.invoke(app, ["eval", "compare", "gold", "--b", shadow, "--fail-if-worse", "0.5", *w])
    assert tolerated.exit_code == 0, tolerated.output


def test_no_module_level_callback_in_src() -> None:
    """The gate once shipped as a module-level hook that nothing set; dependencies are passed explicitly."""
    offenders = []
    for path in (Path(__file__).parents[1] / "src" / "embedops").rglob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                annotation = ast.unparse(node.annotation)
                placeholder = node.value is None or (isinstance(node.value, ast.Constant) and node.value.value is None)
                if (placeholder and ("Callable" in annotation or "Hook" in annotation)) or node.target.id.endswith("_hook"):
                    offenders.append(f"{path.name}: {node.target.id}: {annotation}")
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
                offenders += [f"{path.name}: {n}" for n in names if n.endswith(("_hook", "_callback"))]
    assert offenders == []
