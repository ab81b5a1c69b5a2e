"""Issue 17: a first sync does not hold the corpus. The plan spools its documents past
``[embedops] plan_memory_chars`` (sync/spool.py); a spilled sync writes what a held one writes,
holds a bounded number of documents at once, and resumes after a failure or a kill."""

from __future__ import annotations

import gc
import os
import random
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from embedops.catalog import schema
from embedops.config import PLAN_MEMORY_CHARS
from embedops.curate.curator import Curator
from embedops.sources.base import Document
from embedops.sync.run import SyncRunner
from embedops.sync.spool import Spool
from embedops.workspace import Workspace
from tests.conftest import sentence, write_corpus
from tests.test_crash import batches_since, run_and_kill
from tests.test_curation_sync import check_counts, fail_vector_write
from tests.test_workspace import check_invariant_2

BATCH = 16


def test_spool_reads_back_what_it_was_given_in_order_and_leaves_no_named_file(tmp_path: Path) -> None:
    docs = [Document(f"d{i}", f"text {i} é漢字 " * (i % 5), {"n": i, "tags": ["a", "b"]},
                     datetime(2024, 1, 1, tzinfo=timezone.utc), f"sig{i}") for i in range(40)]
    spool: Spool[Document] = Spool(tmp_path / "state", bound=60, size=lambda d: len(d.text))
    for doc in docs:
        spool.append(doc)
    assert 0 < spool.held < 40 and spool.held + spool.spilled == len(spool) == 40
    assert list(spool) == docs
    assert spool[5:33] == docs[5:33] and spool[-1] == docs[-1] and spool[3] == docs[3] and spool[::7] == docs[::7]
    assert spool[38:100] == docs[38:] and spool[50:60] == []
    with pytest.raises(IndexError):
        spool[40]
    assert list((tmp_path / "state").iterdir()) == []  # unlinked when made: a killed sync leaves nothing
    spool.close()
    assert len(spool) == 0


