"""Canaries: small eval sets that run on every check, with their recall over time.

A canary is an eval set (``embedops eval import``) designated with
``embedops monitor canary NAME``, or imported with its canary flag set. Every
``embedops check`` runs the latest version of each canary against the alias it
is bound to (else the default alias), stores recall@k and nDCG@k in
``canary_runs``, and fails when recall fell more than ``canary_max_drop`` below
the baseline: the first run of that eval-set version on that index. A new
version or a new index (a migration) starts a new baseline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

from embedops.catalog import schema
from embedops.catalog.db import read_tx
from embedops.catalog.ledger import write_ledger
from embedops.evaluate.store import get_evalset, list_evalsets

if TYPE_CHECKING:
    from embedops.workspace import Workspace

#: Recalls kept in a result's trend (newest last).
TREND = 10


@dataclass
class CanaryResult:
    name: str
    version: int
    index: str
    k: int
    queries: int
    recall: float
    ndcg: float
    baseline_recall: float
    previous_recall: float | None
    drop: float
    status: Literal["ok", "fail"]
    trend: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def set_canary(ws: Workspace, name: str, *, enabled: bool = True) -> dict[str, Any]:
    """Make eval set ``name`` a canary (or stop: ``enabled=False``); returns the canary list."""
    c = schema.canaries
    with ws.engine.begin() as conn:
        get_evalset(conn, name)  # NotFound names the eval sets there are
        present = conn.execute(sa.select(c.c.name).where(c.c.name == name)).first() is not None
        if enabled and not present:
            conn.execute(sa.insert(c).values(name=name, created_at=time.time()))
        elif not enabled:
            e = schema.evalsets
            conn.execute(sa.delete(c).where(c.c.name == name))
            conn.execute(sa.update(e).where(e.c.name == name).values(is_canary=False))
        write_ledger(conn, "monitor.canary.set", evalset=name, enabled=enabled)
        return {"name": name, "enabled": enabled, "canaries": canary_names(conn)}


def canary_names(conn: sa.Connection) -> list[str]:
    """Designated canaries, plus eval sets whose latest version carries the canary flag."""
    named = set(conn.execute(sa.select(schema.canaries.c.name)).scalars())
    flagged = {i.name for i in list_evalsets(conn, latest_only=True) if i.is_canary}
    return sorted(named | flagged)


def check_canaries(ws: Workspace, *, record: bool = True) -> list[CanaryResult]:
    """Run every canary once; store each run (the trend) with a ``monitor.canary`` ledger row."""
    from embedops.evaluate.runner import run_evalset

    with read_tx(ws.engine) as conn:
        names = canary_names(conn)
    k = ws.settings.monitor.canary_k
    results = []
    for name in names:
        run = run_evalset(ws, name, k=k)
        recall, ndcg = float(run.metrics.get(f"recall@{k}", 0.0)), float(run.metrics.get(f"ndcg@{k}", 0.0))
        results.append(_judge(ws, run.evalset.id, name, run.evalset.version, run.target.index.id, k, run.queries,
                              recall, ndcg, record))
    return results


def _judge(
    ws: Workspace, evalset_id: int, name: str, version: int, index: str, k: int, queries: int, recall: float,
    ndcg: float, record: bool,
) -> CanaryResult:
    r = schema.canary_runs
    mine = sa.and_(r.c.evalset_id == evalset_id, r.c.index_id == index, r.c.k == k)
    with ws.engine.begin() as conn:
        history = [float(x) for x in conn.execute(sa.select(r.c.recall).where(mine).order_by(r.c.at, r.c.id)).scalars()]
        baseline = history[0] if history else recall
        drop = round(baseline - recall, 6)
        status: Literal["ok", "fail"] = "fail" if drop > ws.settings.monitor.canary_max_drop else "ok"
        result = CanaryResult(name, version, index, k, queries, round(recall, 6), round(ndcg, 6), round(baseline, 6),
                              history[-1] if history else None, drop, status, [*history[-(TREND - 1):], round(recall, 6)])
        if record:
            conn.execute(sa.insert(r).values(at=time.time(), evalset_id=evalset_id, index_id=index, k=k, recall=recall,
                                             ndcg=ndcg, queries=queries))
            write_ledger(conn, "monitor.canary", **{key: v for key, v in result.to_dict().items() if key != "trend"})
    return result
