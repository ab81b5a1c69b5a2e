"""A folder of text files as a source.

Every file under the root that matches ``include`` and none of ``exclude``
is one document; its external id is its POSIX path relative to the root. A
file's signature is ``"{mtime_ns}:{size}"``, so an unchanged file is answered
:class:`Unchanged` from one ``stat`` call, without opening it.

Files that cannot be used (too large, binary, not UTF-8, empty, unreadable)
are reported as :class:`Skipped` with a reason that says what to do; they never
stop the scan.

>>> src = FolderSource("docs", "./docs", include=["**/*.md"])   # doctest: +SKIP
>>> for item in src.scan(known={}):                              # doctest: +SKIP
...     print(item.external_id)
"""

from __future__ import annotations

import codecs
import os
import re
import stat
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

from embedops.errors import SourceError
from embedops.sources.base import Document, Skipped, SourceItem, Unchanged, encodable
from embedops.sources.validate import document_problem

TEXT_EXTENSIONS: tuple[str, ...] = (
    # prose and markup
    "md", "markdown", "mdx", "txt", "text", "rst", "adoc", "asciidoc", "org", "tex",
    "html", "htm", "xhtml",
    # code
    "py", "pyi", "js", "jsx", "mjs", "cjs", "ts", "tsx", "go", "java", "kt", "kts",
    "scala", "rs", "c", "h", "cc", "cpp", "cxx", "hpp", "hh", "cs", "rb", "php",
    "swift", "m", "sh", "bash", "zsh", "fish", "ps1", "sql", "r", "jl", "lua", "pl",
    "dart", "ex", "exs", "erl", "hs", "clj", "vue", "svelte", "css", "scss",
    "proto", "graphql", "tf",
    # configuration and small data
    "toml", "yaml", "yml", "json", "csv", "tsv", "ini", "cfg", "conf", "xml",
)  # fmt: skip
EXTENSIONLESS_NAMES: tuple[str, ...] = (
    "README", "LICENSE", "CHANGELOG", "CONTRIBUTING", "Makefile", "Dockerfile",
)  # fmt: skip
DEFAULT_INCLUDE: tuple[str, ...] = tuple(f"**/*.{ext}" for ext in TEXT_EXTENSIONS) + tuple(
    f"**/{name}" for name in EXTENSIONLESS_NAMES
)
DEFAULT_EXCLUDE: tuple[str, ...] = (".*", "node_modules", "__pycache__")
DEFAULT_MAX_BYTES = 10_000_000
MAX_TITLE_CHARS = 500  # a title is metadata, returned with every hit: a runaway heading must not exceed its limits

_BINARY_SNIFF_BYTES = 8192
_HTML_EXTENSIONS = frozenset({"html", "htm", "xhtml"})
_MARKDOWN_EXTENSIONS = frozenset({"md", "markdown", "mdx"})
_EXCLUDE_HINT = "or exclude it with --exclude"


