"""The migration gate on SciFact with the packaged models, and how fast the control commands answer.

What it does (``--chunker whole``, the SciFact test split bound to ``prod``):

1. sync SciFact with ``minilm-l6``; ``eval run`` gives its nDCG@10;
2. ``minilm-l6`` → ``minilm-l3``: plan, start, backfill (the gate is measured when the
   shadow is complete); ``migrate gate`` (kept evidence) and ``migrate cutover`` are
   refused with the metric, both values, the delta and its interval; the gate is
   measured again after a dual-written edit (query vectors cached: its time is the
   issue's "gate for 300 queries over 5k documents"); ``cutover --force --reason``
   cuts over and the ledger holds the reason; finalize;
3. the reverse, ``minilm-l3`` → ``minilm-l6``, passes the same gate and cuts over.

Every control command (``migrate status``, ``migrate plan``, ``migrate gate``,
``migrate cutover``) runs through the CLI in a new process, as a user runs it,
``--repeat`` times; the medians are reported with the targets (status and plan
< 1 s, cutover with the gate < 2 s).

    .venv/bin/python bench/migration_gate.py [--data ../shared/data/scifact] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, Check, Report, log, timed  # noqa: E402

OLD, NEW = "minilm-l6", "minilm-l3"
EVALSET = "scifact"


CPU: dict[str, list[float]] = {}  # command → CPU seconds (user + system) of each run: what load cannot inflate


def cli(ws: Path, *args: str) -> tuple[int, Any, float]:
    """Run ``embedops ARGS --json`` in a new process: exit code, parsed stdout, wall seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with timed() as t:
        done = subprocess.run([sys.executable, "-m", "embedops.cli", *args, "--workspace", str(ws), "--json"],
                              capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    CPU.setdefault(" ".join(args[:2]), []).append(round(cpu, 3))
    try:
        data = json.loads(done.stdout) if done.stdout.strip() else None
    except json.JSONDecodeError:
        data = done.stdout
    if done.returncode not in (0, 1) or data is None:
        log(done.stderr[-2000:])
    return done.returncode, data, t.seconds


def timed_cli(ws: Path, repeat: int, *args: str) -> tuple[float, Any]:
    """Median wall time of ``repeat`` runs and the last output (commands that change nothing)."""
    seconds, data = [], None
    for _ in range(repeat):
        code, data, s = cli(ws, *args)
        seconds.append(s)
    return statistics.median(seconds), data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "scifact")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not (args.data / "corpus.jsonl").is_file():
        raise SystemExit(f"no BEIR corpus at {args.data}: pass --data")
    from embedops.compose import migrator
    from embedops.evaluate.runner import run_evalset
    from embedops.evaluate.store import import_evalset
    from embedops.workspace import Workspace

    tmp = Path(tempfile.mkdtemp(prefix="embedops-gate-"))
    data = tmp / "scifact"  # a copy: the benchmark edits one document
    shutil.copytree(args.data, data)
    root = tmp / "ws"
    ws = Workspace.init(root, embedder=OLD, chunker="whole")
    ws.add_source("sci", data, kind="beir")
    with timed() as t:
        ws.sync()
    log(f"sync {OLD}: {t.seconds:.1f} s")
    import_evalset(ws, EVALSET, data, split="test", alias="prod")
    figures: dict[str, Any] = {"sync_s": round(t.seconds, 1)}
    figures["ndcg_old_model"] = round(run_evalset(ws, EVALSET).metrics["ndcg@10"], 4)

    forward = _forward(ws, root, data, args.repeat, figures)
    ws.reload_settings()
    migrator(ws).finalize()
    figures["reverse"] = _reverse(ws, root, args.repeat, migrator)
    ws.close()

    report = Report("migration_gate", figures)
    report.checks += [
        Check("worse model refused", float(forward["refused"]), 1, at_most=False),
        Check("reverse migration passes", float(figures["reverse"]["passed"]), 1, at_most=False),
        Check("migrate status (CLI, median)", figures["status_s"], 1.0, " s"),
        Check("migrate plan (CLI, median)", figures["plan_s"], 1.0, " s"),
        Check("migrate cutover with the gate (CLI)", figures["reverse"]["cutover_s"], 2.0, " s"),
        Check("gate re-measured, 300 queries, cached vectors", forward["gate_measured_s"], 5.0, " s"),
    ]
    figures["cli_cpu_s_median"] = {cmd: statistics.median(v) for cmd, v in CPU.items()}
    rows = [[k, json.dumps(v)[:110]] for k, v in figures.items()]
    report.print(rows, ["figure", "value"])
    return 0 if report.ok else 1


