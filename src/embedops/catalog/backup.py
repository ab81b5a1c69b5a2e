"""Consistent copies of the catalog, and putting one back.

SQLite: ``backup`` uses SQLite's online backup API (a consistent snapshot while
syncs and searches go on), then checks the copy; ``restore`` checks a backup is
an embedops catalog, moves the current file aside (never deletes it) and puts
the backup in its place, dropping the derived ANN files (they are rebuilt from
the restored catalog on first use). PostgreSQL: ``backup`` runs ``pg_dump
--format=custom``; restoring a database is the DBA's ``pg_restore``, which
``restore`` names rather than runs.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedops.catalog.secrets import redact
from embedops.errors import CatalogCorrupt, ConfigError, NotFound


@dataclass(frozen=True)
class BackupResult:
    path: str
    bytes: int
    schema_version: int | None
    seconds: float
    plan: bool = False
    replaced: str | None = None  # restore: where the catalog it replaced was moved

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def sqlite_path(url: str) -> Path | None:
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def backup(url: str, dest: Path, *, plan_only: bool = False, pg_dump: str = "pg_dump") -> BackupResult:
    """Write a consistent copy of the catalog at ``url`` to ``dest`` (refuses to overwrite a file)."""
    if dest.exists():
        raise ConfigError(f"{dest} already exists", hint="name a new file: a backup never overwrites one")
    started = time.perf_counter()
    source = sqlite_path(url)
    if plan_only:
        return BackupResult(str(dest), source.stat().st_size if source else 0, None, 0.0, plan=True)
    if source is None:
        return _pg_dump(url, dest, pg_dump, started)
    tmp = dest.with_name(dest.name + ".partial")
    with sqlite3.connect(source) as src, sqlite3.connect(tmp) as dst:
        src.backup(dst)
    version = check_catalog_file(tmp)
    os.replace(tmp, dest)
    return BackupResult(str(dest), dest.stat().st_size, version, round(time.perf_counter() - started, 3))


def _pg_dump(url: str, dest: Path, pg_dump: str, started: float) -> BackupResult:
    binary = shutil.which(pg_dump)
    if binary is None:
        raise NotFound(f"{pg_dump} is not on PATH: a PostgreSQL catalog is backed up with pg_dump",
                       hint="install the PostgreSQL client tools of the server's major version, or pass --pg-dump PATH")
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    done = subprocess.run([binary, "--format=custom", "--file", str(dest), plain], capture_output=True, text=True)
    if done.returncode != 0:
        dest.unlink(missing_ok=True)
        raise ConfigError(f"pg_dump failed: {redact(done.stderr.strip())[:500]}",
                          hint="pg_dump must be of the server's major version or newer")
    return BackupResult(str(dest), dest.stat().st_size, None, round(time.perf_counter() - started, 3))


def check_catalog_file(path: Path) -> int:
    """The schema version of the embedops catalog in ``path``; CatalogCorrupt when it is not one."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            problems = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
            if problems != ["ok"]:
                raise CatalogCorrupt(f"{path} fails SQLite's integrity check: {'; '.join(problems[:3])}",
                                     hint="use an older backup, or salvage with `sqlite3 FILE .recover`")
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise CatalogCorrupt(f"{path} is not a readable embedops catalog: {exc}",
                             hint="name a file written by `embedops backup`") from None
    if row is None:
        raise CatalogCorrupt(f"{path} is a SQLite database but not an embedops catalog (no schema version)",
                             hint="name a file written by `embedops backup`")
    return int(row[0])


def restore(url: str, backup_file: Path, ann_dir: Path, *, plan_only: bool = False) -> BackupResult:
    """Put ``backup_file`` in place of the SQLite catalog at ``url``; the current one is kept beside it."""
    target = sqlite_path(url)
    if target is None:
        raise ConfigError("a PostgreSQL catalog is restored with pg_restore, not by embedops",
                          hint=f"pg_restore --clean --if-exists --dbname DATABASE_URL {backup_file}")
    if not backup_file.is_file():
        raise NotFound(f"no backup file {backup_file}", hint="name a file written by `embedops backup`")
    started = time.perf_counter()
    version = check_catalog_file(backup_file)
    aside = target.with_name(f"{target.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}") if target.exists() else None
    if plan_only:
        return BackupResult(str(target), backup_file.stat().st_size, version, 0.0, plan=True,
                            replaced=str(aside) if aside else None)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".restoring")
    shutil.copyfile(backup_file, tmp)
    if aside is not None:
        for suffix in ("", "-wal", "-shm"):  # the WAL belongs to the file it is moved with
            part = Path(f"{target}{suffix}")
            if part.exists():
                os.replace(part, Path(f"{aside}{suffix}"))
    os.replace(tmp, target)
    for derived in ann_dir.glob("*.usearch"):  # built from the replaced catalog: its keys may mean other vectors now
        derived.unlink()
        derived.with_suffix(".json").unlink(missing_ok=True)
    return BackupResult(str(target), target.stat().st_size, version, round(time.perf_counter() - started, 3),
                        replaced=str(aside) if aside else None)
