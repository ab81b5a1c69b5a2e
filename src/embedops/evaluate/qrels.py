"""Read eval sets (BEIR qrels/queries, JSONL) with per-line error accounting.

Parsers never stop at a bad line: each one is reported as a :class:`Problem`
naming the file and line, and parsing continues. Only an unreadable file
raises (:class:`~embedops.errors.SourceError`). :func:`validate` then checks
the parsed set against the corpus and drops what cannot be scored.

Example::

    >>> queries = {"q1": "what is wal", "q2": "orphan"}
    >>> qrels = {"q1": {"d1": 1, "gone": 1}, "q3": {"d1": 1}}
    >>> q, r, dropped = validate(queries, qrels, {"d1"})
    >>> sorted(q), r, drop_summary(dropped)
    (['q1'], {'q1': {'d1': 1}}, {'unknown document': 1, 'judgments without a query': 1, 'no judgments': 1})
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from embedops.errors import SourceError
from embedops.evaluate.metrics import Qrels
from embedops.hashing import content_hash

BEIR_QRELS_HEADER = ("query-id", "corpus-id", "score")


@dataclass(frozen=True)
class Problem:
    """One unusable (or partly used) line of an eval-set file."""

    line: int | None
    file: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Report:
    """Collects problems for one file so call sites only name the line."""

    def __init__(self, path: Path) -> None:
        self.file = str(path)
        self.problems: list[Problem] = []

    def add(self, line: int | None, reason: str) -> None:
        self.problems.append(Problem(line, self.file, reason))


def load_beir_qrels(path: str | Path) -> tuple[Qrels, list[Problem]]:
    """Parse a BEIR ``qrels/<split>.tsv``: ``query-id<TAB>corpus-id<TAB>score`` per line.

    The header line is optional. A duplicate (query, doc) pair keeps its first
    grade. Grades must be integers (``"2.0"`` is read as 2).
    """
    path = Path(path)
    report = _Report(path)
    qrels: Qrels = {}
    first_seen: dict[tuple[str, str], int] = {}
    for lineno, text in _lines(path, report):
        fields = [f.strip() for f in text.split("\t")]
        if lineno == 1 and _is_qrels_header(fields):
            continue
        parsed = _qrels_fields(fields, lineno, report)
        if parsed is None:
            continue
        qid, doc, grade = parsed
        if (qid, doc) in first_seen:
            report.add(
                lineno,
                f"duplicate judgment for query {qid!r}, document {doc!r}; "
                f"keeping line {first_seen[qid, doc]}",
            )
            continue
        first_seen[qid, doc] = lineno
        qrels.setdefault(qid, {})[doc] = grade
    return qrels, report.problems


def load_beir_queries(path: str | Path) -> tuple[dict[str, str], list[Problem]]:
    """Parse a BEIR ``queries.jsonl`` (``{"_id": ..., "text": ...}`` per line)."""
    path = Path(path)
    report = _Report(path)
    queries: dict[str, str] = {}
    first_seen: dict[str, int] = {}
    for lineno, record in _json_records(path, report):
        qid = _as_id(record.get("_id"))
        if qid is None:
            report.add(lineno, "missing or invalid \"_id\" (expected a non-empty string)")
            continue
        query = _query_text(record.get("text"), "text", lineno, report)
        if query is None or not _first(qid, lineno, first_seen, report):
            continue
        queries[qid] = query
    return queries, report.problems


def load_jsonl_evalset(path: str | Path) -> tuple[dict[str, str], Qrels, list[Problem]]:
    """Parse an eval set in JSONL, one query per line.

    Each line is ``{"query": str, "relevant_ids": [...], "grades": [...], "id": ...}``;
    ``grades`` (default all 1) must match ``relevant_ids`` in length. Without
    ``id``, the query's id is a hash of its text, stable across file edits.
    """
    path = Path(path)
    report = _Report(path)
    queries: dict[str, str] = {}
    qrels: Qrels = {}
    first_seen: dict[str, int] = {}
    for lineno, record in _json_records(path, report):
        query = _query_text(record.get("query"), "query", lineno, report)
        judgments = _evalset_judgments(record, lineno, report)
        if query is None or judgments is None:
            continue
        qid = _evalset_id(record, query, lineno, report)
        if qid is None or not _first(qid, lineno, first_seen, report):
            continue
        queries[qid] = query
        if judgments:
            qrels[qid] = judgments
    return queries, qrels, report.problems


def load_beir_evalset(
    folder: str | Path, split: str = "test"
) -> tuple[dict[str, str], Qrels, list[Problem]]:
    """Read a BEIR dataset folder's ``queries.jsonl`` and ``qrels/<split>.tsv``."""
    folder = Path(folder)
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        splits = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        raise SourceError(
            f"BEIR dataset {folder} has no qrels for split {split!r}",
            hint=f"choose one of: {', '.join(splits)}" if splits else "check the dataset folder",
            path=str(qrels_path),
        )
    queries, query_problems = load_beir_queries(folder / "queries.jsonl")
    qrels, qrels_problems = load_beir_qrels(qrels_path)
    return queries, qrels, query_problems + qrels_problems


