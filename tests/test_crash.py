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
    """Edit, delete and add enough files that the sync's write phase spans many batch commits."""
    files = sorted(folder.rglob("*.md"))
    for path in rng.sample(files, k=min(len(files), 150)):
        action = rng.random()
        if action < 0.6:
            path.write_text(path.read_text() + "\n" + sentence(rng) + "\n")
        elif action < 0.8:
            path.unlink()
    for _ in range(30):
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
    # Kill points are drawn between the start-up of a CLI process (timed on `status`, which
    # opens the workspace and writes nothing) and the end of an incremental run like the ones
    # killed below: inside planning and the batch commits, not inside Python's imports.
    mutate(folder, rng)
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    full = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run([*cmd[:3], "status", *cmd[4:]], env=env, check=True, capture_output=True)
    startup = min(time.perf_counter() - start, full * 0.5)
    with Workspace.open(tmp_path / "ws") as opened:
        before = actual_state(opened)
    killed = trial = partial = 0
    while killed < KILLS and trial < 3 * KILLS:  # a run that ends before its kill point counts as a trial only
        trial += 1
        mutate(folder, rng)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(startup, full))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
        with Workspace.open(tmp_path / "ws") as reopened:
            expected = expected_state(reopened, folder)
            partial += actual_state(reopened) not in (before, expected)  # killed between two batch commits
            reopened.sync()
            before = actual_state(reopened)
            assert before == expected, f"trial {trial}"
            check_invariant_2(reopened)
            again = reopened.sync()
            assert again.counts.embedded == 0 and again.counts.added == again.counts.updated == 0
    assert killed == KILLS, f"only {killed} of {trial} runs were killed before they ended; the timing is off"
    assert partial >= 3, f"only {partial} of {KILLS} kills left a half-applied sync behind; the timing is off"
