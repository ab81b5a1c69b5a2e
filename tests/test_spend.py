"""Spend accounting and budgets on every catalog backend, with the in-process hashing model.

Its tokens are counted with its own tokenizer (marked estimated); a price in
``[budget.prices]`` makes them cost something, so caps and the monthly budget
can be exercised without a network. The HTTP path (tokens as the provider
reports them) is in test_http_sync.py, against a real infinity server.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from embedops.catalog import schema
from embedops.catalog.db import create_engine, ensure_schema
from embedops.catalog.ledger import read_ledger
from embedops.cli import app
from embedops.compose import migrator
from embedops.config import BudgetSettings
from embedops.embedding.spend import (
    LIST_PRICE_SOURCE,
    LIST_PRICES,
    LIST_PRICES_CHECKED,
    Guard,
    Limits,
    Price,
    check_start,
    price_of,
    pricing,
)
from embedops.errors import BudgetExceeded, ConfigError
from embedops.workspace import Workspace
from tests.conftest import write_corpus
from tests.test_workspace import check_invariant_2

PRICE = 20.0  # USD per million tokens: a few thousand tokens cost cents


def priced(ws: Workspace, *, batch_size: int = 5, monthly: float | None = None) -> Workspace:
    ws.settings.budget = BudgetSettings(monthly, {"hashing": PRICE})
    ws.settings.batch_size = batch_size
    ws.settings.save()
    return ws


def spend_rows(ws: Workspace) -> list[dict[str, object]]:
    with ws.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(schema.spend).order_by(schema.spend.c.id))]


def chunk_tokens(ws: Workspace) -> int:
    """Tokens of every distinct live chunk text, counted with the model's tokenizer: what embedding all costs."""
    embedder = ws.embedder("hashing")
    with ws.engine.connect() as conn:
        texts = dict(conn.execute(sa.select(schema.chunks.c.content_hash, schema.chunks.c.text)).all())
    return sum(embedder.count_tokens(t) for t in texts.values())


# -- pure parts ------------------------------------------------------------------------------------
def test_prices_come_from_the_section_then_budget_prices_and_local_models_cost_nothing() -> None:
    from embedops.embedding.providers import parse_embedder_config

    sections = {"oai": parse_embedder_config("oai", {"kind": "openai", "model": "m", "price_per_million_tokens": 0.02}),
                "free": parse_embedder_config("free", {"kind": "openai", "model": "m"})}
    assert price_of("oai", sections, {}) == 0.02
    assert price_of("free", sections, {}) is None  # an HTTP embedder without a price: unknown, not free
    assert price_of("free", sections, {"free": 0.5}) == 0.5
    assert price_of("minilm-l6", sections, {}) == 0.0
    assert price_of("minilm-l6", sections, {"minilm-l6": 0.01}) == 0.01


def test_a_shipped_list_price_is_for_its_host_and_model_only_dated_and_the_toml_overrides_it() -> None:
    from embedops.embedding.providers import EmbedderConfig, parse_embedder_config

    def openai(name: str, model: str, **over: object) -> EmbedderConfig:
        return parse_embedder_config(name, {"kind": "openai", "model": model, **over})

    sections = {
        "oai": openai("oai", "text-embedding-3-small"),  # base_url defaults to https://api.openai.com/v1
        "large": openai("large", "text-embedding-3-large", base_url="https://API.openai.com/v1/"),
        "voyage": openai("voyage", "voyage-3-lite", base_url="https://api.voyageai.com/v1"),
        "mistral": openai("mistral", "mistral-embed", base_url="https://api.mistral.ai/v1"),
        # The same model names served elsewhere (vLLM, a proxy, another provider): not theirs to bill.
        "own": openai("own", "text-embedding-3-small", base_url="http://10.0.0.5:8000/v1"),
        "swapped": openai("swapped", "voyage-3", base_url="https://api.openai.com/v1"),
        "priced": openai("priced", "text-embedding-3-small", price_per_million_tokens=0.015),
    }
    listed = Price(0.02, "default list price (2025-06)")
    assert LIST_PRICES_CHECKED == "2025-06" and LIST_PRICE_SOURCE == listed.source
    assert pricing("oai", sections, {}) == listed
    assert pricing("large", sections, {}) == Price(0.13, listed.source)
    assert pricing("voyage", sections, {}) == Price(0.02, listed.source)
    assert pricing("mistral", sections, {}) == Price(0.10, listed.source)
    assert pricing("own", sections, {}) == Price(None, "unknown")
    assert pricing("swapped", sections, {}) == Price(None, "unknown")
    # Precedence: the section's price, then [budget.prices], then the list price.
    assert pricing("oai", sections, {"oai": 0.5}) == Price(0.5, "embedops.toml [budget.prices]")
    assert pricing("priced", sections, {"priced": 0.5}) == \
        Price(0.015, "embedops.toml [embedders.priced]")
    assert pricing("minilm-l6", sections, {}) == Price(0.0, "in-process model")
    assert all(price > 0 and host.startswith("api.") for (host, _), price in LIST_PRICES.items())


