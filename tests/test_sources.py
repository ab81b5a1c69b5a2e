"""Sources against real files built in tmp_path: folders, JSONL, BEIR, the registry."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import tracemalloc
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from embedops.errors import ConfigError, SourceError
from embedops.sources.base import Document, Skipped, SourceItem, Unchanged
from embedops.sources.beir import BeirSource
from embedops.sources.folder import FolderSource, GlobSet, html_to_text, markdown_title
from embedops.sources.jsonl import JsonlSource
from embedops.sources.registry import SOURCE_KINDS, make_source, source_options
from tests.conftest import CHILD_ENV, python_bound_by_file_modes



def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def split(items: Iterable[SourceItem]) -> tuple[dict[str, Document], dict[str, str], list[str]]:
    """Documents by id, skip reasons by id, unchanged ids; asserts each id appears once."""
    docs: dict[str, Document] = {}
    skipped: dict[str, str] = {}
    unchanged: list[str] = []
    ids: list[str] = []
    for item in items:
        ids.append(item.external_id)
        if isinstance(item, Document):
            docs[item.external_id] = item
        elif isinstance(item, Skipped):
            skipped[item.external_id] = item.reason
        else:
            assert isinstance(item, Unchanged)
            unchanged.append(item.external_id)
    assert len(ids) == len(set(ids)), f"an id was yielded twice: {ids}"
    return docs, skipped, unchanged


# --- folder ------------------------------------------------------------------------


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    write(root / "readme.md", "# Welcome\n\nHello world.\n")
    write(root / "guide" / "install.md", "```sh\n# not a title\n```\n## Install it\nrun pip\n")
    write(root / "guide" / "deep" / "notes.txt", "plain notes")
    write(root / "code" / "main.py", "print('hi')\n")
    write(root / "a.md", "first by name")
    write(root / "a" / "b.md", "inside a/")
    write(root / ".git" / "config.toml", "hidden = true")
    write(root / ".hidden.md", "hidden file")
    write(root / "node_modules" / "pkg" / "index.js", "module.exports = 1")
    write(root / "__pycache__" / "x.py", "cached")
    write(root / "image.png", b"\x89PNG\r\n\x1a\n\x00\x00")
    return root


def test_folder_walks_nested_tree_in_sorted_order_with_default_excludes(tree: Path) -> None:
    items = list(FolderSource("docs", tree).scan({}))
    ids = [item.external_id for item in items]
    assert ids == sorted(ids)
    assert ids == ["a.md", "a/b.md", "code/main.py", "guide/deep/notes.txt",
                   "guide/install.md", "readme.md"]  # fmt: skip
    docs, skipped, _ = split(items)
    assert not skipped
    readme = docs["readme.md"]
    assert readme.text == "# Welcome\n\nHello world.\n"
    assert readme.metadata == {"path": "readme.md", "ext": "md", "title": "Welcome"}
    # The first heading outside fenced code is the title.
    assert docs["guide/install.md"].metadata["title"] == "Install it"
    assert "title" not in docs["guide/deep/notes.txt"].metadata
    assert docs["code/main.py"].metadata["ext"] == "py"


def test_folder_document_carries_mtime_as_aware_utc_and_signature(tree: Path) -> None:
    path = tree / "readme.md"
    os.utime(path, ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
    doc = split(FolderSource("docs", tree).scan({}))[0]["readme.md"]
    assert doc.updated_at == datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)
    assert doc.signature == f"1700000000123456789:{path.stat().st_size}"


def test_folder_unchanged_signature_is_answered_without_reading(tree: Path) -> None:
    source = FolderSource("docs", tree)
    first, _, _ = split(source.scan({}))
    known: dict[str, str | None] = {k: d.signature for k, d in first.items()}
    docs, skipped, unchanged = split(source.scan(known))
    assert not docs and not skipped
    assert sorted(unchanged) == sorted(first)

    # Same size and mtime but different bytes: the cheap check cannot see it,
    # which proves the file was not opened.
    readme = tree / "readme.md"
    st = readme.stat()
    readme.write_text("# Welcome\n\nHello WORLD.\n", encoding="utf-8")
    os.utime(readme, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert "readme.md" in split(source.scan(known))[2]

    # A real edit changes the signature, and the file is read again.
    write(tree / "guide" / "install.md", "## Install it\nrun pip install embedops\n")
    os.utime(tree / "guide" / "install.md", ns=(1, 2_000_000_000))
    docs, _, unchanged = split(source.scan(known))
    assert list(docs) == ["guide/install.md"]
    assert "pip install embedops" in docs["guide/install.md"].text
    assert len(unchanged) == len(first) - 1

    # A known id whose stored signature is None (e.g. imported) is read.
    docs, _, _ = split(source.scan({**known, "a.md": None}))
    assert set(docs) == {"a.md", "guide/install.md"}


def test_folder_bad_files_are_skipped_with_reasons_and_good_ones_proceed(tmp_path: Path) -> None:
    root = tmp_path / "src"
    write(root / "good.md", "good text")
    write(root / "sub" / "also-good.txt", "also good")
    write(root / "latin1.txt", "caf\u00e9 ok".encode("latin-1"))
    write(root / "blob.txt", b"abc\x00def")
    write(root / "utf16.txt", "hello".encode("utf-16"))
    write(root / "empty.md", "")
    write(root / "blank.md", " \n\t\n  ")
    write(root / "bom.md", "\ufeff# Titled\nbody".encode())
    (root / "dangling.md").symlink_to(root / "missing-target.md")
    (root / "linked.md").symlink_to(root / "good.md")
    os.mkfifo(root / "pipe.txt")
    docs, skipped, _ = split(FolderSource("src", root).scan({}))

    assert set(docs) == {"good.md", "sub/also-good.txt", "bom.md", "linked.md"}
    assert docs["bom.md"].text == "# Titled\nbody"
    assert docs["linked.md"].text == "good text"
    assert set(skipped) == {"latin1.txt", "blob.txt", "utf16.txt", "empty.md", "blank.md",
                            "dangling.md", "pipe.txt"}  # fmt: skip
    assert skipped["latin1.txt"] == (
        "latin1.txt: file is not valid UTF-8 (byte 0xe9 at offset 3); convert it to UTF-8 "
        "or exclude it with --exclude"
    )
    assert "binary file (NUL byte at offset 3)" in skipped["blob.txt"]
    assert "--exclude" in skipped["blob.txt"]
    assert "UTF-16" in skipped["utf16.txt"]
    assert "empty document" in skipped["empty.md"]
    assert "empty document" in skipped["blank.md"]
    assert "broken symbolic link" in skipped["dangling.md"]
    assert "missing-target.md" in skipped["dangling.md"]
    assert "not a regular file" in skipped["pipe.txt"]


def test_folder_oversize_file_is_skipped_without_reading_it(tmp_path: Path) -> None:
    root = tmp_path / "src"
    write(root / "small.txt", "small")
    with open(root / "huge.txt", "wb") as f:
        f.truncate(50 * 2**20)  # sparse: 50 MB on paper, nothing on disk
    tracemalloc.start()
    try:
        docs, skipped, _ = split(FolderSource("src", root).scan({}))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert set(docs) == {"small.txt"}
    reason = skipped["huge.txt"]
    assert "52,428,800 bytes" in reason and "limit 10,000,000 bytes" in reason
    assert "max_bytes" in reason and "--exclude" in reason
    assert peak < 5 * 2**20, f"scan allocated {peak} bytes: the huge file was read"

    # Raising the limit lets it through (it is all NUL bytes, so binary).
    _, skipped, _ = split(FolderSource("src", root, max_bytes=60 * 2**20).scan({}))
    assert "binary file" in skipped["huge.txt"]


def test_folder_size_limit_is_inclusive_and_rechecked_on_change(tmp_path: Path) -> None:
    root = tmp_path / "src"
    write(root / "ok.txt", "x" * 100)
    source = FolderSource("src", root, max_bytes=100)
    assert "ok.txt" in split(source.scan({}))[0]
    write(root / "ok.txt", "x" * 101)
    assert "101 bytes, limit 100 bytes" in split(source.scan({}))[1]["ok.txt"]


_SCAN_CHILD = """
import json, sys
from embedops.sources.folder import FolderSource
from tests.test_sources import split
docs, skipped, _ = split(FolderSource("src", sys.argv[1]).scan(json.loads(sys.argv[2])))
print(json.dumps([sorted(docs), skipped]))
"""


def scan_as_unprivileged(root: Path, known: dict[str, str | None]) -> tuple[set[str], dict[str, str]]:
    """Scan ``root`` in a process that file modes apply to (see ``python_bound_by_file_modes``)."""
    done = subprocess.run(
        [*python_bound_by_file_modes(), "-c", _SCAN_CHILD, str(root), json.dumps(known)],
        capture_output=True, text=True, env=CHILD_ENV, check=True,
    )
    docs, skipped = json.loads(done.stdout)
    return set(docs), skipped


def test_folder_unreadable_file_is_skipped(tmp_path: Path) -> None:
    root = tmp_path / "src"
    write(root / "good.md", "good")
    secret = write(root / "secret.md", "secret")
    secret.chmod(0)
    try:
        docs, skipped = scan_as_unprivileged(root, {})
    finally:
        secret.chmod(0o644)
    assert docs == {"good.md"}
    assert "permission denied" in skipped["secret.md"]


def test_folder_unlistable_subfolder_keeps_known_files_as_skipped(tmp_path: Path) -> None:
    root = tmp_path / "src"
    write(root / "good.md", "good")
    write(root / "locked" / "a.md", "a")
    (root / "locked").chmod(0)
    try:
        docs, skipped = scan_as_unprivileged(root, {"locked/a.md": "1:1", "good.md": None})
    finally:
        (root / "locked").chmod(0o755)
    assert docs == {"good.md"}
    assert "cannot list folder" in skipped["locked/a.md"]


def test_folder_include_and_exclude_globs(tree: Path) -> None:
    write(tree / "guide" / "drafts" / "wip.md", "wip")
    write(tree / "README.MD", "upper-case extension")
    ids = {i.external_id for i in FolderSource("d", tree).scan({})}
    assert {"guide/drafts/wip.md", "README.MD"} <= ids  # default include ignores case

    only_guide = FolderSource("d", tree, include=["guide/**/*.md"], exclude=["drafts"])
    assert [i.external_id for i in only_guide.scan({})] == ["guide/install.md"]

    by_name = FolderSource("d", tree, include=["*.md", "*.py"], exclude=["a/**", "/readme.md"])
    assert {i.external_id for i in by_name.scan({})} == {
        "a.md", "code/main.py", "guide/drafts/wip.md", "guide/install.md"}  # fmt: skip

    # User excludes add to the defaults, unless the defaults are turned off.
    with_user_exclude = FolderSource("d", tree, exclude=["code"])
    ids = {x.external_id for x in with_user_exclude.scan({})}
    assert "readme.md" in ids and not any(i.startswith((".", "code/")) for i in ids)
    no_defaults = FolderSource("d", tree, include=["**/*"], default_excludes=False)
    everything = {x.external_id for x in no_defaults.scan({})}
    assert {".git/config.toml", ".hidden.md", "node_modules/pkg/index.js"} <= everything


def test_glob_set_semantics() -> None:
    globs = GlobSet(["*.md", "docs/**/*.txt", "/top.rst", "file?.[ch]", "[!x]y.go"])
    assert globs.matches("a.md", "deep/down/a.md")
    assert globs.matches("n.txt", "docs/n.txt") and globs.matches("n.txt", "docs/a/b/n.txt")
    assert not globs.matches("n.txt", "other/docs/n.txt")
    assert globs.matches("top.rst", "top.rst") and not globs.matches("top.rst", "sub/top.rst")
    assert globs.matches("file1.c", "x/file1.c") and not globs.matches("file10.c", "file10.c")
    assert globs.matches("ay.go", "ay.go") and not globs.matches("xy.go", "xy.go")
    assert not GlobSet(["docs/*.md"]).matches("a.md", "docs/sub/a.md")


def test_folder_html_is_stripped_to_text(tmp_path: Path) -> None:
    root = tmp_path / "site"
    write(root / "page.html", """<!doctype html><html><head><title> The  Page </title>
        <style>body { color: red }</style><script>var x = "<b>no</b>";</script></head>
        <body><h1>Heading</h1><p>First &amp; <b>bold</b>
        paragraph.</p><ul><li>one</li><li>two</li></ul><pre>  keep
    layout</pre><noscript>enable js</noscript></body></html>""")
    write(root / "blank.htm", "<html><head><title>Only title</title></head><body> </body></html>")
    docs, skipped, _ = split(FolderSource("site", root).scan({}))
    page = docs["page.html"]
    assert page.text == "Heading\n\nFirst & bold paragraph.\n\none\ntwo\n\n  keep\n    layout"
    assert page.metadata == {"path": "page.html", "ext": "html", "title": "The Page"}
    assert "empty document" in skipped["blank.htm"] and "HTML" in skipped["blank.htm"]


def test_html_and_markdown_helpers() -> None:
    text, title = html_to_text("<div>a<br>b</div><table><tr><td>c</td><td>d</td></tr></table>")
    assert (text, title) == ("a\nb\n\nc d", None)
    assert markdown_title("intro\n### Third level ###\n# Later") == "Third level"
    assert markdown_title("# C#") == "C#"
    assert markdown_title("no heading\n#hashtag") is None


def test_folder_missing_root_or_file_root_raises_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist") as missing:
        list(FolderSource("docs", tmp_path / "nope").scan({}))
    assert missing.value.hint
    write(tmp_path / "file.md", "x")
    with pytest.raises(SourceError, match="is a file, not a folder"):
        list(FolderSource("docs", tmp_path / "file.md").scan({}))


def test_folder_directory_named_like_a_file_is_walked_not_read(tmp_path: Path) -> None:
    root = tmp_path / "src"
    write(root / "chapter.md" / "part.md", "part one")
    docs, skipped, _ = split(FolderSource("src", root).scan({}))
    assert set(docs) == {"chapter.md/part.md"} and not skipped


def test_folder_scans_thousands_of_files_then_answers_unchanged(tmp_path: Path) -> None:
    root = tmp_path / "many"
    for d in range(20):
        sub = root / f"d{d:02d}"
        sub.mkdir(parents=True)
        for f in range(250):
            (sub / f"f{f:03d}.txt").write_text(f"file {d} {f}")
    source = FolderSource("many", root)
    docs, _, _ = split(source.scan({}))
    known: dict[str, str | None] = {k: d.signature for k, d in docs.items()}
    _, _, unchanged = split(source.scan(known))
    assert len(docs) == len(unchanged) == 5000


# --- jsonl ------------------------------------------------------------------------------


def write_jsonl(path: Path, lines: list[str]) -> Path:
    return write(path, "\n".join(lines) + "\n")


def test_jsonl_reads_records_with_title_metadata_and_dates(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "faq.jsonl", [
        json.dumps({"id": "q1", "text": "Use pip.", "title": "Install?", "lang": "en",
                    "tags": ["a"], "stars": 3, "at": "2024-05-01T12:00:00Z"}),
        json.dumps({"id": 7, "text": "No title here.", "at": 1714564800}),
        json.dumps({"id": "q3", "text": "Naive time.", "title": "", "at": "2024-05-01 12:00"}),
    ])  # fmt: skip
    source = JsonlSource("faq", path, title_field="title", updated_field="at")
    items = list(source.scan({}))
    assert [i.external_id for i in items] == ["q1", "7", "q3"]
    docs, skipped, _ = split(items)
    assert not skipped
    q1 = docs["q1"]
    assert q1.text == "Install? Use pip."
    assert q1.metadata == {"title": "Install?", "lang": "en", "stars": 3,
                           "at": "2024-05-01T12:00:00Z"}  # fmt: skip
    # The signature is a hash of the raw line (see tests/test_jsonl_signatures.py).
    assert q1.signature is not None and len(q1.signature) == 32 and q1.signature != docs["7"].signature
    noon = datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert q1.updated_at == docs["7"].updated_at == docs["q3"].updated_at == noon
    assert docs["q3"].text == "Naive time."

    chosen = JsonlSource("faq", path, metadata_fields=["tags", "missing"])
    assert split(chosen.scan({}))[0]["q1"].metadata == {"tags": ["a"]}
    assert split(chosen.scan({}))[0]["q1"].updated_at is None


def test_jsonl_bad_lines_are_skipped_with_line_numbers(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "a", "text": "alpha"}),                 # 1 good
        '{"id": "b", "text": "unterminated',                      # 2 malformed, id readable
        '{"text": "no id", oops}',                                # 3 malformed, no id
        "",                                                       # 4 blank: ignored
        json.dumps({"text": "missing id", "body": 1}),            # 5
        json.dumps({"id": "c"}),                                  # 6 missing text
        json.dumps({"id": "d", "text": ["not", "a", "string"]}),  # 7 non-string text
        json.dumps({"id": "e", "text": "   "}),                   # 8 empty
        json.dumps(["an", "array"]),                              # 9
        json.dumps({"id": "a", "text": "again"}),                 # 10 duplicate
        json.dumps({"id": {"x": 1}, "text": "bad id type"}),      # 11
        json.dumps({"id": "f", "text": "fine"}),                  # 12 good
    ]  # fmt: skip
    path = tmp_path / "data.jsonl"
    raw = ("\n".join(lines) + "\n").encode() + b'{"id": "g", "text": "caf\xe9"}\n'  # 13
    write(path, raw)
    docs, skipped, _ = split(JsonlSource("data", path).scan({}))

    assert {k: d.text for k, d in docs.items()} == {"a": "alpha", "f": "fine"}
    assert skipped["b"].startswith("data.jsonl line 2: malformed JSON (Unterminated string")
    assert "data.jsonl line 3: malformed JSON" in skipped["data.jsonl:line 3"]
    assert "line 5: missing id field 'id'" in skipped["data.jsonl:line 5"]
    assert "body, text" in skipped["data.jsonl:line 5"]  # names the fields it did find
    assert "line 6 (id 'c'): missing text field 'text'" in skipped["c"]
    assert "text field 'text' is an array, expected a string" in skipped["d"]
    assert "line 8 (id 'e'): empty document" in skipped["e"]
    assert "line 9: expected a JSON object, got an array" in skipped["data.jsonl:line 9"]
    assert skipped["data.jsonl:line 10"] == (
        "data.jsonl line 10: duplicate id 'a', first seen at line 1; make ids unique or "
        "remove one of the records"
    )
    assert "id field 'id' is an object" in skipped["data.jsonl:line 11"]
    assert "line 13: not valid UTF-8 (byte 0xe9" in skipped["g"]
    assert len(skipped) == 10


def test_jsonl_gzip_bom_and_custom_fields(tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"\xef\xbb\xbf" + json.dumps({"doc_id": 1, "body": "one"}).encode() + b"\r\n")
        f.write(json.dumps({"doc_id": 2, "body": "two", "extra": None}).encode() + b"\n")
    docs, skipped, _ = split(JsonlSource("c", path, id_field="doc_id", text_field="body").scan({}))
    assert not skipped
    assert {k: d.text for k, d in docs.items()} == {"1": "one", "2": "two"}
    assert docs["2"].metadata == {"extra": None}


def test_jsonl_bad_date_is_skipped_and_missing_date_is_none(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [
        json.dumps({"id": "x", "text": "t", "at": "last tuesday"}),
        json.dumps({"id": "y", "text": "t"}),
    ])  # fmt: skip
    docs, skipped, _ = split(JsonlSource("d", path, updated_field="at").scan({}))
    assert docs["y"].updated_at is None
    assert "field 'at' is not a date ('last tuesday')" in skipped["x"]


def test_jsonl_unreadable_sources_raise_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        list(JsonlSource("s", tmp_path / "missing.jsonl").scan({}))
    with pytest.raises(SourceError, match="is a folder") as folder:
        list(JsonlSource("s", tmp_path).scan({}))
    assert "beir" in (folder.value.hint or "")
    broken = tmp_path / "broken.jsonl.gz"
    records = (json.dumps({"id": str(i), "text": "x" * 50}) + "\n" for i in range(2000))
    payload = gzip.compress("".join(records).encode())
    write(broken, payload[: len(payload) // 2])
    seen: list[SourceItem] = []
    with pytest.raises(SourceError, match="cannot read") as truncated:
        for item in JsonlSource("s", broken).scan({}):
            seen.append(item)
    assert "gzip -t" in (truncated.value.hint or "")
    assert all(isinstance(i, Document) for i in seen)


# --- beir ------------------------------------------------------------------------------------


def test_beir_concatenates_title_and_text_exactly_like_beir(tmp_path: Path) -> None:
    dataset = tmp_path / "scifact"
    write_jsonl(dataset / "corpus.jsonl", [
        json.dumps({"_id": "1", "title": "Title", "text": "Body text."}),
        json.dumps({"_id": "2", "title": "", "text": "  No title.  "}),
        json.dumps({"_id": "3", "title": "Only title ", "text": ""}),
        json.dumps({"_id": "4", "title": "T", "text": "x", "metadata": {"url": "u", "year": 2020}}),
        json.dumps({"_id": "5", "title": "", "text": " "}),
        json.dumps({"title": "no id", "text": "x"}),
    ])  # fmt: skip
    write_jsonl(dataset / "queries.jsonl", [json.dumps({"_id": "q", "text": "query"})])
    items = list(BeirSource("scifact", dataset).scan({}))
    docs, skipped, _ = split(items)
    assert {k: d.text for k, d in docs.items()} == {
        "1": "Title Body text.", "2": "No title.", "3": "Only title", "4": "T x"}  # fmt: skip
    assert docs["1"].metadata == {"title": "Title"}
    assert docs["4"].metadata == {"url": "u", "year": 2020, "title": "T"}
    assert "empty document" in skipped["5"]
    assert "missing id field '_id'" in skipped["corpus.jsonl:line 6"]
    # The corpus file itself is accepted too.
    assert len(split(BeirSource("s", dataset / "corpus.jsonl").scan({}))[0]) == 4


def test_beir_folder_without_corpus_raises(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no corpus.jsonl"):
        list(BeirSource("b", tmp_path).scan({}))
    with pytest.raises(SourceError, match="does not exist") as missing:
        list(BeirSource("b", tmp_path / "absent").scan({}))
    assert "download" in (missing.value.hint or "")


# --- registry --------------------------------------------------------------------------------


def test_make_source_builds_each_kind(tmp_path: Path) -> None:
    assert SOURCE_KINDS == ("folder", "jsonl", "parquet", "beir", "push", "sql")
    folder = make_source("docs", "folder", str(tmp_path), include=["*.md"], max_bytes=100,
                         exclude=None)  # fmt: skip
    assert isinstance(folder, FolderSource) and folder.kind == "folder"
    assert folder.max_bytes == 100 and folder.include == ["*.md"]
    jsonl = make_source("faq", "jsonl", tmp_path / "f.jsonl", id_field="key", title_field="q")
    assert isinstance(jsonl, JsonlSource) and (jsonl.id_field, jsonl.title_field) == ("key", "q")
    parquet = make_source("legacy", "parquet", tmp_path / "l.parquet", id_field="doc_id", metadata_fields=["lang"])
    assert parquet.kind == "parquet" and source_options("parquet") == source_options("jsonl")
    beir = make_source("bench", "beir", tmp_path)
    assert isinstance(beir, BeirSource) and beir.name == "bench" and beir.kind == "beir"
    assert source_options("folder") == ["default_excludes", "exclude", "follow_external_symlinks", "include", "max_bytes"]
    assert source_options("beir") == []
    sql = make_source("t", "sql", None, url_env="APP_DB_URL", table="tickets", id_column="ticket_id")
    assert sql.kind == "sql" and "url_env" in source_options("sql") and "query" in source_options("sql")


def test_make_source_rejects_bad_configuration(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown source kind 'kafka'; valid kinds: folder, "
                       "jsonl, parquet, beir, push, sql"):  # fmt: skip
        make_source("s", "kafka", tmp_path)
    with pytest.raises(ConfigError, match="unknown option 'includes' for a folder source; "
                       "valid options: default_excludes, exclude, follow_external_symlinks, include, max_bytes"):  # fmt: skip
        make_source("s", "folder", tmp_path, includes=["*.md"])
    with pytest.raises(ConfigError, match="valid options: none"):
        make_source("s", "beir", tmp_path, id_field="_id")
    with pytest.raises(ConfigError, match="'include' must be a list of strings, got '\\*.md'"):
        make_source("s", "folder", tmp_path, include="*.md")
    with pytest.raises(ConfigError, match="'max_bytes' must be a positive integer"):
        make_source("s", "folder", tmp_path, max_bytes=0)
    with pytest.raises(ConfigError, match="'text_field' must be a non-empty string"):
        make_source("s", "jsonl", tmp_path, text_field="")
    with pytest.raises(ConfigError, match="needs a non-empty name"):
        make_source(" ", "jsonl", tmp_path)
    with pytest.raises(ConfigError) as err:
        make_source("s", "folder", tmp_path, max_bytes=True)
    assert err.value.hint and err.value.details["option"] == "max_bytes"
