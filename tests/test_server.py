"""The HTTP service on real SQLite workspaces (hashing embedder): every route, auth, limits, errors."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient

from embedops import commands
from embedops.errors import BadRecord, ConfigError, NotFound
from embedops.compose import migrator
from embedops.search.engine import Filters
from embedops.server import ServerConfig, create_app
from embedops.server.batch import Outcome, PushBatcher
from embedops.server.openapi import render
from embedops.sources.base import Document, Unchanged
from embedops.sources.push import PushSource
from embedops.sync.push import NotPushSource
from embedops.workspace import Workspace

TOKEN = "t0ken-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DOCS = Path(__file__).parents[1] / "docs"


@pytest.fixture
def root(tmp_path: Path, corpus: Path) -> Path:
    """A synced workspace: folder source `docs` (30 files) and an empty push source `events`."""
    with Workspace.init(tmp_path / "ws", embedder="hashing") as ws:
        ws.add_source("docs", corpus)
        ws.add_source("events", kind="push")
        ws.sync()
    return tmp_path / "ws"


def client_for(root: Path, monkeypatch: pytest.MonkeyPatch, token: str | None = TOKEN, **config: object) -> TestClient:
    if token is None:
        monkeypatch.delenv("EMBEDOPS_TOKEN", raising=False)
    else:
        monkeypatch.setenv("EMBEDOPS_TOKEN", token)
    return TestClient(create_app(root, ServerConfig(**config)), raise_server_exceptions=False)  # type: ignore[arg-type]


@pytest.fixture
def client(root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    with client_for(root, monkeypatch) as c:
        yield c


def error_of(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    body: dict[str, object] = response.json()
    assert set(body) >= {"error", "message", "hint", "request_id"}
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return body


# -- search --------------------------------------------------------------------------------
def test_search_get_and_post_return_the_cli_json_shape(client: TestClient, root: Path) -> None:
    expected = commands.search(root, query="cell protein membrane", k=5).to_list()
    got = client.get("/search", params={"query": "cell protein membrane", "k": 5})
    assert got.status_code == 200
    assert got.json() == expected and len(expected) == 5
    posted = client.post("/search", json={"query": "cell protein membrane", "k": 5})
    assert posted.json() == expected
    hit = expected[0]
    assert set(hit) >= {"document_id", "chunk_id", "score", "text", "span", "source", "metadata", "tags"}
    assert set(hit["tags"]) == {"space", "chunker", "embedded_at", "source_updated_at"}


def test_search_modes_and_filters(client: TestClient, root: Path) -> None:
    for mode in ("bm25", "hybrid"):
        expected = commands.search(root, query="galaxy orbit", k=3, mode=mode).to_list()
        assert client.get("/search", params={"query": "galaxy orbit", "k": 3, "mode": mode}).json() == expected
    doc = client.get("/search", params={"query": "cell", "k": 1}).json()[0]
    key, value = next(iter(doc["metadata"].items()))
    where = client.get("/search", params={"query": "cell", "k": 50, "where": f"{key}={value}"}).json()
    assert where and all(h["metadata"][key] == value for h in where)
    posted = client.post("/search", json={"query": "cell", "k": 50, "where": {key: value}}).json()
    assert posted == where
    assert client.get("/search", params={"query": "cell", "source": "events"}).json() == []
    future = client.post("/search", json={"query": "cell", "updated_after": "2999-01-01T00:00:00"})
    assert future.status_code == 200 and future.json() == []


def test_limits_are_4xx_that_say_what_was_wrong(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with client_for(root, monkeypatch, max_query_chars=40, max_body_bytes=2_000) as c:
        body = error_of(c.get("/search", params={"query": "cell", "k": 1001}), 422)
        assert "k" in str(body["message"]) and "1000" in str(body["message"])
        assert "k" in str(error_of(c.post("/search", json={"query": "cell", "k": 0}), 422)["message"])
        body = error_of(c.get("/search", params={"query": "x" * 41}), 422)
        assert "query" in str(body["message"]) and "40" in str(body["message"])
        assert "query" in str(error_of(c.post("/search", json={"query": "   "}), 422)["message"])
        assert "mode" in str(error_of(c.get("/search", params={"query": "a", "mode": "magic"}), 422)["message"])
        assert "where" in str(error_of(c.get("/search", params={"query": "a", "where": "no-equals"}), 422)["message"])
        error_of(c.post("/search", content=b"{not json", headers={"content-type": "application/json"}), 422)
        big = {"text": "word " * 1_000}
        body = error_of(c.put("/sources/events/documents/big", json=big, headers=AUTH), 413)
        assert "2,000 bytes" in str(body["message"]) and "--max-body-bytes" in str(body["hint"])
        chunked = c.put("/sources/events/documents/big", content=iter([b'{"text": "', b"w" * 3_000, b'"}']),
                        headers={**AUTH, "content-type": "application/json"})
        error_of(chunked, 413)
        assert c.put("/sources/events/documents/small", json={"text": "small one"}, headers=AUTH).status_code == 200


# -- auth -----------------------------------------------------------------------------------
def test_writes_need_the_token(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = {"text": "a pushed document"}
    with client_for(root, monkeypatch, token=None) as c:
        body = error_of(c.put("/sources/events/documents/a", json=doc, headers=AUTH), 503)
        assert "EMBEDOPS_TOKEN" in str(body["message"]) and "EMBEDOPS_TOKEN" in str(body["hint"])
        error_of(c.post("/sync"), 503)
        assert c.get("/search", params={"query": "cell"}).status_code == 200  # reads stay open by default
    with client_for(root, monkeypatch) as c:
        missing = c.put("/sources/events/documents/a", json=doc)
        assert "missing" in str(error_of(missing, 401)["message"])
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = c.put("/sources/events/documents/a", json=doc, headers={"Authorization": "Bearer nope"})
        assert "invalid" in str(error_of(wrong, 401)["message"])
        error_of(c.delete("/sources/events/documents/a", headers={"Authorization": f"Basic {TOKEN}"}), 401)
        assert c.put("/sources/events/documents/a", json=doc, headers=AUTH).json()["result"] == "added"


def test_auth_reads_and_a_token_from_another_env_var(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SERVICE_TOKEN", "other")
    with client_for(root, monkeypatch, auth_reads=True, token_env="MY_SERVICE_TOKEN") as c:
        error_of(c.get("/search", params={"query": "cell"}), 401)
        error_of(c.get("/status", headers=AUTH), 401)  # EMBEDOPS_TOKEN is not the configured variable
        assert c.get("/status", headers={"Authorization": "Bearer other"}).status_code == 200
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200  # probes stay open
    schema = create_app(root, ServerConfig(auth_reads=True)).openapi()
    assert schema["paths"]["/search"]["get"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in create_app(root).openapi()["paths"]["/search"]["get"]


# -- errors -----------------------------------------------------------------------------------
def test_errors_map_to_the_exception_class_status(client: TestClient) -> None:
    assert "alias 'nope'" in str(error_of(client.get("/search", params={"query": "a", "alias": "nope"}), 404)["message"])
    error_of(client.get("/search", params={"query": "a", "index": "ix99"}), 404)
    error_of(client.get("/migrations/status", params={"alias": "nope"}), 404)
    body = error_of(client.put("/sources/nope/documents/a", json={"text": "x"}, headers=AUTH), 404)
    assert body["error"] == NotFound.__name__
    body = error_of(client.put("/sources/docs/documents/a", json={"text": "x"}, headers=AUTH), 409)
    assert body["error"] == NotPushSource.__name__ and "push" in str(body["hint"])
    error_of(client.delete("/sources/events/documents/never-there", headers=AUTH), 404)
    error_of(client.post("/sync", json={"source": "nope"}, headers=AUTH), 404)
    assert error_of(client.get("/no/such/route"), 404)["error"] == "RouteNotFound"
    assert error_of(client.delete("/search"), 405)["allowed"] == ["GET", "POST"]
    assert client.patch("/sources/events/documents/a").headers["allow"] == "DELETE, PUT"


def test_unexpected_errors_are_a_500_with_a_request_id_and_no_trace(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(self: Workspace) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(Workspace, "status", explode)
    with caplog.at_level(logging.ERROR, logger="embedops.server"):
        response = client.get("/status", headers={"X-Request-ID": "req-42"})
    body = error_of(response, 500)
    assert body["request_id"] == "req-42" and "req-42" in str(body["message"])
    assert "secret" not in response.text and "RuntimeError" not in response.text
    assert "secret internal detail" in caplog.text and "req-42" in caplog.text  # the operator gets the traceback


# -- push documents -------------------------------------------------------------------------------
def test_push_upsert_then_search_update_and_delete(client: TestClient, root: Path) -> None:
    url = "/sources/events/documents/release/2024-05"
    first = {"text": "Zebrafish regenerate heart tissue.", "metadata": {"lang": "en"}, "updated_at": "2024-05-01T12:00:00Z"}
    assert client.put(url, json=first, headers=AUTH).json()["result"] == "added"
    again = client.put(url, json=first, headers=AUTH).json()
    assert (again["result"], again["embedded"]) == ("unchanged", 0)
    hits = client.get("/search", params={"query": "zebrafish heart", "source": "events", "mode": "bm25"}).json()
    assert [h["document_id"] for h in hits] == ["release/2024-05"]
    assert hits[0]["metadata"] == {"lang": "en"} and hits[0]["tags"]["source_updated_at"].startswith("2024-05-01")
    changed = client.put(url, json={**first, "text": "Axolotls regrow limbs."}, headers=AUTH).json()
    assert changed["result"] == "updated" and changed["embedded"] == 1
    assert client.post("/sync", headers=AUTH).json()["deleted"] == 0  # a full sync never deletes pushed documents
    hits = client.get("/search", params={"query": "axolotls", "source": "events", "mode": "bm25"}).json()
    assert [h["document_id"] for h in hits] == ["release/2024-05"]
    assert client.delete(url, headers=AUTH).json()["result"] == "deleted"
    assert client.get("/search", params={"query": "axolotls", "source": "events", "mode": "bm25"}).json() == []
    error_of(client.delete(url, headers=AUTH), 404)
    added = client.put(url, json=first, headers=AUTH).json()  # a deleted id can come back
    assert added["result"] == "added" and added["embedded"] == 0  # its chunk's embedding is still cached
    sources = {s["name"]: s["documents"] for s in client.get("/status").json()["sources"]}
    assert sources == {"docs": 30, "events": 1}


def test_settings_changed_elsewhere_are_followed(client: TestClient, root: Path) -> None:
    assert client.get("/readyz").status_code == 200  # the service has read embedops.toml
    with Workspace.open(root) as ws:  # as `embedops source add later --kind push` would, from another process
        ws.add_source("later", kind="push")
    assert client.put("/sources/later/documents/x", json={"text": "hello"}, headers=AUTH).json()["result"] == "added"


def test_push_validation(client: TestClient) -> None:
    assert "text" in str(error_of(client.put("/sources/events/documents/a", json={"text": " \n"}, headers=AUTH), 422)["message"])
    error_of(client.put("/sources/events/documents/a", json={"text": "x", "extra": 1}, headers=AUTH), 422)
    assert "where" in str(error_of(client.post("/search", json={"query": "x", "where": {'a"b': "1"}}), 422)["message"])
    error_of(client.put("/sources/events/documents/a", json={"text": "x", "updated_at": "yesterday"}, headers=AUTH), 422)


def test_concurrent_pushes_are_written_together(root: Path) -> None:
    writes: list[int] = []

    async def scenario(ws: Workspace) -> list[object]:
        async def write(fn: Any) -> Any:
            await asyncio.sleep(0)  # let every push of this tick queue up first
            result = fn(ws)
            writes.append(len(result))
            return result

        batcher = PushBatcher(write)
        pushes = [("events", Document("a", "first")), ("events", Document("b", "bee")), ("events", Document("a", "last")),
                  ("docs", Document("x", "x")), ("nope", Document("y", "y")), ("events", Document("c", "  "))]
        return await asyncio.gather(*(batcher.upsert(s, d) for s, d in pushes), return_exceptions=True)

    with Workspace.open(root) as ws:
        outcomes = asyncio.run(scenario(ws))
        assert writes == [6]  # one write for all six pushes
        a1, b, a2, x, y, c = outcomes
        assert isinstance(a1, Outcome) and isinstance(a2, Outcome) and isinstance(b, Outcome)
        assert (a1.result, a2.result, b.result, b.documents) == ("added", "added", "added", 3)
        assert isinstance(x, NotPushSource) and isinstance(y, NotFound) and isinstance(c, BadRecord)
        hits = ws.search("last", k=5, filters=Filters(source="events"), mode="bm25")
        assert [h.document_id for h in hits] == ["a"]  # the last push of an id wins


def test_push_source_in_the_library(tmp_path: Path) -> None:
    assert list(PushSource("p").scan({"a": None, "b": "s"})) == [Unchanged("a"), Unchanged("b")]
    with Workspace.init(tmp_path / "ws", embedder="hashing") as ws:
        with pytest.raises(ConfigError, match="no path"):
            ws.add_source("p", tmp_path, kind="push")
        with pytest.raises(ConfigError, match="needs a path"):
            ws.add_source("f")
        ws.add_source("p", kind="push")
        result = ws.upsert_documents("p", [Document("a", "one"), Document("b", "two"), Document("a", "dup"),
                                           Document("c", "   ")])
        assert (result.counts.added, sorted(s.external_id for s in result.counts.skipped)) == (2, ["a", "c"])
        assert ws.sync().counts.deleted == 0 and ws.status()["documents"] == 2
        with pytest.raises(NotFound, match="'zz'"):
            ws.delete_documents("p", ["a", "zz"])
        assert ws.status()["documents"] == 2  # nothing deleted when one id is missing
        assert ws.delete_documents("p", ["a", "zz"], missing_ok=True).counts.deleted == 1
        assert [r["kind"] for r in ws.history(limit=2)] == ["sync.source", "sync.delete"]


def test_concurrent_searches_and_upserts(client: TestClient) -> None:
    failures: list[str] = []

    def worker(n: int) -> None:
        for i in range(15):
            if i % 3 == 0:
                r = client.put(f"/sources/events/documents/w{n}-{i}", json={"text": f"thread {n} note {i} planet"},
                               headers=AUTH)
            else:
                r = client.get("/search", params={"query": f"planet note {i}", "k": 5, "mode": "hybrid"})
            if r.status_code != 200:
                failures.append(r.text)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert {s["name"]: s["documents"] for s in client.get("/status").json()["sources"]}["events"] == 20


# -- sync, status, migrations ----------------------------------------------------------------------
def test_sync_status_and_plan(client: TestClient, corpus: Path, root: Path) -> None:
    assert client.get("/sync/status").json()["running"] is False
    path = next(corpus.rglob("*.md"))
    path.write_text(path.read_text() + "\nA new paragraph about volcanoes.\n")
    plan = client.post("/sync", json={"plan": True}, headers=AUTH).json()
    assert plan["plan"] is True and plan["updated"] == 1 and plan["chunks_to_embed"] >= 1
    done = client.post("/sync", json={"source": "docs"}, headers=AUTH).json()
    assert (done["updated"], done["plan"]) == (1, False)
    state = client.get("/sync/status").json()
    assert state["last"] == done and state["running"] is False and state["finished_at"] >= state["started_at"]
    assert {s["name"] for s in state["sources"]} == {"docs", "events"}
    status = client.get("/status").json()
    assert status == commands.status(root)



def test_a_sync_with_an_unreadable_source_is_400_naming_it(client: TestClient, corpus: Path) -> None:
    corpus.rename(corpus.with_name("unmounted"))
    body = error_of(client.post("/sync", json={}, headers=AUTH), 400)
    assert body["error"] == "SourceError" and [f["source"] for f in body["failed"]] == ["docs"]  # type: ignore[index]
    assert body["result"]["deleted"] == 0  # type: ignore[index]
    state = client.get("/sync/status").json()
    assert state["running"] is False and state["last_error"]["failed"][0]["source"] == "docs"
    assert {s["name"]: s["documents"] for s in state["sources"]}["docs"] == 30

def test_a_mass_delete_is_409_until_allowed(client: TestClient, corpus: Path) -> None:
    for path in sorted(corpus.rglob("*.md"))[:20]:  # 20 of 30 files gone: above max_delete_share 0.5
        path.unlink()
    body = error_of(client.post("/sync", json={"source": "docs"}, headers=AUTH), 409)
    assert body["error"] == "MassDelete" and "would delete 20 of its 30 documents" in str(body["message"])
    assert "allow-mass-delete" in str(body["hint"])
    assert client.get("/search", params={"query": "cell", "k": 50}).status_code == 200
    done = client.post("/sync", json={"source": "docs", "allow_mass_delete": True}, headers=AUTH).json()
    assert done["deleted"] == 20


def test_migration_is_seen_per_request(client: TestClient, root: Path) -> None:
    before = client.get("/migrations/status").json()
    assert before["migration"] is None and before["alias"] == "prod"
    old_space = client.get("/search", params={"query": "cell"}).json()[0]["tags"]["space"]
    with Workspace.open(root) as ws:  # another process' CLI would do the same
        migrator(ws).start("hashing:seed=1")
        assert client.get("/migrations/status").json()["migration"]["phase"] == "backfilling"
        migrator(ws).backfill()
        cut = migrator(ws).cutover()
    status = client.get("/migrations/status").json()
    assert status["index"] == cut.index and status["migration"]["phase"] == "cut_over"
    new_space = client.get("/search", params={"query": "cell"}).json()[0]["tags"]["space"]
    assert new_space != old_space  # same server, same request: the alias is resolved per request
    assert client.put("/sources/events/documents/n", json={"text": "after cutover"}, headers=AUTH).status_code == 200


def test_thresholds_freshness_and_check(client: TestClient, root: Path) -> None:
    with Workspace.open(root) as ws:
        ws.thresholds.add("dedup", 0.9)
    listed = client.get("/thresholds").json()
    assert [t["name"] for t in listed] == ["dedup"]
    value = client.get("/thresholds/dedup").json()
    assert value["value"] == 0.9 and value["space"] == listed[0]["serving_space"] and "evidence" not in value
    assert "evidence" in client.get("/thresholds/dedup", params={"evidence": True}).json()
    error_of(client.get("/thresholds/nope"), 404)
    fresh = client.get("/freshness").json()
    assert fresh["status"] == "ok" and {s["source"] for s in fresh["sources"]} == {"docs", "events"}
    error_of(client.get("/freshness", params={"source": "nope"}), 404)
    checked = client.get("/check", params={"only": "freshness"}).json()
    assert (checked["status"], checked["exit_code"], [c["name"] for c in checked["checks"]]) == ("ok", 0, ["freshness"])
    assert "only" in str(error_of(client.get("/check", params={"only": "nope"}), 422)["message"])


# -- probes, metrics, schema --------------------------------------------------------------------------
def test_health_and_readiness(tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with client_for(root, monkeypatch) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz").json()
        assert ready["ready"] is True and ready["checks"]["alias"].startswith("ok: prod -> ix1")
    Workspace.init(tmp_path / "empty", embedder="hashing").close()
    with client_for(tmp_path / "empty", monkeypatch) as c:
        assert c.get("/healthz").status_code == 200
        response = c.get("/readyz")
        assert response.status_code == 503
        checks = response.json()["checks"]
        assert checks["catalog"] == "ok" and "no alias 'prod'" in checks["alias"] and checks["embedder"] == "not checked"


def test_metrics_are_prometheus_text(client: TestClient) -> None:
    client.get("/search", params={"query": "cell"})
    client.get("/search", params={"query": "cell", "k": 0})
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = response.text.splitlines()
    assert 'embedops_http_requests_total{method="GET",route="/search",status="200"} 1' in lines
    assert 'embedops_http_requests_total{method="GET",route="/search",status="422"} 1' in lines
    assert any(line.startswith('embedops_http_request_duration_seconds_bucket{method="GET",route="/search",le="+Inf"} 2')
               for line in lines)
    assert 'embedops_source_documents{source="docs",kind="folder"} 30' in lines
    assert 'embedops_alias_info{alias="prod",index="ix1-hashing"} 1' in lines
    assert "embedops_up 1.0" in lines  # the monitor's registry follows the service's own metrics
    names = [line.split()[2] for line in lines if line.startswith("# TYPE")]
    assert len(names) == len(set(names)), "a metric family is exported twice"
    for line in lines:  # every sample line is `name{labels} number`
        if not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            float(value)
            assert name.split("{")[0].startswith("embedops_")


def test_openapi_schema_is_published_and_current(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert {"/search", "/sync", "/sync/status", "/status", "/sources/{source}/documents/{external_id}",
            "/migrations/status", "/thresholds", "/thresholds/{name}", "/freshness", "/check", "/metrics",
            "/healthz", "/readyz"} <= set(schema["paths"])
    assert schema["paths"]["/search"]["get"]["responses"]["404"]["content"]["application/json"]
    assert (DOCS / "openapi.json").read_text() == render(), "run: python -m embedops.server.openapi docs/openapi.json"


def test_embedops_serve_runs_uvicorn(root: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "EMBEDOPS_TOKEN"}
    cmd = [sys.executable, "-m", "embedops.cli", "serve", "--port", str(port), "--workspace", str(root)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60  # a cold interpreter importing fastapi on a busy machine
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        assert httpx.get(f"{url}/search", params={"query": "cell", "k": 2}).status_code == 200
        refused = httpx.post(f"{url}/sync")
        assert refused.status_code == 503 and "EMBEDOPS_TOKEN" in refused.json()["message"]
    finally:
        proc.terminate()
        output = proc.communicate(timeout=10)[0].decode()
    assert "EMBEDOPS_TOKEN is not set" in output