class FolderSource:
    """Text files under a directory, one document per file.

    ``include`` replaces :data:`DEFAULT_INCLUDE` (text-like extensions).
    ``exclude`` patterns are added to :data:`DEFAULT_EXCLUDE` (hidden files and
    directories, ``node_modules``, ``__pycache__``) unless ``default_excludes``
    is false, so excluding one more folder never starts ingesting ``.git``.
    Patterns are globs: ``*`` and ``?`` stay inside one path segment, ``**``
    spans segments, and a pattern without ``/`` matches a name at any depth.
    An excluded directory is not descended into. Symbolic links to files inside
    the root are followed; a link whose target (after every hop) lies outside the
    root is skipped with a reason, and any version indexed before is removed, unless
    ``follow_external_symlinks`` is true: otherwise anyone who can write a link into
    the folder could have ``/etc/passwd`` indexed and served. Symbolic links to
    directories are never followed (no cycles).
    """

    kind = "folder"

    def __init__(
        self,
        name: str,
        path: str | Path,
        include: list[str] | None = None,
        exclude: list[str] | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        default_excludes: bool = True,
        follow_external_symlinks: bool = False,
    ) -> None:
        self.name = name
        self.path = Path(path).expanduser()
        self.include = list(DEFAULT_INCLUDE if include is None else include)
        self.exclude = list(DEFAULT_EXCLUDE if default_excludes else ()) + list(exclude or ())
        self.max_bytes = max_bytes
        self.follow_external_symlinks = follow_external_symlinks
        self._real_root = ""  # the root with every link resolved, set by each scan
        # The default list is case-insensitive so README.MD and NOTES.TXT count too.
        self._include = GlobSet(self.include, ignore_case=include is None)
        self._exclude = GlobSet(self.exclude)

    def scan(self, known: Mapping[str, str | None]) -> Iterator[SourceItem]:
        """Yield every matching file once, in sorted order of external id."""
        root = self._check_root()
        self._real_root = os.path.realpath(root)
        yield from self._walk(str(root), "", known)

    def check(self) -> None:
        """The folder exists and is a folder (else SourceError naming the fix)."""
        self._check_root()

    def _check_root(self) -> Path:
        if not self.path.exists():
            raise SourceError(
                f"source {self.name!r}: folder {self.path} does not exist",
                hint="check the path in the source's configuration, or create the folder",
                source=self.name,
                path=str(self.path),
            )
        if not self.path.is_dir():
            raise SourceError(
                f"source {self.name!r}: {self.path} is a file, not a folder",
                hint="point the folder source at a directory, or use kind 'jsonl' for a JSONL file",
                source=self.name,
                path=str(self.path),
            )
        return self.path

    def _walk(
        self, dir_path: str, rel_dir: str, known: Mapping[str, str | None]
    ) -> Iterator[SourceItem]:
        try:
            with os.scandir(dir_path) as it:
                entries = sorted(it, key=_sort_key)
        except OSError as exc:
            if not rel_dir:
                raise SourceError(
                    f"source {self.name!r}: cannot list folder {dir_path}: {exc.strerror or exc}",
                    hint="fix the folder's permissions (it needs read and execute) "
                    "or run as a user who can read it",
                    source=self.name,
                    path=dir_path,
                ) from exc
            yield from _unlistable(rel_dir, exc, known)
            return
        for entry in entries:
            rel = rel_dir + entry.name
            if self._exclude.matches(entry.name, rel):
                continue
            if _is_real_dir(entry):
                yield from self._walk(entry.path, rel + "/", known)
            elif self._include.matches(entry.name, rel):
                item = self._scan_file(entry, rel, known)
                if item is not None:
                    yield item

    def _scan_file(
        self, entry: os.DirEntry[str], rel: str, known: Mapping[str, str | None]
    ) -> SourceItem | None:
        if not rel.isascii() and not _is_utf8_name(rel):
            return _bad_name(rel)
        if not self.follow_external_symlinks and entry.is_symlink():
            target = os.path.realpath(entry.path)
            if not _within(target, self._real_root):
                return _external_link(rel, target)
        try:
            st = entry.stat()  # follows symbolic links
        except FileNotFoundError:
            if entry.is_symlink():
                target = _link_target(entry.path)
                return _skip(rel, f"broken symbolic link to {target}", "fix or remove the link")
            return None  # removed since the directory was listed: it is a deletion
        except OSError as exc:
            return _skip(rel, f"cannot stat file ({exc.strerror or exc})", "fix its permissions")
        if not stat.S_ISREG(st.st_mode):
            return _skip(rel, "not a regular file (a directory link, pipe, socket or device)",
                         "remove it")
        signature = f"{st.st_mtime_ns}:{st.st_size}"
        if known.get(rel) == signature:
            return Unchanged(rel)
        if st.st_size > self.max_bytes:
            return _too_large(rel, st.st_size, self.max_bytes)
        return self._read_document(entry.path, rel, st, signature)

    def _read_document(
        self, path: str, rel: str, st: os.stat_result, signature: str
    ) -> SourceItem | None:
        data = self._read_capped(path, rel, st.st_size)
        if not isinstance(data, bytes):
            return data
        ext = _extension(rel)
        text = _decode(data, rel)
        if isinstance(text, Skipped):
            return text
        metadata: dict[str, str] = {"path": rel, "ext": ext}
        title: str | None = None
        if ext in _HTML_EXTENSIONS:
            text, title = html_to_text(text)
        elif ext in _MARKDOWN_EXTENSIONS:
            title = markdown_title(text)
        if not text or text.isspace():
            stripped = " and stripping HTML" if ext in _HTML_EXTENSIONS else ""
            return _skip(rel, f"empty document (no text after decoding{stripped})", "add content")
        if title:
            metadata["title"] = title[:MAX_TITLE_CHARS]
        doc = Document(rel, text, metadata, _mtime_utc(st.st_mtime_ns), signature)
        # E.g. a NUL past the binary sniff (the first 8 KiB), which PostgreSQL would refuse mid-batch.
        if (found := document_problem(doc)) is not None:
            return _skip(rel, found.problem, found.fix)
        return doc

    def _read_capped(self, path: str, rel: str, size: int) -> bytes | Skipped | None:
        # read(n) allocates n bytes up front, so ask for the stat() size plus
        # one; only a file that grew since stat() is read further, and never
        # past one byte over the limit.
        limit = self.max_bytes + 1
        try:
            with open(path, "rb") as f:
                data = f.read(min(size, self.max_bytes) + 1)
                if size < len(data) < limit:
                    data += f.read(limit - len(data))
        except FileNotFoundError:
            return None  # removed since stat(): a deletion
        except PermissionError:
            return _skip(rel, "permission denied reading the file", "make it readable (chmod +r)")
        except OSError as exc:
            return _skip(rel, f"cannot read the file ({exc.strerror or exc})", "fix it")
        if len(data) > self.max_bytes:
            return _too_large(rel, len(data), self.max_bytes, at_least=True)
        return data


