"""``embedops check``: every configured health check, with a status and an exit code.

Statuses: ``ok``, ``warn``, ``fail``, ``skip`` (nothing to check yet). The
report's exit code is 0 when nothing warns or fails, 1 with a warning, 2 with
a failure. Each check says what failing means and which command fixes it.
A check that raises is reported as failing with the error, never hides the
others. The run ends with a ``monitor.check`` ledger row.

>>> exit_code(["ok", "skip", "warn"])
1
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from embedops.catalog.ledger import write_ledger
from embedops.errors import ConfigError, EmbedopsError
from embedops.monitor.settings import CHECK_NAMES

if TYPE_CHECKING:
    from embedops.workspace import Workspace

Status = Literal["ok", "warn", "fail", "skip"]
_SEVERITY: dict[str, int] = {"skip": 0, "ok": 0, "warn": 1, "fail": 2}
Outcome = tuple[Status, str, dict[str, Any]]


@dataclass(frozen=True)
class CheckSpec:
    name: str
    failing_means: str
    fix: str
    run: Callable[[Workspace, bool], Outcome]  # (workspace, fresh_models)


@dataclass
class CheckResult:
    name: str
    status: Status
    summary: str
    failing_means: str
    fix: str
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class CheckReport:
    at: float
    results: list[CheckResult]

    @property
    def exit_code(self) -> int:
        return exit_code(r.status for r in self.results)

    @property
    def status(self) -> Status:
        statuses: tuple[Status, ...] = ("ok", "warn", "fail")
        return statuses[self.exit_code]

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "status": self.status, "exit_code": self.exit_code,
                "checks": [r.to_dict() for r in self.results]}


def exit_code(statuses: Iterable[str]) -> int:
    """0 ok, 1 warning, 2 failing: the worst status."""
    return max((_SEVERITY[s] for s in statuses), default=0)


# -- the checks ---------------------------------------------------------------------------------
def _freshness(ws: Workspace, fresh: bool) -> Outcome:
    from embedops.monitor.freshness import check_freshness

    report = check_freshness(ws)
    if not report.sources:
        return "skip", "no source configured", {}
    stale = sum(s.stale for s in report.sources)
    worst = max(report.sources, key=lambda s: s.lag["max"])
    slo = f" (SLO {worst.max_lag:.0f}s)" if worst.max_lag is not None else ""
    summary = (f"{stale} stale and {sum(s.unindexed for s in report.sources)} unindexed documents in"
               f" {len(report.sources)} source(s); worst lag {worst.lag['max']:.0f}s in {worst.source}{slo}")
    return report.status, summary, report.to_dict()


def _fingerprint(ws: Workspace, fresh: bool) -> Outcome:
    from embedops.monitor.fingerprint import check_models

    checks = check_models(ws, fresh=fresh)
    if not checks:
        return "skip", "no index yet", {}
    bad = [c for c in checks if not c.same]
    details = {"indexes": [c.to_dict() for c in checks]}
    if bad:
        return "fail", "; ".join(f"{c.index}: {c.reason}" for c in bad), details
    low = min(c.sentinel_min_cosine for c in checks)
    return "ok", f"{len(checks)} index(es) match their stored fingerprint (lowest sentinel cosine {low:.7f})", details


def _drift(ws: Workspace, fresh: bool) -> Outcome:
    from embedops.monitor.drift import check_drift

    streams = check_drift(ws)
    details = {"streams": [s.to_dict() for s in streams]}
    measured = [s for s in streams if s.overall is not None]
    if not measured:
        return "skip", "not enough recent ingests or logged queries to compare with a reference", details
    drifted = [s for s in measured if s.status == "drift"]
    if not drifted:
        return "ok", f"{len(measured)} stream(s) compared, no drift", details
    parts = []
    for s in drifted:
        where = [k for k, v in s.segments.items() if v.drifted]
        mmd = s.overall.mmd2 if s.overall else 0.0
        parts.append(f"{s.index} {s.stream}: MMD² {mmd:.3f}" + (f", segments {', '.join(where)}" if where else ""))
    return "warn", "drift in " + "; ".join(parts), details


def _canary(ws: Workspace, fresh: bool) -> Outcome:
    from embedops.monitor.canary import check_canaries

    results = check_canaries(ws)
    if not results:
        return "skip", "no canary eval set: `embedops monitor canary NAME`", {}
    details = {"canaries": [r.to_dict() for r in results]}
    failed = [r for r in results if r.status == "fail"]
    text = "; ".join(f"{r.name}@{r.version} recall@{r.k} {r.recall:.3f} (baseline {r.baseline_recall:.3f})" for r in results)
    return ("fail" if failed else "ok"), text, details


def _coverage(ws: Workspace, fresh: bool) -> Outcome:
    from embedops.monitor.coverage import check_coverage

    report = check_coverage(ws)
    if report.status == "skip":
        return "skip", report.reason, report.to_dict()
    summary = (f"{report.uncovered_share:.0%} of {report.queries} recent queries uncovered (nearest eval query"
               f" similarity p50 {report.similarity['p50']:.2f}); eval sets {report.eval_set_age_days:.0f} days old")
    return report.status, summary + (f": {report.reason}" if report.reason else ""), report.to_dict()


def _languages(ws: Workspace, fresh: bool) -> Outcome:
    from embedops.monitor.languages import check_languages

    reports = check_languages(ws)
    details = {"indexes": [r.to_dict() for r in reports]}
    judged = [r for r in reports if r.status != "skip"]
    if not judged:
        return "skip", "; ".join(f"{r.index}: {r.reason}" for r in reports) or "no index yet", details
    parts = []
    for r in judged:
        langs = ", ".join(f"{lang} {share:.0%}" for lang, share in r.outside.items())
        trained = ", ".join(r.trained) if isinstance(r.trained, list) and len(r.trained) <= 5 else f"{len(r.trained or [])} languages"
        parts.append(f"{r.index} ({r.embedder}, trained for {trained}): {r.outside_share:.0%} of {r.sampled} sampled chunks"
                     f" in other languages" + (f" ({langs})" if langs else ""))
    return ("warn" if any(r.status == "warn" for r in judged) else "ok"), "; ".join(parts), details


CHECKS: dict[str, CheckSpec] = {
    spec.name: spec
    for spec in (
        CheckSpec(
            "freshness",
            "documents changed in their source after their vectors were made, or the source was not re-checked"
            " within its max_lag: search serves outdated text. Failing: a source's lag exceeds its SLO.",
            "`embedops sync` (then `embedops freshness` to confirm)",
            _freshness,
        ),
        CheckSpec(
            "fingerprint",
            "the model behind an index's embedder name no longer makes the stored vectors: queries stop matching"
            " documents with no error. Syncs and searches with it are refused.",
            "restore the original model files; or give the new model its own name and `embedops migrate plan --to NAME`",
            _fingerprint,
        ),
        CheckSpec(
            "drift",
            "recent ingests or queries differ significantly from the index's reference sample (overall, per source"
            " or per language): eval sets and thresholds may no longer represent the data.",
            "inspect `embedops check --only drift --json`; if the change is intended, re-baseline with"
            " `embedops monitor reference` and refresh the eval sets",
            _drift,
        ),
        CheckSpec(
            "canary",
            "a canary eval set's recall fell more than canary_max_drop below its baseline: retrieval regressed.",
            "`embedops eval run NAME --segment-by language` to see where; `embedops migrate rollback` if a cutover did it",
            _canary,
        ),
        CheckSpec(
            "coverage",
            "recent queries are far from every eval query, or the eval sets are old: evaluation no longer measures"
            " real traffic.",
            "add queries like the listed clusters to an eval set and `embedops eval import` it",
            _coverage,
        ),
        CheckSpec(
            "languages",
            "more than language_max_share of a sample of the index's chunks is in languages its embedder was not"
            " trained for (the model's metadata lists them): those documents are embedded poorly and found rarely.",
            "`embedops migrate plan --to e5-small-multilingual` (or use-multilingual), then `embedops eval run NAME"
            " --segment-by language` to see the gain per language",
            _languages,
        ),
    )
}
assert tuple(CHECKS) == CHECK_NAMES


def run_checks(ws: Workspace, only: Sequence[str] | None = None, *, fresh_models: bool = False) -> CheckReport:
    """Run the configured checks (or ``only`` these) and record a ``monitor.check`` ledger row.

    ``fresh_models`` makes the fingerprint check load each model from its files
    again (what a long-running monitor needs; see ``check_models``).
    """
    names = list(only) if only else list(ws.settings.monitor.checks)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ConfigError(f"unknown check(s) {unknown}", hint=f"checks: {', '.join(CHECKS)}")
    report = CheckReport(time.time(), [_run_one(ws, CHECKS[n], fresh_models) for n in names])
    with ws.engine.begin() as conn:
        write_ledger(conn, "monitor.check", status=report.status, exit_code=report.exit_code,
                     checks={r.name: {"status": r.status, "summary": r.summary, "seconds": r.seconds} for r in report.results})
    return report


def _run_one(ws: Workspace, spec: CheckSpec, fresh_models: bool) -> CheckResult:
    started = time.perf_counter()
    try:
        status, summary, details = spec.run(ws, fresh_models)
    except EmbedopsError as exc:
        status, summary, details = "fail", f"error: {exc.message}", {"error": type(exc).__name__, **exc.to_dict()}
    except Exception as exc:  # a broken check must not hide the others; it is reported as failing
        status, summary, details = "fail", f"error: {type(exc).__name__}: {exc}", {"error": type(exc).__name__}
    return CheckResult(spec.name, status, summary, spec.failing_means, spec.fix, details,
                       round(time.perf_counter() - started, 3))
