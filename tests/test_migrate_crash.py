"""Invariants 2, 4, 5, 6 under kill -9 during backfill and during cutover."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from embedops.catalog import schema
from embedops.compose import migrator
from embedops.migrate.run import Migrator
from embedops.workspace import Workspace
from tests.conftest import write_corpus
from tests.test_workspace import check_invariant_2

# Each trial kills a backfill and a cutover; EMBEDOPS_MIGRATE_TRIALS raises it (docs/benchmarks.md).
TRIALS = int(os.environ.get("EMBEDOPS_MIGRATE_TRIALS", "8"))  # make test: 8 per backend


def cli(ws_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "embedops.cli", *args, "--workspace", str(ws_dir), "--json"]


def kill_at_random(cmd: list[str], env: dict[str, str], upper: float, rng: random.Random) -> bool:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(rng.uniform(0.05, upper))
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    return killed


def check_partial_shadow(ws: Workspace, index_id: str) -> None:
    """Mid-backfill: no duplicate, no foreign tag, nothing for a deleted document."""
    v, c, d = schema.vectors, schema.chunks, schema.documents
    with ws.engine.connect() as conn:
        info = next(ix for ix in ws.indexes(conn) if ix.id == index_id)
        rows = conn.execute(sa.select(v.c.chunk_id, v.c.space_key, v.c.chunker_key).where(v.c.index_id == index_id)).all()
        dead = conn.execute(sa.select(sa.func.count()).select_from(v.join(c, c.c.id == v.c.chunk_id).join(d, d.c.id == c.c.document_id))
                            .where(v.c.index_id == index_id, d.c.deleted_at.is_not(None))).scalar_one()
    assert len(rows) == len({r[0] for r in rows})
    assert all((r[1], r[2]) == (info.space_key, info.chunker_key) for r in rows)
    assert dead == 0


def check_alias_consistent(ws: Workspace, m: Migrator) -> None:
    """Invariants 5 and 6: the alias is on one of the two indexes, and the ledger and migration agree."""
    mig = m.current()
    assert mig is not None
    alias = ws.status()["aliases"]["prod"]
    assert alias in (mig.from_index, mig.to_index)
    assert (alias == mig.to_index) == (mig.status == "cut_over")
    last_set = ws.history(kind="alias.set", limit=1)[0]
    assert last_set["details"]["index"] == alias


def test_backfill_and_cutover_survive_kill_9(tmp_path: Path, database: str | None) -> None:
    write_corpus(tmp_path / "docs", 400, seed=3)
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", database=database)
    ws.settings.batch_size = 8
    ws.settings.save()
    ws.add_source("docs", tmp_path / "docs")
    ws.sync()
    ws.close()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    rng = random.Random(7)
    killed = 0
    for trial in range(TRIALS):
        with Workspace.open(tmp_path / "ws") as w:
            mig = migrator(w).start(f"hashing:seed={trial + 1}")
        killed += kill_at_random(cli(tmp_path / "ws", "migrate", "backfill", "--batch", "8"), env, 2.5, rng)
        with Workspace.open(tmp_path / "ws") as w:
            m = migrator(w)
            check_partial_shadow(w, str(mig.shadow_index))
            m.backfill()
            check_invariant_2(w)
        killed += kill_at_random(cli(tmp_path / "ws", "migrate", "cutover"), env, 1.5, rng)
        with Workspace.open(tmp_path / "ws") as w:
            m = migrator(w)
            check_alias_consistent(w, m)
            if m.current().status == "cut_over":  # type: ignore[union-attr]
                m.rollback()
            m.abort()
            check_invariant_2(w)
    print(f"\ncrash: {killed} of {2 * TRIALS} backfills and cutovers killed mid-way")  # docs/benchmarks.md
    assert killed >= TRIALS, f"only {killed} of {2 * TRIALS} runs were killed mid-way"
