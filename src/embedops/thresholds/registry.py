"""The thresholds registry: named similarity cut-offs, one value per space, every value kept.

A threshold's number only means something in the space it was chosen in, so
values are stored per space and never overwritten: the current value for a
space is its latest row, and every row (with its method, evidence and reason)
stays as history. Each change commits with its ledger row.

Applications read a threshold through the alias they query, so after a cutover
(or a rollback) they get the value for the space now served, with no change of
their own:

>>> ws.thresholds.add("dedup", 0.95, description="near-duplicate tickets")   # doctest: +SKIP
>>> ws.thresholds.get("dedup")                                               # doctest: +SKIP
0.95
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlalchemy as sa

from embedops.catalog import queries, schema
from embedops.catalog.db import read_tx
from embedops.catalog.ledger import write_ledger
from embedops.errors import ConfigError, EmbedderNotFound, NotFound
from embedops.embedding.providers import EmbedderConfig
from embedops.names import checked_name
from embedops.thresholds.labels import LabelledPairs
from embedops.vectors.base import IndexInfo

Method = Literal["manual", "distribution", "labels"]
METHODS = ("manual", "distribution", "labels")


@dataclass(frozen=True)
class ThresholdValue:
    """One recorded value of a threshold in one space."""

    id: int
    name: str
    space_key: str
    value: float
    method: str
    reason: str | None
    created_at: float
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, *, evidence: bool = True) -> dict[str, Any]:
        out = {"id": self.id, "name": self.name, "space": self.space_key, "value": self.value, "method": self.method,
               "reason": self.reason, "created_at": self.created_at}
        if evidence:
            out["evidence"] = self.evidence
        return out


@dataclass(frozen=True)
class Threshold:
    """A registered threshold: its description and optional labelled pairs."""

    name: str
    description: str
    labels: LabelledPairs | None
    created_at: float


@dataclass(frozen=True)
class ThresholdInfo:
    """What `thresholds list` shows: a threshold with its current value per space."""

    name: str
    description: str
    labelled_pairs: int
    serving_space: str | None
    values: list[ThresholdValue]

    @property
    def serving_value(self) -> float | None:
        return next((v.value for v in self.values if v.space_key == self.serving_space), None)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "labelled_pairs": self.labelled_pairs,
                "serving_space": self.serving_space, "serving_value": self.serving_value,
                "values": [v.to_dict(evidence=False) for v in self.values]}


@dataclass(frozen=True)
class SpaceRef:
    """A space named on the command line, with the index that holds its vectors (if any)."""

    key: str
    embedder: str
    index: IndexInfo | None

    def to_dict(self) -> dict[str, Any]:
        return {"space": self.key, "embedder": self.embedder, "index": self.index.id if self.index else None}


def _row_value(row: Any) -> ThresholdValue:
    return ThresholdValue(int(row.id), row.name, row.space_key, float(row.value), row.method, row.reason,
                          float(row.created_at), dict(row.evidence or {}))


def _check_value(name: str, value: float) -> float:
    """A threshold is compared with search scores, which are cosine similarities (every space's metric)."""
    value = float(value)
    if not math.isfinite(value) or not -1.0 <= value <= 1.0:
        raise ConfigError(f"threshold {name!r}: {value:g} is not a cosine similarity; a value must be a finite number within [-1, 1]",
                          hint="e.g. 0.95 for near-duplicates; scores of unrelated texts sit near 0", threshold=name)
    return value


# -- reads on a connection (shared with migrations) -----------------------------------
def value_in(conn: sa.Connection, name: str, space_key: str) -> ThresholdValue | None:
    """The current (latest) value of ``name`` in ``space_key``, or None."""
    tv = schema.threshold_values
    row = conn.execute(sa.select(tv).where(tv.c.name == name, tv.c.space_key == space_key)
                       .order_by(tv.c.id.desc()).limit(1)).first()
    return _row_value(row) if row else None


def current_values(conn: sa.Connection, space_key: str | None = None) -> list[ThresholdValue]:
    """The latest value per (threshold, space), optionally for one space only."""
    tv = schema.threshold_values
    latest = sa.select(sa.func.max(tv.c.id)).group_by(tv.c.name, tv.c.space_key)
    if space_key is not None:
        latest = latest.where(tv.c.space_key == space_key)
    rows = conn.execute(sa.select(tv).where(tv.c.id.in_(latest)).order_by(tv.c.name, tv.c.id))
    return [_row_value(r) for r in rows]


def bound_thresholds(conn: sa.Connection, from_space: str, to_space: str) -> list[dict[str, Any]]:
    """Thresholds valued in ``from_space``, each with its value in ``to_space`` (None when it has none)."""
    out = []
    for v in current_values(conn, from_space):
        new = value_in(conn, v.name, to_space)
        out.append({"name": v.name, "value": v.value, "method": v.method, "space": from_space,
                    "new_value": new.value if new else None, "new_method": new.method if new else None,
                    "has_new_value": new is not None})
    return out


def alias_space(conn: sa.Connection, alias: str) -> str | None:
    a, i = schema.aliases, schema.indexes
    return conn.execute(sa.select(i.c.space_key).join(a, a.c.index_id == i.c.id).where(a.c.name == alias)).scalar()


def resolve_space(conn: sa.Connection, spec: str, embedders: Mapping[str, EmbedderConfig] | None = None) -> SpaceRef:
    """A space from a space key, an index id or an embedder name (the newest active index of that model);
    ``embedders``: the workspace's configured sections, so a configured name resolves too."""
    sp = schema.spaces
    space = conn.execute(sa.select(sp.c.key, sp.c.embedder).where(sp.c.key == spec)).first()
    if space is not None:
        return SpaceRef(space.key, space.embedder, _space_index(conn, space.key))
    index = next((x for x in queries.indexes(conn) if x.id == spec), None)
    if index is not None:
        return SpaceRef(index.space_key, index.embedder, index)
    named = conn.execute(sa.select(sp.c.key, sp.c.embedder).where(sp.c.embedder == spec)
                         .order_by(sp.c.created_at.desc())).all()
    for row in named:
        found = _space_index(conn, row.key)
        if found is not None:
            return SpaceRef(row.key, row.embedder, found)
    if named:  # the catalog's record of that model's space, even without a live index
        return SpaceRef(named[0].key, named[0].embedder, None)
    return _described(spec, embedders)


def _space_index(conn: sa.Connection, space_key: str) -> IndexInfo | None:
    active = [x for x in queries.indexes(conn, "active") if x.space_key == space_key]
    return active[-1] if active else None


def _described(spec: str, embedders: Mapping[str, EmbedderConfig] | None) -> SpaceRef:
    from embedops.embedding.registry import describe_embedder

    try:
        return SpaceRef(describe_embedder(spec, embedders).key, spec, None)
    except EmbedderNotFound as exc:
        raise NotFound(f"{spec!r} is not a space key, an index id or an embedder name",
                       hint="`embedops status` lists indexes and spaces; embedder names: minilm-l6, minilm-l3, ...",
                       space=spec) from exc


# -- the registry ----------------------------------------------------------------------------
class ThresholdRegistry:
    """Thresholds of one catalog, resolved through an alias.

    ``embedder`` names the model a new threshold is valued for while the alias
    does not exist yet (before the first sync): the workspace's configured one.
    """

    def __init__(self, engine: sa.Engine, alias: str, embedder: str,
                 embedders: Mapping[str, EmbedderConfig] | None = None) -> None:
        self.engine = engine
        self.alias = alias
        self.embedder = embedder
        self.embedders = embedders  # the workspace's [embedders.*] sections: configured names resolve

    # -- reading ---------------------------------------------------------------------
    def get(self, name: str, *, space: str | None = None, alias: str | None = None) -> float:
        """The value of ``name`` for the space the alias serves now (or for ``space``)."""
        return self.current(name, space=space, alias=alias).value

    def current(self, name: str, *, space: str | None = None, alias: str | None = None) -> ThresholdValue:
        """Like :meth:`get`, with the method, evidence and time of the value."""
        with read_tx(self.engine) as conn:
            self._threshold_row(conn, name)
            key, where = self._space_for_read(conn, space, alias or self.alias)
            found = value_in(conn, name, key)
        if found is None:
            raise NotFound(
                f"threshold {name!r} has no value for {where} (space {key})",
                hint=f"calibrate it: `embedops thresholds calibrate --to {space or key} --apply`, or set it by hand:"
                f" `embedops thresholds set {name} VALUE --space {space or key}`",
                threshold=name, space=key,
            )
        return found

    def _space_for_read(self, conn: sa.Connection, space: str | None, alias: str) -> tuple[str, str]:
        if space is not None:
            return resolve_space(conn, space, self.embedders).key, f"space {space!r}"
        key = alias_space(conn, alias)
        if key is None:
            raise NotFound(f"no alias {alias!r}: thresholds are read for the space an alias serves",
                           hint="run `embedops sync` first, or pass --space", alias=alias)
        return key, f"the space alias {alias!r} serves"

    def threshold(self, name: str) -> Threshold:
        with read_tx(self.engine) as conn:
            row = self._threshold_row(conn, name)
        labels = LabelledPairs.from_json(row.labels, row.labels_origin) if row.labels else None
        return Threshold(row.name, row.description, labels, float(row.created_at))

    def _threshold_row(self, conn: sa.Connection, name: str) -> Any:
        row = conn.execute(sa.select(schema.thresholds).where(schema.thresholds.c.name == name)).first()
        if row is None:
            names = conn.execute(sa.select(schema.thresholds.c.name).order_by(schema.thresholds.c.name)).scalars().all()
            raise NotFound(f"no threshold {name!r}", hint=f"thresholds: {', '.join(names)}" if names
                           else "register one with `embedops thresholds add NAME VALUE`", threshold=name)
        return row

    def list(self, *, alias: str | None = None) -> builtins.list[ThresholdInfo]:
        """Every threshold with its current value per space; ``serving_space`` is the alias's."""
        t = schema.thresholds
        with read_tx(self.engine) as conn:
            serving = alias_space(conn, alias or self.alias)
            values = current_values(conn)
            rows = conn.execute(sa.select(t.c.name, t.c.description, t.c.labels_origin).order_by(t.c.name)).all()
        return [
            ThresholdInfo(r.name, r.description, int((r.labels_origin or {}).get("pairs", 0)), serving,
                          [v for v in values if v.name == r.name])
            for r in rows
        ]

    def history(self, name: str | None = None) -> builtins.list[ThresholdValue]:
        """Every recorded value, oldest first (of one threshold, or all)."""
        tv = schema.threshold_values
        q = sa.select(tv).order_by(tv.c.id)
        if name is not None:
            q = q.where(tv.c.name == name)
        with read_tx(self.engine) as conn:
            if name is not None:
                self._threshold_row(conn, name)
            return [_row_value(r) for r in conn.execute(q)]

    # -- writing ---------------------------------------------------------------------
    def add(
        self, name: str, value: float, *, description: str = "", labels: LabelledPairs | None = None,
        alias: str | None = None, plan_only: bool = False,
    ) -> ThresholdValue:
        """Register ``name`` with ``value`` in the space the alias serves (or the configured model's, before a sync)."""
        name = checked_name("threshold", name)
        value = _check_value(name, value)
        with self.engine.begin() as conn:
            if conn.execute(sa.select(schema.thresholds.c.name).where(schema.thresholds.c.name == name)).first():
                raise ConfigError(f"threshold {name!r} already exists",
                                  hint=f"change its value with `embedops thresholds set {name} VALUE --space ...`")
            space = self._binding_space(conn, alias or self.alias)
            planned = ThresholdValue(0, name, space, value, "manual", "added", time.time())
            if plan_only:
                return planned
            conn.execute(sa.insert(schema.thresholds).values(
                name=name, description=description, labels=labels.to_json() if labels else None,
                labels_origin=labels.origin if labels else None, created_at=planned.created_at))
            return self.record(conn, name, space, value, "manual", {"description": description}, "added",
                               ledger_kind="thresholds.add", labelled_pairs=len(labels.pairs) if labels else 0)

    def _binding_space(self, conn: sa.Connection, alias: str) -> str:
        key = alias_space(conn, alias)
        if key is not None:
            return key
        from embedops.embedding.registry import describe_embedder

        return describe_embedder(self.embedder, self.embedders).key

    def set(self, name: str, value: float, *, space: str, reason: str | None = None, plan_only: bool = False) -> ThresholdValue:
        """Record a value chosen by hand for ``space`` (a space key, index id or embedder name)."""
        value = _check_value(name, value)
        with self.engine.begin() as conn:
            self._threshold_row(conn, name)
            key = resolve_space(conn, space, self.embedders).key
            if plan_only:
                return ThresholdValue(0, name, key, value, "manual", reason, time.time())
            previous = value_in(conn, name, key)
            return self.record(conn, name, key, value, "manual", {"previous": previous.value if previous else None},
                               reason, ledger_kind="thresholds.set")

    def set_labels(self, name: str, labels: LabelledPairs, *, plan_only: bool = False) -> dict[str, Any]:
        """Attach (or replace) the labelled pairs label matching uses."""
        t = schema.thresholds
        with self.engine.begin() as conn:
            row = self._threshold_row(conn, name)
            before = int((row.labels_origin or {}).get("pairs", 0))
            out = {"name": name, "pairs": len(labels.pairs), "positives": labels.positives, "replaced": before,
                   "problems": labels.problems, "plan": plan_only}
            if plan_only:
                return out
            result = conn.execute(sa.update(t).where(t.c.name == name).values(labels=labels.to_json(),
                                                                                labels_origin=labels.origin))
            assert result.rowcount == 1
            write_ledger(conn, "thresholds.labels", threshold=name, pairs=len(labels.pairs),
                         positives=labels.positives, replaced=before, origin=labels.origin.get("path"))
        return out

    def record(
        self, conn: sa.Connection, name: str, space_key: str, value: float, method: str, evidence: dict[str, Any],
        reason: str | None, *, ledger_kind: str, **ledger: Any,
    ) -> ThresholdValue:
        """Append a value row and its ledger row in the caller's transaction (history is never rewritten)."""
        if method not in METHODS:
            raise ConfigError(f"unknown calibration method {method!r}", hint=f"one of {', '.join(METHODS)}")
        now = time.time()
        tv = schema.threshold_values
        row_id = int(conn.execute(sa.insert(tv).values(
            name=name, space_key=space_key, value=value, method=method, evidence=evidence, reason=reason, created_at=now,
        ).returning(tv.c.id)).scalar_one())
        write_ledger(conn, ledger_kind, threshold=name, space=space_key, value=value, method=method, reason=reason,
                     value_id=row_id, **ledger)
        return ThresholdValue(row_id, name, space_key, value, method, reason, now, evidence)


__all__ = [
    "METHODS", "SpaceRef", "Threshold", "ThresholdInfo", "ThresholdRegistry", "ThresholdValue", "alias_space",
    "bound_thresholds", "current_values", "resolve_space", "value_in",
]
