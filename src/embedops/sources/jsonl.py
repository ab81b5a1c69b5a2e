"""A JSON Lines file (optionally gzipped) as a source: one JSON object per line.

Each record's ``signature`` is a keyed hash of its raw line (the key covers
the source's options and the parser version). A line whose signature the
catalog holds is byte-identical to a line already synced, so it is answered
:class:`Unchanged` without being parsed: a no-op re-sync reads bytes and
hashes them, nothing more.

A line that cannot be used becomes a :class:`Skipped` item naming the file,
the line number and the problem; the other lines proceed. Only a missing or
unreadable file (or a gzip stream that breaks off) raises :class:`SourceError`,
because the records after the break are unknown and must not be taken as
deleted.

>>> src = JsonlSource("faq", "faq.jsonl", title_field="question")   # doctest: +SKIP
>>> docs = [d for d in src.scan({}) if isinstance(d, Document)]      # doctest: +SKIP
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import json
import re
import zlib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from embedops.errors import SourceError
from embedops.sources.base import Document, Skipped, SourceItem, Unchanged, encodable
from embedops.sources.validate import Problem, id_problem, metadata_problem, text_problem

# Bump when a change below alters the Document a line yields: every signature
# then changes, and the next sync reads every record again.
PARSER_VERSION = "1"
_SCALAR_TYPES = frozenset({str, int, float, bool})
_JSON_TYPE_NAMES = {dict: "an object", list: "an array", str: "a string", int: "a number",
                    float: "a number", bool: "a boolean", type(None): "null"}  # fmt: skip


class JsonlSource:
    """Records of a ``.jsonl`` / ``.jsonl.gz`` file.

    ``text`` is ``title + " " + text`` when ``title_field`` is set and the
    record has a non-empty title. ``metadata_fields=None`` keeps every other
    scalar field (string, number, boolean, null) as metadata; a list keeps
    exactly those fields. ``updated_field`` names an ISO-8601 string or epoch
    seconds field to use as ``updated_at`` (naive times are taken as UTC).
    Ids may be strings or integers; a later record with an id already seen is
    skipped.
    """

    kind = "jsonl"
    record_unit = "line"  # how a skip names a record's place in the file: "line 12"

    def __init__(
        self,
        name: str,
        path: str | Path,
        id_field: str = "id",
        text_field: str = "text",
        title_field: str | None = None,
        metadata_fields: list[str] | None = None,
        updated_field: str | None = None,
    ) -> None:
        self.name = name
        self.path = Path(path).expanduser()
        self.id_field = id_field
        self.text_field = text_field
        self.title_field = title_field
        self.metadata_fields = None if metadata_fields is None else list(metadata_fields)
        self.updated_field = updated_field
        self._id_pattern = _salvage_pattern(id_field)
        self._signature_key = self._options_digest()

    def scan(self, known: Mapping[str, str | None]) -> Iterator[SourceItem]:
        """Yield one item per non-blank line, in file order.

        ``known`` maps ids to the signatures stored at the last sync. A line
        whose signature is one of them is the very line that record was last
        synced from (the signature was computed from a line that parses to
        that id), so it is answered :class:`Unchanged` without being parsed.
        """
        path = self._records_path()
        label = encodable(path.name)
        seen: dict[str, int] = {}
        loads = json.loads
        key = self._signature_key
        blake2b = hashlib.blake2b
        synced = {signature: ext_id for ext_id, signature in known.items() if signature is not None}
        try:
            with _open_binary(path) as lines:
                for lineno, line in enumerate(lines, 1):
                    signature = blake2b(line.rstrip(b"\r\n"), digest_size=16, key=key).hexdigest()
                    ext_id = synced.get(signature)
                    # A repeated line is a duplicate record: the full path reports it.
                    if ext_id is not None and ext_id not in seen:
                        seen[ext_id] = lineno
                        yield Unchanged(ext_id)
                        continue
                    try:
                        # Decoding first skips json's per-call encoding sniffing.
                        obj = loads(line.decode("utf-8"))
                    except ValueError as exc:
                        if line.isspace() or not line:
                            continue  # blank lines separate nothing; they are not records
                        if lineno == 1 and line.startswith(codecs.BOM_UTF8):
                            line = line[len(codecs.BOM_UTF8) :]
                            yield self._retry_after_bom(label, line, seen, signature)
                            continue
                        yield self._unparsable(label, lineno, line, exc, seen)
                        continue
                    yield self._record(label, lineno, obj, seen, signature)
        except (OSError, EOFError, zlib.error) as exc:
            raise self._read_error(path, exc) from exc

    def records_with(self, field: str) -> Iterator[tuple[SourceItem, Any]]:
        """Each line's item (as :meth:`scan` reads it, without signatures) with the value of one more
        ``field`` (``embedops adopt`` reads vectors so); None where the line is no JSON object."""
        path = self._records_path()
        seen: dict[str, int] = {}
        try:
            with _open_binary(path) as lines:
                for lineno, line in enumerate(lines, 1):
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line.decode("utf-8").lstrip("\ufeff"))
                    except ValueError as exc:
                        yield self._unparsable(path.name, lineno, line, exc, seen), None
                        continue
                    extra = obj.get(field) if type(obj) is dict else None
                    yield self._record(path.name, lineno, obj, seen, ""), extra
        except (OSError, EOFError, zlib.error) as exc:
            raise self._read_error(path, exc) from exc

    def _options_digest(self) -> bytes:
        """Key of the line signatures: another option or parser is another mapping from line to record."""
        options = [PARSER_VERSION, self.kind, self.id_field, self.text_field, self.title_field,
                   self.metadata_fields, self.updated_field]  # fmt: skip
        return hashlib.blake2b(json.dumps(options).encode(), digest_size=32).digest()

    def _retry_after_bom(self, label: str, line: bytes, seen: dict[str, int], signature: str) -> SourceItem:
        try:
            return self._record(label, 1, json.loads(line.decode("utf-8")), seen, signature)
        except ValueError as exc:
            return self._unparsable(label, 1, line, exc, seen)

    def _read_error(self, path: Path, exc: BaseException) -> SourceError:
        if isinstance(exc, PermissionError):
            hint = f"make the file readable (chmod +r {path})"
        else:
            hint = "the file is truncated or corrupt; re-create it (gzip -t checks a .gz file)"
        return SourceError(
            f"source {self.name!r}: cannot read {path}: {exc}",
            hint=hint,
            source=self.name,
            path=str(path),
        )

    def check(self) -> None:
        """The records file exists and is a file (else SourceError naming the fix)."""
        self._records_path()

    # --- hooks a dialect (BEIR) overrides ---------------------------------------

    def _records_path(self) -> Path:
        """The file to read; raises SourceError when it cannot be used."""
        if not self.path.exists():
            raise SourceError(
                f"source {self.name!r}: file {self.path} does not exist",
                hint="check the path in the source's configuration",
                source=self.name,
                path=str(self.path),
            )
        if self.path.is_dir():
            raise SourceError(
                f"source {self.name!r}: {self.path} is a folder, not a JSONL file",
                hint="point the source at the .jsonl file, use kind 'beir' for a BEIR dataset "
                "folder, or kind 'folder' for a folder of text files",
                source=self.name,
                path=str(self.path),
            )
        return self.path

    def _compose_text(self, obj: dict[str, Any], text: str) -> str:
        if self.title_field is not None:
            title = obj.get(self.title_field)
            if type(title) is str and title:
                return title + " " + text
        return text

    def _metadata(self, obj: dict[str, Any]) -> dict[str, Any]:
        if self.metadata_fields is not None:
            return {k: obj[k] for k in self.metadata_fields if k in obj}
        id_field, text_field = self.id_field, self.text_field
        return {
            k: v
            for k, v in obj.items()
            if k != id_field and k != text_field and (v is None or type(v) in _SCALAR_TYPES)
        }

    # --- one record ------------------------------------------------------------------

    def _record(self, label: str, lineno: int, obj: Any, seen: dict[str, int], signature: str) -> SourceItem:
        if type(obj) is not dict:
            problem = f"expected a JSON object, got {_json_type(obj)}"
            return self._skip(None, label, lineno, problem, "put one object per line")
        ext_id = _as_id(obj.get(self.id_field))
        if ext_id is None:
            return self._bad_id(label, lineno, obj)
        first = seen.setdefault(ext_id, lineno)
        if first != lineno:
            problem = f"duplicate id {ext_id!r}, first seen at {self.record_unit} {first}"
            fix = "make ids unique or remove one of the records"
            return self._skip(None, label, lineno, problem, fix)
        raw = obj.get(self.text_field)
        if type(raw) is not str:
            return self._bad_text(ext_id, label, lineno, obj)
        text = self._compose_text(obj, raw)
        if not text or text.isspace():
            problem = f"empty document (field {self.text_field!r} has no text)"
            return self._skip(ext_id, label, lineno, problem, "add text or remove the record")
        updated_at: datetime | None = None
        if self.updated_field is not None and (value := obj.get(self.updated_field)) is not None:
            updated_at = _parse_time(value)
            if updated_at is None:
                problem = f"field {self.updated_field!r} is not a date ({value!r})"
                fix = "use ISO 8601 (2024-05-01T12:00:00Z) or epoch seconds"
                return self._skip(ext_id, label, lineno, problem, fix)
        metadata = self._metadata(obj)
        # Checked here, where the line number is known: a bad string or metadata fails later steps otherwise.
        if (found := text_problem(text) or metadata_problem(metadata)) is not None:
            return self._skip(ext_id, label, lineno, found.problem, found.fix)
        return Document(ext_id, text, metadata, updated_at, signature)

    def _skip(self, ext_id: str | None, label: str, lineno: int, problem: str, fix: str, *,
              name_id: bool = True) -> Skipped:
        return _skip(ext_id, label, lineno, problem, fix, name_id=name_id, unit=self.record_unit)

    def _bad_id(self, label: str, lineno: int, obj: dict[str, Any]) -> Skipped:
        field = self.id_field
        value = obj.get(field)
        fix = (
            "give the record an id or set the source option id_field to the field that holds it "
            f"(fields present: {_field_list(obj)})"
        )
        if field not in obj:
            problem = f"missing id field {field!r}"
        elif type(value) is str:
            found = id_problem(value)
            assert found is not None  # _as_id refused it
            problem, fix = f"id field {field!r}{_id_words(value, found)}", found.fix
        elif value is None:
            problem = f"id field {field!r} is null"
        else:
            problem = f"id field {field!r} is {_json_type(value)}, expected a string or integer"
        return self._skip(None, label, lineno, problem, fix)

    def _bad_text(self, ext_id: str, label: str, lineno: int, obj: dict[str, Any]) -> Skipped:
        field = self.text_field
        value = obj.get(field)
        if field not in obj:
            problem = f"missing text field {field!r}"
            fix = f"add it or set the source option text_field (fields present: {_field_list(obj)})"
        elif value is None:
            problem, fix = f"text field {field!r} is null", "give the record its text, or remove it"
        else:
            problem = f"text field {field!r} is {_json_type(value)}, expected a string"
            fix = "store the text as a JSON string"
        return self._skip(ext_id, label, lineno, problem, fix)

    def _unparsable(
        self, label: str, lineno: int, line: bytes, exc: ValueError, seen: dict[str, int]
    ) -> Skipped:
        if isinstance(exc, UnicodeDecodeError):
            byte = line[exc.start]
            problem = f"not valid UTF-8 (byte 0x{byte:02x} at offset {exc.start} of the line)"
            fix = "convert the file to UTF-8"
        else:
            problem, fix = f"malformed JSON ({_json_problem(line)})", "fix or remove the line"
        # When the id can still be read, report the record under its id: the
        # sync then keeps its previous version instead of deleting it.
        ext_id = self._salvage_id(line)
        if ext_id is not None and seen.setdefault(ext_id, lineno) != lineno:
            ext_id = None
        return self._skip(ext_id, label, lineno, problem, fix, name_id=False)

    def _salvage_id(self, line: bytes) -> str | None:
        m = self._id_pattern.search(line)
        if m is None:
            return None
        if m.group(2) is not None:
            return m.group(2).decode("ascii")
        try:
            return _as_id(json.loads(b'"' + m.group(1) + b'"'))
        except ValueError:
            return None


def _open_binary(path: Path) -> gzip.GzipFile | io.BufferedReader:
    # Bytes lines: json.loads decodes them itself, which skips a text-layer pass
    # and lets an invalid-UTF-8 line be reported as one bad record.
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return open(path, "rb")


def _salvage_pattern(id_field: str) -> re.Pattern[bytes]:
    key = re.escape(json.dumps(id_field).encode())
    return re.compile(key + rb'\s*:\s*(?:"((?:[^"\\]|\\.)*)"|(-?\d+)\b)')


def _skip(
    ext_id: str | None, label: str, lineno: int, problem: str, fix: str, *, name_id: bool = True, unit: str = "line"
) -> Skipped:
    """A skip reading "<file> line <n> (id 'x'): <problem>; <fix>" (``unit``: "row" in a Parquet file).

    Without a usable id the record is reported as ``"<file>:line <n>"``.
    """
    where = f"{label} {unit} {lineno}"
    if ext_id is None:
        return Skipped(f"{label}:{unit} {lineno}", f"{where}: {problem}; {fix}")
    shown = f"{where} (id {ext_id!r})" if name_id else where
    return Skipped(ext_id, f"{shown}: {problem}; {fix}")


def _json_problem(line: bytes) -> str:
    """json's complaint about a line, without the line break it sees as part of a string."""
    try:
        json.loads(line.rstrip(b"\r\n"))
    except json.JSONDecodeError as exc:
        return f"{exc.msg.removesuffix(' at')} at column {exc.colno}"
    except ValueError as exc:
        return str(exc)
    return "unexpected content"


def _as_id(value: Any) -> str | None:
    if type(value) is str:
        return value if id_problem(value) is None else None
    if type(value) is int:
        return str(value)
    return None


def _id_words(value: str, found: Problem) -> str:
    """How an unusable string id reads after "id field 'id'"."""
    if not value:
        return " is an empty string"
    if value.isspace():
        return " is blank (only whitespace)"
    return found.problem.removeprefix("id")  # ": longer than ...", ": contains a NUL ..."


def _field_list(obj: dict[str, Any]) -> str:
    return encodable(", ".join(sorted(obj))) or "none"


def _json_type(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _parse_time(value: Any) -> datetime | None:
    """ISO-8601 string or epoch seconds → aware UTC datetime; None when neither."""
    try:
        if type(value) in (int, float):
            return datetime.fromtimestamp(value, tz=UTC)
        if type(value) is str:
            parsed = datetime.fromisoformat(value.strip())
            if parsed.tzinfo is None:
                return parsed.replace(tzinfo=UTC)
            return parsed.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None
