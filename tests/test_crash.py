"""Invariant 4: kill -9 a sync anywhere, run it again, and the state equals an uninterrupted run."""

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
from embedops.workspace import Workspace
from tests.conftest import sentence, write_corpus
from tests.test_workspace import check_invariant_2

KILLS = 20


def mutate(folder: Path, rng: random.Random) -> None:
    files = sorted(folder.rglob("*.md"))
    for path in rng.sample(files, k=min(len(files), 15)):
        action = rng.random()
        if action < 0.6:
            path.write_text(path.read_text() + "\n" + sentence(rng) + "\n")
        elif action < 0.8:
            path.unlink()
    for _ in range(5):
        (folder / f"new{rng.randrange(10**9)}.md").write_text("# New\n\n" + sentence(rng) + "\n")


def expected_state(ws: Workspace, folder: Path) -> dict[str, set[str]]:
    """What an uninterrupted sync must produce, computed from the files alone."""
    embedder, chunker = ws.configured_target()
    docs: dict[str, set[str]] = {}
    for path in folder.rglob("*.md"):
        text = path.read_text()
        docs[path.relative_to(folder).as_posix()] = {c.content_hash for c in chunker.chunk(text)}
    return docs


def actual_state(ws: Workspace) -> dict[str, set[str]]:
    d, c = schema.documents, schema.chunks
    with ws.engine.connect() as conn:
        rows = conn.execute(
            sa.select(d.c.external_id, c.c.content_hash).join(c, c.c.document_id == d.c.id).where(d.c.deleted_at.is_(None))
        ).all()
        live_docs = set(conn.execute(sa.select(d.c.external_id).where(d.c.deleted_at.is_(None))).scalars())
    state: dict[str, set[str]] = {doc: set() for doc in live_docs}
    for ext, h in rows:
        state[ext].add(h)
    return state


def test_sync_survives_kill_9_at_random_points(tmp_path: Path, database: str | None) -> None:
    folder = tmp_path / "docs"
    write_corpus(folder, 300, seed=1)
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", database=database)
    ws.settings.batch_size = 8  # many commit boundaries to land between
    ws.settings.save()
    ws.add_source("docs", folder)
    ws.close()
    rng = random.Random(42)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "embedops.cli", "sync", "--workspace", str(tmp_path / "ws"), "--json"]
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    # Kill points are drawn over the length of an incremental run like the ones killed below.
    mutate(folder, rng)
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    full = time.perf_counter() - start
    killed = 0
    for trial in range(KILLS):
        mutate(folder, rng)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.1, full * 0.9))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
        with Workspace.open(tmp_path / "ws") as reopened:
            reopened.sync()
            assert actual_state(reopened) == expected_state(reopened, folder), f"trial {trial}"
            check_invariant_2(reopened)
            again = reopened.sync()
            assert again.counts.embedded == 0 and again.counts.added == again.counts.updated == 0
    assert killed >= KILLS // 2, f"only {killed} of {KILLS} runs were killed mid-way; the timing is off"
