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


def last_ledger_id(ws: Workspace) -> int:
    with ws.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(schema.ledger.c.id), 0))).scalar_one())


def wait_for_batches(ws: Workspace, proc: subprocess.Popen[bytes], after_id: int, count: int) -> None:
    """Return once ``count`` sync batches have committed after ledger row ``after_id`` (or ``proc`` ended)."""
    query = sa.select(sa.func.count()).where(schema.ledger.c.id > after_id, schema.ledger.c.kind == "sync.batch")
    while proc.poll() is None:
        with ws.engine.connect() as conn:
            if conn.execute(query).scalar_one() >= count:
                return
        time.sleep(0.005)


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
    # Half the kill points are moments drawn between the start-up of a CLI process (timed on
    # `status`, which opens the workspace and writes nothing) and the end of an incremental run
    # like the ones killed below, so they land in planning, embedding or a commit, not in
    # Python's imports. The other half follow a batch commit drawn at random (watched in the
    # ledger), so some kills surely leave a half-applied sync behind, however loaded the machine.
    with Workspace.open(tmp_path / "ws") as opened:
        first_batches = len(opened.history(kind="sync.batch", limit=10_000))
    mutate(folder, rng)
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    full = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run([*cmd[:3], "status", *cmd[4:]], env=env, check=True, capture_output=True)
    startup = min(time.perf_counter() - start, full * 0.5)
    with Workspace.open(tmp_path / "ws") as opened:
        before = actual_state(opened)
        batches = len(opened.history(kind="sync.batch", limit=10_000)) - first_batches
    killed = trial = partial = 0
    while killed < KILLS and trial < 3 * KILLS:  # a run that ends before its kill point counts as a trial only
        trial += 1
        mutate(folder, rng)
        with Workspace.open(tmp_path / "ws") as watcher:
            seen = last_ledger_id(watcher)
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if trial % 2:  # a moment drawn over the whole run: planning, embedding or a commit
                time.sleep(rng.uniform(startup, full))
            else:  # just after a batch commit drawn at random: the run is surely half-applied
                wait_for_batches(watcher, proc, seen, rng.randint(1, max(1, batches - 1)))
                time.sleep(rng.uniform(0, (full - startup) / max(batches, 1)))
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