def validate(
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    known_doc_ids: Collection[str] | None = None,
) -> tuple[dict[str, str], Qrels, list[dict[str, Any]]]:
    """Keep only what can be scored; return the kept queries and qrels and what was dropped.

    Dropped: judgments for queries not in ``queries``, judgments for documents
    not in ``known_doc_ids`` (that check is skipped when it is ``None``), and
    queries left without a relevant judgment (metrics could not score them). Each dropped item is a dict with
    ``kind`` ("query"/"judgment"), ``id``, ``reason`` and, for a judgment,
    ``doc_id``. :func:`drop_summary` counts them by reason. Inputs are not modified.
    """
    dropped: list[dict[str, Any]] = []
    kept_qrels: Qrels = {}
    for qid, judgments in qrels.items():
        if qid not in queries:
            dropped.extend(_judgment_drop(qid, d, "judgments without a query") for d in judgments)
            continue
        kept = _known_judgments(qid, judgments, known_doc_ids, dropped)
        reason = _unscorable_reason(judgments, kept)
        if reason is None:
            kept_qrels[qid] = kept
        else:
            dropped.append({"kind": "query", "id": qid, "reason": reason})
    for qid in queries:
        if qid not in qrels:
            dropped.append({"kind": "query", "id": qid, "reason": "no judgments"})
    kept_queries = {qid: text for qid, text in queries.items() if qid in kept_qrels}
    return kept_queries, kept_qrels, dropped


def drop_summary(dropped: list[dict[str, Any]]) -> dict[str, int]:
    """How many items :func:`validate` dropped, per reason (first-seen order)."""
    counts: dict[str, int] = {}
    for item in dropped:
        counts[item["reason"]] = counts.get(item["reason"], 0) + 1
    return counts


