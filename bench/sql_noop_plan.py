"""Benchmark: the no-op plan of a PostgreSQL table source at scale, streamed (id order) against loaded whole.

`bench/sql_source.py` measures whole syncs, and its first sync (embedding every row)
is what keeps it from running at 1,000,000 rows on a shared machine. The plan is the
part of a no-op re-sync that grows with the table, so this script measures it alone:
a table of ``--rows`` tickets (as `sql_source.py` makes them) in the embedded
PostgreSQL 18, and a workspace (SQLite catalog) whose documents table is written
directly from one scan of it, as a first sync leaves it (signatures and content
hashes; no chunks, no vectors). Then, each in its own process:

* ``open``: the workspace opened and the source's statement run (no rows), no plan: the floor;
* ``streamed``: ``plan_source``, the scan in id order merged with the catalog's rows;
* ``loaded``: the catalog's view of the source loaded whole, then the scan looked up in it
  (what every sync did before, and what other kinds of source still do).

Each reports its wall time, its process's CPU seconds (imports included, the database's
work not) and its peak RSS; both plans must be no-ops.

    .venv/bin/python bench/sql_noop_plan.py --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Check, Report, embedded_postgres_server, fmt_s, load_average, log  # noqa: E402
from sql_source import ticket_workspace  # noqa: E402

MODES = ("open", "streamed", "loaded")
# ru_maxrss survives fork + exec on Linux: a child's peak starts at its parent's, so the parent stays
# small (it never imports embedops) and the catalog is written by a child of its own ("fill").
CATALOG_BATCH = 10_000


def fill_catalog(workspace: Path) -> int:
    """The documents a first sync of the table would leave, written without embedding them."""
    import sqlalchemy as sa

    from embedops.catalog import schema
    from embedops.sources.base import Document
    from embedops.workspace import Workspace

    with Workspace.open(workspace) as ws:
        source = ws.open_source(ws.settings.sources["tickets"])
        with ws.engine.begin() as conn:
            source_id = conn.execute(sa.select(schema.sources.c.id).where(schema.sources.c.name == "tickets")
                                     ).scalar_one()
        rows: list[dict[str, Any]] = []
        n = 0
        for item in source.scan({}):
            assert isinstance(item, Document)
            rows.append({"source_id": source_id, "external_id": item.external_id, "content_hash": item.content_hash,
                         "text": item.text, "signature": item.signature, "metadata": dict(item.metadata),
                         "ingested_at": time.time()})
            if len(rows) >= CATALOG_BATCH:
                n += _insert(ws.engine, rows)
                rows = []
        n += _insert(ws.engine, rows)
    return n


def _insert(engine: Any, rows: list[dict[str, Any]]) -> int:
    import sqlalchemy as sa

    from embedops.catalog import schema

    if rows:
        with engine.begin() as conn:
            conn.execute(sa.insert(schema.documents), rows)
    return len(rows)


def child(workspace: str, mode: str) -> None:
    """One mode, in its own process: its figures and this process's peak RSS as JSON."""
    if mode == "fill":
        started = time.perf_counter()
        written = fill_catalog(Path(workspace))
        print(json.dumps({"documents": written, "seconds": round(time.perf_counter() - started, 1)}))
        return
    import sqlalchemy as sa

    from embedops.catalog import schema
    from embedops.sync import source_plan
    from embedops.workspace import Workspace

    started = time.perf_counter()
    with Workspace.open(workspace) as ws:
        source = ws.open_source(ws.settings.sources["tickets"])
        with ws.engine.connect() as conn:
            source_id = conn.execute(sa.select(schema.sources.c.id).where(schema.sources.c.name == "tickets")
                                     ).scalar_one()
        plan = None
        if mode == "open":  # connected, the statement run (no rows): the driver and the dialect loaded
            source.check()
        elif mode == "streamed":
            plan = source_plan.plan_source(ws.engine, source_id, source)
        elif mode == "loaded":
            plan = source_plan._plan_loaded(ws.engine, source_id, source, False)
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak = round(usage.ru_maxrss / 1024, 1)
    # CPU seconds of this process since it started (imports included; the database's own work is not):
    # on 2 shared cores the wall time is mostly waiting for one, and this says what the work itself costs.
    cpu = round(usage.ru_utime + usage.ru_stime, 2)
    print(json.dumps({"seconds": round(seconds, 2), "cpu_seconds": cpu, "peak_rss_mb": peak,
                      "noop": None if plan is None else plan.is_noop,
                      "unchanged": None if plan is None else plan.unchanged}))


def run_child(workspace: Path, env: dict[str, str], mode: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--child", str(workspace), "--mode", mode], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{done.stderr[-4000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=("fill", *MODES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.mode)
        return 0
    with embedded_postgres_server("embedops-bench-sqlplan-") as (server, tmp):
        return bench(server, tmp, args.rows)


def bench(server: Any, tmp: Path, rows: int) -> int:
    _, env, ws, _ = ticket_workspace(server, tmp, rows)
    log("writing the catalog as a first sync leaves it ...")
    filled = run_child(ws, env, "fill")
    log(f"  {filled['documents']:,} documents in {filled['seconds']:.0f} s")
    steps = {}
    for mode in MODES:
        log(f"{mode} ...")
        steps[mode] = run_child(ws, env, mode)
    report = Report("sql_noop_plan", figures={"rows": rows, "steps": steps, "load_average_1m_end": load_average()})
    report.checks = [
        Check("streamed plan is a no-op", float(bool(steps["streamed"]["noop"])), 1, at_most=False),
        Check("loaded plan is a no-op", float(bool(steps["loaded"]["noop"])), 1, at_most=False),
        Check("streamed plan's RSS above the open workspace", steps["streamed"]["peak_rss_mb"]
              - steps["open"]["peak_rss_mb"], 100.0, " MB"),
    ]
    table = [[mode, fmt_s(s["seconds"]), fmt_s(s["cpu_seconds"]), f"{s['peak_rss_mb']:.0f} MB",
              "" if s["unchanged"] is None else f"{s['unchanged']:,}"] for mode, s in steps.items()]
    print(f"sql_noop_plan: {rows:,} rows in PostgreSQL 18, SQLite catalog; load average {load_average()}")
    report.print(table, ["mode", "wall (open + plan)", "process CPU", "peak RSS", "unchanged"])
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
