"""Eval sets in the catalog: import (versioned), look-up, listing.

An eval set is bound to one source, so its judgments name that source's
external ids unambiguously and survive re-chunking and model changes. Every
import that changes the content (queries, metadata, judgments or the bound
source) is a new version; the same content again creates nothing.
``NAME`` means the latest version, ``NAME@3`` a given one.

>>> with Workspace.open() as ws:                                   # doctest: +SKIP
...     result = import_evalset(ws, "scifact", "data/scifact", split="test")
...     result.info.label, result.created
('scifact@1', True)
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import sqlalchemy as sa

from embedops.catalog import schema
from embedops.catalog.db import read_tx
from embedops.catalog.ledger import write_ledger
from embedops.errors import ConfigError, NotFound
from embedops.evaluate.metrics import Qrels
from embedops.evaluate.qrels import (
    Problem,
    drop_summary,
    load_beir_evalset,
    load_jsonl_evalset,
    validate,
)
from embedops.hashing import content_hash
from embedops.names import checked_name

if TYPE_CHECKING:
    from embedops.workspace import Workspace

EvalFormat = Literal["beir", "jsonl"]
FORMATS: tuple[str, ...] = ("beir", "jsonl")
# JSONL keys that are the eval set itself; every other key is query metadata.
_JSONL_RESERVED = frozenset({"query", "relevant_ids", "grades", "id", "metadata"})


@dataclass(frozen=True)
class EvalQuery:
    id: str
    text: str
    metadata: dict[str, Any]
    line: int | None = None


@dataclass
class ParsedEvalSet:
    """An eval-set file read into memory, with the line of every record and the unusable lines."""

    format: str
    split: str | None
    origin: str
    queries: dict[str, EvalQuery]
    qrels: Qrels
    qrel_lines: dict[tuple[str, str], int | None]
    problems: list[Problem]

    def digest(self, source: str) -> str:
        """Content hash: queries, their metadata, judgments and the bound source."""
        canonical = {
            "source": source,
            "queries": sorted([q.id, q.text, q.metadata] for q in self.queries.values()),
            "qrels": sorted([qid, doc, grade] for qid, docs in self.qrels.items() for doc, grade in docs.items()),
        }
        return content_hash(json.dumps(canonical, sort_keys=True, ensure_ascii=False, default=str))


@dataclass(frozen=True)
class EvalSetInfo:
    """One stored version of an eval set."""

    id: int
    name: str
    version: int
    source: str
    source_id: int
    alias: str | None
    created_at: float
    content_hash: str
    is_canary: bool
    format: str
    split: str | None
    origin: str
    queries: int
    judgments: int
    problems: int

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    def files(self) -> tuple[str, str]:
        """(queries file, qrels file) the line numbers refer to."""
        if self.format == "beir":
            return str(Path(self.origin) / "queries.jsonl"), str(Path(self.origin) / "qrels" / f"{self.split}.tsv")
        return self.origin, self.origin

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("id", "source_id")}
        out["label"] = self.label
        return out


@dataclass
class EvalSetData:
    """A stored eval set, loaded for a run."""

    info: EvalSetInfo
    queries: dict[str, EvalQuery]
    qrels: Qrels
    qrel_lines: dict[tuple[str, str], int | None]
    problems: list[Problem]


@dataclass
class ImportResult:
    info: EvalSetInfo
    created: bool
    """False when the latest version already had this content (nothing was written)."""
    problems: list[Problem]
    check: dict[str, Any] = field(default_factory=dict)
    """What a run would drop against the source's documents as they are now."""

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.info.to_dict(),
            "created": self.created,
            "problem_lines": [p.to_dict() for p in self.problems[:100]],
            "check": self.check,
        }


# -- parsing -------------------------------------------------------------------
def detect_format(path: Path) -> EvalFormat:
    return "beir" if path.is_dir() else "jsonl"


