"""Continuous sync (``embedops watch``, ``serve --watch``): every source kept in line with the indexes.

Folder sources are synced when their files change (file-system events through
``watchfiles``, grouped for ``debounce`` seconds); table and file sources
(``sql``, ``jsonl``, ``beir``) are polled every ``every`` seconds; push sources
need nothing (their documents arrive through the API). Every source is synced
once at start.

Each sync is an ordinary ``Workspace.sync(source=...)``: its plan, batches and
ledger rows, under the workspace's ``sync`` lock. A source whose sync finds the
lock held (another ``embedops sync``, a push) stays due and is tried again at
the next poll. A failing source is counted and logged; the others go on.

Stopping (``stop`` set, or SIGINT/SIGTERM through :func:`run_watch`) lets the
sync in progress finish and starts no other; a second signal interrupts it, and
its open batch rolls back, so nothing is ever half-written (invariant 4).

>>> watcher = Watcher(ws, every=30.0)            # doctest: +SKIP
>>> threading.Thread(target=watcher.run).start()   # doctest: +SKIP
>>> watcher.stop.set()                             # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedops.errors import Busy, EmbedopsError

if TYPE_CHECKING:
    from prometheus_client.core import Metric

    from embedops.sync.driver import SyncResult
    from embedops.workspace import Workspace

log = logging.getLogger("embedops")

EVENT_KINDS = frozenset({"folder"})
POLLED_KINDS = frozenset({"sql", "jsonl", "parquet", "beir"})
Runner = Callable[[Callable[["Workspace"], "SyncResult"]], "SyncResult"]


@dataclass
class WatchState:
    """What the watcher has done, for its metrics (one per process)."""

    cycles: int = 0
    busy: int = 0
    syncs: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    last_synced: dict[str, float] = field(default_factory=dict)  # when each source's last sync finished
    changed_since: dict[str, float] = field(default_factory=dict)  # a change seen and not yet synced
    latency: dict[str, float] = field(default_factory=dict)  # change seen → synced, last time
    embedded: dict[str, int] = field(default_factory=dict)
    duration: dict[str, float] = field(default_factory=dict)  # wall time of the last sync (scan, plan and apply)


class Watcher:
    """Keeps ``ws``'s sources synced until :attr:`stop` is set.

    ``run_sync`` runs one sync function on the workspace; the default calls it
    directly, the HTTP service passes its own writer queue so the watcher's
    syncs and the API's pushes never interleave.
    """

    def __init__(self, ws: Workspace, *, every: float = 30.0, debounce: float = 0.2,
                 run_sync: Runner | None = None, state: WatchState | None = None,
                 stop: threading.Event | None = None) -> None:
        self.ws = ws
        self.every = every
        self.debounce = debounce
        self.run_sync: Runner = run_sync or (lambda fn: fn(ws))
        self.state = state or WatchState()
        self.stop = stop or threading.Event()
        self._wake = threading.Event()
        self._due: dict[str, float] = {}  # source → when its change was seen
        self._due_lock = threading.Lock()
        self._folders: dict[Path, str] = {}
        self._events: threading.Thread | None = None
        self._events_stop = threading.Event()
        self._events_failed = False  # then folders are polled like files
        self._watched: set[str] = set()  # folder sources followed by file events
        self._settings_stamp = _mtime(ws.settings.path)

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> None:
        """Sync every source now, then as changes come, until :attr:`stop` is set."""
        self._mark(list(self.ws.settings.sources))
        next_poll = time.monotonic() + self.every
        self._watch_folders()
        try:
            while not self.stop.is_set():
                self._follow_settings()
                if time.monotonic() >= next_poll:
                    self._mark(self._polled())
                    next_poll = time.monotonic() + self.every
                self.cycle()
                # At most a second asleep: a stop set from outside (a signal, the service) is seen soon.
                self._wake.wait(min(1.0, max(0.0, next_poll - time.monotonic())))
                self._wake.clear()
        finally:
            self._stop_events()

    def cycle(self) -> None:
        """Sync each due source once; one that finds the sync lock held stays due."""
        with self._due_lock:
            due, self._due = self._due, {}
        if due:
            self.state.cycles += 1
        for name, seen in due.items():
            if self.stop.is_set():
                self._mark([name], seen)  # not synced: still due if the loop is started again
                continue
            self._sync_one(name, seen)

    def _sync_one(self, name: str, seen: float) -> None:
        state = self.state
        if name not in self.ws.settings.sources:
            return  # removed from embedops.toml meanwhile
        started = time.perf_counter()
        try:
            result = self.run_sync(lambda ws: ws.sync(source=name))
        except Busy:
            state.busy += 1
            with self._due_lock:  # retried at the next poll, keeping when the change was first seen
                self._due.setdefault(name, seen)
            return
        except EmbedopsError as exc:
            state.errors[name] = state.errors.get(name, 0) + 1
            log.warning("watch: source %r was not synced: %s%s", name, exc.message,
                        f" ({exc.hint})" if exc.hint else "")
            return
        except Exception:  # noqa: BLE001 - a bug in one sync must not end the watch of every source
            state.errors[name] = state.errors.get(name, 0) + 1
            log.exception("watch: source %r failed unexpectedly", name)
            return
        now = time.time()
        state.syncs[name] = state.syncs.get(name, 0) + 1
        state.last_synced[name] = now
        state.embedded[name] = state.embedded.get(name, 0) + result.counts.embedded
        state.latency[name] = round(now - seen, 3)
        state.duration[name] = round(time.perf_counter() - started, 3)
        state.changed_since.pop(name, None)

    def _mark(self, names: list[str], seen: float | None = None) -> None:
        at = time.time() if seen is None else seen
        with self._due_lock:
            for name in names:
                self._due.setdefault(name, at)
                self.state.changed_since.setdefault(name, at)
        self._wake.set()

    def _polled(self) -> list[str]:
        """Tables and files, and any folder whose events are not watched (missing at start, or events failed)."""
        watched = set() if self._events_failed else self._watched
        return [name for name, cfg in self.ws.settings.sources.items()
                if cfg.kind in POLLED_KINDS or (cfg.kind in EVENT_KINDS and name not in watched)]

    def _follow_settings(self) -> None:
        """A `source add` or `source remove` made elsewhere rewrites embedops.toml: follow it."""
        stamp = _mtime(self.ws.settings.path)
        if stamp == self._settings_stamp:
            return
        self._settings_stamp = stamp
        before = set(self.ws.settings.sources)
        try:
            self.ws.reload_settings()
        except EmbedopsError as exc:
            log.warning("watch: keeping the previous settings: %s", exc.message)
            return
        self._mark([n for n in self.ws.settings.sources if n not in before])
        if self._folder_paths() != self._folders:
            self._stop_events()
            self._watch_folders()

    # -- file-system events ---------------------------------------------------------------
    def _folder_paths(self) -> dict[Path, str]:
        root = self.ws.root
        return {(root / cfg.path).resolve(): name for name, cfg in self.ws.settings.sources.items()
                if cfg.kind in EVENT_KINDS}

    def _watch_folders(self) -> None:
        self._folders = self._folder_paths()
        existing = {p: n for p, n in self._folders.items() if p.is_dir()}
        self._watched = set(existing.values())
        if not existing:
            return
        self._events_stop = threading.Event()
        self._events = threading.Thread(target=self._events_loop, args=(existing, self._events_stop),
                                        name="embedops-watch-events", daemon=True)
        self._events.start()

    def _events_loop(self, folders: dict[Path, str], stop: threading.Event) -> None:
        from watchfiles import watch

        debounce_ms = max(1, int(self.debounce * 1000))
        try:
            for changes in watch(*folders, stop_event=stop, debounce=debounce_ms, step=min(50, debounce_ms),
                                 rust_timeout=1000, yield_on_timeout=False, raise_interrupt=False):
                touched = {name for _, changed in changes for path, name in folders.items()
                           if Path(changed).is_relative_to(path)}
                self._mark(sorted(touched))
        except Exception:  # noqa: BLE001 - e.g. a watched folder removed: say so; its polls still sync it
            log.exception("watch: file events stopped for %s", ", ".join(str(p) for p in folders))
            self._events_failed = True

    def _stop_events(self) -> None:
        self._events_stop.set()
        if self._events is not None:
            self._events.join(timeout=5)
            self._events = None


# -- metrics -------------------------------------------------------------------------------
class WatchCollector:
    """The watcher's figures for Prometheus: syncs, errors, lock waits and freshness per source."""

    def __init__(self, state: WatchState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s, now = self.state, time.time()
        cycles = CounterMetricFamily("embedops_watch_cycles", "Watch cycles run.")
        cycles.add_metric([], s.cycles)
        busy = CounterMetricFamily("embedops_watch_busy", "Syncs put off because another writer held the sync lock.")
        busy.add_metric([], s.busy)
        yield from (cycles, busy)
        per_source: list[tuple[Any, dict[str, float] | dict[str, int]]] = [
            (CounterMetricFamily("embedops_watch_syncs", "Syncs run by the watcher.", labels=["source"]), s.syncs),
            (CounterMetricFamily("embedops_watch_errors", "Syncs that failed.", labels=["source"]), s.errors),
            (CounterMetricFamily("embedops_watch_embedded_chunks", "Chunks embedded by the watcher's syncs.",
                                 labels=["source"]), s.embedded),
            (GaugeMetricFamily("embedops_watch_last_sync_timestamp_seconds", "When the watcher last synced a source.",
                               labels=["source"]), s.last_synced),
            (GaugeMetricFamily("embedops_watch_last_sync_duration_seconds",
                               "Wall time of the watcher's last sync of a source (scan, plan and apply).",
                               labels=["source"]), s.duration),
            (GaugeMetricFamily("embedops_watch_change_to_synced_seconds",
                               "From a change seen (event or poll) to its sync done, last time.", labels=["source"]),
             s.latency),
            (GaugeMetricFamily("embedops_watch_pending_seconds",
                               "How long a change seen has waited for its sync (0: none waiting).", labels=["source"]),
             {name: round(now - at, 3) for name, at in s.changed_since.items()}),
        ]
        for family, values in per_source:
            for name, value in sorted(values.items()):
                family.add_metric([name], value)
            yield family


def run_watch(workspace: Path | None, *, every: float = 30.0, debounce: float = 0.2, port: int | None = None,
              addr: str = "0.0.0.0", stop: threading.Event | None = None) -> WatchState:
    """``embedops watch``: the loop in this thread until SIGINT/SIGTERM (or ``stop``); metrics on ``port``."""
    from embedops.monitor.loop import serve_metrics
    from embedops.monitor.metrics import build_registry
    from embedops.workspace import Workspace

    stop = stop or threading.Event()
    with Workspace.open(workspace) as ws, _signals_stop(stop):
        watcher = Watcher(ws, every=every, debounce=debounce, stop=stop)
        shutdown = None
        if port is not None:
            registry = build_registry(ws)
            registry.register(WatchCollector(watcher.state))
            shutdown = serve_metrics(registry, port, addr)
        try:
            watcher.run()
        finally:
            if shutdown is not None:
                shutdown()
        return watcher.state


class _signals_stop:
    """SIGINT/SIGTERM set ``stop`` (the sync in progress finishes); a second one interrupts it."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> None:
        import signal

        if threading.current_thread() is not threading.main_thread():
            return  # signals reach the main thread only; its owner sets ``stop``
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt  # the second signal: the open batch rolls back
        log.warning("watch: stopping after the sync in progress (signal %d; send it again to interrupt it)", signum)
        self.stop.set()

    def __exit__(self, *exc: object) -> None:
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None