def _lines(path: Path, report: _Report) -> Iterator[tuple[int, str]]:
    """Non-blank decoded lines with 1-based numbers; undecodable lines are reported."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SourceError(
            f"cannot read eval-set file {path}: {exc.strerror or exc}",
            hint="check the path and its permissions",
            path=str(path),
        ) from exc
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    # bytes.splitlines splits only on \n, \r and \r\n; str.splitlines would also
    # split inside ids or text on characters like U+2028.
    for lineno, raw in enumerate(data.splitlines(), start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            report.add(lineno, f"invalid UTF-8 at byte {exc.start}")
            continue
        if text.strip():
            yield lineno, text


def _json_records(path: Path, report: _Report) -> Iterator[tuple[int, dict[str, Any]]]:
    for lineno, text in _lines(path, report):
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            report.add(lineno, f"invalid JSON: {exc.msg} (column {exc.colno})")
            continue
        if not isinstance(record, dict):
            report.add(lineno, f"expected a JSON object, got {type(record).__name__}")
            continue
        yield lineno, record


def _is_qrels_header(fields: list[str]) -> bool:
    return tuple(f.lower().replace("_", "-") for f in fields) == BEIR_QRELS_HEADER


def _qrels_fields(fields: list[str], lineno: int, report: _Report) -> tuple[str, str, int] | None:
    if len(fields) != 3:
        report.add(
            lineno,
            f"expected 3 tab-separated fields (query-id, corpus-id, score), got {len(fields)}",
        )
        return None
    qid, doc, raw_grade = fields
    if not qid or not doc:
        report.add(lineno, "empty query-id or corpus-id")
        return None
    grade = _as_grade(raw_grade)
    if grade is None:
        report.add(lineno, f"score {raw_grade!r} is not an integer")
        return None
    return qid, doc, grade


def _as_grade(value: object) -> int | None:
    """An integer grade from an int, an integral float, or their string forms."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                value = float(value)
            except ValueError:
                return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def _as_id(value: object) -> str | None:
    """Ids may be strings or integers (some exports write numeric ids unquoted)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _query_text(value: object, key: str, lineno: int, report: _Report) -> str | None:
    if not isinstance(value, str):
        report.add(lineno, f"missing or non-string {key!r}")
        return None
    if not value.strip():
        report.add(lineno, f"empty query text in {key!r}")
        return None
    return value


def _first(qid: str, lineno: int, first_seen: dict[str, int], report: _Report) -> bool:
    """Record the first line of ``qid``; report and refuse a later one."""
    if qid in first_seen:
        report.add(lineno, f"duplicate query id {qid!r}; keeping line {first_seen[qid]}")
        return False
    first_seen[qid] = lineno
    return True


def _evalset_id(record: dict[str, Any], query: str, lineno: int, report: _Report) -> str | None:
    if "id" not in record:
        return f"q-{content_hash(query)[:16]}"
    qid = _as_id(record["id"])
    if qid is None:
        report.add(lineno, "invalid \"id\" (expected a non-empty string or an integer)")
    return qid


def _evalset_judgments(
    record: dict[str, Any], lineno: int, report: _Report
) -> dict[str, int] | None:
    ids = record.get("relevant_ids")
    if not isinstance(ids, list):
        report.add(lineno, "missing or non-list \"relevant_ids\"")
        return None
    grades = record.get("grades", [1] * len(ids))
    if not isinstance(grades, list) or len(grades) != len(ids):
        report.add(lineno, f"\"grades\" must be a list of {len(ids)} integers, like \"relevant_ids\"")
        return None
    judgments: dict[str, int] = {}
    for raw_id, raw_grade in zip(ids, grades):
        doc, grade = _as_id(raw_id), _as_grade(raw_grade)
        if doc is None or grade is None:
            report.add(lineno, f"invalid judgment ({raw_id!r}, grade {raw_grade!r})")
            return None
        if doc in judgments:
            report.add(lineno, f"document {doc!r} listed twice; keeping its first grade")
            continue
        judgments[doc] = grade
    return judgments


def _judgment_drop(qid: str, doc: str, reason: str) -> dict[str, Any]:
    return {"kind": "judgment", "id": qid, "doc_id": doc, "reason": reason}


def _known_judgments(
    qid: str,
    judgments: Mapping[str, int],
    known_doc_ids: Collection[str] | None,
    dropped: list[dict[str, Any]],
) -> dict[str, int]:
    if known_doc_ids is None:
        return dict(judgments)
    kept: dict[str, int] = {}
    for doc, grade in judgments.items():
        if doc in known_doc_ids:
            kept[doc] = grade
        else:
            dropped.append(_judgment_drop(qid, doc, "unknown document"))
    return kept


def _unscorable_reason(original: Mapping[str, int], kept: Mapping[str, int]) -> str | None:
    if any(grade > 0 for grade in kept.values()):
        return None
    if not original:
        return "no judgments"
    if any(grade > 0 for grade in original.values()):
        return "all relevant documents are unknown"
    return "no relevant judgments"
