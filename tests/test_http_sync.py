"""HTTP embedders in a workspace: configuration, init, sync and migrations through a faulty network.

The provider is a real infinity server; ``FaultProxy`` (tests/http_doubles.py) is
the test double of the network in front of it. Each workspace is SQLite: what is
under test is the provider path, which is the same for every catalog backend.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import tomli_w
from typer.testing import CliRunner

from embedops.catalog import schema
from embedops.cli import app
from embedops.errors import ConfigError, EmbedderNotFound, GateFailed, ProviderUnavailable
from embedops.embedding.http import OpenAIEmbedder
from embedops.compose import migrator
from embedops.embedding.fingerprint import SENTINELS
from embedops.monitor.fingerprint import ModelChanged, check_models, forget_verifications
from embedops.workspace import Workspace
from tests.conftest import write_corpus
from tests.http_doubles import SERVED_MODEL, FaultProxy
from tests.test_http_embedder import assert_retries_match
from tests.test_workspace import check_invariant_2

runner = CliRunner()
# Faults quick to wait out (429s ask for 50 ms). Timeouts are the embedder tests' business: here the
# timeout is long, so that a busy machine's slow answers are not abandoned (and billed unseen).
FAULTY = {"rate_429": 0.15, "retry_after": "1", "retry_after_ms": 50, "rate_500": 0.08, "rate_drop": 0.03,
          "rate_short": 0.05, "seed": 7}


def section(url: str, **over: Any) -> dict[str, Any]:
    return {"kind": "openai", "model": SERVED_MODEL, "base_url": url, "tokenizer": "bert-base-uncased",
            "max_batch_size": 8, "max_concurrency": 2, "timeout": 60.0, "max_retries": 10, **over}


def http_workspace(tmp_path: Path, url: str, *, docs: int = 30, embedder: str = "inf", **over: Any) -> Workspace:
    """A workspace whose embedops.toml was written by hand with [embedders.inf], then `init --embedder`."""
    root = tmp_path / "ws"
    root.mkdir()
    (root / "embedops.toml").write_text(tomli_w.dumps({"embedders": {"inf": section(url, **over)}}))
    ws = Workspace.init(root, embedder=embedder)
    ws.add_source("docs", write_corpus(tmp_path / "docs", docs) and tmp_path / "docs")
    return ws


def usage_of(ws: Workspace) -> Any:
    embedder = ws.embedder("inf")
    assert isinstance(embedder, OpenAIEmbedder)
    return embedder.usage


def test_sync_through_a_faulty_provider_leaves_exactly_one_vector_per_live_chunk(tmp_path: Path,
                                                                                fault_proxy: FaultProxy) -> None:
    with http_workspace(tmp_path, fault_proxy.url) as ws:
        before = usage_of(ws)  # built now: its one request to measure the dimension is not the sync's
        fault_proxy.set(**FAULTY)
        result = ws.sync()
        spent = usage_of(ws) - before
        check_invariant_2(ws)
        status = ws.status()
        assert result.counts.added == 30 and not result.counts.skipped
        assert status["indexes"][0]["vectors"] == status["chunks"] > 30
        injected = fault_proxy.stats.injected
        assert sum(injected.values()) > 0
        assert_retries_match(spent, injected)
        assert spent.tokens == fault_proxy.stats.delivered_tokens
        assert ws.search("protein membrane enzyme", k=3)  # queries go through the same provider
        fault_proxy.set()
        again = ws.sync()
        assert again.counts.embedded == 0
        # Only the sentinel check before the sync went out: nothing was embedded twice.
        assert [len(b["input"]) for b in fault_proxy.stats.bodies] in ([17], [8, 8, 1])


@pytest.mark.parametrize("change", ["requantize", pytest.param("swap", marks=pytest.mark.slow)])
def test_a_model_changed_behind_the_same_name_is_refused_before_it_mixes_spaces(
    tmp_path: Path, fault_proxy: FaultProxy, change: str
) -> None:
    with http_workspace(tmp_path, fault_proxy.url, docs=6) as ws:
        ws.sync()
        vectors = ws.status()["indexes"][0]["vectors"]
        fault_proxy.set(perturb=change)
        (tmp_path / "docs" / "sub0" / "doc000.md").write_text("# New\n\nA brand new text about galaxies.\n")
        with pytest.raises(ModelChanged, match="no longer makes the vectors"):
            ws.sync()
        assert ws.status()["indexes"][0]["vectors"] == vectors  # nothing written in the new space
        forget_verifications()  # as a new process would: its first query checks the model
        with pytest.raises(ModelChanged):
            ws.search("galaxies", k=1)
        [check] = check_models(ws)
        assert not check.same and check.sentinel_min_cosine < ws.settings.monitor.fingerprint_min_cosine
        fault_proxy.set()
        forget_verifications()
        assert ws.sync().counts.updated == 1  # the provider restored: the sync proceeds


def test_a_refused_chunk_skips_its_document_and_the_rest_syncs(tmp_path: Path, fault_proxy: FaultProxy) -> None:
    fault_proxy.set(reject_marker="poison")
    with http_workspace(tmp_path, fault_proxy.url, docs=12) as ws:
        bad = tmp_path / "docs" / "bad.md"
        bad.write_text("# Bad\n\nThis chunk carries poison for the provider.\n")
        result = ws.sync()
        assert [s.external_id for s in result.counts.skipped] == ["bad.md"]
        assert "maximum context length" in result.counts.skipped[0].reason
        assert result.counts.added == 12
        check_invariant_2(ws)
        recorded = ws.history(kind="sync.source")[0]["details"]
        assert recorded["skipped"][0]["id"] == "bad.md"
        bad.write_text("# Bad\n\nThis chunk is fine now.\n")
        assert ws.sync().counts.added == 1
        check_invariant_2(ws)


def test_a_provider_that_stays_down_stops_the_sync_which_resumes_later(tmp_path: Path, fault_proxy: FaultProxy) -> None:
    # The sentinel check and the first batches get through, then every request fails.
    fault_proxy.set(script=("ok",) * 6, rate_500=1.0)
    with http_workspace(tmp_path, fault_proxy.url, docs=40, max_retries=1, max_concurrency=1) as ws:
        ws.settings.batch_size = 5
        with pytest.raises(ProviderUnavailable, match="500 after 1 retries"):
            ws.sync()
        failed = ws.history(kind="sync.provider_failed")
        assert failed and "run the command again" in failed[0]["details"]["hint"]
        committed = sum(r["details"]["embedded"] for r in ws.history(kind="sync.batch"))
        assert committed > 0 and ws.status()["documents"] < 40
        fault_proxy.set()
        resumed = ws.sync()
        check_invariant_2(ws)
        with ws.engine.connect() as conn:
            distinct = conn.execute(sa.select(sa.func.count()).select_from(schema.embeddings)).scalar_one()
        assert committed + resumed.counts.embedded == distinct  # no chunk embedded twice


def test_the_api_key_is_read_from_the_environment_and_written_nowhere(
    tmp_path: Path, fault_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "sk-live-never-stored-0123456789"
    monkeypatch.setenv("EMBEDOPS_TEST_INF_KEY", key)
    fault_proxy.set(require_key=key)
    with http_workspace(tmp_path, fault_proxy.url, docs=5, api_key_env="EMBEDOPS_TEST_INF_KEY") as ws:
        ws.sync()
        history = json.dumps(ws.history())
    assert set(fault_proxy.stats.authorizations) == {f"Bearer {key}"}
    assert key not in history
    for path in (tmp_path / "ws").rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), f"the API key was written to {path}"


def test_migrate_from_a_local_model_to_an_http_one(tmp_path: Path, fault_proxy: FaultProxy) -> None:
    with http_workspace(tmp_path, fault_proxy.url, docs=10, embedder="hashing") as ws:
        ws.sync()
        fault_proxy.set(**FAULTY)
        m = migrator(ws)
        m.start("inf")
        m.backfill()
        m.cutover()
        assert ws.settings.embedder == "inf"
        check_invariant_2(ws)
        hit = ws.search("cell protein", k=1)[0]
        assert hit.tags["space"].startswith(f"openai:{SERVED_MODEL}@127.0.0.1:")


@pytest.mark.slow
def test_a_backfill_writes_all_but_the_refused_chunk_and_the_gate_sees_the_gap(tmp_path: Path,
                                                                              fault_proxy: FaultProxy) -> None:
    with http_workspace(tmp_path, fault_proxy.url, docs=8, embedder="hashing") as ws:
        (tmp_path / "docs" / "bad.md").write_text("# Bad\n\nThis chunk carries poison for the provider.\n")
        ws.sync()  # the local model embeds everything
        fault_proxy.set(reject_marker="poison")
        m = migrator(ws)
        m.start("inf")
        m.backfill()
        refused = [r for row in ws.history(kind="migrate.backfill") for r in row["details"].get("rejected", [])]
        assert len(refused) == 1 and "maximum context length" in refused[0]["reason"]
        status = m.status()
        assert status.total - status.done == 1  # every other chunk has its vector
        with pytest.raises(GateFailed, match="completeness"):
            m.cutover()


@pytest.mark.slow
def test_migrate_plan_prices_the_move_to_an_http_model(tmp_path: Path, fault_proxy: FaultProxy) -> None:
    with http_workspace(tmp_path, fault_proxy.url, docs=6, embedder="hashing", price_per_million_tokens=1000.0) as ws:
        ws.sync()
        plan = migrator(ws).plan("inf")
        assert plan.facts.tokens_to_embed > 0
        assert plan.estimated_cost == round(plan.facts.tokens_to_embed / 1_000_000 * 1000.0, 8)


# Ten documents on distinct topics and six questions about them (some with two relevant documents).
EVAL_DOCS = [
    "Photosynthesis converts light energy into chemical energy in the chloroplasts of plant cells.",
    "Mitochondria produce ATP through cellular respiration; they are the powerhouse of the cell.",
    "The French Revolution began in 1789 with the storming of the Bastille in Paris.",
    "Volcanoes erupt when magma from the mantle rises through cracks in the Earth's crust.",
    "Black holes are regions of spacetime where gravity is so strong that not even light escapes.",
    "Sourdough bread is leavened with a fermented starter of wild yeast and lactic acid bacteria.",
    "Vaccines train the immune system to recognise a pathogen without causing the disease.",
    "The Great Wall of China was built over centuries to protect against invasions from the north.",
    "Plate tectonics explains earthquakes as the movement of large slabs of the lithosphere.",
    "Neutron stars are the collapsed cores of massive stars left behind by a supernova explosion.",
]
EVAL_QUERIES = {"q0": ("how do plants make energy from sunlight", {"d0": 2, "d1": 1}),
                "q1": ("what causes earthquakes and eruptions", {"d3": 1, "d8": 2}),
                "q2": ("dead stars with extreme gravity", {"d4": 1, "d9": 2}),
                "q3": ("history of revolution in France", {"d2": 2}),
                "q4": ("how does immunisation protect people", {"d6": 2}),
                "q5": ("baking bread with natural yeast", {"d5": 2})}


def write_eval_beir(folder: Path) -> Path:
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "title": "", "text": text}) + "\n"
                                                 for i, text in enumerate(EVAL_DOCS)))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": text}) + "\n"
                                                  for q, (text, _) in EVAL_QUERIES.items()))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t{g}\n" for q, (_, judged) in EVAL_QUERIES.items() for d, g in judged.items()))
    return folder


def eval_run_ndcg(root: Path) -> float:
    w = ["--workspace", str(root)]
    code, out = invoke("eval", "import", "tiny", str(root.parent / "beir"), "--alias", "prod", *w)
    assert code == 0, out
    code, out = invoke("eval", "run", "tiny", "--json", *w)
    assert code == 0, out
    run = json.loads(out)
    assert run["queries"] == len(EVAL_QUERIES)
    return float(run["metrics"]["ndcg@10"])


def test_eval_run_through_an_http_embedder_scores_as_in_process_and_its_queries_are_eval_spend(
    tmp_path: Path, fault_proxy: FaultProxy
) -> None:
    beir = write_eval_beir(tmp_path / "beir")
    with Workspace.init(tmp_path / "local", embedder="minilm-l6") as ws:
        ws.add_source("corpus", beir, kind="beir")
        ws.sync()
    local = eval_run_ndcg(tmp_path / "local")
    (tmp_path / "http").mkdir()
    (tmp_path / "http" / "embedops.toml").write_text(tomli_w.dumps({"embedders": {"inf": section(
        fault_proxy.url, dimensions=384, price_per_million_tokens=0.02)}}))
    with Workspace.init(tmp_path / "http", embedder="inf") as ws:
        ws.add_source("corpus", beir, kind="beir")
        ws.sync()
        with ws.engine.connect() as conn:
            before = conn.execute(sa.select(sa.func.max(schema.spend.c.id))).scalar_one()
    fault_proxy.set()  # counters at 0: what follows is the eval run's
    remote = eval_run_ndcg(tmp_path / "http")
    assert local > 0.5 and abs(remote - local) <= 0.005, (remote, local)
    queries = {text for text, _ in EVAL_QUERIES.values()}
    sent = [t for body in fault_proxy.stats.bodies for t in body["input"] if t not in SENTINELS]
    assert sorted(sent) == sorted(queries)  # each query embedded once, through the provider
    with Workspace.open(tmp_path / "http") as ws, ws.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(schema.spend).where(schema.spend.c.id > before))]
        ledger = ws.history(kind="queries.embed")
    evals = [r for r in rows if r["kind"] == "eval"]
    assert len(evals) == 1 and len(ledger) == 1 and evals[0]["ledger_id"] == ledger[0]["id"]
    assert {r["kind"] for r in rows} <= {"eval", "fingerprint"}  # a model check before the first query, if any
    # The eval's tokens are the server's usage of the requests that carried the queries, priced.
    assert sum(r["tokens"] for r in rows) == fault_proxy.stats.delivered_tokens
    query_requests = [b for b in fault_proxy.stats.bodies if not set(b["input"]) <= set(SENTINELS)]
    assert evals[0]["tokens"] > 0 and evals[0]["estimated_tokens"] == 0 and evals[0]["requests"] == len(query_requests)
    assert evals[0]["cost"] == pytest.approx(evals[0]["tokens"] * 0.02 / 1e6)


# -- configuration and init (no network) ----------------------------------------------------------
def invoke(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_init_writes_a_section_for_openai_model(tmp_path: Path) -> None:
    code, out = invoke("init", str(tmp_path / "a"), "--embedder", "openai:text-embedding-3-small",
                       "--base-url", "http://127.0.0.1:9/v1", "--api-key-env", "MY_PROVIDER_KEY", "--json")
    assert code == 0, out
    assert json.loads(out)["embedder"] == "text-embedding-3-small"
    doc = tomllib.loads((tmp_path / "a" / "embedops.toml").read_text())
    assert doc["embedops"]["embedder"] == "text-embedding-3-small"
    assert doc["embedders"]["text-embedding-3-small"] == {"kind": "openai", "model": "text-embedding-3-small",
                                                         "base_url": "http://127.0.0.1:9/v1",
                                                         "api_key_env": "MY_PROVIDER_KEY"}
    code, out = invoke("init", str(tmp_path / "b"), "--embedder", "openai:text-embedding-3-large")
    assert code == 0, out
    written = tomllib.loads((tmp_path / "b" / "embedops.toml").read_text())["embedders"]["text-embedding-3-large"]
    assert written["base_url"] == "https://api.openai.com/v1" and written["api_key_env"] == "OPENAI_API_KEY"


def test_init_uses_a_section_written_by_hand_and_later_saves_keep_it(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    mine = {"kind": "openai", "model": "text-embedding-3-small", "base_url": "https://api.openai.com/v1",
            "api_key_env": "OPENAI_API_KEY", "dimensions": 512, "price_per_million_tokens": 0.02,
            "max_requests_per_minute": 3000, "max_tokens_per_minute": 1_000_000}
    (root / "embedops.toml").write_text(tomli_w.dumps({"embedders": {"oai-small": mine}}))
    code, out = invoke("init", str(root), "--embedder", "oai-small")
    assert code == 0, out
    with Workspace.open(root) as ws:
        ws.add_source("docs", write_corpus(tmp_path / "docs", 2) and tmp_path / "docs")  # rewrites embedops.toml
        assert ws.status()["embedder"] == "oai-small"
    assert tomllib.loads((root / "embedops.toml").read_text())["embedders"]["oai-small"] == mine
    code, out = invoke("init", str(root), "--embedder", "oai-small")
    assert code != 0 and "already exists" in out


@pytest.mark.parametrize("raw, message", [
    ({"api_key": "sk-abc"}, "api_key is not a setting"),
    ({"api_key_env": "sk-abc123-def"}, "NAME of an environment variable"),
    ({"base_url": "https://user:secret@api.example.com/v1"}, "carries credentials"),
    ({"base_url": "https://api.example.com/v1?api-key=abc"}, "carries credentials"),
    ({"base_url": "ftp://api.example.com"}, "http\\(s\\) URL"),
    ({"max_batch_size": 0}, "positive integer"),
    ({"timeout": "fast"}, "positive number"),
    ({"temperature": 1}, "unknown setting"),
    ({"kind": "cohere"}, "kind must be one of"),
])
def test_bad_sections_are_refused_with_the_fix(tmp_path: Path, raw: dict[str, Any], message: str) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    body = {"kind": "openai", "model": "m", **raw}
    (root / "embedops.toml").write_text(tomli_w.dumps({"embedders": {"oai": body}}))
    with pytest.raises(ConfigError, match=message) as err:
        Workspace.init(root, embedder="oai")
    assert "sk-abc" not in str(err.value)


def test_names_and_options_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "embedops.toml").write_text(tomli_w.dumps({"embedders": {"minilm-l6": {"kind": "openai", "model": "m"}}}))
    with pytest.raises(ConfigError, match="cannot name a configured embedder"):
        Workspace.init(root, embedder="minilm-l6")
    with pytest.raises(ConfigError, match="--base-url and --api-key-env"):
        Workspace.init(tmp_path / "other", embedder="hashing", base_url="http://127.0.0.1:9")
    with pytest.raises(EmbedderNotFound, match="openai:MODEL"):
        Workspace.init(tmp_path / "third", embedder="oai-small")
