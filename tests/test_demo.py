"""The demo's corpus copy (the demo itself is `make demo`, the README's first command)."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedops import demo


def test_the_demo_corpus_copies_its_documents_and_skips_a_bytecode_folder(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # `make setup` compiles the package; the corpus holds a .py document, so a __pycache__ can sit beside it.
    package = tmp_path / "pkg"
    corpus = package / "demo_corpus"
    (corpus / "__pycache__").mkdir(parents=True)
    (corpus / "__pycache__" / "gen.cpython-311.pyc").write_bytes(b"\x00\x01")
    (corpus / "a.md").write_text("# A\n\nalpha\n", encoding="utf-8")
    (corpus / "gen.py").write_text("def gen():\n    yield 1\n", encoding="utf-8")
    monkeypatch.setattr(demo.resources, "files", lambda name: package)
    demo.copy_corpus(tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.md", "gen.py"]
    assert (tmp_path / "out" / "gen.py").read_text(encoding="utf-8") == "def gen():\n    yield 1\n"


def test_the_packaged_corpus_is_documents_only() -> None:
    corpus = demo.resources.files("embedops") / "demo_corpus"
    names = [entry.name for entry in corpus.iterdir() if entry.is_file()]
    assert len(names) >= 10 and all(name.endswith((".md", ".txt", ".py")) for name in names)
