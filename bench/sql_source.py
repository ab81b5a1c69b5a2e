"""Benchmark: a PostgreSQL table as a source (embedded PostgreSQL 18, as in the tests), `hashing` embedder.

A table of ``--rows`` tickets (id, subject, body of ~40 words, product,
updated_at timestamptz) is synced into a fresh workspace (SQLite catalog). Each
step runs as its own process, as `embedops sync` would, and reports its wall
time and peak RSS:

* first sync: every row read (one streamed query) and embedded;
* no-op re-sync: must embed nothing, in at most 10 s (at 1M rows), and read no
  row: the table's fingerprint (one aggregate query) is the one the first sync
  recorded, so neither the id pass nor the catalog merge runs;
* the same no-op with the recorded fingerprint cleared first: the id pass and
  the catalog merge, as a no-op ran before the fast path, for comparison;
* 1% of rows updated (new body, updated_at = now()) and 0.1% deleted: the sync
  must update and embed exactly those rows and delete exactly those;
* ``sync --full``: every row read again, nothing embedded.

    .venv/bin/python bench/sql_source.py                 # 1,000,000 rows
    .venv/bin/python bench/sql_source.py --rows 100000
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO_ROOT, Check, Report, SentenceMaker, embedded_postgres_server, fmt_s, load_average, log  # noqa: E402

NOOP_MAX_S = 10.0
UPDATED_SHARE = 0.01
DELETED_SHARE = 0.001


def make_table(url: str, rows: int, seed: int = 0) -> None:
    """CREATE and COPY ``rows`` tickets (COPY: a million rows load in seconds, not minutes)."""
    import psycopg

    maker = SentenceMaker(seed=seed)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE support_tickets (id bigint PRIMARY KEY, subject text, body text, product text,"
                     " status text, updated_at timestamptz NOT NULL)")
        with conn.cursor() as cur, cur.copy("COPY support_tickets FROM STDIN") as copy:
            for start in range(0, rows, 10_000):
                buf = io.StringIO()
                for i in range(start, min(rows, start + 10_000)):
                    body = " ".join(maker.document(maker.rng.randint(25, 55)))
                    buf.write(f"{i}\t{maker.sentence(5)}\t{body}\tp{i % 7}\topen\t2024-01-01 00:00:00+00\n")
                copy.write(buf.getvalue())
        conn.execute("CREATE INDEX ON support_tickets (updated_at)")
        conn.execute("ANALYZE support_tickets")


def change_table(url: str, rows: int, seed: int = 1) -> tuple[set[str], set[str]]:
    """Update 1% of the rows (new body, updated_at = now()) and delete 0.1%; the ids of each."""
    import psycopg

    rng = random.Random(seed)
    picked = rng.sample(range(rows), int(rows * UPDATED_SHARE) + int(rows * DELETED_SHARE))
    updated, deleted = picked[: int(rows * UPDATED_SHARE)], picked[int(rows * UPDATED_SHARE):]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE support_tickets SET body = body || ' amended ' || id::text, updated_at = now()"
                     " WHERE id = ANY(%s)", (updated,))
        conn.execute("DELETE FROM support_tickets WHERE id = ANY(%s)", (deleted,))
    return {str(i) for i in updated}, {str(i) for i in deleted}


def child_sync(workspace: str, full: bool) -> None:
    """One step, in its own process: the sync, then its figures and this process's peak RSS as JSON."""
    from embedops.workspace import Workspace

    started = time.perf_counter()
    with Workspace.open(workspace) as ws:
        result = ws.sync(full=full)
    seconds = time.perf_counter() - started
    peak = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # the sync's, before the scan below
    c = result.counts
    print(json.dumps({"seconds": round(seconds, 2), "added": c.added, "updated": c.updated, "deleted": c.deleted,
                      "unchanged": c.unchanged, "embedded": c.embedded, "peak_rss_mb": peak,
                      "unchanged_by": result.sources[0].get("unchanged_by"),
                      "scan_seconds": scan_alone(workspace, full), "fingerprint_seconds": fingerprint_alone(workspace)}))


def scan_alone(workspace: str, full: bool) -> float:
    """The source's own share: the same scan again (now a no-op), without the plan and the catalog writes."""
    import sqlalchemy as sa

    from embedops.catalog import schema
    from embedops.workspace import Workspace

    with Workspace.open(workspace) as ws:
        d = schema.documents
        with ws.engine.connect() as conn:
            known = dict(conn.execute(sa.select(d.c.external_id, d.c.signature).where(d.c.deleted_at.is_(None))).all())
        source = ws.open_source(ws.settings.sources["tickets"])
        started = time.perf_counter()
        for _ in source.scan(dict.fromkeys(known) if full else known):
            pass
        return round(time.perf_counter() - started, 2)


def fingerprint_alone(workspace: str) -> float:
    """The fingerprint query alone: what a no-op sync asks the table instead of the id pass."""
    from embedops.sources.base import FingerprintedSource
    from embedops.workspace import Workspace

    with Workspace.open(workspace) as ws:
        source = ws.open_source(ws.settings.sources["tickets"])
        assert isinstance(source, FingerprintedSource)
        started = time.perf_counter()
        source.fingerprint()
        return round(time.perf_counter() - started, 2)


