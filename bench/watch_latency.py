"""Benchmark: how soon `embedops watch` makes an edit searchable (a file edit, a row update in PostgreSQL).

A workspace holds a folder source (``--files`` markdown files) and a table
source (``--rows`` tickets in the embedded PostgreSQL 18), `hashing` embedder.
A :class:`~embedops.sync.watch.Watcher` runs with ``--every`` seconds of polling
while ``--edits`` edits alternate between the two sources, each at a random
moment of the poll cycle: a file rewritten with a unique phrase, or a row
updated (``updated_at = now()``) with one. The latency is from the edit to the
first search that returns that document for its phrase.

Target: every latency within ``every`` + one sync (the slowest sync the
watcher ran, wall time: scan, plan and apply), for events and polling alike.

    .venv/bin/python bench/watch_latency.py                  # 50 edits, every 2 s
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Check, Report, SentenceMaker, embedded_postgres_server, load_average, log  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=50)
    parser.add_argument("--every", type=float, default=2.0)
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--rows", type=int, default=5000)
    args = parser.parse_args(argv)
    with embedded_postgres_server("embedops-bench-watch-") as (server, tmp):
        return bench(server, tmp, args)


def setup(server: Any, tmp: Path, files: int, rows: int) -> tuple[str, Path]:
    import psycopg

    maker = SentenceMaker(seed=3)
    folder = tmp / "docs"
    folder.mkdir()
    for i in range(files):
        (folder / f"f{i:04d}.md").write_text(f"# Note {i}\n\n" + " ".join(maker.document(60)) + "\n", encoding="utf-8")
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE app")
    url = str(server.get_uri("app"))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE tickets (id int PRIMARY KEY, body text, updated_at timestamptz NOT NULL)")
        buf = io.StringIO("".join(f"{i}\t{' '.join(maker.document(40))}\t2024-01-01 00:00:00+00\n" for i in range(rows)))
        with conn.cursor() as cur, cur.copy("COPY tickets FROM STDIN") as copy:
            copy.write(buf.getvalue())
    return url, folder


def edit(kind: str, i: int, url: str, folder: Path, rng: random.Random, rows: int, files: int) -> tuple[str, str]:
    """Make one edit; the document id and the unique phrase to search for."""
    import psycopg

    phrase = f"zq{i}alpha zq{i}beta zq{i}gamma"
    if kind == "file":
        name = f"f{rng.randrange(files):04d}.md"
        (folder / name).write_text(f"# Edited {i}\n\n{phrase}\n", encoding="utf-8")
        return name, phrase
    row = rng.randrange(rows)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE tickets SET body = %s, updated_at = now() WHERE id = %s", (phrase, row))
    return str(row), phrase


def bench(server: Any, tmp: Path, args: argparse.Namespace) -> int:
    import os

    from embedops.sync.watch import Watcher
    from embedops.workspace import Workspace

    url, folder = setup(server, tmp, args.files, args.rows)
    os.environ["APP_DB_URL"] = url
    ws = Workspace.init(tmp / "ws", embedder="hashing")
    ws.add_source("notes", folder)
    ws.add_source("tickets", kind="sql", url_env="APP_DB_URL", table="tickets", text="body", updated_at="updated_at")
    log("first sync ...")
    ws.sync()
    durations: list[float] = []  # every sync's wall time: its scan and plan as well as the writes

    def timed_sync(fn: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(ws)
        finally:
            durations.append(time.perf_counter() - started)

    watcher = Watcher(ws, every=args.every, debounce=0.05, run_sync=timed_sync)
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    time.sleep(args.every * 1.5)  # the watcher's start-up syncs (no-ops) are done
    rng = random.Random(7)
    latencies: dict[str, list[float]] = {"file": [], "row": []}
    for i in range(args.edits):
        kind = "file" if i % 2 == 0 else "row"
        time.sleep(rng.uniform(0, args.every))  # land anywhere in the poll cycle
        started = time.perf_counter()
        doc, phrase = edit(kind, i, url, folder, rng, args.rows, args.files)
        while not any(hit.document_id == doc for hit in ws.search(phrase, k=3)):
            if time.perf_counter() - started > 120:
                raise SystemExit(f"edit {i} ({kind} {doc}) not searchable after 120 s")
            time.sleep(0.02)
        latencies[kind].append(time.perf_counter() - started)
        log(f"edit {i:2d} {kind:4s} {doc:>9s}: {latencies[kind][-1]:.2f} s")
    watcher.stop.set()
    thread.join(60)
    ws.close()
    return report(args, latencies, max(durations), statistics.median(durations))


def report(args: argparse.Namespace, latencies: dict[str, list[float]], slowest: float, median_sync: float) -> int:
    bound = args.every + slowest
    rows, figures = [], {}
    for kind, values in latencies.items():
        q = statistics.quantiles(values, n=20) if len(values) > 1 else values * 19
        stats = {"n": len(values), "min": min(values), "p50": statistics.median(values), "p95": q[18],
                 "max": max(values)}
        figures[kind] = {k: round(v, 3) for k, v in stats.items()}
        rows.append([kind, str(len(values))] + [f"{stats[k]:.2f} s" for k in ("min", "p50", "p95", "max")])
    result = Report("watch_latency", figures={"every": args.every, "edits": args.edits, "latency": figures,
                                               "slowest_sync_s": round(slowest, 3), "median_sync_s": round(median_sync, 3)})
    result.checks = [Check(f"{kind}: max latency", max(v), bound, " s") for kind, v in latencies.items()]
    print(f"watch_latency: {args.edits} edits, every {args.every:g} s, {args.files} files and {args.rows} rows;"
          f" slowest sync {slowest:.2f} s (median {median_sync:.2f} s); load average {load_average()}")
    result.print(rows, ["edit", "n", "min", "p50", "p95", "max"])
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
