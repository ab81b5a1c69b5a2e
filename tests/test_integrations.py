"""What both framework integrations stand on: lazy imports, document reads by id, the alias binding."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from embedops.errors import ConfigError, SearchError
from embedops.integrations.binding import AliasBinding, equality_filters
from embedops.sources.base import Document
from embedops.workspace import Workspace
from tests.conftest import CHILD_ENV

FRAMEWORKS = ("langchain", "langchain_core", "llama_index")


def test_importing_embedops_loads_no_framework() -> None:
    code = ("import sys, embedops, embedops.integrations, embedops.workspace, embedops.cli, embedops.server.app;"
            f" loaded = sorted(m for m in sys.modules if m.split('.')[0] in {FRAMEWORKS!r}); print(loaded)")
    out = subprocess.run([sys.executable, "-c", code], env=CHILD_ENV, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("module", ["binding", "langchain"])
def test_docstring_examples_run(module: str) -> None:
    if module == "langchain":
        pytest.importorskip("langchain_core", reason="needs the langchain extra (make test installs it)")
    result = doctest.testmod(importlib.import_module(f"embedops.integrations.{module}"))
    assert result.attempted > 0 and result.failed == 0


def test_documents_are_read_back_by_id_and_by_metadata(tmp_path: Path, database: str | None) -> None:
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", database=database)
    ws.add_source("events", kind="push")
    ws.upsert_documents("events", [Document("a", "Tides.", {"lang": "en", "page": 3}),
                                   Document("b", "Comets.", {"lang": "fr", "page": "3"}),
                                   Document("c", "Aurora.", {"lang": "en", "page": 4})])
    ws.delete_documents("events", ["c"])
    got = ws.get_documents("events", ["b", "zz", "a", "c", "b"])
    assert [(d.external_id, d.text, dict(d.metadata)) for d in got] == [
        ("b", "Comets.", {"lang": "fr", "page": "3"}), ("a", "Tides.", {"lang": "en", "page": 3})]
    assert ws.document_ids("events") == ["a", "b"]
    assert ws.document_ids("events", metadata={"lang": "en"}) == ["a"]
    # compared as text, as search filters compare them: the number 3 and the string "3" both match
    assert ws.document_ids("events", metadata={"page": 3}) == ["a", "b"]
    assert ws.get_documents("other", ["a"]) == [] and ws.document_ids("other") == []
    ws.close()


def test_binding_checks_its_options(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    for options in ({"scope": "everything"}, {"granularity": "pages"}, {"scope": "source", "source": None}):
        with pytest.raises(ConfigError):
            AliasBinding(ws, **options)  # type: ignore[arg-type]
    binding = AliasBinding(ws, source="s")
    with pytest.raises(SearchError, match="at least 1"):
        binding.search("x", k=0)
    with pytest.raises(ConfigError, match="must pair up"):
        binding.upsert(["a"], ["x", "y"], [{}, {}])
    assert binding.upsert([], [], []) == [] and binding.delete([]) == 0
    ws.close()


def test_binding_opened_from_a_path_closes_its_workspace(tmp_path: Path) -> None:
    Workspace.init(tmp_path / "ws", embedder="hashing").close()
    binding = AliasBinding.open(tmp_path / "ws", source="s")
    assert binding.owns_workspace and binding.created_source
    binding.close()
    shared = Workspace.open(tmp_path / "ws")
    borrowed = AliasBinding.open(shared, source="s")
    assert not borrowed.owns_workspace and not borrowed.created_source
    borrowed.close()
    assert shared.document_ids("s") == []  # still open: the binding did not own it
    shared.close()


def test_equality_filters_take_strings_and_numbers_only() -> None:
    assert equality_filters({"a": "x", "b": 2, "c": 1.5}).metadata == {"a": "x", "b": 2, "c": 1.5}
    for value in (True, None, [1], {"x": 1}):
        with pytest.raises(SearchError, match="compares metadata values as text"):
            equality_filters({"a": value})


def test_the_examples_in_the_integration_docs_run_and_print_what_they_say(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import contextlib
    import io
    import re

    pytest.importorskip("langchain_core", reason="needs the langchain extra (make test installs it)")
    pytest.importorskip("llama_index.core", reason="needs the llama-index extra (make test installs it)")
    text = (Path(__file__).parents[1] / "docs" / "integrations.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        expected = re.findall(r"^print\(.*\)\s+# (.*)$", block, flags=re.M)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, "docs/integrations.md", "exec"), {})
        assert out.getvalue().splitlines() == expected


def test_the_retriever_ranks_documents_as_eval_run_does(tmp_path: Path, corpus: Path, database: str | None) -> None:
    # Documents of several chunks (the structured chunker over markdown): a document scores its best chunk,
    # fetched at the same depths, so the app's retriever and the eval gate rank alike.
    import random

    from embedops.evaluate.runner import resolve_target, retrieve_documents
    from tests.conftest import sentence

    pytest.importorskip("langchain_core", reason="needs the langchain extra (make test installs it)")
    from embedops.integrations.langchain import EmbedopsVectorStore

    ws = Workspace.init(tmp_path / "ws", embedder="hashing", database=database)
    ws.add_source("docs", corpus)
    ws.sync()
    assert ws.status()["chunks"] > ws.status()["documents"]
    rng = random.Random(7)
    queries = {f"q{i}": sentence(rng, 6) for i in range(12)}
    expected = retrieve_documents(ws, resolve_target(ws), queries, 5)
    retriever = EmbedopsVectorStore.open(ws, source=None).as_retriever(search_kwargs={"k": 5})
    for qid, text in queries.items():
        assert [d.id for d in retriever.invoke(text)] == list(expected[qid])
    ws.close()