# --- glob patterns -----------------------------------------------------------


class GlobSet:
    """A compiled set of glob patterns matched against a name and a relative path.

    A pattern without ``/`` (``*.md``, ``node_modules``) matches the entry's
    name at any depth; one with ``/`` (``docs/**/*.md``) matches the whole
    path relative to the root. A leading ``/`` anchors a name pattern at the
    root, and a leading ``**/`` is dropped when the rest has no ``/``.
    """

    def __init__(self, patterns: Iterable[str], *, ignore_case: bool = False) -> None:
        name_res: list[str] = []
        path_res: list[str] = []
        for raw in patterns:
            pattern = raw.strip().removeprefix("./").rstrip("/")
            if pattern.startswith("**/") and "/" not in pattern[3:]:
                pattern = pattern[3:]
            if pattern.startswith("/"):
                path_res.append(glob_to_regex(pattern.lstrip("/")))
            elif pattern:
                (path_res if "/" in pattern else name_res).append(glob_to_regex(pattern))
        flags = re.IGNORECASE if ignore_case else 0
        self._name = re.compile("|".join(name_res), flags) if name_res else None
        self._path = re.compile("|".join(path_res), flags) if path_res else None

    def matches(self, name: str, rel: str) -> bool:
        """True when ``name`` matches a name pattern or ``rel`` a path pattern."""
        if self._name is not None and self._name.fullmatch(name) is not None:
            return True
        return self._path is not None and self._path.fullmatch(rel) is not None


