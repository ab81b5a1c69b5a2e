"""`embedops watch` and `serve --watch`: real folders, a real SQLite source database, real signals."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from embedops.sync.watch import WatchCollector, Watcher
from embedops.workspace import Workspace
from tests.conftest import CHILD_ENV


def wait_for(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> float:
    """Seconds until ``condition()`` held; fails the test after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.05)
    return time.monotonic() - started


def found(ws: Workspace, query: str, doc_id: str) -> bool:
    return any(hit.document_id == doc_id for hit in ws.search(query, k=3))


@pytest.fixture
def running() -> Iterator[Callable[[Watcher], Watcher]]:
    """Start watchers in threads; stop and join them at the end (each must stop within 10 s)."""
    started: list[tuple[Watcher, threading.Thread]] = []

    def start(watcher: Watcher) -> Watcher:
        thread = threading.Thread(target=watcher.run, daemon=True)
        thread.start()
        started.append((watcher, thread))
        return watcher

    yield start
    for watcher, thread in started:
        watcher.stop.set()
        thread.join(10)
        assert not thread.is_alive(), "the watcher did not stop"


def test_a_file_edit_is_synced_by_its_event_not_by_polling(
        tmp_path: Path, corpus: Path, running: Callable[[Watcher], Watcher]) -> None:
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("docs", corpus)
    watcher = running(Watcher(ws, every=3600, debounce=0.05))  # no poll in this test's lifetime
    wait_for(lambda: watcher.state.syncs.get("docs", 0) >= 1, what="the first sync")
    (corpus / "new.md").write_text("# Zeppelin\n\nquokka zeppelin marmalade\n", encoding="utf-8")
    took = wait_for(lambda: found(ws, "quokka zeppelin marmalade", "new.md"), what="the edit to be searchable")
    assert took < 20  # found while the next poll was an hour away: the file event triggered the sync
    wait_for(lambda: watcher.state.syncs["docs"] >= 2, what="the sync to return")  # it commits before returning
    assert watcher.state.latency["docs"] < 20
    ws.close()


