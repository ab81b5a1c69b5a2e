"""Keeping the derived ANN graphs built and compact, off the writer's and the searchers' threads.

Two jobs, one daemon thread per index at a time:

* **grow**: while a sync or a backfill commits batches, the graph takes in what
  was committed (multi-threaded batch adds from the vectors just written), so
  the graph is built alongside the pipeline instead of after it. The writer only
  signals; the thread reads committed rows on its own connection.
* **compact**: when deletions and updates have left more than
  ``COMPACT_SHARE`` of the graph as tombstones, the graph is rebuilt without
  them from a catalog snapshot while searches go on on the old one
  (:meth:`AnnIndex.compact`); ``status`` reports tombstones and compactions.

``settle`` (called by ``flush``) waits for both, so a command that exits saves a
complete graph.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from embedops.vectors import ann as ann_module
from embedops.vectors.ann import AnnIndex

log = logging.getLogger(__name__)

RawFactory = Callable[[], Any]  # a new DBAPI connection wrapper with ``driver_connection`` and ``close()``


class AnnMaintainer:
    """Background grow and compaction for the ANN indexes of one store."""

    def __init__(self, raw_connection: RawFactory) -> None:
        self._raw_connection = raw_connection
        self._lock = threading.Lock()
        self._dirty: dict[str, AnnIndex] = {}
        self._wake = threading.Condition(self._lock)
        self._grower: threading.Thread | None = None
        self._compacting: dict[str, threading.Thread] = {}
        self._busy: set[str] = set()

    # -- grow while writing ------------------------------------------------------
    def written(self, ann: AnnIndex, count: int) -> None:
        """A writer is adding vectors to ``ann``'s index (``count`` in it so far, as far as it knows)."""
        if count < ann_module.EXACT_MAX:
            return  # exact mode below EXACT_MAX: nothing to build ahead of the first query
        with self._lock:
            self._dirty[ann.index_id] = ann
            if self._grower is None or not self._grower.is_alive():
                self._grower = threading.Thread(target=self._grow_loop, name="ann-grow", daemon=True)
                self._grower.start()
            self._wake.notify()

    def _grow_loop(self) -> None:
        reader = self._raw_connection()
        try:
            while True:
                with self._lock:
                    if not self._dirty and not self._wake.wait(timeout=5.0) and not self._dirty:
                        self._grower = None
                        return  # idle: the next write starts a new thread
                    work, self._dirty = list(self._dirty.values()), {}
                    self._busy.update(a.index_id for a in work)
                for ann in work:
                    try:
                        ann.refresh(reader.driver_connection)  # reads committed rows only
                    except Exception:  # the next refresh (a search, the flush) rebuilds from the catalog
                        log.exception("background build of ANN index %s failed", ann.index_id)
                    finally:
                        with self._lock:
                            self._busy.discard(ann.index_id)
                            self._wake.notify_all()
        finally:
            reader.close()

    # -- compaction ------------------------------------------------------------------
    def maybe_compact(self, ann: AnnIndex) -> bool:
        """Start compacting ``ann`` in the background when its tombstones call for it; True if started."""
        with self._lock:
            running = self._compacting.get(ann.index_id)
            if not ann.compaction_due or (running is not None and running.is_alive()):
                return False
            thread = threading.Thread(target=self._compact, args=(ann,), name=f"ann-compact-{ann.index_id}", daemon=True)
            self._compacting[ann.index_id] = thread
            thread.start()
            return True

    def _compact(self, ann: AnnIndex) -> None:
        reader = self._raw_connection()
        try:
            ann.compact(reader.driver_connection)
        except Exception:  # the graph in use is untouched; the next check tries again
            log.exception("compaction of ANN index %s failed", ann.index_id)
        finally:
            reader.close()

    def compacting(self, index_id: str) -> bool:
        with self._lock:
            running = self._compacting.get(index_id)
            return running is not None and running.is_alive()

    # -- before saving -----------------------------------------------------------
    def settle(self, ann: AnnIndex) -> None:
        """Wait until ``ann`` has no background work pending (its grow and any compaction)."""
        with self._lock:
            while ann.index_id in self._dirty or ann.index_id in self._busy:
                self._wake.wait(timeout=1.0)
            running = self._compacting.get(ann.index_id)
        if running is not None:
            running.join()