def test_the_monthly_budget_refuses_what_it_cannot_pay_and_a_cap_within_it_runs() -> None:
    with pytest.raises(BudgetExceeded, match=r"\$2 left") as caught:
        check_start(Limits(monthly_usd=10.0, month_spent=8.0), 5.0, "embedops sync")
    assert "--max-cost 2" in (caught.value.hint or "") and caught.value.exit_code == 4
    check_start(Limits(monthly_usd=10.0, month_spent=8.0, max_cost=2.0), 5.0, "embedops sync")
    check_start(Limits(max_cost=1.0), 5.0, "embedops sync")  # a run cap alone: run until it is reached
    with pytest.raises(BudgetExceeded, match="monthly budget has \\$0 left"):
        check_start(Limits(monthly_usd=10.0, month_spent=10.0, max_cost=1.0), 0.5, "embedops sync")
    guard = Guard(Limits(max_cost=1.0, monthly_usd=10.0, month_spent=9.5), "x")
    assert guard.cap == 0.5 and not guard.reached(0.4) and guard.reached(0.5)


def test_budget_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="monthly_usd"):
        BudgetSettings.from_toml({"monthly_usd": "lots"})
    with pytest.raises(ConfigError, match="unknown setting"):
        BudgetSettings.from_toml({"monthly": 5})
    with pytest.raises(ConfigError, match="prices"):
        BudgetSettings.from_toml({"prices": {"hashing": -1}})


def test_a_version_11_catalog_gets_the_spend_table(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'v11.db'}")
    with engine.begin() as conn:
        schema.metadata.create_all(conn, tables=[t for t in schema.metadata.sorted_tables if t.name != "spend"])
        conn.execute(sa.insert(schema.meta).values(key="schema_version", value="11"))
    assert ensure_schema(engine) == schema.SCHEMA_VERSION
    with engine.connect() as conn:
        assert sa.inspect(conn).has_table("spend")
        assert 12 in [r["details"]["schema_version"] for r in read_ledger(conn, kind_prefix="catalog.upgrade")]


# -- sync ------------------------------------------------------------------------------------------
def test_sync_records_its_tokens_and_cost_with_each_batch_and_the_cache_saves_the_rest(ws: Workspace) -> None:
    priced(ws)
    plan = ws.sync(plan_only=True)
    result = ws.sync()
    rows = [r for r in spend_rows(ws) if r["kind"] == "sync"]
    with ws.engine.connect() as conn:
        batches = {r["id"]: r for r in read_ledger(conn, kind_prefix="sync.batch")}
        [created] = read_ledger(conn, kind_prefix="index.create")
    assert {r["ledger_id"] for r in rows} <= set(batches) and {r["job"] for r in rows} == {result.job}
    [sentinels] = [r for r in spend_rows(ws) if r["kind"] == "fingerprint"]  # the new index's fingerprint
    assert sentinels["ledger_id"] == created["id"] and sentinels["tokens"] > 0
    tokens = chunk_tokens(ws)
    assert sum(r["tokens"] for r in rows) == tokens == plan.estimated_tokens  # type: ignore[misc]
    assert all(r["estimated_tokens"] == r["tokens"] and r["requests"] == 0 for r in rows)  # counted, not reported
    assert result.spend is not None and result.spend["cost"] == pytest.approx(tokens * PRICE / 1e6)
    assert plan.estimated_cost == pytest.approx(tokens * PRICE / 1e6)
    # A copy of a document: its chunks are in the cache, so nothing is embedded and the saving is recorded.
    docs = Path(ws.settings.sources["docs"].path)
    original = min(docs.rglob("*.md"))
    (docs / "copy.md").write_text(original.read_text())
    again = ws.sync()
    assert again.counts.embedded == 0 and again.spend is not None
    assert again.spend["tokens"] == 0 and again.spend["cache_hits"] >= 1 and again.spend["cache_saved_cost"] > 0
    assert ws.sync().spend == {**again.spend, **{k: 0 for k in again.spend if k not in ("rows", "first_at", "last_at")},
                               "rows": 0, "first_at": None, "last_at": None}  # a no-op sync spends nothing


