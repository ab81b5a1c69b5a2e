"""Fuzzing every input surface with hypothesis: JSONL lines, folder files, pushed documents and their
metadata, query parameters, and configuration values.

The promise under test: hostile input is answered, never crashes. Over HTTP every response is below
500 and an error is a JSON body; in the library every failure is an :class:`EmbedopsError`; and bad
records never cost the good ones (a sentinel document stays findable whatever arrives beside it).

Each test runs a bounded, derandomized search in the default run (a few seconds); the ``slow``
variants (``EMBEDOPS_SLOW=1``) explore ten times as many random examples.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import json
import math
import os
import shutil
import string
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from embedops.config import BudgetSettings, EmbedopsTable
from embedops.errors import CatalogError, ConfigError, EmbedopsError
from embedops.monitor.settings import MonitorSettings
from embedops.server import ServerConfig, create_app
from embedops.sources.registry import SOURCE_KINDS, source_options
from embedops.workspace import Workspace

TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SENTINEL = "zyzzyvasentinel"  # one word no generated text will hold by chance

# Any code point, lone surrogates, NUL and escape sequences included: what a JSON \u escape can produce.
ANY_CHAR = st.characters(exclude_categories=())
# Pieces that keep hitting the edges: markup, emoji codes, escapes, separators, numbers as text. Random
# code points alone seldom land on the 2,048 surrogates among 1.1 million, so text is built from both.
EDGES = st.sampled_from(["", " ", "\x00", "\ud800", "\udfff", "\ud83d", "\x1b[2J", ":x:", "[b]", "a=b", "=", "NaN",
                         "-1", "0", "1e309", "..", "/", "%00", "k" * 300, "\u202e", "é", "🙂", "\r\n", "word"])
TEXT = st.lists(EDGES | st.text(ANY_CHAR, max_size=8), max_size=4).map("".join)
# Times in and out of range, in every zone: a valid ISO 8601 time can lie in the year 10000 in UTC.
ISO_TIME = st.datetimes(timezones=st.none() | st.timezones()).map(lambda t: t.isoformat()) | st.sampled_from(
    ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "0001-01-01", "2024-05-01T10:00:00Z"])
JSON_SCALAR = st.none() | st.booleans() | st.integers() | st.floats() | TEXT
JSON = st.recursive(JSON_SCALAR, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
                    max_leaves=12)


def deep(depth: int) -> Any:
    value: Any = "leaf"
    for i in range(depth):
        value = {"a": value} if i % 2 else [value]
    return value


# A well-formed value beside the hostile one, so that a record gets past its first check often enough
# for the next field to be what is under test.
GOOD_TEXT = st.text(st.characters(categories=("L", "N")), max_size=12).map(lambda t: f"word {t}")
METADATA = st.dictionaries(TEXT, JSON, min_size=1, max_size=5) | st.integers(0, 60).map(lambda n: {"deep": deep(n)})


def fuzz_settings(examples: int) -> Callable[[Any], Any]:
    """Bounded and reproducible in the default run; random and ten times larger when slow tests run."""
    slow = os.environ.get("EMBEDOPS_SLOW") == "1"
    return settings(max_examples=examples * 10 if slow else examples, deadline=None, database=None,
                    derandomize=not slow, suppress_health_check=list(HealthCheck))


def assert_answered(response: httpx.Response) -> None:
    """Below 500, and an error is the service's JSON error object."""
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert {"error", "message", "hint"} <= set(body), body
    assert "Traceback" not in response.text


def assert_sentinel_found(client: TestClient) -> None:
    """Whatever was stored beside it, search still answers 200 in every mode and finds the good document."""
    for mode in ("bm25", "vector", "hybrid"):
        response = client.get("/search", params={"query": SENTINEL, "mode": mode, "k": 50})
        assert response.status_code == 200, response.text
        json.dumps(response.json(), ensure_ascii=False).encode("utf-8")
    hits = client.get("/search", params={"query": SENTINEL, "mode": "bm25", "k": 50}).json()
    assert any(SENTINEL in hit["text"] for hit in hits)


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database: str | None) -> Iterator[tuple[TestClient, Path]]:
    """The service over a workspace with a JSONL source, a folder source and a push source, on each backend."""
    data = tmp_path / "data"
    (data / "folder").mkdir(parents=True)
    (data / "records.jsonl").write_text(json.dumps({"id": "sentinel", "text": f"{SENTINEL} record"}) + "\n")
    (data / "folder" / "sentinel.md").write_text(f"# Sentinel\n\n{SENTINEL} file\n")
    with Workspace.init(tmp_path / "ws", embedder="hashing", database=database) as ws:
        ws.add_source("records", data / "records.jsonl", kind="jsonl", title_field="title", updated_field="updated")
        ws.add_source("folder", data / "folder")
        ws.add_source("events", kind="push")
    monkeypatch.setenv("EMBEDOPS_TOKEN", TOKEN)
    with TestClient(create_app(tmp_path / "ws", ServerConfig()), raise_server_exceptions=False) as client:
        assert client.post("/sync", headers=AUTH).status_code == 200
        assert client.put("/sources/events/documents/sentinel", json={"text": f"{SENTINEL} push"},
                          headers=AUTH).status_code == 200
        yield client, data