def _forward(ws: Any, root: Path, data: Path, repeat: int, figures: dict[str, Any]) -> dict[str, Any]:
    """minilm-l6 → minilm-l3: refused, forced."""
    from embedops.compose import migrator

    figures["plan_s"], plan = timed_cli(root, repeat, "migrate", "plan", "--to", NEW)
    figures["plan"] = {k: plan[k] for k in ("chunks_to_embed", "tokens_to_embed", "estimated_seconds",
                                             "throughput_source", "eval_sets")}
    code, started, figures["start_s"] = cli(root, "migrate", "start", "--to", NEW)
    assert code == 0, started
    m = migrator(ws)
    with timed() as t:
        backfilled = m.backfill()
    figures["backfill_s"] = round(t.seconds, 1)
    figures["gate_at_backfill_s"] = backfilled.gate.evidence.seconds if backfilled.gate and backfilled.gate.evidence else None
    figures["status_s"], status = timed_cli(root, repeat, "migrate", "status")
    figures["gate_kept_s"], gate = timed_cli(root, repeat, "migrate", "gate")
    check = next(c for c in gate["gate"]["checks"] if c["name"] == f"eval:{EVALSET}:ndcg@10")
    figures["forward_gate"] = check["detail"]
    # an edit dual-written to both indexes: the kept evidence no longer holds, the gate runs again
    _edit_one_document(ws, data / "corpus.jsonl")
    with timed() as t:
        measured = m.gate()
    assert not measured.reused_evidence
    figures["gate_measured_s"] = round(t.seconds, 2)
    code, refusal, figures["cutover_refused_s"] = cli(root, "migrate", "cutover")
    figures["refusal"] = refusal.get("message") if isinstance(refusal, dict) else refusal
    code_f, forced, _ = cli(root, "migrate", "cutover", "--force", "--reason", "accepting for a benchmark")
    reason = ws.history(kind="migrate.cutover", limit=1)[0]["details"]["reason"]
    figures["forced"] = {"exit": code_f, "ledger_reason": reason}
    return {"refused": code != 0 and not status["gate"]["passed"] and "on eval set" in str(figures["refusal"]),
            "gate_measured_s": figures["gate_measured_s"]}


def _edit_one_document(ws: Any, corpus: Path) -> None:
    """Change one document of the (copied) corpus and sync: dual-write changes both indexes' stamps."""
    lines = corpus.read_text(encoding="utf-8").splitlines(keepends=True)
    record = json.loads(lines[0])
    record["text"] += " Edited during the migration."
    lines[0] = json.dumps(record) + "\n"
    corpus.write_text("".join(lines), encoding="utf-8")
    ws.sync()


def _reverse(ws: Any, root: Path, repeat: int, migrator: Any) -> dict[str, Any]:
    """minilm-l3 → minilm-l6: passes; the cutover's time with the gate decided from kept evidence."""
    out: dict[str, Any] = {}
    out["plan_s"], plan = timed_cli(root, repeat, "migrate", "plan", "--to", OLD)
    out["throughput_source"] = plan["throughput_source"]
    code, started, _ = cli(root, "migrate", "start", "--to", OLD)
    assert code == 0, started
    backfilled = migrator(ws).backfill()
    code, cut, out["cutover_s"] = cli(root, "migrate", "cutover")
    out["passed"] = code == 0 and cut["gate"]["passed"]
    check = next(c for c in cut["gate"]["checks"] if c["name"] == f"eval:{EVALSET}:ndcg@10")
    out["gate"] = check["detail"]
    out["embedded_in_backfill"] = backfilled.embedded
    return out


if __name__ == "__main__":
    raise SystemExit(main())
