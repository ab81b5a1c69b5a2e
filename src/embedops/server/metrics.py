"""``/metrics``: the service's own counters plus catalog gauges, in the Prometheus text format.

The service counts requests and latencies itself (a few dicts under a lock;
no client library needed). Workspace-level metrics (freshness, fingerprint
checks, drift) come from ``embedops.monitor``'s registry, rendered by
:func:`monitor_exposition` and appended; the service adds only what it alone
knows (requests, latencies, aliases, the open migration).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from embedops.workspace import Workspace

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: Any) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"


def family(name: str, kind: str, help_text: str, samples: Iterable[tuple[str, dict[str, Any], float]]) -> list[str]:
    """One metric family: HELP and TYPE lines, then ``name{labels} value`` per sample."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines.extend(f"{name}{suffix}{_labels(**labels)} {_number(value)}" for suffix, labels, value in samples)
    return lines


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class ServiceMetrics:
    """Request counts by (method, route, status) and latency histograms by (method, route); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = {}
        self._latency: dict[tuple[str, str], list[float]] = {}  # bucket counts..., sum, count

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (method, route, status)
            self._requests[key] = self._requests.get(key, 0) + 1
            hist = self._latency.setdefault((method, route), [0.0] * (len(BUCKETS) + 2))
            bucket = bisect.bisect_left(BUCKETS, seconds)  # first bound >= seconds (Prometheus `le`)
            if bucket < len(BUCKETS):
                hist[bucket] += 1
            hist[-2] += seconds
            hist[-1] += 1

    def lines(self) -> list[str]:
        with self._lock:
            requests = dict(self._requests)
            latency = {k: list(v) for k, v in self._latency.items()}
        out = family("embedops_http_requests_total", "counter", "HTTP requests by method, route and status.",
                     [("", {"method": m, "route": r, "status": s}, n) for (m, r, s), n in sorted(requests.items())])
        samples: list[tuple[str, dict[str, Any], float]] = []
        for (method, route), hist in sorted(latency.items()):
            cumulative = 0.0
            for bound, count in zip(BUCKETS, hist, strict=False):
                cumulative += count
                samples.append(("_bucket", {"method": method, "route": route, "le": repr(bound)}, cumulative))
            samples.append(("_bucket", {"method": method, "route": route, "le": "+Inf"}, hist[-1]))
            samples.append(("_sum", {"method": method, "route": route}, round(hist[-2], 6)))
            samples.append(("_count", {"method": method, "route": route}, hist[-1]))
        out += family("embedops_http_request_duration_seconds", "histogram",
                      "HTTP request latency by method and route.", samples)
        return out


def workspace_lines(status: dict[str, Any], migration: dict[str, Any] | None) -> list[str]:
    """What only the service reports: which index each alias serves, the open migration, per-source counts.

    Catalog counts, freshness, syncs, checks and drift come from the monitor's registry (below).
    """
    out = family("embedops_alias_info", "gauge", "1 for the index each alias serves.",
                 [("", {"alias": a, "index": i}, 1) for a, i in sorted(status["aliases"].items())])
    phase = [("", {"alias": migration["alias"], "migration": migration["migration"], "phase": migration["phase"]}, 1)] \
        if migration else []
    out += family("embedops_migration_info", "gauge", "1 for the open migration of the service's alias, by phase.", phase)
    out += family("embedops_source_documents", "gauge", "Live documents per source.",
                  [("", {"source": s["name"], "kind": s["kind"]}, s["documents"]) for s in status["sources"]])
    out += family("embedops_deleted_documents", "gauge", "Tombstoned documents.", [("", {}, status["deleted_documents"])])
    out += family("embedops_quarantined_documents", "gauge", "Live documents held back by curation, by reason.",
                  [("", {"reason": r}, n) for r, n in status["quarantined_by_reason"].items()])
    return out


def monitor_exposition(ws: Workspace) -> str:
    """The monitor's registry (``embedops.monitor.metrics.build_registry``), rendered as text."""
    from prometheus_client import generate_latest

    from embedops.monitor.metrics import build_registry

    return generate_latest(build_registry(ws)).decode("utf-8")