# -- sources ---------------------------------------------------------------------------------------
RECORD = st.fixed_dictionaries(
    {"id": GOOD_TEXT | TEXT | st.integers() | JSON_SCALAR, "text": GOOD_TEXT | TEXT | JSON_SCALAR},
    optional={"title": TEXT, "lang": JSON_SCALAR, "tags": JSON, "metadata": METADATA,
              "updated": ISO_TIME | JSON_SCALAR},
)
LINE = (RECORD | JSON).map(lambda v: json.dumps(v, allow_nan=True).encode()) | st.binary(max_size=80).filter(
    lambda b: b"\n" not in b)


def check_jsonl_lines(served: tuple[TestClient, Path], lines: list[bytes], at: int) -> None:
    client, data = served
    good = json.dumps({"id": "sentinel", "text": f"{SENTINEL} record"}).encode()
    lines.insert(min(at, len(lines)), good)
    (data / "records.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    # Fuzzing rewrites the file: a draw with fewer records than the last is a mass delete, allowed here.
    response = client.post("/sync", json={"source": "records", "allow_mass_delete": True}, headers=AUTH)
    assert response.status_code == 200, response.text
    assert_sentinel_found(client)


def test_fuzz_jsonl_lines(served: tuple[TestClient, Path]) -> None:
    @fuzz_settings(40)
    @given(lines=st.lists(LINE, max_size=8), at=st.integers(0, 8))
    @example(lines=[br'{"id": "s", "text": "word", "k": "\ud800"}', br'{"id": "t", "text": "\udc00"}'], at=1)
    @example(lines=[b'{"id": "n", "text": "word", "v": NaN}', b'{"id": "z", "text": "a\\u0000b"}'], at=0)
    def check(lines: list[bytes], at: int) -> None:
        check_jsonl_lines(served, lines, at)

    check()


# A file name is any text a file system takes: no "/", no NUL, not "." or "..", at most 255 bytes.
FILE_NAME = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="/\x00"), min_size=1,
                    max_size=30).filter(lambda n: n not in (".", "..") and len(n.encode()) <= 250)
FILE_BYTES = st.binary(max_size=300) | TEXT.map(lambda t: t.encode("utf-8", "surrogatepass"))


def check_folder_files(served: tuple[TestClient, Path], files: dict[str, bytes], links: list[str]) -> None:
    client, data = served
    folder = data / "folder"
    shutil.rmtree(folder)
    folder.mkdir()
    (folder / "sentinel.md").write_text(f"# Sentinel\n\n{SENTINEL} file\n")
    for name, content in files.items():
        (folder / f"{name}.txt").write_bytes(content)
    for i, target in enumerate(links):  # links out of the folder, into it, and dangling
        (folder / f"link{i}.txt").symlink_to(target)
    response = client.post("/sync", json={"source": "folder", "allow_mass_delete": True}, headers=AUTH)
    assert response.status_code == 200, response.text
    assert_sentinel_found(client)


def test_fuzz_folder_files(served: tuple[TestClient, Path]) -> None:
    @fuzz_settings(30)
    @given(files=st.dictionaries(FILE_NAME, FILE_BYTES, max_size=5),
           links=st.lists(st.sampled_from(["/etc/hostname", "sentinel.md", "../records.jsonl", "nowhere", "."]),
                          max_size=3))
    def check(files: dict[str, bytes], links: list[str]) -> None:
        check_folder_files(served, files, links)

    check()