def write_curated_corpus(folder: Path, n: int) -> None:
    """``n`` prose files, with exact copies, near-copies and stubs for curation to quarantine."""
    texts = write_corpus(folder, n, seed=7)
    rng = random.Random(3)
    names = sorted(texts)
    for i, name in enumerate(rng.sample(names, k=n // 10)):
        (folder / f"copy{i:03d}.md").write_text(texts[name], encoding="utf-8")
    for i in range(n // 20):
        (folder / f"stub{i:03d}.md").write_text("Too short.", encoding="utf-8")
    (folder / "de.md").write_text("Die Photosynthese wandelt Licht, Wasser und Kohlendioxid in den Chloroplasten der"
                                  " Pflanzenzellen in Zucker und Sauerstoff um, und fast jede Nahrungskette an Land"
                                  " beginnt damit. " + sentence(rng), encoding="utf-8")


def workspace(root: Path, folder: Path, plan_memory_chars: int) -> Workspace:
    ws = Workspace.init(root, embedder="hashing", curate=True)
    ws.settings.batch_size = BATCH
    ws.settings.plan_memory_chars = plan_memory_chars
    ws.settings.save()
    ws.add_source("docs", folder)
    return ws


def catalog(ws: Workspace) -> dict[str, Any]:
    """Everything a sync writes that does not depend on the time or the row ids."""
    d, c, cu, v, led = schema.documents, schema.chunks, schema.curation, schema.vectors, schema.ledger
    with ws.engine.connect() as conn:
        docs = sorted(conn.execute(sa.select(d.c.external_id, d.c.content_hash, d.c.text, d.c.signature,
                                             d.c.deleted_at.is_(None))).all())
        chunks = sorted((r[0], r[1], r[2], r[3], r[4], r[5], str(sorted(r[6].items())))
                        for r in conn.execute(sa.select(d.c.external_id, c.c.chunker_key, c.c.ordinal, c.c.content_hash,
                                                        c.c.start, c.c.end, c.c.metadata).join(d, d.c.id == c.c.document_id)))
        decisions = sorted(conn.execute(sa.select(d.c.external_id, cu.c.status, cu.c.reason, cu.c.canonical,
                                                  cu.c.language, cu.c.signature).join(cu, cu.c.document_id == d.c.id)).all())
        vectors = sorted(conn.execute(sa.select(d.c.external_id, c.c.ordinal, v.c.content_hash)
                                      .join(c, c.c.id == v.c.chunk_id).join(d, d.c.id == c.c.document_id)).all())
        ledger = Counter(conn.execute(sa.select(led.c.kind)).scalars())
    return {"documents": docs, "chunks": chunks, "decisions": decisions, "vectors": vectors, "ledger": ledger}


def assert_resumed_to(ws: Workspace, reference: Workspace) -> None:
    """A resumed ``ws`` holds what the uninterrupted ``reference`` does (the ledger aside: it has the stops);
    both are closed."""
    got, want = catalog(ws), catalog(reference)
    got.pop("ledger"), want.pop("ledger")
    assert got == want
    check_invariant_2(ws)
    check_counts(ws)
    ws.close()
    reference.close()


def result_of(ws: Workspace, **kwargs: Any) -> dict[str, Any]:
    out = ws.sync(**kwargs).to_dict()
    for key in ("seconds", "job", "spend", "indexes"):
        out.pop(key, None)
    return out


def spilled_by_sync(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records how many items each plan spool made by a sync had spilled when it was closed."""
    spilled: list[int] = []
    close = Spool.close

    def recording_close(self: Spool[Any]) -> None:
        spilled.append(self.spilled)
        close(self)

    monkeypatch.setattr(Spool, "close", recording_close)
    return spilled


def test_a_spilled_first_sync_plans_and_writes_exactly_what_a_held_one_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "docs"
    write_curated_corpus(folder, 120)
    files = sum(1 for _ in folder.rglob("*.md"))
    held = workspace(tmp_path / "held", folder, 10**9)
    spilled_ws = workspace(tmp_path / "spilled", folder, 0)
    spilled = spilled_by_sync(monkeypatch)
    planned = result_of(spilled_ws, plan_only=True)
    assert planned == result_of(held, plan_only=True)  # the --plan counts and estimates
    assert sum(spilled) == files  # every new document went through the file
    spilled.clear()
    first = result_of(held)
    assert planned["chunks_to_embed"] == first["embedded"] > 0 and planned["estimated_tokens"] > 0
    assert spilled == [0, 0]  # a bound above the corpus spills nothing
    assert result_of(spilled_ws) == first
    assert sum(spilled) == files and first["quarantined"] > 0 and first["added"] == files
    assert catalog(spilled_ws) == catalog(held)
    check_invariant_2(spilled_ws)
    check_counts(spilled_ws)
    for path in folder.glob("sub0/*.md"):  # a re-sync of edits and deletions through the spool too
        path.unlink() if path.name.endswith("0.md") else path.write_text(path.read_text() + "\nMore text here.\n")
    assert result_of(spilled_ws) == result_of(held)
    assert catalog(spilled_ws) == catalog(held)
    held.close()
    spilled_ws.close()


def live_documents() -> int:
    return sum(1 for obj in gc.get_objects() if type(obj) is Document)


def test_a_spilled_first_sync_holds_a_bounded_number_of_documents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "docs"
    write_corpus(folder, 480, seed=5)
    peak = {"curation": 0, "batches": 0}

    def sampled(stage: str, fn: Any, every: int) -> Any:
        calls = [0]

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[0] += 1
            if calls[0] % every == 1:
                peak[stage] = max(peak[stage], live_documents())
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(Curator, "check", sampled("curation", Curator.check, 40))
    monkeypatch.setattr(SyncRunner, "_commit", sampled("batches", SyncRunner._commit, 3))
    ws = workspace(tmp_path / "ws", folder, 0)
    assert ws.sync().counts.added == 480
    # A batch being committed, the next ones chunked or embedded, a few in flight: never the corpus.
    assert peak["curation"] <= 4, peak
    assert BATCH <= peak["batches"] <= 4 * BATCH, peak
    ws.close()

    held = {"curation": 0, "batches": 0}  # the same sync with the plan held: the test can tell the difference
    peak.update(held)
    ws = workspace(tmp_path / "held", folder, 10**9)
    ws.sync()
    assert peak["curation"] >= 480 and peak["batches"] >= 480 - 4 * BATCH
    ws.close()


def test_a_spilled_sync_that_fails_half_way_resumes_with_nothing_lost_or_duplicated(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "docs"
    write_curated_corpus(folder, 100)
    reference = workspace(tmp_path / "ref", folder, 10**9)
    reference.sync()
    ws = workspace(tmp_path / "ws", folder, 0)
    fail_vector_write(ws, monkeypatch, 3)  # the third batch's transaction fails mid-way
    with pytest.raises(RuntimeError):
        ws.sync()
    assert batches_committed(ws) == 2
    monkeypatch.undo()
    second = ws.sync()
    assert second.counts.unchanged == 2 * BATCH and second.counts.added == sum(1 for _ in folder.rglob("*.md")) - 2 * BATCH
    assert_resumed_to(ws, reference)


def batches_committed(ws: Workspace) -> int:
    return batches_since(ws, 0)


def test_a_spilled_sync_killed_after_a_batch_resumes_and_leaves_no_spool(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    write_curated_corpus(folder, 400)  # 25+ batches: the kill after the second lands before the last, even under load
    reference = workspace(tmp_path / "ref", folder, 10**9)
    reference.sync()
    ws = workspace(tmp_path / "ws", folder, 0)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "embedops.cli", "sync", "--workspace", str(tmp_path / "ws"), "--json"]

    def after_two_batches(proc: Any, mark: int) -> None:
        while proc.poll() is None and batches_since(ws, mark) < 2:
            time.sleep(0.01)

    assert run_and_kill(ws, cmd, env, after_two_batches)
    assert 2 <= batches_committed(ws) < -(-sum(1 for _ in folder.rglob("*.md")) // BATCH)
    assert not [p for p in (tmp_path / "ws" / ".embedops").rglob("*") if p.name.startswith("spool-")]
    ws.sync()
    assert_resumed_to(ws, reference)


def test_plan_memory_chars_is_a_setting_that_round_trips(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    assert ws.settings.plan_memory_chars == PLAN_MEMORY_CHARS  # the default, not written
    assert "plan_memory_chars" not in ws.settings.to_toml()["embedops"]
    ws.settings.plan_memory_chars = 0
    ws.settings.save()
    ws.close()
    with Workspace.open(tmp_path / "ws") as again:
        assert again.settings.plan_memory_chars == 0