def test_max_cost_stops_the_sync_cleanly_and_the_next_sync_resumes_without_embedding_twice(
    ws: Workspace, tmp_path: Path
) -> None:
    priced(ws, batch_size=4)
    estimate = ws.sync(plan_only=True).estimated_cost
    assert estimate
    cap = estimate / 3
    with pytest.raises(BudgetExceeded, match="stopped") as caught:
        ws.sync(max_cost=cap)
    stop = caught.value.details
    with ws.engine.connect() as conn:
        ledger = read_ledger(conn, kind_prefix="sync.")
    assert ledger[0]["kind"] == "sync.budget_stopped" and ledger[0]["details"]["remaining_documents"] > 0
    synced = [float(r["cost"]) for r in spend_rows(ws) if r["kind"] == "sync"]
    first, batch = sum(synced), max(synced)
    assert cap <= first <= cap + batch and stop["spent"] == pytest.approx(first)  # the cap plus the batch in flight
    assert 0 < stop["result"]["added"] < 30
    check_invariant_2(ws)  # committed batches are whole
    done = ws.sync(max_cost=estimate * 2)
    assert done.counts.added == 30 - stop["result"]["added"]
    check_invariant_2(ws)
    total = sum(int(r["tokens"]) for r in spend_rows(ws) if r["kind"] == "sync")
    assert total == chunk_tokens(ws)  # no chunk was embedded twice


def test_the_monthly_budget_refuses_a_sync_it_cannot_pay_for_and_changes_nothing(ws: Workspace) -> None:
    priced(ws, monthly=0.01)  # the new index's sentinels cost ~0.0085 of it
    ws.settings.monitor.verify_model = False  # no sentinel check before each sync: only syncs spend from here
    with pytest.raises(BudgetExceeded, match="monthly budget") as caught:
        ws.sync()
    left = caught.value.details["month_left"]
    assert 0 < left <= 0.01 and f"--max-cost {left:.6g}" in (caught.value.hint or "")
    assert ws.status()["documents"] == 0 and [r for r in spend_rows(ws) if r["kind"] == "sync"] == []
    left = ws.budget_limits().month_left  # less the sentinels of the index that sync created
    assert left is not None and 0 < left < 0.01
    with pytest.raises(BudgetExceeded, match="monthly budget"):
        ws.sync(max_cost=left * 2)  # a cap above what is left does not make the sync affordable
    with pytest.raises(BudgetExceeded, match="stopped"):  # what is left, spent on purpose
        ws.sync(max_cost=left)
    assert 0 < ws.status()["documents"] < 30
    priced(ws, monthly=ws.budget_limits().month_spent)  # the month's budget is spent
    with pytest.raises(BudgetExceeded, match=r"\$0 left"):
        ws.sync(max_cost=1.0)