def glob_to_regex(pattern: str) -> str:
    """Translate one glob (``*``, ``?``, ``**``, ``[abc]``, ``[!abc]``) to a regex."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("/**", i) and i + 3 == n:
            out.append("(?:/.*)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "[" and (end := pattern.find("]", i + 2)) != -1:
            out.append(_char_class(pattern[i + 1 : end]))
            i = end + 1
        else:
            out.append({"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i])))
            i += 1
    return "(?:" + "".join(out) + ")"


def _char_class(body: str) -> str:
    negate = body.startswith("!")
    body = body[1:] if negate else body
    body = body.replace("\\", "\\\\").replace("^", "\\^").replace("[", "\\[")
    return "[" + ("^" if negate else "") + body + "]"


# --- file helpers --------------------------------------------------------------


def _sort_key(entry: os.DirEntry[str]) -> str:
    # A directory sorts as "name/" so the output is in plain string order of
    # the relative paths ("a.md" < "a/b.md" because "." < "/").
    return entry.name + "/" if _is_real_dir(entry) else entry.name


def _is_real_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _unlistable(
    rel_dir: str, exc: OSError, known: Mapping[str, str | None]
) -> Iterator[Skipped]:
    """Report a folder that cannot be listed, keeping every known file under it."""
    reason = (
        f"{rel_dir}: cannot list folder ({exc.strerror or exc}); fix its permissions "
        f"(it needs read and execute) {_EXCLUDE_HINT}"
    )
    kept = sorted(ext_id for ext_id in known if ext_id.startswith(rel_dir))
    # Skipping the known files (not dropping them) keeps their previous version.
    for ext_id in kept:
        yield Skipped(ext_id, reason)
    if not kept:
        yield Skipped(rel_dir, reason)


def _is_utf8_name(rel: str) -> bool:
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _bad_name(rel: str) -> Skipped:
    printable = rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return _skip(printable, "the file name is not valid UTF-8", "rename the file")


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _external_link(rel: str, target: str) -> Skipped:
    problem = f"symbolic link to {encodable(target)}, outside the source folder; not indexed"
    fix = "set the source option follow_external_symlinks = true to index files outside the folder"
    # Not a bad version of a record of this source but no record of it: a version indexed before goes.
    return Skipped(rel, f"{rel}: {problem} (a version indexed before is removed); {fix} {_EXCLUDE_HINT}",
                   keeps_previous=False)


def _link_target(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "an unreadable target"


def _skip(rel: str, problem: str, fix: str, exclude: str = _EXCLUDE_HINT) -> Skipped:
    """A skip whose reason reads "<file>: <problem>; <fix> or exclude it with --exclude"."""
    return Skipped(rel, f"{rel}: {problem}; {fix} {exclude}")


def _too_large(rel: str, size: int, limit: int, *, at_least: bool = False) -> Skipped:
    shown = f"more than {limit:,}" if at_least else f"{size:,}"
    problem = f"file too large ({shown} bytes, limit {limit:,} bytes)"
    return _skip(rel, problem, "raise the limit with the source option max_bytes")


def _decode(data: bytes, rel: str) -> str | Skipped:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _skip(rel, "file is UTF-16 (byte-order mark), not UTF-8",
                     "convert it to UTF-8 (iconv -f UTF-16 -t UTF-8)")
    nul = data.find(b"\x00", 0, _BINARY_SNIFF_BYTES)
    if nul != -1:
        problem = f"binary file (NUL byte at offset {nul})"
        return _skip(rel, problem, "only text files can be indexed;", "exclude it with --exclude")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        problem = f"file is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        return _skip(rel, problem, "convert it to UTF-8")
    return text.removeprefix("\ufeff")


def _extension(rel: str) -> str:
    name = rel.rpartition("/")[2]
    stem, dot, ext = name.rpartition(".")
    return ext.lower() if dot and stem else ""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _mtime_utc(mtime_ns: int) -> datetime:
    # Integer arithmetic keeps microsecond precision that float timestamps lose.
    return _EPOCH + timedelta(microseconds=mtime_ns // 1000)


# --- text extraction -------------------------------------------------------------

_ATX_HEADING = re.compile(r" {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*")
_FENCE = re.compile(r" {0,3}(```|~~~)")


def markdown_title(text: str) -> str | None:
    """The first ATX heading (``# Title``) outside fenced code, or None."""
    in_fence = False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and (m := _ATX_HEADING.fullmatch(line)) and m.group(1).strip():
            return m.group(1).strip()
    return None


_BLOCK_TAGS = frozenset({
    "p", "div", "section", "article", "header", "footer", "nav", "aside", "main",
    "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul", "ol",
    "dl", "figure", "figcaption", "form", "hr", "body",
})  # fmt: skip
_LINE_TAGS = frozenset({"br", "li", "tr", "dt", "dd"})
_CELL_TAGS = frozenset({"td", "th"})
_DROPPED_TAGS = frozenset({"script", "style", "noscript", "template"})
_SPACES = re.compile(r"\s+")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_BLANK_RUNS = re.compile(r"\n{3,}")


class _TextExtractor(HTMLParser):
    """Collects visible text: block elements become paragraphs, <pre> keeps layout."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title_parts: list[str] = []
        self._dropped = 0
        self._pre = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open_or_close(tag, opening=True)

    def handle_endtag(self, tag: str) -> None:
        self._open_or_close(tag, opening=False)

    def _open_or_close(self, tag: str, *, opening: bool) -> None:
        step = 1 if opening else -1
        if tag in _DROPPED_TAGS:
            self._dropped = max(0, self._dropped + step)
        elif tag == "title":
            self._in_title = opening
        elif tag == "pre":
            self._pre = max(0, self._pre + step)
        if tag in _BLOCK_TAGS:
            self.parts.append("\n\n")
        elif tag in _LINE_TAGS and opening:
            self.parts.append("\n")
        elif tag in _CELL_TAGS and opening and not self._at_line_start():
            self.parts.append(" ")

    def _at_line_start(self) -> bool:
        return not self.parts or self.parts[-1].endswith("\n")

    def handle_data(self, data: str) -> None:
        if self._dropped:
            return
        if self._in_title:
            self.title_parts.append(data)
        elif self._pre:
            self.parts.append(data)
        else:
            collapsed = _SPACES.sub(" ", data)
            if self._at_line_start():
                collapsed = collapsed.lstrip()
            self.parts.append(collapsed)


def html_to_text(html: str) -> tuple[str, str | None]:
    """Visible text of an HTML page and its ``<title>`` (None when absent).

    Script, style, noscript and template contents are dropped; entities are
    decoded; block elements are separated by blank lines.
    """
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    text = _TRAILING_SPACE.sub("\n", "".join(parser.parts))
    text = _BLANK_RUNS.sub("\n\n", text).strip()
    title = _SPACES.sub(" ", "".join(parser.title_parts)).strip()
    return text, title or None
