"""Migrations end to end on real SQLite: plan, start, backfill, gate, cutover, rollback, finalize."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from embedops.catalog import schema
from embedops.config import load_settings
from embedops.errors import ConfigChanged, GateFailed, MigrationStateError, NoMigration, SpaceMismatch
from embedops.migrate.doctor import audit
from embedops.migrate.gate import GateConfig
from embedops.compose import migrator
from embedops.workspace import Workspace
from tests.test_workspace import check_invariant_2

NEW = "hashing:seed=1"


def kinds(ws: Workspace) -> list[str]:
    return [r["kind"] for r in reversed(ws.history())]


def test_plan_changes_nothing_and_reports_costs(ws: Workspace) -> None:
    ws.sync()
    before = (ws.status(), ws.history())
    plan = migrator(ws).plan(NEW).to_dict()
    assert plan["chunks_to_embed"] == len({h for h in _live_hashes(ws)})
    assert plan["tokens_to_embed"] > 0 and plan["chunks_counted"] == "exact"
    # nothing has embedded with NEW here yet: no time is guessed without --probe
    assert plan["estimated_seconds"] is None and "--probe" in plan["throughput_source"]
    probed = migrator(ws).plan(NEW, probe=True).to_dict()
    assert probed["estimated_seconds"] is not None and probed["tokens_per_second"] > 0 and "measured now" in probed["throughput_source"]
    assert plan["storage_bytes_after"] > plan["storage_bytes_before"] > 0
    assert plan["thresholds"] == [] and plan["rechunk"] is False and plan["eval_sets"] == []
    assert (ws.status(), ws.history()) == before


def test_plan_token_count_is_exact_on_few_texts_and_within_two_percent_on_many() -> None:
    """The plan tokenizes a sample, not the corpus (it must answer in under a second on SciFact)."""
    import random

    from embedops.embedding.registry import token_source
    from embedops.migrate.run import TOKEN_SAMPLE, TOKEN_SAMPLE_MIN, _estimate_tokens, _token_sample

    tokens = token_source("minilm-l3")
    rng = random.Random(7)
    words = ["mitochondria", "of", "the", "cell", "p53-dependent", "apoptosis", "in", "vivo", "3.5%", "ß-cells"]
    # Lengths as skewed as real corpora: most texts short, a few ten times longer.
    texts = [" ".join(rng.choices(words, k=int(rng.lognormvariate(4, 1)) + 1)) for _ in range(5 * TOKEN_SAMPLE)]
    lengths = {t: len(t) for t in texts}  # the sample is drawn by key: here the texts are their own keys
    exact = sum(tokens.count_tokens(t) for t in texts)
    few = texts[:TOKEN_SAMPLE_MIN]
    assert _token_sample(few, lengths) == few
    assert _estimate_tokens(tokens, few, sum(map(len, few))) == sum(tokens.count_tokens(t) for t in few)
    sample = _token_sample(texts, lengths)
    assert TOKEN_SAMPLE_MIN <= len(sample) <= TOKEN_SAMPLE
    assert _token_sample(texts, lengths) == sample  # the same sample in every run
    assert abs(_estimate_tokens(tokens, sample, sum(map(len, texts))) - exact) / exact < 0.02


def test_plan_token_sample_of_long_texts_stops_at_its_character_budget_and_stays_within_two_percent() -> None:
    """Long texts (SciFact's abstracts, a `whole` chunker): the tokenizer's time goes by characters, so the
    sample stops at TOKEN_SAMPLE_CHARS once it holds TOKEN_SAMPLE_MIN texts."""
    import random

    from embedops.embedding.registry import token_source
    from embedops.migrate.run import TOKEN_SAMPLE_CHARS, TOKEN_SAMPLE_MIN, _estimate_tokens, _token_sample

    tokens = token_source("minilm-l3")
    rng = random.Random(11)
    words = ["mitochondria", "of", "the", "cell", "p53-dependent", "apoptosis", "in", "vivo", "3.5%", "ß-cells"]
    texts = [" ".join(rng.choices(words, k=int(rng.lognormvariate(5.3, 0.5)) + 1)) for _ in range(1000)]
    lengths = {t: len(t) for t in texts}
    sample = _token_sample(texts, lengths)
    chars = sum(map(len, sample))
    assert len(sample) >= TOKEN_SAMPLE_MIN and chars - len(sample[-1]) < TOKEN_SAMPLE_CHARS <= chars
    assert len(sample) < 300 and _token_sample(texts, lengths) == sample
    exact = sum(tokens.count_tokens(t) for t in texts)
    assert abs(_estimate_tokens(tokens, sample, sum(map(len, texts))) - exact) / exact < 0.02


def test_plan_estimates_time_from_what_earlier_jobs_recorded(ws: Workspace, corpus: Path) -> None:
    ws.sync()
    m = migrator(ws)
    m.start(NEW)
    m.backfill()
    m.abort()
    (corpus / "more.md").write_text("# More\n\nGlaciers carve valleys over thousands of years.\n")
    plan = migrator(ws).plan(NEW).to_dict()
    assert plan["throughput_source"].startswith("recorded by earlier jobs")
    assert plan["tokens_per_second"] > 0 and plan["estimated_seconds"] is not None


def test_full_lifecycle(ws: Workspace, corpus: Path) -> None:
    ws.sync()
    old_index = ws.status()["aliases"]["prod"]
    m = migrator(ws)
    started = m.start(NEW)
    shadow = started.shadow_index
    assert m.status().phase == "backfilling"
    with pytest.raises(GateFailed, match="completeness"):
        m.cutover()
    m.backfill(batch=7)
    st = m.status()
    assert st.phase == "ready" and st.done == st.total > 0
    check_invariant_2(ws)

    # dual-write: a sync during the migration keeps both indexes complete
    (corpus / "sub0/doc000.md").write_text("# Changed\n\nA fresh text about comets and tides.\n")
    ws.sync()
    check_invariant_2(ws)

    cut = m.cutover()
    assert cut.index == shadow and ws.status()["aliases"]["prod"] == shadow
    assert load_settings(ws.root).embedder == NEW
    assert ws.search("comets tides", k=3)[0].tags["space"] == ws.status()["indexes"][1]["space"]

    back = m.rollback()
    assert back.index == old_index and ws.status()["aliases"]["prod"] == old_index
    assert load_settings(ws.root).embedder == "hashing"
    # the old index was kept current: the edit made while cut over is searchable after rollback
    (corpus / "sub1/doc001.md").write_text("# Again\n\nVolcanoes under the ice sheet.\n")
    ws.sync()
    assert ws.search("volcanoes ice sheet", k=1)[0].document_id == "sub1/doc001.md"

    m.cutover()
    fin = m.finalize()
    assert fin.dropped_index == old_index and fin.vectors_deleted > 0
    statuses = {ix["id"]: ix["status"] for ix in ws.status()["indexes"]}
    assert statuses == {old_index: "dropped", shadow: "active"}
    check_invariant_2(ws)
    assert audit(ws)["ok"]
    with pytest.raises(NoMigration):
        m.status()
    for step in ("migrate.start", "migrate.backfill", "migrate.gate", "migrate.cutover", "migrate.rollback", "migrate.finalize"):
        assert step in kinds(ws)
    assert ws.sync().counts.embedded == 0


def test_chunker_migration_rechunks(ws: Workspace) -> None:
    ws.sync()
    m = migrator(ws)
    plan = m.plan("hashing", chunker_params={"max_tokens": 24, "overlap_tokens": 4})
    assert plan.rechunk and plan.facts.chunks_total > plan.facts.from_vectors
    m.start("hashing", chunker_params={"max_tokens": 24, "overlap_tokens": 4})
    m.backfill()
    check_invariant_2(ws)
    m.cutover()
    assert load_settings(ws.root).chunker_params["max_tokens"] == 24
    ws.sync()  # the adopted config matches the serving index: no ConfigChanged
    m.finalize()
    check_invariant_2(ws)


def test_forced_cutover_needs_and_records_a_reason(ws: Workspace) -> None:
    ws.sync()
    m = migrator(ws)
    m.start(NEW)
    with pytest.raises(Exception, match="--reason"):
        m.cutover(force=True)
    m.cutover(force=True, reason="incident 42: old model endpoint retired")
    entry = ws.history(kind="migrate.cutover")[0]
    assert entry["details"]["forced"] is True and "incident 42" in entry["details"]["reason"]


def test_overlap_gates_only_when_configured(ws: Workspace) -> None:
    ws.sync()
    m = migrator(ws)
    m.start(NEW)
    m.backfill()
    refused = pytest.raises(GateFailed, match="overlap")
    with refused:
        m.cutover(gate=GateConfig(min_overlap=0.99))
    gate = m.cutover().gate.to_dict()
    overlap = next(c for c in gate["checks"] if c["name"].startswith("overlap"))
    assert overlap["gating"] is False and 0.0 <= overlap["value"] <= 1.0


def test_state_errors_name_the_next_step(ws: Workspace) -> None:
    ws.sync()
    m = migrator(ws)
    with pytest.raises(NoMigration, match="migrate start"):
        m.cutover()
    m.start(NEW)
    with pytest.raises(MigrationStateError, match="already open"):
        m.start("hashing:seed=2")
    with pytest.raises(MigrationStateError, match="needs cut_over"):
        m.finalize()
    m.abort()
    assert [ix["status"] for ix in ws.status()["indexes"]] == ["active", "dropped"]
    check_invariant_2(ws)


def test_plan_flags_change_nothing(ws: Workspace) -> None:
    ws.sync()
    m = migrator(ws)
    assert m.start(NEW, plan_only=True).started is False and m.current() is None
    m.start(NEW)
    m.backfill()
    before = ws.history()
    assert m.backfill(plan_only=True).missing_vectors == 0
    assert m.cutover(plan_only=True).would_cut_over is True
    assert ws.history() == before


def test_sync_refuses_a_model_flip_and_names_migrate(ws: Workspace) -> None:
    ws.sync()
    ws.settings.embedder = NEW
    with pytest.raises(ConfigChanged, match="migrate plan --to hashing:seed=1"):
        ws.sync()


def test_query_with_mismatched_embedder_is_refused(ws: Workspace) -> None:
    ws.sync()
    with ws.engine.begin() as conn:
        conn.execute(sa.update(schema.spaces).values(embedder=NEW))  # the name now yields another space
    with pytest.raises(SpaceMismatch, match="now describes space"):
        ws.search("anything")


def test_doctor_finds_orphans_and_missing_vectors(ws: Workspace) -> None:
    ws.sync()
    assert audit(ws)["ok"]
    v, d = schema.vectors, schema.documents
    with ws.engine.begin() as conn:
        conn.execute(sa.delete(v).where(v.c.seq == conn.execute(sa.select(sa.func.min(v.c.seq))).scalar_one()))
        conn.execute(sa.update(d).where(d.c.id == 2).values(deleted_at=1.0))
    report = audit(ws)["indexes"][0]
    assert not audit(ws)["ok"] and report["missing_vectors"] >= 1 and report["orphans"] >= 1


def test_concurrent_readers_never_fail_or_mix_through_cutover_and_rollback(ws: Workspace) -> None:
    ws.sync()
    m = migrator(ws)
    m.start(NEW)
    m.backfill()
    spaces = {ix["id"]: ix["space"] for ix in ws.status()["indexes"]}
    errors: list[BaseException] = []
    mixed: list[set[str]] = []
    stop = threading.Event()
    count = [0]

    def reader() -> None:
        while not stop.is_set():
            try:
                results = ws.search("cell protein gene", k=10)
                tags = {r.tags["space"] for r in results}
                if len(tags) > 1:
                    mixed.append(tags)
                count[0] += 1
            except BaseException as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for _ in range(5):
        m.cutover()
        m.rollback()
    stop.set()
    for t in threads:
        t.join()
    assert not errors and not mixed and count[0] > 10
    assert set(spaces.values()) and len(set(spaces.values())) == 2


def _live_hashes(ws: Workspace) -> list[str]:
    c, d = schema.chunks, schema.documents
    with ws.engine.connect() as conn:
        return list(conn.execute(sa.select(c.c.content_hash).join(d, d.c.id == c.c.document_id).where(d.c.deleted_at.is_(None))).scalars())


def test_sync_keeps_shadow_current_but_leaves_the_fill_to_backfill(ws: Workspace, corpus: Path) -> None:
    ws.sync()
    m = migrator(ws)
    shadow = m.start(NEW).shadow_index
    (corpus / "fresh.md").write_text("# Fresh\n\nAurora borealis over the fjord.\n")
    ws.sync()
    counts = {ix["id"]: ix["vectors"] for ix in ws.status()["indexes"]}
    assert 0 < counts[shadow] < counts[ws.status()["aliases"]["prod"]]  # only the new document was dual-written
    assert ws.search("aurora borealis fjord", k=1, index=shadow)[0].document_id == "fresh.md"


def test_sync_repairs_a_served_index_after_a_forced_cutover(ws: Workspace) -> None:
    ws.sync()
    m = migrator(ws)
    m.start(NEW)
    m.cutover(force=True, reason="testing an incomplete shadow")
    ws.sync()
    check_invariant_2(ws)


def test_doctor_during_a_backfill_says_so_instead_of_reporting_missing_vectors(ws: Workspace) -> None:
    from embedops.catalog.lock import WriteLock

    ws.sync()
    m = migrator(ws)
    shadow = m.start(NEW).shadow_index
    report = next(r for r in audit(ws)["indexes"] if r["index"] == shadow)
    assert report["missing_vectors"] > 0 and report["backfill"].startswith("pending") and audit(ws)["ok"]
    with WriteLock(ws.engine, "migration:prod", command="embedops migrate backfill"):
        running = next(r for r in audit(ws)["indexes"] if r["index"] == shadow)
        assert running["backfill"].startswith("running: pid") and "migrate backfill" in running["backfill"]
    m.backfill()
    done = next(r for r in audit(ws)["indexes"] if r["index"] == shadow)
    assert done["missing_vectors"] == 0 and audit(ws)["ok"]