def test_a_budget_needs_a_price_for_every_embedder(tmp_path: Path) -> None:
    import tomli_w

    root = tmp_path / "ws"
    root.mkdir()
    (root / "embedops.toml").write_text(tomli_w.dumps({"embedders": {"remote": {
        "kind": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1", "dimensions": 8}}}))
    # Nothing listens there: the refusal comes before any request.
    with Workspace.init(root, embedder="remote") as ws, \
            pytest.raises(ConfigError, match=r"price_per_million_tokens in \[embedders.remote\]"):
        ws.sync(max_cost=1.0)


# -- backfill --------------------------------------------------------------------------------------
def test_backfill_stops_at_its_cap_and_resumes(ws: Workspace) -> None:
    ws.sync()
    ws.settings.budget = BudgetSettings(None, {"hashing:dims=128": PRICE})
    ws.settings.batch_size = 8
    m = migrator(ws)
    m.start("hashing:dims=128")
    plan = m.backfill(plan_only=True)
    assert plan.estimated_cost and plan.estimated_cost > 0
    with pytest.raises(BudgetExceeded, match="backfill stopped") as caught:
        m.backfill(max_cost=plan.estimated_cost / 4)
    assert caught.value.details["remaining_chunks"] > 0
    with ws.engine.connect() as conn:
        assert read_ledger(conn, kind_prefix="migrate.backfill_stopped")[0]["details"]["reason"] == "budget"
    done = m.backfill(max_cost=plan.estimated_cost * 2)
    assert done.remaining == 0
    check_invariant_2(ws)
    kinds = {r["kind"] for r in spend_rows(ws)}  # the gate measured at the end embeds its queries (eval)
    assert {"sync", "backfill"} <= kinds <= {"sync", "backfill", "fingerprint", "eval"}


# -- the command -----------------------------------------------------------------------------------
def test_spend_command_groups_and_exits_4_when_a_budget_stops_a_sync(tmp_path: Path) -> None:
    runner = CliRunner()
    write_corpus(tmp_path / "docs", 12)
    root = tmp_path / "ws"
    assert runner.invoke(app, ["init", str(root), "--embedder", "hashing"]).exit_code == 0
    with open(root / "embedops.toml", "a") as f:
        f.write("\n[budget.prices]\nhashing = 20.0\n")
    w = ["--workspace", str(root)]
    assert runner.invoke(app, ["source", "add", "docs", str(tmp_path / "docs"), *w]).exit_code == 0
    plan = json.loads(runner.invoke(app, ["sync", "--plan", "--json", *w]).stdout)
    assert plan["estimated_cost"] > 0 and plan["estimated_tokens"] > 0
    from_toml = {"price_per_million_tokens": 20.0, "price_source": "embedops.toml [budget.prices]"}
    assert plan["prices"] == {"hashing": from_toml}
    (root / "embedops.toml").write_text((root / "embedops.toml").read_text().replace("batch_size = 256", "batch_size = 2"))
    stopped = runner.invoke(app, ["sync", "--max-cost", str(plan["estimated_cost"] / 2), "--json", *w])
    assert stopped.exit_code == 4, stopped.output
    assert json.loads(stopped.stdout)["error"] == "BudgetExceeded"
    assert runner.invoke(app, ["sync", *w]).exit_code == 0
    by_job = json.loads(runner.invoke(app, ["spend", "--by", "job", "--json", *w]).stdout)
    syncs = [r for r in by_job["rows"] if r["kind"] == "sync"]
    assert len(syncs) == 2 and sum(r["tokens"] for r in syncs) == plan["estimated_tokens"]  # nothing embedded twice
    assert sum(r["cost"] for r in syncs) == pytest.approx(plan["estimated_cost"])
    by_kind = {r["kind"]: r for r in json.loads(runner.invoke(app, ["spend", "--by", "kind", "--json", *w]).stdout)["rows"]}
    assert by_kind["sync"]["tokens"] == plan["estimated_tokens"] and by_kind["fingerprint"]["tokens"] > 0
    for by in ("space", "day", "source", "kind"):
        data = json.loads(runner.invoke(app, ["spend", "--by", by, "--since", "1d", "--json", *w]).stdout)
        assert sum(r["tokens"] for r in data["rows"]) == by_job["total"]["tokens"], by
    assert runner.invoke(app, ["spend", "--by", "week", *w]).exit_code == 1
    assert by_job["prices"] == {"hashing": from_toml}  # the price now in effect, and where it comes from
    table = runner.invoke(app, ["spend", "--by", "source", *w])
    assert table.exit_code == 0 and "docs" in table.stdout and "total" in table.stdout
    assert "prices now: hashing $20/M tokens (embedops.toml [budget.prices])" in table.stdout


def test_sync_and_migrate_plans_say_a_default_list_price_is_used_and_its_date(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No request goes out: with ``dimensions`` set, planning builds the HTTP embedder without calling it (and
    nothing listens at the self-hosted URL)."""
    import tomli_w

    runner = CliRunner()
    monkeypatch.setenv("EMBEDOPS_TEST_OAI_KEY", "sk-test-not-a-key")
    oai = {"kind": "openai", "model": "text-embedding-3-small", "api_key_env": "EMBEDOPS_TEST_OAI_KEY",
           "dimensions": 512, "tokenizer": "bert-base-uncased"}
    sections = {"oai": oai, "own": {**oai, "base_url": "http://127.0.0.1:9/v1"}}  # same model, self-hosted
    write_corpus(tmp_path / "docs", 6)
    listed = {"price_per_million_tokens": 0.02, "price_source": f"default list price ({LIST_PRICES_CHECKED})"}
    for name, embedder in (("first", "oai"), ("local", "hashing")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "embedops.toml").write_text(tomli_w.dumps({"embedders": sections}))
        assert runner.invoke(app, ["init", str(tmp_path / name), "--embedder", embedder]).exit_code == 0
        assert runner.invoke(app, ["source", "add", "docs", str(tmp_path / "docs"),
                                   "--workspace", str(tmp_path / name)]).exit_code == 0
    w = ["--workspace", str(tmp_path / "first")]
    plan = json.loads(runner.invoke(app, ["sync", "--plan", "--json", *w]).stdout)
    assert plan["prices"] == {"oai": listed}
    assert plan["estimated_tokens"] > 0
    assert plan["estimated_cost"] == round(plan["estimated_tokens"] * 0.02 / 1e6, 8)
    shown = runner.invoke(app, ["sync", "--plan", *w])
    assert "oai $0.02/M tokens (default list price (2025-06))" in " ".join(shown.stdout.split())
    # The workspace's own price wins over the list price, and says where it comes from.
    with open(tmp_path / "first" / "embedops.toml", "a") as f:
        f.write("\n[budget.prices]\noai = 0.5\n")
    repriced = json.loads(runner.invoke(app, ["sync", "--plan", "--json", *w]).stdout)
    assert repriced["prices"]["oai"] == {"price_per_million_tokens": 0.5, "price_source": "embedops.toml [budget.prices]"}

    w = ["--workspace", str(tmp_path / "local")]
    assert runner.invoke(app, ["sync", *w]).exit_code == 0  # the in-process model embeds everything
    to_oai = json.loads(runner.invoke(app, ["migrate", "plan", "--to", "oai", "--json", *w]).stdout)
    assert to_oai["price_source"] == listed["price_source"] and to_oai["tokens_to_embed"] > 0
    assert to_oai["estimated_cost"] == round(to_oai["tokens_to_embed"] * 0.02 / 1e6, 8)
    to_own = json.loads(runner.invoke(app, ["migrate", "plan", "--to", "own", "--json", *w]).stdout)
    assert to_own["price_source"] == "unknown" and to_own["estimated_cost"] is None
    table = runner.invoke(app, ["migrate", "plan", "--to", "oai", *w])
    assert table.exit_code == 0 and "default list price (2025-06)" in table.stdout


# -- the query path --------------------------------------------------------------------------------
def test_queries_go_through_a_bounded_cache_and_their_spend_is_flushed_with_a_ledger_row(ws: Workspace) -> None:
    priced(ws)
    ws.sync()
    ws.searcher.queries.capacity = 2
    for q in ("cell membrane", "cell membrane", "galaxy orbit", "star dust", "cell membrane"):
        assert ws.search(q, k=3)
    [(key, stats)] = ws.searcher.queries.snapshot().items()
    assert key == ws.searcher.resolve("prod").space_key
    # The 2nd "cell membrane" is a hit; the 5th was evicted by two newer queries (capacity 2) and embedded again.
    assert (stats.texts, stats.cache_hits, stats.calls, stats.errors) == (5, 1, 4, 0)
    assert stats.spend.tokens > 0 and stats.spend.cost == pytest.approx(stats.spend.tokens * PRICE / 1e6)
    assert sum(stats.latency) == 4 and stats.latency_sum > 0
    assert ws.flush_query_spend() == 1
    [row] = [r for r in spend_rows(ws) if r["kind"] == "query"]
    assert row["tokens"] == stats.spend.tokens and row["cache_hits"] == 1 and row["cache_saved_tokens"] > 0
    with ws.engine.connect() as conn:
        assert read_ledger(conn, kind_prefix="query.spend")[0]["id"] == row["ledger_id"]
    assert ws.flush_query_spend() == 0  # nothing new: no row, no ledger entry


def test_eval_queries_are_eval_spend_and_remembered(ws: Workspace, tmp_path: Path) -> None:
    from embedops.search.modes import embed_queries_remembered

    priced(ws)
    ws.sync()
    index = ws.searcher.resolve("prod")
    embed_queries_remembered(ws.searcher, index, ["cell membrane", "galaxy orbit"])
    embed_queries_remembered(ws.searcher, index, ["cell membrane", "galaxy orbit", "star dust"])
    rows = [r for r in spend_rows(ws) if r["kind"] == "eval"]
    assert len(rows) == 2 and rows[1]["cache_hits"] == 2  # the second run embedded only the new query
    assert rows[1]["tokens"] == ws.embedder("hashing").count_tokens("star dust")


def test_metrics_show_query_latency_errors_and_spend(tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from embedops.server import ServerConfig, create_app

    with Workspace.init(tmp_path / "ws", embedder="hashing") as ws:
        priced(ws)
        ws.add_source("docs", corpus)
        ws.sync()
    monkeypatch.setenv("EMBEDOPS_TOKEN", "t")
    with TestClient(create_app(tmp_path / "ws", ServerConfig())) as client:
        assert client.get("/search", params={"query": "cell membrane"}).status_code == 200
        assert client.get("/search", params={"query": "cell membrane"}).status_code == 200
        text = client.get("/metrics").text
    assert 'embedops_query_embed_seconds_count{embedder="hashing"' in text
    assert 'embedops_query_cache_hits_total{embedder="hashing"' in text and "embedops_query_embed_errors_total" in text
    hits = next(line for line in text.splitlines() if line.startswith("embedops_query_cache_hits_total"))
    assert hits.endswith(" 1.0")
    assert 'embedops_spend_usd_total{kind="sync"' in text and "embedops_query_cost_usd_total" in text


def test_eval_queries_over_the_cap_are_refused_before_anything_is_embedded(ws: Workspace) -> None:
    from embedops.search.modes import embed_queries_remembered

    priced(ws)
    ws.sync()
    index = ws.searcher.resolve("prod")
    queries = ["cell membrane", "galaxy orbit", "star dust"]
    cost = sum(ws.embedder("hashing").count_tokens(q) for q in queries) * PRICE / 1e6
    with pytest.raises(BudgetExceeded, match="more than its cap"):
        embed_queries_remembered(ws.searcher, index, queries, limits=Limits(max_cost=cost / 2))
    assert [r for r in spend_rows(ws) if r["kind"] == "eval"] == []
    embed_queries_remembered(ws.searcher, index, queries, limits=Limits(max_cost=cost * 1.01))
    [row] = [r for r in spend_rows(ws) if r["kind"] == "eval"]
    assert row["cost"] == pytest.approx(cost)


def test_a_spent_cap_still_lets_through_what_costs_nothing(ws: Workspace) -> None:
    priced(ws)
    ws.sync()
    docs = Path(ws.settings.sources["docs"].path)
    (docs / "copy.md").write_text(min(docs.rglob("*.md")).read_text())  # every chunk is in the cache
    assert ws.sync(max_cost=0.0).counts.added == 1
    (docs / "new.md").write_text("# New\n\nA text about lighthouses and their keepers, never seen before.\n")
    with pytest.raises(BudgetExceeded, match="stopped"):
        ws.sync(max_cost=0.0)
    assert ws.status()["documents"] == 31