def parse_evalset(path: str | Path, *, fmt: str | None = None, split: str = "test") -> ParsedEvalSet:
    """Read a BEIR folder (``queries.jsonl`` + ``qrels/<split>.tsv``) or a JSONL eval set."""
    path = Path(path).expanduser().resolve()
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise ConfigError(f"unknown eval-set format {fmt!r}", hint=f"use one of: {', '.join(FORMATS)}")
    if fmt == "beir":
        texts, qrels, problems = load_beir_evalset(path, split)
        # BEIR's queries.jsonl holds every split's queries; a split is the queries its qrels judge.
        texts = {qid: text for qid, text in texts.items() if qid in qrels}
        queries = _beir_queries(path / "queries.jsonl", texts)
        lines = _beir_qrel_lines(path / "qrels" / f"{split}.tsv", qrels)
        return ParsedEvalSet("beir", split, str(path), queries, qrels, lines, problems)
    texts, qrels, problems = load_jsonl_evalset(path)
    queries = _jsonl_queries(path, texts)
    lines = {(qid, doc): queries[qid].line for qid, docs in qrels.items() for doc in docs}
    return ParsedEvalSet("jsonl", None, str(path), queries, qrels, lines, problems)


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """JSON object lines with their 1-based numbers; the loaders already reported bad lines."""
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for lineno, raw in enumerate(data.splitlines(), start=1):
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        if isinstance(record, dict):
            yield lineno, record


def _as_id(value: object) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value.strip() or None
    return None


def _beir_queries(path: Path, texts: dict[str, str]) -> dict[str, EvalQuery]:
    out: dict[str, EvalQuery] = {}
    for lineno, record in _records(path):
        qid = _as_id(record.get("_id"))
        if qid in texts and qid not in out and record.get("text") == texts[qid]:
            meta = record.get("metadata")
            out[qid] = EvalQuery(qid, texts[qid], dict(meta) if isinstance(meta, dict) else {}, lineno)
    return out


def _jsonl_queries(path: Path, texts: dict[str, str]) -> dict[str, EvalQuery]:
    out: dict[str, EvalQuery] = {}
    for lineno, record in _records(path):
        text = record.get("query")
        if not isinstance(text, str):
            continue
        qid = _as_id(record["id"]) if "id" in record else f"q-{content_hash(text)[:16]}"
        if qid in texts and qid not in out and texts[qid] == text:
            nested = record.get("metadata")
            meta = {**(nested if isinstance(nested, dict) else {}),
                    **{k: v for k, v in record.items() if k not in _JSONL_RESERVED}}
            out[qid] = EvalQuery(qid, text, meta, lineno)
    return out


def _beir_qrel_lines(path: Path, qrels: Qrels) -> dict[tuple[str, str], int | None]:
    lines: dict[tuple[str, str], int | None] = {}
    for lineno, raw in enumerate(path.read_bytes().splitlines(), start=1):
        fields = raw.decode("utf-8", "replace").split("\t")
        if len(fields) == 3:
            key = (fields[0].strip(), fields[1].strip())
            if key[1] in qrels.get(key[0], {}):
                lines.setdefault(key, lineno)
    return lines


# -- writing ---------------------------------------------------------------------
def import_evalset(
    ws: Workspace,
    name: str,
    path: str | Path,
    *,
    split: str = "test",
    source: str | None = None,
    fmt: str | None = None,
    alias: str | None = None,
    canary: bool = False,
) -> ImportResult:
    """Store ``path`` as a new version of eval set ``name`` unless the latest has the same content."""
    name = checked_name("eval set", name)  # no '@' either: it separates a name from a version
    alias = checked_name("alias", alias) if alias is not None else None
    source_name = _bound_source(ws, source)
    parsed = parse_evalset(path, fmt=fmt, split=split)
    if not parsed.queries:
        raise ConfigError(
            f"eval set {path} has no usable query ({len(parsed.problems)} problem line(s))",
            hint=f"first problem: {parsed.problems[0]}" if parsed.problems else "check the file's format",
        )
    digest = parsed.digest(source_name)
    with ws.engine.begin() as conn:
        source_id = _source_id(conn, source_name)
        latest = _latest(conn, name)
        if latest is not None and latest.content_hash == digest:
            info = _rebind(conn, latest, alias)
            created = False
        else:
            version = latest.version + 1 if latest else 1
            info = _insert(conn, name, version, source_id, parsed, digest, alias, canary)
            created = True
        known = live_doc_ids(conn, source_id)
    _, _, dropped = validate({q.id: q.text for q in parsed.queries.values()}, parsed.qrels, known)
    check = {"documents": len(known), "dropped": drop_summary(dropped),
             "scorable_queries": len(parsed.queries) - sum(1 for d in dropped if d["kind"] == "query")}
    return ImportResult(get_evalset_by_id(ws, info.id), created, parsed.problems, check)


