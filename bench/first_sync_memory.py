"""Peak memory of a first sync, at two corpus sizes: what grows with the corpus (issue 17).

A workspace is made as ``embedops init`` makes it (``auto`` chunker, curation on, here with
the ``hashing`` embedder so that no model's weights are in the figures), a generated JSONL
corpus (bench/first_sync.py's documents) is added as its source, and one ``sync`` runs, in a
child process per size so that each peak is its own. A thread samples the RSS every 20 ms;
the figures are the peak RSS at the end of each stage (plan, curation, the batches) and the
HNSW graph's own ``memory_usage`` (inherent: ~1.8 KB a 384-d vector), subtracted to give what
the rest of the sync held. ``--plan-memory-chars N`` sets ``[embedops] plan_memory_chars`` (a
huge value holds the whole plan, as before the spool; the curation and estimate changes stay).
For the figures before issue 17, run this script with PYTHONPATH at a checkout of the commit
before it (the option left out).

    .venv/bin/python bench/first_sync_memory.py --docs 10000,40000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from first_sync import write_corpus  # noqa: E402


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Sampler:
    """The peak RSS since start, sampled by a thread; ``mark`` records the peak so far under a name."""

    def __init__(self) -> None:
        self.peak = _rss_mb()
        self.marks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss_mb())

    def mark(self, name: str) -> None:
        self.peak = max(self.peak, _rss_mb())
        self.marks[name] = round(self.peak)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def child(work: Path, plan_memory_chars: int | None) -> dict[str, Any]:
    import embedops.sync.driver as driver
    from embedops.workspace import Workspace

    ws = Workspace.init(work / "ws", embedder="hashing", curate=True)
    if plan_memory_chars is not None:
        ws.settings.plan_memory_chars = plan_memory_chars
        ws.settings.save()
    ws.add_source("bench", work / "corpus.jsonl", kind="jsonl", title_field="title")
    sampler = Sampler()
    sampler.mark("start")
    plan, curate, run = driver.SyncDriver._plan, driver.SyncDriver._curate, driver.SyncDriver._run_plans

    def staged(fn: Any, name: str) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            out = fn(*args, **kwargs)
            sampler.mark(name)
            return out
        return wrapped

    driver.SyncDriver._plan = staged(plan, "plan")  # type: ignore[method-assign]
    driver.SyncDriver._curate = staged(curate, "curation")  # type: ignore[method-assign]
    driver.SyncDriver._run_plans = staged(run, "batches")  # type: ignore[method-assign]
    started = time.perf_counter()
    result = ws.sync()
    seconds = time.perf_counter() - started
    sampler.mark("end")
    sampler.stop()
    store: Any = ws.store
    graph = sum(int(a._hnsw.memory_usage) for a in store._ann.values() if a._hnsw is not None) / 2**20
    ws.close()
    return {"documents": result.counts.added, "quarantined": result.counts.quarantined, "seconds": round(seconds, 1),
            "stages_peak_mb": sampler.marks, "graph_mb": round(graph), "peak_mb": sampler.marks["end"],
            "peak_less_graph_mb": round(sampler.marks["end"] - graph)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", default="20000,80000")
    parser.add_argument("--plan-memory-chars", type=int, default=None, help="[embedops] plan_memory_chars")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child), args.plan_memory_chars)))
        return
    rows = []
    for n in [int(x) for x in args.docs.split(",")]:
        with tempfile.TemporaryDirectory(prefix="fsmem-") as tmp:
            work = Path(tmp)
            write_corpus(work / "corpus.jsonl", n)
            cmd = [sys.executable, __file__, "--child", str(work)]
            if args.plan_memory_chars is not None:
                cmd += ["--plan-memory-chars", str(args.plan_memory_chars)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            row["n"] = n
            rows.append(row)
            print(json.dumps(row), flush=True)
    if len(rows) == 2:
        a, b = rows
        print(f"peak RSS {a['peak_mb']} MB at {a['n']}, {b['peak_mb']} MB at {b['n']} (x{b['peak_mb'] / a['peak_mb']:.2f});"
              f" less the graph: {a['peak_less_graph_mb']} -> {b['peak_less_graph_mb']} MB"
              f" (x{b['peak_less_graph_mb'] / max(a['peak_less_graph_mb'], 1):.2f});"
              f" growth per 1k documents beyond the graph:"
              f" {(b['peak_less_graph_mb'] - a['peak_less_graph_mb']) / ((b['n'] - a['n']) / 1000):.1f} MB")


if __name__ == "__main__":
    main()
