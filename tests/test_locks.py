"""Writers of a workspace exclude each other, across processes, on both backends (issue: two syncs at once).

Two `embedops sync` on a new workspace used to race: the second died with an
IntegrityError, left a second empty index and pointed the alias at it. Now the
second is refused with "a sync is already running (pid, host, since)", a holder
that died is taken over, and pushes wait for a running sync.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

import embedops.sync.driver as sync_driver
from embedops.catalog import schema
from embedops.catalog.lock import WriteLock
from embedops.compose import migrator
from embedops.errors import Busy
from embedops.sources.base import Document
from embedops.workspace import Workspace
from tests.conftest import CHILD_ENV


def _cli(ws: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "embedops.cli", *args, "--workspace", str(ws), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CHILD_ENV)


def _wait_for_lock(ws: Workspace, name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with ws.engine.connect() as conn:
            if conn.execute(sa.select(schema.locks.c.name).where(schema.locks.c.name == name)).first():
                return
        time.sleep(0.05)
    raise AssertionError(f"lock {name} was never taken")


def test_a_second_sync_on_a_new_workspace_is_refused_and_no_second_index_appears(tmp_path: Path, database: str | None) -> None:
    records = "".join(json.dumps({"id": f"d{i}", "text": f"cell protein number {i}"}) + "\n" for i in range(50))
    feed = tmp_path / "feed.jsonl"
    feed.write_text(records)
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", database=database)
    ws.add_source("feed", feed, kind="jsonl")
    feed.unlink()
    os.mkfifo(feed)  # the first sync blocks reading it, holding the lock, until the test writes the records
    first = _cli(ws.root, "sync")
    _wait_for_lock(ws, "sync")
    second = _cli(ws.root, "sync")
    out, err = second.communicate(timeout=120)
    with feed.open("w") as pipe:
        pipe.write(records)
    assert second.returncode == 75, err
    refusal = json.loads(out)
    assert refusal["error"] == "Busy" and "a sync is already running" in refusal["message"]
    assert refusal["pid"] == first.pid and refusal["host"] == socket.gethostname()
    assert first.wait(timeout=120) == 0, first.stderr.read() if first.stderr else ""
    status = ws.status()
    assert len(status["indexes"]) == 1 and status["aliases"]["prod"] == status["indexes"][0]["id"]
    assert status["indexes"][0]["vectors"] == 50
    with ws.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.locks)).scalar_one() == 0  # released
    ws.close()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _plant(ws: Workspace, name: str, *, pid: int, host: str, beat_age: float) -> None:
    now = time.time()
    with ws.engine.begin() as conn:
        conn.execute(sa.insert(schema.locks).values(name=name, token="t" * 32, pid=pid, host=host, command="embedops sync",
                                                    since=now - beat_age, heartbeat_at=now - beat_age))


def test_a_holder_that_died_is_taken_over_and_the_ledger_says_so(ws: Workspace) -> None:
    _plant(ws, "sync", pid=_dead_pid(), host=socket.gethostname(), beat_age=1.0)
    ws.sync()  # its process is gone: taken over at once
    recovered = ws.history(kind="lock.recovered")
    assert len(recovered) == 1 and recovered[0]["details"]["lock"] == "sync"


def test_a_live_holder_elsewhere_is_respected_until_its_heartbeat_goes_stale(ws: Workspace) -> None:
    _plant(ws, "sync", pid=1, host="another-host", beat_age=2.0)
    with pytest.raises(Busy, match="a sync is already running.*another-host"):
        ws.sync()
    with ws.engine.begin() as conn:
        conn.execute(sa.update(schema.locks).values(heartbeat_at=time.time() - 3600))
    ws.sync()
    assert ws.history(kind="lock.recovered")[0]["details"]["previous_host"] == "another-host"


def test_a_push_waits_for_a_running_sync_and_gives_up_with_busy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("events", kind="push")
    held = threading.Event()

    def hold(seconds: float) -> None:
        with WriteLock(ws.engine, "sync", command="test"):
            held.set()
            time.sleep(seconds)

    holder = threading.Thread(target=hold, args=(1.0,))
    holder.start()
    held.wait()
    started = time.monotonic()
    ws.upsert_documents("events", [Document("e1", "a pushed event", {}, None)])
    assert time.monotonic() - started >= 0.5  # it waited for the lock, then wrote
    holder.join()
    monkeypatch.setattr(sync_driver, "PUSH_LOCK_WAIT_S", 0.3)
    held.clear()
    holder = threading.Thread(target=hold, args=(1.5,))
    holder.start()
    held.wait()
    with pytest.raises(Busy):
        ws.upsert_documents("events", [Document("e2", "another event", {}, None)])
    holder.join()
    assert [d["id"] for d in ws.sync(source="events").to_dict()["skipped"]] == []
    ws.close()


def test_migration_steps_of_an_alias_exclude_each_other_and_a_drop_waits_for_syncs(ws: Workspace) -> None:
    ws.sync()
    m = migrator(ws)
    m.start("hashing:seed=1")
    with WriteLock(ws.engine, "migration:prod", command="embedops migrate backfill"):
        with pytest.raises(Busy, match="a migration step is already running"):
            m.backfill()
    m.backfill()
    with WriteLock(ws.engine, "sync", command="embedops sync"):
        with pytest.raises(Busy, match="a sync is already running"):
            m.abort()  # drops the shadow, which a running sync may be writing to
        ws.search("cell protein")  # reads never wait for a lock
    m.abort()


def test_heartbeats_keep_a_long_holder_fresh(ws: Workspace) -> None:
    lock = WriteLock(ws.engine, "sync", command="long", heartbeat=0.1, stale_after=0.5)
    with lock:
        time.sleep(0.8)
        with ws.engine.connect() as conn:
            beat = conn.execute(sa.select(schema.locks.c.heartbeat_at)).scalar_one()
        assert time.time() - beat < 0.5
        with pytest.raises(Busy):
            with WriteLock(ws.engine, "sync", command="second", stale_after=0.5):
                pass


_HOLD = """import sys
from embedops.workspace import Workspace
with Workspace.open(sys.argv[1]) as ws, ws.lock(sys.argv[2]):
    print("held", flush=True)
    sys.stdin.readline()