def forget_fingerprint(workspace: Path) -> None:
    """Clear the recorded fingerprint (here, not in the timed process), so that the next sync runs its id pass."""
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{workspace / '.embedops' / 'catalog.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE sources SET scan_fingerprint = NULL"))
    engine.dispose()


def run_step(workspace: Path, env: dict[str, str], *, full: bool = False) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", str(workspace)] + (["--full"] if full else [])
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"sync step failed:\n{done.stderr[-4000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def changed_ids(workspace: Path) -> tuple[set[str], set[str]]:
    """The ids the last sync updated and deleted, from the catalog (documents ingested / tombstoned last)."""
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{workspace / '.embedops' / 'catalog.db'}")
    with engine.connect() as conn:
        last = conn.execute(sa.text("SELECT max(ingested_at) FROM documents WHERE deleted_at IS NULL")).scalar_one()
        started = conn.execute(sa.text("SELECT max(at) FROM ledger WHERE kind = 'sync.source'")).scalar_one()
        prev = conn.execute(sa.text("SELECT at FROM ledger WHERE kind = 'sync.source' ORDER BY id DESC LIMIT 1 OFFSET 1")
                            ).scalar_one()
        updated = {r[0] for r in conn.execute(sa.text(
            "SELECT external_id FROM documents WHERE deleted_at IS NULL AND ingested_at > :prev"), {"prev": prev})}
        deleted = {r[0] for r in conn.execute(sa.text(
            "SELECT external_id FROM documents WHERE deleted_at > :prev"), {"prev": prev})}
    engine.dispose()
    assert last is not None and started is not None
    return updated, deleted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--full", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_sync(args.child, args.full)
        return 0
    with embedded_postgres_server("embedops-bench-sql-") as (server, tmp):
        return bench(server, tmp, args.rows)


def ticket_workspace(server: Any, tmp: Path, rows: int) -> tuple[str, dict[str, str], Path, float]:
    """A database ``app`` holding ``rows`` tickets and a workspace ``tmp/ws`` with the table as source ``tickets``
    (not synced): the table's URL, the environment that names it (APP_DB_URL), the workspace, the load time."""
    import psycopg

    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE app")
    url = str(server.get_uri("app"))
    log(f"loading {rows:,} rows ...")
    t = time.perf_counter()
    make_table(url, rows)
    load_s = time.perf_counter() - t
    env = {**os.environ, "APP_DB_URL": url, "PYTHONPATH": str(REPO_ROOT / "src")}
    ws = tmp / "ws"
    subprocess.run([sys.executable, "-m", "embedops.cli", "init", str(ws), "--embedder", "hashing"], env=env, check=True,
                   capture_output=True)
    subprocess.run([sys.executable, "-m", "embedops.cli", "source", "add", "tickets", "-w", str(ws), "--kind", "sql",
                    "--url-env", "APP_DB_URL", "--table", "support_tickets", "--id", "id", "--text",
                    "subject || E'\\n\\n' || body", "--updated-at", "updated_at", "--where", "status <> 'spam'",
                    "--metadata", "product"], env=env, check=True, capture_output=True)
    return url, env, ws, load_s


def bench(server: Any, tmp: Path, rows: int) -> int:
    url, env, ws, load_s = ticket_workspace(server, tmp, rows)
    steps: dict[str, dict[str, Any]] = {}
    for name in ("first", "noop"):
        log(f"{name} sync ...")
        steps[name] = run_step(ws, env)
    log("noop sync, fingerprint cleared (the id pass) ...")
    forget_fingerprint(ws)
    steps["noop id pass"] = run_step(ws, env)
    want_updated, want_deleted = change_table(url, rows)
    log("sync after the change ...")
    steps["change"] = run_step(ws, env)
    got_updated, got_deleted = changed_ids(ws)
    log("sync --full ...")
    steps["full"] = run_step(ws, env, full=True)
    report = Report("sql_source", figures={"rows": rows, "load_seconds": round(load_s, 1), "steps": steps,
                                            "load_average_1m_end": load_average()})
    change = steps["change"]
    report.checks = [
        Check("no-op sync seconds", steps["noop"]["seconds"], NOOP_MAX_S, " s"),
        Check("no-op sync embedded", steps["noop"]["embedded"], 0),
        Check("no-op sync read no row (unchanged by the fingerprint)",
              float(steps["noop"]["unchanged_by"] == "fingerprint"), 1, at_most=False),
        Check("no-op by the id pass embedded", steps["noop id pass"]["embedded"], 0),
        Check("change found by the id pass, not the fingerprint", float(change["unchanged_by"] is None), 1,
              at_most=False),
        Check("change: updated ids = the updated rows", float(got_updated == want_updated), 1, at_most=False),
        Check("change: deleted ids = the deleted rows", float(got_deleted == want_deleted), 1, at_most=False),
        Check("change: embedded - updated rows", abs(change["embedded"] - len(want_updated)), 0),
        Check("full re-scan embedded", steps["full"]["embedded"], 0),
    ]
    table = [[name, fmt_s(s["seconds"]), fmt_s(s["scan_seconds"]), fmt_s(s["fingerprint_seconds"]),
              s["unchanged_by"] or "", f"{s['peak_rss_mb']:.0f} MB", str(s["added"]), str(s["updated"]),
              str(s["deleted"]), str(s["embedded"])]
             for name, s in steps.items()]
    print(f"sql_source: {rows:,} rows in PostgreSQL 18 (loaded in {load_s:.1f} s), hashing embedder,"
          f" SQLite catalog; load average {load_average()}")
    report.print(table, ["step", "wall", "scan alone", "fingerprint alone", "unchanged by", "peak RSS", "added",
                         "updated", "deleted", "embedded"])
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