def _bound_source(ws: Workspace, source: str | None) -> str:
    sources = list(ws.settings.sources)
    if source is not None:
        if source not in sources:
            raise NotFound(f"no source {source!r}", hint=f"sources: {', '.join(sources) or 'none'}")
        return source
    if len(sources) == 1:
        return sources[0]
    raise ConfigError(
        "an eval set is bound to one source and this workspace has "
        + (f"{len(sources)}: {', '.join(sources)}" if sources else "none"),
        hint="pass --source NAME" if sources else "add one first: `embedops source add NAME PATH`",
    )


def _source_id(conn: sa.Connection, name: str) -> int:
    s = schema.sources
    found = conn.execute(sa.select(s.c.id).where(s.c.name == name)).scalar()
    if found is None:
        raise NotFound(f"source {name!r} is not in the catalog", hint="run `embedops sync` once")
    return int(found)


def _insert(
    conn: sa.Connection, name: str, version: int, source_id: int, parsed: ParsedEvalSet,
    digest: str, alias: str | None, canary: bool,
) -> EvalSetInfo:
    e = schema.evalsets
    result = conn.execute(sa.insert(e).values(
        name=name, version=version, source_id=source_id, alias=alias, created_at=time.time(), content_hash=digest,
        is_canary=canary, format=parsed.format, split=parsed.split, origin=parsed.origin,
        problems=[p.to_dict() for p in parsed.problems]))
    assert result.inserted_primary_key is not None
    evalset_id = int(result.inserted_primary_key[0])
    rows = [{"evalset_id": evalset_id, "query_id": q.id, "text": q.text, "metadata": q.metadata, "line": q.line}
            for q in parsed.queries.values()]
    conn.execute(sa.insert(schema.evalset_queries), rows)  # executemany: rowcount is not reliable on every driver
    judgments = [{"evalset_id": evalset_id, "query_id": qid, "doc_id": doc, "grade": grade,
                  "line": parsed.qrel_lines.get((qid, doc))}
                 for qid, docs in parsed.qrels.items() for doc, grade in docs.items()]
    if judgments:
        conn.execute(sa.insert(schema.evalset_qrels), judgments)
    write_ledger(conn, "evalset.import", evalset=name, version=version, source_id=source_id, alias=alias,
                 queries=len(rows), judgments=len(judgments), problems=len(parsed.problems),
                 content_hash=digest, origin=parsed.origin)
    return _info_by_id(conn, evalset_id)


def _rebind(conn: sa.Connection, latest: EvalSetInfo, alias: str | None) -> EvalSetInfo:
    if alias is None or alias == latest.alias:
        return latest
    e = schema.evalsets
    assert conn.execute(sa.update(e).where(e.c.id == latest.id).values(alias=alias)).rowcount == 1
    write_ledger(conn, "evalset.bind", evalset=latest.name, version=latest.version, alias=alias, previous=latest.alias)
    return _info_by_id(conn, latest.id)


def bind_evalset(ws: Workspace, name: str, alias: str | None, *, plan_only: bool = False) -> EvalSetInfo:
    """Bind the latest version of ``name`` to ``alias`` (None: unbind); a migration of that alias is gated on it."""
    if alias is not None:
        alias = checked_name("alias", alias)
    with ws.engine.begin() as conn:
        latest = _latest(conn, name)
        if latest is None:
            raise NotFound(f"no eval set {name!r}", hint="`embedops eval list` shows them; `embedops eval import` adds one")
        if plan_only or alias == latest.alias:
            return latest
        e = schema.evalsets
        assert conn.execute(sa.update(e).where(e.c.id == latest.id).values(alias=alias)).rowcount == 1
        write_ledger(conn, "evalset.bind", evalset=latest.name, version=latest.version, alias=alias,
                     previous=latest.alias)
        return _info_by_id(conn, latest.id)


def record_run(ws: Workspace, kind: str, **details: Any) -> int:
    """Append an evaluation's summary to the ledger (eval history for monitors and audits)."""
    with ws.engine.begin() as conn:
        return write_ledger(conn, kind, **details)


# -- reading ---------------------------------------------------------------------
def _info_query() -> sa.Select[Any]:
    e, q, r, s = schema.evalsets, schema.evalset_queries, schema.evalset_qrels, schema.sources
    n_queries = sa.select(sa.func.count()).where(q.c.evalset_id == e.c.id).scalar_subquery()
    n_judgments = sa.select(sa.func.count()).where(r.c.evalset_id == e.c.id).scalar_subquery()
    return sa.select(
        e.c.id, e.c.name, e.c.version, s.c.name.label("source"), e.c.source_id, e.c.alias, e.c.created_at,
        e.c.content_hash, e.c.is_canary, e.c.format, e.c.split, e.c.origin, n_queries.label("queries"),
        n_judgments.label("judgments"), e.c.problems,
    ).join(s, s.c.id == e.c.source_id)