"""


@contextmanager
def _held_by_another_process(root: Path, name: str) -> Iterator[subprocess.Popen[str]]:
    """Lock ``name`` of the workspace at ``root``, held by another process until the block ends."""
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(root), name], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CHILD_ENV)
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "held", holder.communicate(timeout=60)[1]
        yield holder
    finally:
        holder.stdin.close()  # it reads end-of-file, releases the lock and exits
        assert holder.wait(timeout=60) == 0, holder.stderr.read() if holder.stderr else ""


def test_the_servers_sync_trigger_is_409_naming_the_holder_while_another_process_syncs(
        ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from embedops.server import ServerConfig, create_app

    monkeypatch.setenv("EMBEDOPS_TOKEN", "lock-test-token")
    auth = {"Authorization": "Bearer lock-test-token"}
    with TestClient(create_app(ws.root, ServerConfig()), raise_server_exceptions=False) as client:
        with _held_by_another_process(ws.root, "sync") as holder:
            refused = client.post("/sync", headers=auth)
            assert refused.status_code == 409, refused.text
            body = refused.json()
            assert body["error"] == "Busy" and (body["pid"], body["host"]) == (holder.pid, socket.gethostname())
            assert f"a sync is already running in this workspace (pid {holder.pid} on {socket.gethostname()}" in body["message"]
            assert "since" in body["message"] and time.time() - 120 < body["since"] <= time.time()
            assert client.get("/sync/status").json()["last_error"]["error"] == "Busy"
        assert ws.status()["documents"] == 0  # the refused sync wrote nothing
        done = client.post("/sync", headers=auth)  # the holder gone, the same request runs
        assert done.status_code == 200 and done.json()["added"] == 30


def test_a_cutover_while_another_process_holds_the_migration_lock_exits_75_and_changes_nothing(ws: Workspace) -> None:
    from typer.testing import CliRunner

    from embedops.cli import app

    ws.sync()
    m = migrator(ws)
    m.start("hashing:seed=1")
    m.backfill()
    serving = ws.status()["aliases"]["prod"]
    cutover = ["migrate", "cutover", "--json", "--workspace", str(ws.root)]
    with _held_by_another_process(ws.root, "migration:prod") as holder:
        refused = CliRunner().invoke(app, cutover)
        assert refused.exit_code == 75, refused.output
        body = json.loads(refused.stdout)
        assert body["error"] == "Busy" and "a migration step is already running" in body["message"]
        assert (body["pid"], body["host"], body["lock"]) == (holder.pid, socket.gethostname(), "migration:prod")
    assert ws.status()["aliases"]["prod"] == serving and m.status().phase == "ready"
    assert not ws.history(kind="migrate.cutover")
    done = CliRunner().invoke(app, cutover)
    assert done.exit_code == 0, done.output
    assert ws.status()["aliases"]["prod"] == json.loads(done.stdout)["index"] != serving
