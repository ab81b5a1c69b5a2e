"""Eight processes syncing, backfilling, searching, pushing and editing at once: no traceback, no failed
search, every conflict an "already running" refusal, and a final state equal to a serial run.

``EMBEDOPS_CONCURRENCY_SECONDS`` sets how long the processes run (default 8; the figures in
docs/benchmarks.md come from 120 s on each backend).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from embedops.compose import migrator
from embedops.workspace import Workspace
from tests.conftest import CHILD_ENV, write_corpus
from tests.test_crash import actual_state, expected_state
from tests.test_workspace import check_invariant_2

WORKERS = 8
SECONDS = float(os.environ.get("EMBEDOPS_CONCURRENCY_SECONDS", "8"))


def test_eight_writers_and_readers_at_random_end_in_the_state_of_a_serial_run(tmp_path: Path, database: str | None) -> None:
    folder = tmp_path / "docs"
    write_corpus(folder, 120, seed=5)
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", database=database)
    ws.settings.batch_size = 16
    ws.settings.save()
    ws.add_source("docs", folder)
    ws.add_source("events", kind="push")
    ws.sync()
    migrator(ws).start("hashing:seed=1")  # backfills and dual-writes run beside the syncs
    workers = [subprocess.Popen([sys.executable, "-m", "tests.concurrency_worker", str(ws.root), str(folder), str(seed),
                                 str(SECONDS)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CHILD_ENV,
                                cwd=Path(__file__).parents[1]) for seed in range(WORKERS)]
    reports = []
    for proc in workers:
        out, err = proc.communicate(timeout=SECONDS + 600)
        assert proc.returncode == 0, err[-2000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))
    failures = [f for r in reports for f in r["failures"]]
    assert failures == [], failures[0]
    assert all(r["busy_said_already_running"] for r in reports)
    total = {op: sum(r["counts"][op] for r in reports) for op in reports[0]["counts"]}
    assert total["search"] > 0 and total["sync"] + total["busy"] > WORKERS
    print(f"\nconcurrency: {WORKERS} processes for {SECONDS:g}s, operations {total}, 0 failures")  # docs/benchmarks.md

    ws.sync()  # the serial run: one more sync and backfill reach what a single writer would have
    migrator(ws).backfill()
    state = actual_state(ws)
    pushed = {f"w{seed}-{n}" for seed, r in enumerate(reports) for n in range(r["pushed"])}
    assert {k: v for k, v in state.items() if not k.startswith("w")} == expected_state(ws, folder)
    assert {k for k in state if k.startswith("w")} == pushed
    check_invariant_2(ws)
    ws.close()
