"""Labelled pairs for label matching: ``text_a, text_b, label`` as TSV, CSV or JSONL.

A header row (``text_a``, ``text_b``, ``label``; also ``sentence1``/``sentence2``)
is optional in TSV/CSV. Labels are 1/0, true/false, yes/no (any case), or JSON
booleans/integers. Unusable lines are skipped and reported with their line
numbers; a file with no usable line, or without both kinds of label, is refused.

>>> parse_label("Yes"), parse_label(0)
(True, False)
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from embedops.errors import ConfigError
from embedops.hashing import content_hash

Format = Literal["tsv", "csv", "jsonl"]
_TRUE = {"1", "true", "yes", "y", "duplicate", "match"}
_FALSE = {"0", "false", "no", "n", "different", "nomatch"}
_COLUMNS = {"text_a": ("text_a", "a", "sentence1", "left"), "text_b": ("text_b", "b", "sentence2", "right"),
            "label": ("label", "is_duplicate", "match")}
_SUFFIXES: dict[str, Format] = {".tsv": "tsv", ".txt": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
MAX_PROBLEMS_KEPT = 50


@dataclass(frozen=True)
class LabelledPairs:
    """Pairs ``(text_a, text_b, label)`` read from one file, and the lines that could not be used."""

    pairs: list[tuple[str, str, bool]]
    origin: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def positives(self) -> int:
        return sum(1 for _, _, label in self.pairs if label)

    def to_json(self) -> list[list[Any]]:
        return [[a, b, int(label)] for a, b, label in self.pairs]

    @classmethod
    def from_json(cls, rows: list[list[Any]] | None, origin: dict[str, Any] | None = None) -> LabelledPairs:
        return cls([(str(a), str(b), bool(y)) for a, b, y in rows or []], dict(origin or {}))


def parse_label(value: Any) -> bool | None:
    """True/False for a recognised label, None otherwise."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


def read_labels(path: Path, fmt: str | None = None) -> LabelledPairs:
    """Read labelled pairs; raises :class:`ConfigError` naming the file when nothing usable is in it."""
    path = Path(path)
    kind = _format(path, fmt)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read labels file {path}: {exc.strerror or exc}", hint="check the path") from exc
    lines, problems = _decode_lines(raw)
    pairs: list[tuple[str, str, bool]] = []
    reader = _read_jsonl if kind == "jsonl" else _read_delimited
    for line_no, row in reader(lines, kind, problems):
        pair = _pair(row, line_no, problems)
        if pair is not None:
            pairs.append(pair)
    result = LabelledPairs(pairs, {
        "path": str(path), "format": kind, "content_hash": content_hash(raw.decode("utf-8", "replace")),
        "pairs": len(pairs), "positives": sum(1 for p in pairs if p[2]), "problems": problems[:MAX_PROBLEMS_KEPT],
    }, problems)
    _check_usable(path, result)
    return result


def _format(path: Path, fmt: str | None) -> Format:
    if fmt is not None:
        if fmt not in ("tsv", "csv", "jsonl"):
            raise ConfigError(f"unknown labels format {fmt!r}", hint="use tsv, csv or jsonl")
        return fmt  # type: ignore[return-value]
    kind = _SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(f"cannot tell the format of labels file {path} from its suffix",
                          hint="name it .tsv, .csv or .jsonl (columns text_a, text_b, label)")
    return kind


def _decode_lines(raw: bytes) -> tuple[list[str], list[str]]:
    """Lines as text; a line that is not UTF-8 becomes a problem and an empty line (numbers are kept)."""
    problems, lines = [], []
    for i, chunk in enumerate(raw.splitlines(), 1):
        try:
            lines.append(chunk.decode("utf-8-sig" if i == 1 else "utf-8"))
        except UnicodeDecodeError:
            problems.append(f"line {i}: invalid UTF-8")
            lines.append("")
    return lines, problems


def _read_delimited(lines: list[str], kind: Format, problems: list[str]) -> list[tuple[int, dict[str, Any]]]:
    numbered = [(i, line) for i, line in enumerate(lines, 1) if line.strip()]
    if not numbered:
        return []
    rows = [(i, _fields(line, kind)) for i, line in numbered]
    columns = _header(rows[0][1])
    if columns is not None:
        rows = rows[1:]
    out = []
    for i, fields in rows:
        if columns is None:
            if len(fields) != 3:
                problems.append(f"line {i}: expected 3 fields (text_a, text_b, label), got {len(fields)}")
                continue
            out.append((i, dict(zip(("text_a", "text_b", "label"), fields, strict=True))))
        elif len(fields) <= max(columns.values()):
            problems.append(f"line {i}: expected at least {max(columns.values()) + 1} fields, got {len(fields)}")
        else:
            out.append((i, {key: fields[pos] for key, pos in columns.items()}))
    return out


def _fields(line: str, kind: Format) -> list[str]:
    # TSV quotes nothing (a sentence may hold a lone quote); CSV follows RFC 4180 quoting.
    if kind == "tsv":
        return next(csv.reader(io.StringIO(line), delimiter="\t", quoting=csv.QUOTE_NONE), [])
    return next(csv.reader(io.StringIO(line)), [])


def _header(fields: list[str]) -> dict[str, int] | None:
    """Column positions when the first row is a header, else None."""
    names = [f.strip().lower() for f in fields]
    found = {}
    for key, aliases in _COLUMNS.items():
        pos = next((i for i, n in enumerate(names) if n in aliases), None)
        if pos is not None:
            found[key] = pos
    return found if len(found) == 3 else None


def _read_jsonl(lines: list[str], kind: Format, problems: list[str]) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {i}: not valid JSON ({exc.msg})")
            continue
        if not isinstance(obj, dict):
            problems.append(f"line {i}: expected an object with text_a, text_b, label")
            continue
        row = {key: next((obj[a] for a in aliases if a in obj), None) for key, aliases in _COLUMNS.items()}
        out.append((i, row))
    return out


def _pair(row: dict[str, Any], line_no: int, problems: list[str]) -> tuple[str, str, bool] | None:
    a, b, raw_label = row.get("text_a"), row.get("text_b"), row.get("label")
    if not isinstance(a, str) or not isinstance(b, str) or not a.strip() or not b.strip():
        problems.append(f"line {line_no}: text_a and text_b must be non-empty text")
        return None
    label = parse_label(raw_label) if raw_label is not None else None
    if label is None:
        problems.append(f"line {line_no}: label {raw_label!r} is not one of 1/0, true/false, yes/no")
        return None
    return a.strip(), b.strip(), label


def _check_usable(path: Path, result: LabelledPairs) -> None:
    first = "; ".join(result.problems[:5])
    if not result.pairs:
        raise ConfigError(f"labels file {path} has no usable pair" + (f": {first}" if first else " (it is empty)"),
                          hint="one pair per line: text_a, text_b, label (1/0)", problems=result.problems[:20])
    if result.positives in (0, len(result.pairs)):
        raise ConfigError(f"labels file {path} needs both positive and negative pairs (it has {result.positives} positive"
                          f" of {len(result.pairs)})", hint="label matching measures precision: add pairs of both kinds")


__all__ = ["LabelledPairs", "parse_label", "read_labels"]
