"""usearch calls beside a busy Python thread: the default switch interval vs embedops' GIL handoff.

usearch 2.26 releases the GIL in its compiled calls but takes it back on its first
worker thread for every vector added and every query searched. While another thread
runs Python, each of those waits for the interpreter's switch interval (5 ms by
default). embedops lowers the interval while a usearch call is in flight
(``embedops.vectors.ann.GIL_HANDOFF``). This script measures, in one process, with a
thread running a pure-Python loop beside the calls:

1. a graph build (``--vectors`` int8 vectors, M=16, ef_construction 64, batches of
   2,000, all cores) with no other thread, then beside the busy thread without and
   with the handoff;
2. ``--queries`` single-vector searches of that graph, the same three ways;
3. how many loop iterations a second the busy thread made meanwhile (what the handoff
   costs the other thread).

Check: beside the busy thread, the default interval's time is at least 3x the handoff's, for
the build and for the searches.

Usage (from the repository root)::

    .venv/bin/python bench/gil_handoff.py
    .venv/bin/python bench/gil_handoff.py --vectors 20000 --queries 300 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Check, Report  # noqa: E402

from embedops.vectors.ann import GIL_HANDOFF, usearch_index  # noqa: E402

# Beside a busy thread, the default interval's time over the handoff's: the wait is most of a call's time.
# (Against the call alone, beside a busy thread it also shares the cores and the GIL with that thread.)
SPEEDUP_MIN = 3.0


@contextlib.contextmanager
def busy_thread() -> Iterator[list[int]]:
    """A thread running a pure-Python loop until the block ends; yields its iteration count."""
    count, stop = [0], threading.Event()

    def loop() -> None:
        while not stop.is_set():
            for _ in range(1000):
                pass
            count[0] += 1

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield count
    finally:
        stop.set()
        thread.join()


def timed(work: Callable[[], Any], busy: bool) -> tuple[float, float | None]:
    """Seconds ``work`` took, and the busy thread's loops a second (None: no busy thread)."""
    with busy_thread() if busy else contextlib.nullcontext([0]) as count:
        started = time.perf_counter()
        work()
        seconds = time.perf_counter() - started
    return seconds, (count[0] / seconds if busy else None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vectors", type=int, default=20_000)
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--json", type=Path)
    args = p.parse_args()

    Index = usearch_index()
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.vectors, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    codes = np.clip(np.round(vectors * 127 * 4), -127, 127).astype(np.int8)
    keys = np.arange(args.vectors, dtype=np.uint64)
    graph = None

    def build(handoff: bool) -> Callable[[], None]:
        def work() -> None:
            nonlocal graph
            graph = Index(ndim=384, metric="cos", dtype="i8", connectivity=16, expansion_add=64)
            for lo in range(0, len(codes), 2000):
                with GIL_HANDOFF if handoff else contextlib.nullcontext():
                    graph.add(keys[lo : lo + 2000], codes[lo : lo + 2000], threads=0)
        return work

    def search(handoff: bool) -> Callable[[], None]:
        def work() -> None:
            assert graph is not None
            for q in codes[: args.queries]:
                with GIL_HANDOFF if handoff else contextlib.nullcontext():
                    graph.search(q, 10)
        return work

    rows, figures = [], {}
    for name, make, unit in (("build", build, "s"), ("search", search, "ms/query")):
        alone, _ = timed(make(True), busy=False)
        plain, plain_loops = timed(make(False), busy=True)
        handed, handed_loops = timed(make(True), busy=True)
        scale = 1.0 if name == "build" else 1000 / args.queries
        figures[name] = {"alone": alone * scale, "busy_default": plain * scale, "busy_handoff": handed * scale,
                         "busy_loops_per_s_default": plain_loops, "busy_loops_per_s_handoff": handed_loops}
        rows.append([name, f"{alone * scale:.3f} {unit}", f"{plain * scale:.3f} {unit}", f"{handed * scale:.3f} {unit}",
                     f"{plain / handed:.1f}x", f"{plain_loops:,.0f} / {handed_loops:,.0f}"])
    rep = Report("gil_handoff", {"vectors": args.vectors, "queries": args.queries, **figures})
    for name in ("build", "search"):
        f = figures[name]
        rep.checks.append(Check(f"{name} beside a busy thread: default / handoff", f["busy_default"] / f["busy_handoff"],
                                SPEEDUP_MIN, at_most=False))
    rep.print(rows, ["call", "alone", "busy thread, 5 ms switch", "busy thread, handoff", "default / handoff",
                     "busy thread loops/s (default / handoff)"])
    if args.json:
        args.json.write_text(json.dumps(rep.figures, indent=1))


if __name__ == "__main__":
    main()