# -- pushed documents ------------------------------------------------------------------------------
DOC_ID = TEXT.filter(bool)
BODY = (st.fixed_dictionaries({"text": GOOD_TEXT | TEXT, "metadata": METADATA})
        | st.fixed_dictionaries({"text": GOOD_TEXT, "updated_at": ISO_TIME})
        | st.fixed_dictionaries({"text": TEXT | JSON_SCALAR}, optional={"metadata": METADATA | JSON,
                                                                        "updated_at": TEXT | JSON_SCALAR})
        | JSON)


def check_push(client: TestClient, doc_id: str, body: Any, raw: bytes | None) -> None:
    url = "/sources/events/documents/" + quote(doc_id.encode("utf-8", "surrogatepass"), safe="")
    content = raw if raw is not None else json.dumps(body, allow_nan=True).encode()
    response = client.put(url, content=content, headers={**AUTH, "Content-Type": "application/json"})
    assert_answered(response)
    # Every document of the source comes back (k is above their number): whatever was accepted is served.
    everything = client.get("/search", params={"query": "word", "source": "events", "k": 1000})
    assert everything.status_code == 200, everything.text
    assert_sentinel_found(client)
    assert_answered(client.delete(url, headers=AUTH))


def test_fuzz_pushed_documents(served: tuple[TestClient, Path]) -> None:
    client, _ = served

    @fuzz_settings(60)
    @given(doc_id=DOC_ID, body=BODY, raw=st.one_of(st.none(), st.none(), st.none(), st.binary(max_size=60)))
    @example(doc_id="k", body={"text": "word", "metadata": {"k": "\ud800"}}, raw=None)  # issue 13, item 7
    @example(doc_id="nul\x00", body={"text": "word \x00", "metadata": {"\x00": "\x00"}}, raw=None)
    @example(doc_id="nan", body={"text": "word", "metadata": {"n": float("nan"), "i": float("inf")}}, raw=None)
    @example(doc_id="y10k", body={"text": "word", "updated_at": "9999-12-31T23:59:59-14:00"}, raw=None)
    @example(doc_id="y0", body={"text": "word", "updated_at": "0001-01-01T00:00:00+14:00"}, raw=None)
    def check(doc_id: str, body: Any, raw: bytes | None) -> None:
        check_push(client, doc_id, body, raw)

    check()
    # Called directly: Hypothesis prints an explicit example's arguments, and its printer recurses
    # once per level, past Python's recursion limit on a stack as deep as pytest's under CI.
    check_push(client, "deep", {"text": "word", "metadata": deep(500)}, None)


# -- query parameters ------------------------------------------------------------------------------
PARAM_VALUE = (TEXT.map(lambda t: t.encode("utf-8", "surrogatepass").decode("utf-8", "replace"))
               | st.integers().map(str) | ISO_TIME)
QUERY_PARAMS = st.dictionaries(st.sampled_from(["query", "k", "mode", "alias", "index", "source", "where",
                                                "updated_after", "only", "space", "evidence"]) | PARAM_VALUE,
                               PARAM_VALUE | st.lists(PARAM_VALUE, max_size=3), max_size=6)
READ_PATHS = ["/search", "/thresholds/dedup", "/thresholds", "/migrations/status", "/sync/status", "/status"]


def check_query(client: TestClient, path: str, params: dict[str, Any], body: Any) -> None:
    assert_answered(client.get(path, params=params))
    assert_answered(client.post("/search", content=json.dumps(body, allow_nan=True).encode(),
                                headers={"Content-Type": "application/json"}))


def test_fuzz_query_parameters(served: tuple[TestClient, Path]) -> None:
    client, _ = served
    search_body = st.fixed_dictionaries({"query": TEXT | JSON_SCALAR}, optional={
        "k": JSON_SCALAR, "mode": TEXT, "source": TEXT | JSON_SCALAR, "where": METADATA | JSON,
        "updated_after": TEXT | JSON_SCALAR, "alias": TEXT, "index": TEXT}) | JSON

    @fuzz_settings(60)
    @given(path=st.sampled_from(READ_PATHS), params=QUERY_PARAMS, body=search_body)
    def check(path: str, params: dict[str, Any], body: Any) -> None:
        check_query(client, path, params, body)

    check()


# -- configuration values --------------------------------------------------------------------------
OPTION_NAMES = sorted({name for kind in SOURCE_KINDS for name in source_options(kind)} | {"bogus"})
TOML_VALUE = st.recursive(st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT.map(
    lambda t: t.encode("utf-8", "surrogatepass").decode("utf-8", "replace")), lambda inner: st.lists(inner, max_size=3),
    max_leaves=6)


