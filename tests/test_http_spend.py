"""Spend through a real provider: tokens as infinity's ``usage`` reports them, budgets that stop and resume.

The provider is a real infinity server behind ``FaultProxy`` (tests/http_doubles.py,
the test double of the network), which sums the ``usage`` of every answer the
client received. SQLite only: the provider path is what is under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from embedops.catalog import schema
from embedops.catalog.ledger import read_ledger
from embedops.embedding.fingerprint import SENTINELS
from embedops.embedding.spend import LIST_PRICE_SOURCE, LIST_PRICES
from embedops.errors import BudgetExceeded, ConfigError
from embedops.monitor.fingerprint import check_models
from embedops.workspace import Workspace
from tests.conftest import write_corpus
from tests.http_doubles import SERVED_MODEL, FaultProxy
from tests.test_http_sync import http_workspace, invoke
from tests.test_workspace import check_invariant_2

PRICE = 0.02  # USD per million tokens: what a small hosted model costs


def totals(ws: Workspace) -> dict[str, int]:
    s = schema.spend
    with ws.engine.connect() as conn:
        row = conn.execute(sa.select(sa.func.sum(s.c.requests), sa.func.sum(s.c.tokens),
                                     sa.func.sum(s.c.estimated_tokens))).one()
    return {"requests": int(row[0] or 0), "tokens": int(row[1] or 0), "estimated": int(row[2] or 0)}


def test_spend_equals_the_providers_usage_and_a_cap_stops_and_resumes_without_embedding_twice(
    tmp_path: Path, fault_proxy: FaultProxy
) -> None:
    # dimensions given: no probe request outside a job; every request the server answers is in the spend.
    with http_workspace(tmp_path, fault_proxy.url, docs=40, dimensions=384, price_per_million_tokens=PRICE) as ws:
        ws.settings.batch_size = 5
        plan = ws.sync(plan_only=True)
        assert plan.estimated_cost is not None and plan.estimated_tokens
        cap = plan.estimated_cost / 2
        with pytest.raises(BudgetExceeded) as caught:
            ws.sync(max_cost=cap)
        first = caught.value.details["spent"]
        with ws.engine.connect() as conn:
            batch_costs = [float(c) for c in conn.execute(sa.select(schema.spend.c.cost).where(
                schema.spend.c.kind == "sync")).scalars()]
            stopped = read_ledger(conn, kind_prefix="sync.budget_stopped")
        assert cap <= first <= cap + 2 * max(batch_costs)  # the cap, plus at most the batch in flight
        assert stopped and stopped[0]["details"]["remaining_documents"] > 0
        done = ws.sync(max_cost=plan.estimated_cost * 2)
        assert done.counts.added + caught.value.details["result"]["added"] == 40
        check_invariant_2(ws)
        spent = totals(ws)
        assert spent["requests"] == fault_proxy.stats.delivered_ok  # every answered request is in the spend
        assert spent["tokens"] == fault_proxy.stats.delivered_tokens and spent["estimated"] == 0
        sent = [t for body in fault_proxy.stats.bodies for t in body["input"] if t not in SENTINELS]
        assert len(sent) == len(set(sent)) == plan.chunks_to_embed  # no chunk was embedded twice
        check_models(ws)  # the monitor's check is spend too, with its ledger row
        assert totals(ws)["tokens"] == fault_proxy.stats.delivered_tokens


def bert_token_count(texts: list[str]) -> int:
    """Tokens of ``texts`` with the BERT uncased tokenizer (special tokens included), read here on its own."""
    from tokenizers import Tokenizer

    from embedops.embedding.onnx import bert_uncased_tokenizer

    tokenizer = Tokenizer.from_file(str(bert_uncased_tokenizer()))
    tokenizer.no_padding()  # the shipped file pads to 128 and truncates there
    tokenizer.no_truncation()
    return sum(len(tokenizer.encode(t).ids) for t in texts)


def test_a_response_without_usage_is_counted_with_the_tokenizer_and_marked_estimated(
    tmp_path: Path, fault_proxy: FaultProxy
) -> None:
    with http_workspace(tmp_path, fault_proxy.url, docs=12, dimensions=384, price_per_million_tokens=PRICE) as ws:
        ws.sync()  # the server reports usage: its count, nothing estimated
        reported = totals(ws)
        assert reported["tokens"] == fault_proxy.stats.delivered_tokens > 0 and reported["estimated"] == 0
        fault_proxy.set(strip_usage=True)
        write_corpus(tmp_path / "docs" / "more", 6, seed=1)
        assert ws.sync().counts.added == 6
        after = {k: v - reported[k] for k, v in totals(ws).items()}
    sent = [t for body in fault_proxy.stats.bodies for t in body["input"]]
    assert sent and fault_proxy.stats.usage_stripped == len(fault_proxy.stats.bodies) == after["requests"]
    counted = bert_token_count(sent)  # the section's tokenizer is "bert-base-uncased"
    assert after["tokens"] == after["estimated"] == counted
    with ws.engine.connect() as conn:
        cost = float(conn.execute(sa.select(sa.func.sum(schema.spend.c.cost)).where(
            schema.spend.c.estimated_tokens > 0)).scalar_one())
    assert cost == pytest.approx(counted * PRICE / 1e6)


def test_a_default_list_price_is_charged_and_labelled_where_no_price_is_set(
    tmp_path: Path, fault_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The shipped table names hosted APIs that cannot be reached from here: the proxy's loopback host and the
    # served model stand in for one entry. The section sets no price.
    monkeypatch.setitem(LIST_PRICES, (fault_proxy.url.removeprefix("http://"), SERVED_MODEL), PRICE)
    listed = {"price_per_million_tokens": PRICE, "price_source": LIST_PRICE_SOURCE}
    with http_workspace(tmp_path, fault_proxy.url, docs=8, dimensions=384) as ws:
        plan = ws.sync(plan_only=True)
        assert plan.prices == {"inf": listed}
        assert plan.estimated_tokens and plan.estimated_cost == round(plan.estimated_tokens * PRICE / 1e6, 8)
        done = ws.sync(max_cost=1.0)  # a budget can be kept: the price is known
        assert done.to_dict()["prices"] == {"inf": listed}
    code, out = invoke("spend", "--json", "--workspace", str(tmp_path / "ws"))
    report = json.loads(out)
    assert code == 0 and report["prices"] == {"inf": listed}
    assert report["total"]["tokens"] == fault_proxy.stats.delivered_tokens
    assert report["total"]["cost"] == pytest.approx(report["total"]["tokens"] * PRICE / 1e6)
    code, out = invoke("spend", "--workspace", str(tmp_path / "ws"))
    assert code == 0 and f"({LIST_PRICE_SOURCE})" in out
    # Without the entry (a self-hosted server of that model name), the price is unknown and a budget refuses.
    monkeypatch.delitem(LIST_PRICES, (fault_proxy.url.removeprefix("http://"), SERVED_MODEL))
    with Workspace.open(tmp_path / "ws") as ws:
        assert ws.settings.pricing("inf").per_million is None
        with pytest.raises(ConfigError, match="have no price"):
            ws.sync(max_cost=1.0)