@pytest.fixture
def tickets_db(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE tickets (id INTEGER PRIMARY KEY, body TEXT, updated_at TEXT)")
        conn.executemany("INSERT INTO tickets VALUES (?, ?, '2024-01-01 00:00:00')",
                         [(i, f"printer {i} is jammed") for i in range(20)])
    return path


def test_a_row_update_is_synced_at_the_next_poll(
        tmp_path: Path, tickets_db: Path, running: Callable[[Watcher], Watcher]) -> None:
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("tickets", kind="sql", url=f"sqlite:///{tickets_db}", table="tickets", text="body",
                  updated_at="updated_at")
    watcher = running(Watcher(ws, every=0.5))
    wait_for(lambda: watcher.state.syncs.get("tickets", 0) >= 1, what="the first sync")
    with sqlite3.connect(tickets_db) as conn:
        conn.execute("UPDATE tickets SET body = 'flamingo ledger overdue', updated_at = '2024-01-02' WHERE id = 7")
    took = wait_for(lambda: found(ws, "flamingo ledger overdue", "7"), what="the row update to be searchable")
    assert took < 15
    ws.close()


def test_a_source_added_while_watching_is_picked_up(
        tmp_path: Path, tickets_db: Path, running: Callable[[Watcher], Watcher]) -> None:
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    watcher = running(Watcher(ws, every=0.3))
    time.sleep(0.5)
    with Workspace.open(tmp_path / "ws") as other:  # `embedops source add` in another process
        other.add_source("tickets", kind="sql", url=f"sqlite:///{tickets_db}", table="tickets", text="body")
    wait_for(lambda: watcher.state.syncs.get("tickets", 0) >= 1, what="the new source's first sync")
    assert found(ws, "printer 12 is jammed", "12")
    ws.close()


def test_a_sync_running_elsewhere_puts_the_cycle_off_until_the_next(
        tmp_path: Path, tickets_db: Path, running: Callable[[Watcher], Watcher]) -> None:
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("tickets", kind="sql", url=f"sqlite:///{tickets_db}", table="tickets", text="body")
    other = Workspace.open(tmp_path / "ws")
    with other.lock("sync"):  # as if `embedops sync` ran in another process
        watcher = running(Watcher(ws, every=0.3))
        wait_for(lambda: watcher.state.busy >= 2, what="two cycles finding the lock held")
        assert watcher.state.syncs.get("tickets", 0) == 0
        assert ws.history(kind="sync.source") == []
    wait_for(lambda: watcher.state.syncs.get("tickets", 0) >= 1, what="the sync after the lock was released")
    assert len(ws.search("printer jammed", k=20)) == 20
    other.close()
    ws.close()


def test_a_source_that_fails_is_counted_and_the_others_go_on(
        tmp_path: Path, corpus: Path, running: Callable[[Watcher], Watcher]) -> None:
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("docs", corpus)
    (tmp_path / "gone.jsonl").write_text('{"id": "a", "text": "alpha"}\n', encoding="utf-8")
    ws.add_source("gone", tmp_path / "gone.jsonl", kind="jsonl")
    (tmp_path / "gone.jsonl").unlink()
    watcher = running(Watcher(ws, every=0.3))
    wait_for(lambda: watcher.state.errors.get("gone", 0) >= 2, what="the missing file to be reported twice")
    assert watcher.state.syncs.get("docs", 0) >= 1
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(WatchCollector(watcher.state))
    text = generate_latest(registry).decode()
    assert 'embedops_watch_errors_total{source="gone"}' in text
    assert 'embedops_watch_syncs_total{source="docs"}' in text
    assert 'embedops_watch_change_to_synced_seconds{source="docs"}' in text
    assert 'embedops_watch_last_sync_duration_seconds{source="docs"}' in text
    ws.close()


def test_a_folder_missing_at_start_is_polled_until_it_appears(
        tmp_path: Path, running: Callable[[Watcher], Watcher]) -> None:
    share = tmp_path / "share"
    share.mkdir()
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("share", share)
    share.rmdir()  # an unmounted share
    watcher = running(Watcher(ws, every=0.3))
    wait_for(lambda: watcher.state.errors.get("share", 0) >= 1, what="the missing folder to be reported")
    share.mkdir()
    (share / "a.md").write_text("# Mounted\n\nwombat harbour lantern\n", encoding="utf-8")
    wait_for(lambda: found(ws, "wombat harbour lantern", "a.md"), what="the folder's file to be searchable")
    ws.close()


@pytest.mark.parametrize("as_json", [False, True])
def test_sigterm_lets_the_sync_finish_and_exits_cleanly(tmp_path: Path, corpus: Path, as_json: bool) -> None:
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("docs", corpus)
    ws.close()
    proc = subprocess.Popen([sys.executable, "-m", "embedops.cli", "watch", "--every", "1s", "-w", str(tmp_path / "ws"),
                             *(["--json"] if as_json else [])],
                            env=CHILD_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with Workspace.open(tmp_path / "ws") as check:
            wait_for(lambda: bool(check.history(kind="sync.source")), timeout=60, what="the watcher's first sync")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    if as_json:
        summary = json.loads(out)  # the whole of stdout
        assert summary["syncs"] == {"docs": 1} and summary["errors"] == {} and summary["embedded"]["docs"] > 0
    else:
        assert "stopped: syncs per source: docs 1" in out
    with Workspace.open(tmp_path / "ws") as after:
        assert after.status()["documents"] == 30
        with after.engine.connect() as conn:
            from embedops.catalog.lock import current_holders

            assert current_holders(conn) == []  # the lock was released


def test_serve_watch_syncs_inside_the_service_and_exposes_metrics(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from embedops.server.app import create_app
    from embedops.server.config import ServerConfig

    records = tmp_path / "faq.jsonl"
    records.write_text(json.dumps({"id": "q1", "text": "how to reset a password"}) + "\n", encoding="utf-8")
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("faq", records, kind="jsonl")
    ws.close()
    with TestClient(create_app(tmp_path / "ws", ServerConfig(watch_every=0.3))) as client:
        def searchable(query: str, doc: str) -> bool:
            hits = client.get("/search", params={"query": query, "k": 3})
            return hits.status_code == 200 and any(h["document_id"] == doc for h in hits.json())

        wait_for(lambda: searchable("reset a password", "q1"), what="the first sync in the service")
        with records.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"id": "q2", "text": "pelican invoice refund"}) + "\n")
        wait_for(lambda: searchable("pelican invoice refund", "q2"), what="the appended record")
        metrics = client.get("/metrics").text
        assert 'embedops_watch_syncs_total{source="faq"}' in metrics


def test_the_services_watcher_waits_for_the_services_writes(tmp_path: Path, corpus: Path) -> None:
    from embedops.server.config import ServerConfig
    from embedops.server.service import Service

    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("docs", corpus)
    ws.close()
    service = Service(tmp_path / "ws", ServerConfig(watch_every=0.2))
    with service._write_lock:  # a write of the API in progress
        service.start_watch()
        time.sleep(1.0)
        assert service.watch_state is not None and service.watch_state.syncs == {}
    wait_for(lambda: service.watch_state is not None and service.watch_state.syncs.get("docs", 0) >= 1,
             what="the watcher's sync after the write")
    service.close()  # stops the watcher, then closes the workspace
    assert service._watch_thread is None
