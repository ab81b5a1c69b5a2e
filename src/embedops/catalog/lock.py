"""Mutual exclusion of a workspace's writers, across processes and hosts: a lock row in the catalog.

A writer (a sync, a backfill, a cutover...) holds a named lock for as long as it
runs: one row of ``locks`` with its holder (pid, host, command), the time it
started and a heartbeat a background thread renews. A second writer asking for
the same lock gets :class:`Busy` naming the holder, at once or after waiting up
to ``wait`` seconds. A holder that died leaves its row behind; the row is taken
over when its process is gone (same host) or its heartbeat is older than
``stale_after`` (any host), and the takeover is a ``lock.recovered`` ledger row.

Acquiring is one write transaction: SQLite serializes them (BEGIN IMMEDIATE),
PostgreSQL is told to (``LOCK TABLE locks``), so two writers can never both
see the lock free.

>>> with WriteLock(engine, "sync", command="embedops sync"):        # doctest: +SKIP
...     ...
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from types import TracebackType

import sqlalchemy as sa

from embedops.catalog import schema
from embedops.catalog.ledger import write_ledger
from embedops.errors import Busy

HEARTBEAT_S = 5.0
STALE_AFTER_S = 60.0
POLL_S = 0.2

# What each lock guards, for the error message: "a sync is already running".
LOCK_WORK = {"sync": "a sync", "migration": "a migration step"}


@dataclass(frozen=True)
class Holder:
    name: str
    token: str
    pid: int
    host: str
    command: str
    since: float
    heartbeat_at: float

    def describe(self, now: float) -> str:
        started = datetime.fromtimestamp(self.since, timezone.utc).isoformat(timespec="seconds")
        return (f"pid {self.pid} on {self.host}, `{self.command}`, since {started}, last heartbeat"
                f" {max(0.0, now - self.heartbeat_at):.0f} s ago")

    def stale(self, now: float, stale_after: float) -> bool:
        """Its process is gone (on this host), or it stopped beating."""
        if now - self.heartbeat_at > stale_after:
            return True
        return self.host == socket.gethostname() and not _alive(self.pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


class WriteLock:
    """Hold lock ``name`` of the catalog behind ``engine`` while the ``with`` block runs."""

    def __init__(self, engine: sa.Engine, name: str, *, command: str, wait: float = 0.0,
                 stale_after: float = STALE_AFTER_S, heartbeat: float = HEARTBEAT_S) -> None:
        self.engine = engine
        self.name = name
        self.command = command
        self.wait = wait
        self.stale_after = stale_after
        self.heartbeat = heartbeat
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._beater: threading.Thread | None = None

    def __enter__(self) -> WriteLock:
        deadline = time.monotonic() + self.wait
        while True:
            holder = self._try_acquire()
            if holder is None:
                break
            if time.monotonic() >= deadline:
                work = LOCK_WORK.get(self.name.partition(":")[0], f"lock {self.name!r}")
                raise Busy(
                    f"{work} is already running in this workspace ({holder.describe(time.time())})",
                    hint=f"wait for it to finish and run the command again; a holder that died is taken over once"
                         f" its heartbeat is {self.stale_after:.0f} s old (at once on its own host)",
                    lock=self.name, pid=holder.pid, host=holder.host, since=holder.since,
                )
            time.sleep(POLL_S)
        self._beater = threading.Thread(target=self._beat, name=f"lock-{self.name}", daemon=True)
        self._beater.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._beater is not None:
            self._beater.join()
        lk = schema.locks
        with self.engine.begin() as conn:
            conn.execute(sa.delete(lk).where(lk.c.name == self.name, lk.c.token == self.token))

    def _try_acquire(self) -> Holder | None:
        """None when this lock is now ours, else who holds it."""
        lk = schema.locks
        now = time.time()
        mine = {"token": self.token, "pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                "since": now, "heartbeat_at": now}
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("LOCK TABLE locks IN EXCLUSIVE MODE")
            row = conn.execute(sa.select(lk).where(lk.c.name == self.name)).first()
            if row is None:
                conn.execute(sa.insert(lk).values(name=self.name, **mine))
                return None
            holder = Holder(**row._mapping)
            if not holder.stale(now, self.stale_after):
                return holder
            conn.execute(sa.update(lk).where(lk.c.name == self.name, lk.c.token == holder.token).values(**mine))
            write_ledger(conn, "lock.recovered", lock=self.name, previous_pid=holder.pid, previous_host=holder.host,
                         previous_command=holder.command, heartbeat_age_s=round(now - holder.heartbeat_at, 1))
            return None

    def _beat(self) -> None:
        lk = schema.locks
        while not self._stop.wait(self.heartbeat):
            try:
                with self.engine.begin() as conn:
                    conn.execute(sa.update(lk).where(lk.c.name == self.name, lk.c.token == self.token)
                                 .values(heartbeat_at=time.time()))
            except sa.exc.OperationalError:  # a busy catalog: the next beat tries again
                continue


def current_holders(conn: sa.Connection) -> list[Holder]:
    """Every lock held now (``doctor``, ``status``)."""
    return [Holder(**r._mapping) for r in conn.execute(sa.select(schema.locks).order_by(schema.locks.c.name))]
