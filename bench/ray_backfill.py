"""A migration's backfill with minilm-l3: in-process vs Ray Data on a local Ray instance, same CPUs.

SciFact (BEIR) documents are synced into three identical workspaces with the cheap
``hashing`` embedder, and a migration to ``minilm-l3`` is started in each. Then:

1. **local**: ``migrate backfill`` in this process (the default executor);
2. **ray**: ``migrate backfill --executor ray --actors N`` on a local Ray instance
   started with the same number of CPUs (``ray.init(num_cpus=N)``, before the clock
   starts: on a cluster Ray is already running; its start is reported apart);
3. **ray, worker killed**: the same, with one embedding actor's process killed (SIGKILL)
   right after the first batch is committed.

Figures: backfill seconds (the fill only, not the gate), the ratio ray / local, and for
both Ray runs: chunks missing a vector (the migration's gap), duplicated vector rows, and
vectors that differ from the local run's (byte for byte, and the largest difference).
The runs are repeated ``--repeat`` times, local and ray alternating; medians compared.

Usage (from the repository root)::

    .venv/bin/python bench/ray_backfill.py                  # all of SciFact (5,183 documents)
    .venv/bin/python bench/ray_backfill.py --docs 1000      # the first 1,000 documents
    .venv/bin/python bench/ray_backfill.py --repeat 3 --cpus 2

Targets: ray / local ≤ 1.25; identical vectors; with a killed worker 0 missing, 0 duplicated.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Check, Report, load_average  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "scifact"
TO = "minilm-l3"
RATIO_MAX = 1.25


def subset(data: Path, n: int | None, out: Path) -> Path:
    """The first ``n`` SciFact documents as a JSONL file in the work folder (the data stays where it is)."""
    with (data / "corpus.jsonl").open(encoding="utf-8") as src, out.open("w", encoding="utf-8") as dst:
        for i, line in enumerate(src):
            if n is not None and i >= n:
                break
            dst.write(line)
    return out


def prepared_workspace(root: Path, corpus: Path) -> Any:
    from embedops.compose import migrator
    from embedops.workspace import Workspace

    ws = Workspace.init(root, embedder="hashing")
    ws.add_source("scifact", corpus, kind="jsonl", id_field="_id", text_field="text", title_field="title")
    ws.sync()
    migrator(ws).start(TO)
    return ws


def backfill(ws: Any, options: Any, progress: Any = None) -> float:
    from embedops.compose import migrator

    return float(migrator(ws).backfill(executor=options, progress=progress).seconds)


def killing_progress(killed: list[int]) -> Any:
    """A progress callback that SIGKILLs one embedding actor after the first committed batch."""
    import psutil

    def factory(label: str, total: int) -> Any:
        def step(n: int) -> None:
            if killed:
                return
            for proc in psutil.process_iter(["pid", "cmdline"]):
                if any("MapBatches(_EmbedWorker)" in part for part in proc.info["cmdline"] or ()):
                    os.kill(proc.info["pid"], signal.SIGKILL)
                    killed.append(int(proc.info["pid"]))
                    return
        return step
    return factory


def audit(ws: Any, reference: dict[str, bytes]) -> dict[str, Any]:
    """Gap, duplicates, and vectors compared with the local run's, for the migration's space."""
    import sqlalchemy as sa

    from embedops.catalog import schema
    from embedops.compose import migrator

    status = migrator(ws).status()
    v, e = schema.vectors, schema.embeddings
    shadow = ws.store.lookup_index(index_id=status.to_index)
    with ws.engine.connect() as conn:
        rows = conn.execute(sa.select(sa.func.count()).where(v.c.index_id == status.to_index)).scalar_one()
        distinct = conn.execute(sa.select(sa.func.count(sa.distinct(v.c.chunk_id))).where(
            v.c.index_id == status.to_index)).scalar_one()
        mine = dict(conn.execute(sa.select(e.c.content_hash, e.c.vector).where(e.c.space_key == shadow.space_key)).all())
    same = sum(mine.get(h) == b for h, b in reference.items())
    diff = max((float(np.abs(np.frombuffer(mine[h], np.float32) - np.frombuffer(b, np.float32)).max())
                for h, b in reference.items() if h in mine), default=0.0)
    return {"missing": status.total - status.done, "duplicated": rows - distinct, "vectors": rows,
            "identical": same, "compared": len(reference), "max_abs_diff": diff}


def space_vectors(ws: Any) -> dict[str, bytes]:
    import sqlalchemy as sa

    from embedops.catalog import schema
    from embedops.compose import migrator

    shadow = ws.store.lookup_index(index_id=migrator(ws).status().to_index)
    e = schema.embeddings
    with ws.engine.connect() as conn:
        return dict(conn.execute(sa.select(e.c.content_hash, e.c.vector).where(e.c.space_key == shadow.space_key)).all())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--docs", type=int, help="only the first N documents")
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--workdir", type=Path)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="embedops-ray-backfill-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        run(args, work)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    import ray

    from embedops.execute import ExecutorOptions

    corpus = subset(args.data, args.docs, work / "corpus.jsonl")
    started = time.perf_counter()
    os.environ.setdefault("RAY_agent_register_timeout_ms", "300000")
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray_start = time.perf_counter() - started
    local_s, ray_s, audits, loads = [], [], [], []
    reference: dict[str, bytes] = {}
    for round_ in range(args.repeat):
        for kind in ("local", "ray"):
            ws = prepared_workspace(work / f"{kind}-{round_}", corpus)
            loads.append(load_average())
            options = ExecutorOptions("ray", actors=args.cpus) if kind == "ray" else ExecutorOptions()
            seconds = backfill(ws, options)
            (local_s if kind == "local" else ray_s).append(seconds)
            if kind == "local" and not reference:
                reference = space_vectors(ws)
            elif kind == "ray":
                audits.append(audit(ws, reference))
            print(f"round {round_ + 1} {kind}: {seconds:.1f} s (load {loads[-1]})", flush=True)
            ws.close()
    ws = prepared_workspace(work / "ray-killed", corpus)
    killed: list[int] = []
    killed_s = backfill(ws, ExecutorOptions("ray", actors=args.cpus), killing_progress(killed))
    killed_audit = audit(ws, reference)
    ws.close()
    ray.shutdown()
    print(f"ray with a killed worker (pid {killed}): {killed_s:.1f} s, {killed_audit}", flush=True)
    report(args, local_s, ray_s, audits, killed_audit, killed, ray_start, loads)


def report(args: argparse.Namespace, local_s: list[float], ray_s: list[float], audits: list[dict[str, Any]],
           killed: dict[str, Any], pids: list[int], ray_start: float, loads: list[float | None]) -> None:
    ratio = statistics.median(ray_s) / statistics.median(local_s)
    worst = max(audits, key=lambda a: a["compared"] - a["identical"])
    rep = Report("ray_backfill", {"docs": args.docs or "all", "cpus": args.cpus, "local_s": local_s, "ray_s": ray_s,
                                  "ray_start_s": round(ray_start, 1), "audits": audits, "killed": killed,
                                  "killed_pids": pids, "load_averages": loads})
    rep.checks += [
        Check("ray / local (medians)", ratio, RATIO_MAX),
        Check("vectors differing from local", worst["compared"] - worst["identical"], 0),
        Check("killed worker: missing", killed["missing"], 0),
        Check("killed worker: duplicated", killed["duplicated"], 0),
        Check("killed worker: vectors differing", killed["compared"] - killed["identical"], 0),
        Check("a worker was killed", len(pids), 1, at_most=False),
    ]
    rows = [["local", f"{statistics.median(local_s):.1f} s", str(local_s)],
            ["ray", f"{statistics.median(ray_s):.1f} s", str(ray_s)]]
    rep.print(rows, ["executor", "median backfill", "runs"])
    if args.json:
        args.json.write_text(json.dumps(rep.figures, indent=1, default=str))


if __name__ == "__main__":
    main()
