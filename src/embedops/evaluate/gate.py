"""The migration gate's eval evidence: every eval set bound to an alias, old index vs new index.

This is the :class:`~embedops.migrate.gate.EvidenceProvider` the composition
root (``embedops.compose``) hands to the migration code. Each bound eval set is
run on both indexes through the same path as ``eval run`` (query vectors come
from the catalog's content-addressed embeddings once embedded), then compared
per query with :func:`~embedops.evaluate.compare.compare_runs`, the function
behind ``eval compare``: overall, and per segment for each ``segment_by`` spec.

>>> provider = EvalSetEvidence(ws)                                       # doctest: +SKIP
>>> [e.label for e in provider.bound("prod")]                            # doctest: +SKIP
['scifact@1']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from embedops.catalog.db import read_tx
from embedops.evaluate.store import bound_evalsets, load_evalset
from embedops.migrate.gate import BoundEvalSet, EvalEvidence, GateConfig, SegmentEvidence
from embedops.vectors.base import IndexInfo

# The runner (search, metrics, segments) loads only when something is measured: `migrate status`
# and `plan` list the bound sets and must answer at once.
if TYPE_CHECKING:
    from embedops.chunking.base import Chunker
    from embedops.embedding.base import Embedder
    from embedops.evaluate.runner import EvalRun

if TYPE_CHECKING:
    from embedops.workspace import Workspace

N_BOOT = 10_000


class EvalSetEvidence:
    """Eval sets of a workspace, measured for a migration gate."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    def bound(self, alias: str) -> list[BoundEvalSet]:
        with read_tx(self.ws.engine) as conn:
            infos = bound_evalsets(conn, alias)
        return [BoundEvalSet(i.name, i.version, i.queries, i.judgments, i.source) for i in infos]

    def measure(
        self, evalsets: Sequence[BoundEvalSet], old: IndexInfo, new: IndexInfo, config: GateConfig
    ) -> list[EvalEvidence]:
        return [self._one(f"{e.name}@{e.version}", old, new, config) for e in evalsets]

    def _one(self, ref: str, old: IndexInfo, new: IndexInfo, config: GateConfig) -> EvalEvidence:
        from embedops.evaluate.compare import compare_runs
        from embedops.evaluate.runner import run_evalset

        run_old = run_evalset(self.ws, ref, index=old.id, k=config.k)
        run_new = run_evalset(self.ws, ref, index=new.id, k=config.k)
        overall = compare_runs(run_old.per_query, run_new.per_query, config.metric, n_boot=N_BOOT)
        segments = [seg for spec in config.segment_by for seg in self._segments(ref, run_old, run_new, spec, config)]
        return EvalEvidence(
            evalset=run_old.evalset.name, version=run_old.evalset.version, metric=config.metric, queries=overall.n,
            mean_old=overall.mean_a, mean_new=overall.mean_b, ci_low=overall.ci_low, ci_high=overall.ci_high,
            p_value=overall.p_value, segments=tuple(segments),
        )

    def preview(self, evalsets: Sequence[BoundEvalSet], old: IndexInfo, new_embedder: Embedder,
                new_chunker: Chunker, documents: int, config: GateConfig) -> tuple[list[EvalEvidence], int, int, int]:
        from embedops.evaluate.preview import load_for_preview, preview_evidence
        from embedops.evaluate.runner import query_segments

        data = load_for_preview(self.ws.engine, evalsets)
        labels = [{spec: query_segments(self.ws, d, {q: None for q in d.qrels}, spec) for spec in config.segment_by}
                  for d in data]
        return preview_evidence(self.ws.engine, lambda: self.ws.searcher.query_embedder(old), evalsets, data, old,
                                new_embedder, new_chunker, documents, config, labels)

    def _segments(
        self, ref: str, run_old: EvalRun, run_new: EvalRun, spec: str, config: GateConfig
    ) -> list[SegmentEvidence]:
        from embedops.evaluate.compare import compare_runs
        from embedops.evaluate.runner import query_segments

        with read_tx(self.ws.engine) as conn:
            data = load_evalset(conn, ref)
        labels = query_segments(self.ws, data, run_old.per_query, spec)
        if len(set(labels.values())) < 2:
            return []  # one segment is the whole set: the overall check already covers it
        cmp = compare_runs(run_old.per_query, run_new.per_query, config.metric, segments=labels,
                                       n_boot=N_BOOT)
        return [SegmentEvidence(spec, s.segment, s.n, s.mean_a, s.mean_b, s.ci_low, s.ci_high)
                for s in cmp.segments.values()]
