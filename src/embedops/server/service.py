"""The service's state: one open Workspace shared by all requests, and the write lock.

Reads run concurrently: the Searcher uses a SQLite connection per thread and
resolves the alias on every request, so a cutover made by another process
(``embedops migrate cutover``) applies to the next query. Writes (sync,
document upserts and deletes) are serialized here, so two of them never plan
against the same catalog state; SQLite would serialize their transactions
anyway (``BEGIN IMMEDIATE``, busy timeout), but not their plans.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio

from embedops.config import CONFIG_NAME, find_workspace
from embedops.errors import EmbedopsError, NoMigration
from embedops.server.batch import PushBatcher
from embedops.server.config import ServerConfig
from embedops.server.metrics import ServiceMetrics
from embedops.server.problems import Busy, SyncRunning
from embedops.sync.watch import WatchState
from embedops.workspace import Workspace

log = logging.getLogger("embedops.server")
T = TypeVar("T")


@dataclass
class SyncState:
    """What ``GET /sync/status`` reports about syncs started through this service."""

    running: bool = False
    started_at: float | None = None
    source: str | None = None
    last: dict[str, Any] | None = None
    last_error: dict[str, Any] | None = None
    finished_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Service:
    """Shared by every request of one app."""

    def __init__(self, workspace: str | Path | Workspace | None, config: ServerConfig) -> None:
        self.config = config
        self.metrics = ServiceMetrics()
        self.sync_state = SyncState()
        self._ws: Workspace | None = None
        self._root: Path | None = None
        if isinstance(workspace, Workspace):
            self._ws, self._root = workspace, workspace.root
        elif workspace is not None:
            self._root = Path(workspace)
        self._owns_ws = self._ws is None  # a Workspace handed in is closed by its owner
        self._open_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._reads = anyio.CapacityLimiter(config.read_threads)
        self._writes = anyio.CapacityLimiter(1)
        self._write_queue = anyio.Lock()
        self._settings_stamp: int | None = None
        self.pushes = PushBatcher(self.write)
        # ``serve --watch``: the watcher's state (its metrics) and the event that stops it.
        self.watch_state: WatchState | None = None
        self._watch_stop = threading.Event()
        self._watch_thread: threading.Thread | None = None

    # -- the workspace ---------------------------------------------------------
    @property
    def ws(self) -> Workspace:
        """The open workspace, its settings re-read when embedops.toml changed on disk."""
        ws = self._ws
        if ws is None:
            with self._open_lock:
                if self._ws is None:
                    root = find_workspace(self._root)
                    self._settings_stamp = _mtime(root / CONFIG_NAME)  # taken before reading: no change is missed
                    self._ws = Workspace.open(root)
                ws = self._ws
        self._follow_settings(ws)
        return ws

    def _follow_settings(self, ws: Workspace) -> None:
        # A cutover, rollback or `source add` run elsewhere rewrites embedops.toml; a
        # long-running service must act on the new settings (e.g. sync's config check).
        stamp = _mtime(ws.settings.path)
        if stamp is not None and stamp != self._settings_stamp:
            self._settings_stamp = stamp
            try:
                ws.reload_settings()
            except EmbedopsError as exc:
                log.warning("keeping the previous settings: %s", exc)

    # -- serve --watch ----------------------------------------------------------------
    def start_watch(self) -> None:
        """Keep the sources synced in a thread (``config.watch_every``); its syncs queue with the API's writes."""
        if self.config.watch_every is None or self._watch_thread is not None:
            return
        from embedops.sync.watch import WatchState

        self.watch_state = WatchState()
        self._watch_thread = threading.Thread(target=self._watch, name="embedops-watch", daemon=True)
        self._watch_thread.start()

    def _watch(self) -> None:
        from embedops.sync.watch import Watcher

        assert self.config.watch_every is not None and self.watch_state is not None
        try:
            Watcher(self.ws, every=self.config.watch_every, run_sync=self._locked_call, state=self.watch_state,
                    stop=self._watch_stop).run()
        except EmbedopsError as exc:  # e.g. no workspace: the service still answers, and says why in its log
            log.error("the watcher stopped: %s", exc)

    def stop_watch(self, timeout: float = 60.0) -> None:
        """Let the sync in progress finish (up to ``timeout`` s), then stop watching."""
        self._watch_stop.set()
        if self._watch_thread is not None:
            self._watch_thread.join(timeout)
            self._watch_thread = None

    def close(self) -> None:
        self.stop_watch()
        if self._ws is not None and self._owns_ws:
            self._ws.close()
            self._ws = None

    def warm_up(self) -> None:
        """Load the embedder of every active index, so the first query (or the first one after a cutover) is fast."""
        try:
            ws = self.ws
            with ws.engine.connect() as conn:
                indexes = ws.indexes(conn, "active")
            for index in indexes:
                ws.embedder_for(index)
            log.info("ready: embedders loaded for %s", ", ".join(i.id for i in indexes) or "no index yet")
        except EmbedopsError as exc:
            log.warning("warm-up incomplete: %s", exc)

    # -- running work off the event loop ---------------------------------------------------
    async def read(self, fn: Callable[[Workspace], T]) -> T:
        """Run ``fn(workspace)`` in one of ``read_threads`` worker threads."""
        return await anyio.to_thread.run_sync(self._call, fn, limiter=self._reads)

    async def write(self, fn: Callable[[Workspace], T]) -> T:
        """Run ``fn(workspace)`` alone: writers queue here (no thread held while waiting), one runs at a time."""
        with anyio.move_on_after(self.config.write_wait_seconds) as waiting:
            await self._write_queue.acquire()
        if waiting.cancelled_caught:
            raise Busy(f"writes are queued behind one that has run for over {self.config.write_wait_seconds:g} s",
                       hint="retry later; GET /sync/status shows whether a sync is running")
        try:  # the deadline covers the wait only: a write that started runs to its end
            return await anyio.to_thread.run_sync(self._locked_call, fn, limiter=self._writes)
        finally:
            self._write_queue.release()

    async def in_reader(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` in a reader thread without opening the workspace first (probes report, never raise)."""
        return await anyio.to_thread.run_sync(fn, limiter=self._reads)

    def _call(self, fn: Callable[[Workspace], T]) -> T:
        return fn(self.ws)

    def _locked_call(self, fn: Callable[[Workspace], T]) -> T:
        with self._write_lock:  # also serializes writers that do not come through the event loop
            return fn(self.ws)

    async def sync(self, source: str | None, plan: bool, *, allow_mass_delete: bool = False) -> dict[str, Any]:
        """Run (or plan) a sync; a second sync while one runs is refused, not queued."""
        state = self.sync_state
        if state.running:
            started = time.strftime("%H:%M:%S", time.localtime(state.started_at))
            raise SyncRunning(f"a sync started at {started} is still running",
                              hint="poll GET /sync/status until it finishes")
        state.running, state.started_at, state.source = True, time.time(), source
        try:
            result = await self.write(
                lambda ws: ws.sync(source=source, plan_only=plan, allow_mass_delete=allow_mass_delete).to_dict())
        except EmbedopsError as exc:
            state.last_error = exc.to_dict()
            raise
        else:
            state.last, state.last_error = result, None
            return result
        finally:
            state.running, state.finished_at = False, time.time()

    # -- reads ----------------------------------------------------------------------
    def migration(self, alias: str | None) -> dict[str, Any] | None:
        from embedops.compose import migrator

        try:
            return migrator(self.ws, alias).status().to_dict()
        except NoMigration:
            return None


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None