def _to_info(row: sa.Row[Any]) -> EvalSetInfo:
    values = dict(row._mapping)
    values["problems"] = len(values["problems"] or [])
    values["is_canary"] = bool(values["is_canary"])
    return EvalSetInfo(**values)


def _info_by_id(conn: sa.Connection, evalset_id: int) -> EvalSetInfo:
    return _to_info(conn.execute(_info_query().where(schema.evalsets.c.id == evalset_id)).one())


def get_evalset_by_id(ws: Workspace, evalset_id: int) -> EvalSetInfo:
    with read_tx(ws.engine) as conn:
        return _info_by_id(conn, evalset_id)


def _latest(conn: sa.Connection, name: str) -> EvalSetInfo | None:
    e = schema.evalsets
    row = conn.execute(_info_query().where(e.c.name == name).order_by(e.c.version.desc()).limit(1)).first()
    return _to_info(row) if row is not None else None


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``"name"`` → (name, None); ``"name@3"`` → (name, 3)."""
    name, sep, version = ref.partition("@")
    if not sep:
        return name, None
    if not version.isdigit():
        raise ConfigError(f"bad eval-set reference {ref!r}", hint="use NAME or NAME@VERSION, e.g. scifact@2")
    return name, int(version)


def get_evalset(conn: sa.Connection, ref: str) -> EvalSetInfo:
    """The eval set ``NAME`` (latest version) or ``NAME@VERSION``."""
    name, version = parse_ref(ref)
    e = schema.evalsets
    q = _info_query().where(e.c.name == name)
    q = q.where(e.c.version == version) if version is not None else q.order_by(e.c.version.desc()).limit(1)
    row = conn.execute(q).first()
    if row is None:
        names = sorted(set(conn.execute(sa.select(e.c.name)).scalars()))
        raise NotFound(
            f"no eval set {ref!r}",
            hint=f"eval sets: {', '.join(names)}" if names else "import one: `embedops eval import NAME PATH`",
        )
    return _to_info(row)


def load_evalset(conn: sa.Connection, ref: str) -> EvalSetData:
    info = get_evalset(conn, ref)
    q, r = schema.evalset_queries, schema.evalset_qrels
    queries = {
        row.query_id: EvalQuery(row.query_id, row.text, dict(row.metadata or {}), row.line)
        for row in conn.execute(sa.select(q).where(q.c.evalset_id == info.id).order_by(q.c.line, q.c.query_id))
    }
    qrels: Qrels = {}
    lines: dict[tuple[str, str], int | None] = {}
    for row in conn.execute(sa.select(r).where(r.c.evalset_id == info.id).order_by(r.c.line)):
        qrels.setdefault(row.query_id, {})[row.doc_id] = int(row.grade)
        lines[row.query_id, row.doc_id] = row.line
    stored = conn.execute(sa.select(schema.evalsets.c.problems).where(schema.evalsets.c.id == info.id)).scalar_one()
    problems = [Problem(p["line"], p["file"], p["reason"]) for p in stored or []]
    return EvalSetData(info, queries, qrels, lines, problems)


def list_evalsets(conn: sa.Connection, *, latest_only: bool = False) -> list[EvalSetInfo]:
    """Every stored version (or only the latest of each name), by name then version."""
    e = schema.evalsets
    infos = [_to_info(r) for r in conn.execute(_info_query().order_by(e.c.name, e.c.version))]
    if latest_only:
        newest = {i.name: i for i in infos}
        infos = list(newest.values())
    return infos


def bound_evalsets(conn: sa.Connection, alias: str) -> list[EvalSetInfo]:
    """Latest version of each eval set bound to ``alias`` (what a migration gate evaluates)."""
    return [i for i in list_evalsets(conn, latest_only=True) if i.alias == alias]


def live_doc_ids(conn: sa.Connection, source_id: int) -> set[str]:
    d = schema.documents
    q = sa.select(d.c.external_id).where(d.c.source_id == source_id, d.c.deleted_at.is_(None))
    return set(conn.execute(q).scalars())


def as_format(fmt: str | None) -> EvalFormat | None:
    if fmt is not None and fmt not in FORMATS:
        raise ConfigError(f"unknown eval-set format {fmt!r}", hint=f"use one of: {', '.join(FORMATS)}")
    return cast(EvalFormat | None, fmt)