def only_embedops_errors(call: Callable[[], Any]) -> None:
    try:
        call()
    except EmbedopsError:
        pass


def test_fuzz_source_options(tmp_path: Path) -> None:
    """Options given to `source add` (or found in a [sources.X] table) are checked, never crash a sync."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\nsome text\n")
    (tmp_path / "a.jsonl").write_text('{"id": "1", "text": "x"}\n')
    paths = {"folder": tmp_path / "docs", "jsonl": tmp_path / "a.jsonl", "beir": tmp_path / "a.jsonl", "push": None}
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    names = iter(f"s{i}" for i in range(10**6))

    @fuzz_settings(60)
    @given(kind=st.sampled_from(SOURCE_KINDS) | TEXT, options=st.dictionaries(st.sampled_from(OPTION_NAMES), TOML_VALUE,
                                                                             max_size=3))
    def check(kind: str, options: dict[str, Any]) -> None:
        name = next(names)
        only_embedops_errors(lambda: ws.add_source(name, paths.get(kind, tmp_path), kind, **options))
        if name in ws.settings.sources:
            only_embedops_errors(lambda: ws.sync(source=name))
            ws.settings.sources.pop(name)  # keep each sync to the source under test
            ws.settings.save()

    try:
        check()
    finally:
        ws.close()


def test_fuzz_source_option_values_in_the_config_file(tmp_path: Path) -> None:
    import tomli_w

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\nsome text\n")
    Workspace.init(tmp_path / "ws", embedder="hashing").close()
    config = tmp_path / "ws" / "embedops.toml"
    original = config.read_text()

    @fuzz_settings(40)
    @given(options=st.dictionaries(st.sampled_from(OPTION_NAMES), TOML_VALUE, max_size=3))
    def check(options: dict[str, Any]) -> None:
        table = {"sources": {"docs": {"kind": "folder", "path": str(tmp_path / "docs"), **options}}}
        config.write_text(original + "\n" + tomli_w.dumps(table))

        def sync() -> None:
            with Workspace.open(tmp_path / "ws") as ws:
                ws.sync()

        only_embedops_errors(sync)

    check()


# Every key of the top-level tables, and a misspelt one. The table itself may be replaced by a value too
# (``monitor = 5``): key None.
TOP_LEVEL_KEYS = [(table, key) for table, keys in (
    ("embedops", sorted(EmbedopsTable.model_fields)),
    ("monitor", sorted(f.name for f in dataclasses.fields(MonitorSettings))),
    ("budget", sorted(f.name for f in dataclasses.fields(BudgetSettings))),
) for key in [*keys, "bogus_key", None]]
# What a TOML value can be: every type TOML has (dates and times, inf and nan too), nested, and words the
# settings mean something by (durations, "off", names, URLs).
TOML_TEXT = TEXT.map(lambda t: t.encode("utf-8", "surrogatepass").decode("utf-8", "replace")) | st.sampled_from(
    ["1h", "30m", "off", "0s", "-5", "", "1h30m", "prod", "hashing", "structured", "sqlite:///x.db", "x://y", "PATH",
     "freshness"])
TOML_ANY = st.recursive(
    st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | TOML_TEXT | st.datetimes() | st.dates() | st.times(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TOML_TEXT, inner, max_size=3), max_leaves=6)
# Values of the kinds the settings take (counts, shares, switches, durations, names), so that the runs that open
# are as common as those refused.
PLAUSIBLE = st.integers(1, 1000) | st.floats(0, 1) | st.booleans() | st.sampled_from(
    ["1h", "7d", "off", "prod", "hashing", "structured", ["freshness", "drift"]])


def test_fuzz_top_level_settings(tmp_path: Path) -> None:
    """Any value of any [embedops], [monitor] or [budget] key: the workspace opens, or the error is a
    ConfigError naming the key (the table, when the table itself is not one); never a traceback."""
    import tomli_w

    Workspace.init(tmp_path / "ws", embedder="hashing").close()
    config = tmp_path / "ws" / "embedops.toml"
    original = tomllib.loads(config.read_text())
    outcomes: collections.Counter[str] = collections.Counter()

    @fuzz_settings(60)
    @given(where=st.sampled_from(TOP_LEVEL_KEYS), value=PLAUSIBLE | TOML_ANY)
    # found by this test: a table that is a value, and a duration that is a table, a list or a date, crashed
    @example(where=("embedops", None), value=5)
    @example(where=("budget", None), value=["x"])
    @example(where=("monitor", "max_lag"), value={"a": 1})
    @example(where=("monitor", "every"), value=datetime.date(2024, 1, 1))
    @example(where=("monitor", "drift_window"), value=math.inf)
    @example(where=("embedops", "batch_size"), value=64)
    def check(where: tuple[str, str | None], value: Any) -> None:
        table, key = where
        doc = {name: dict(part) for name, part in original.items()}
        if key is None:
            doc[table] = value
        else:
            doc[table] = {**doc.get(table, {}), key: value}
        config.write_text(tomli_w.dumps(doc), encoding="utf-8")
        try:
            with Workspace.open(tmp_path / "ws") as ws:
                ws.status()
            outcomes["opened"] += 1
        except ConfigError as exc:
            named = f"[{table}]" if key is None else key
            assert named in exc.message, (where, value, exc.message)
            outcomes["refused"] += 1
        except CatalogError:  # `database` naming another catalog: gone, or no database at all
            assert key == "database", (where, value)

    check()
    assert outcomes["opened"] and outcomes["refused"], outcomes  # both sides of the promise were reached

def test_fuzz_service_and_cli_values(tmp_path: Path) -> None:
    """ServerConfig values, and option values of commands that parse numbers and names."""
    from typer.testing import CliRunner

    from embedops.cli import app

    with Workspace.init(tmp_path / "ws", embedder="hashing") as ws:
        ws.add_source("events", kind="push")
    runner = CliRunner()
    word = TEXT.map(lambda t: t.encode("utf-8", "surrogatepass").decode("utf-8", "replace")).filter(
        lambda t: "\x00" not in t)  # argv cannot hold a NUL
    commands = st.sampled_from([
        ["search", "{}", "-k", "{}"], ["search", "x", "--source", "{}"], ["search", "x", "--where", "{}"],
        ["search", "x", "--updated-after", "{}"], ["search", "x", "--mode", "{}"], ["history", "--limit", "{}"],
        ["thresholds", "add", "{}", "{}"], ["thresholds", "get", "{}"], ["source", "add", "{}", "--kind", "push"],
        ["search", "x", "--recency-half-life", "{}"], ["thresholds", "set", "{}", "{}", "--space", "hashing"],
    ])

    @fuzz_settings(40)
    @given(config=st.dictionaries(st.sampled_from(["max_body_bytes", "max_query_chars", "max_k", "read_threads",
                                                   "token_env", "write_wait_seconds"]), JSON_SCALAR, max_size=3),
           command=commands, values=st.lists(word | st.integers().map(str) | st.floats().map(str), min_size=2,
                                             max_size=2))
    def check(config: dict[str, Any], command: list[str], values: list[str]) -> None:
        only_embedops_errors(lambda: ServerConfig(**config))
        filled = iter(values)
        args = [next(filled) if part == "{}" else part for part in command]
        result = runner.invoke(app, [*args, "-w", str(tmp_path / "ws")])
        assert result.exit_code in (0, 1, 2), (args, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)

    check()


# -- the heavier variants ---------------------------------------------------------------------------
@pytest.mark.slow
def test_fuzz_jsonl_lines_long(served: tuple[TestClient, Path]) -> None:
    @settings(max_examples=1000, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(lines=st.lists(LINE, max_size=30), at=st.integers(0, 30))
    def check(lines: list[bytes], at: int) -> None:
        check_jsonl_lines(served, lines, at)

    check()


@pytest.mark.slow
def test_fuzz_pushed_documents_long(served: tuple[TestClient, Path]) -> None:
    client, _ = served

    @settings(max_examples=1000, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(doc_id=DOC_ID, body=BODY, raw=st.none() | st.binary(max_size=200))
    def check(doc_id: str, body: Any, raw: bytes | None) -> None:
        check_push(client, doc_id, body, raw)

    check()


def test_generated_text_reaches_the_edges() -> None:
    """The strategies above do produce the characters the defects were about (else the fuzz proves little)."""
    seen: set[str] = set()

    @settings(max_examples=100, database=None, derandomize=True)
    @given(TEXT)
    def check(text: str) -> None:
        seen.update(kind for kind, test in (("surrogate", lambda c: 0xD800 <= ord(c) <= 0xDFFF),
                                            ("nul", lambda c: c == "\x00"), ("escape", lambda c: c == "\x1b"),
                                            ("letter", lambda c: c in string.ascii_letters)) if any(map(test, text)))

    check()
    assert seen == {"surrogate", "nul", "escape", "letter"}
