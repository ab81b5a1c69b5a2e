"""``embedops monitor``: the checks on a schedule, with Prometheus metrics on a port.

Each run is ``run_checks`` (its ledger rows included) with every model loaded
from its files again, so weights replaced on disk are seen by the next run.
A run that raises is counted (``embedops_monitor_check_errors``) and the loop
goes on; ``--once`` runs once and exits with the check's exit code.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from embedops.monitor.checks import CheckReport, run_checks
from embedops.monitor.metrics import MonitorState, build_registry


def serve_metrics(registry: Any, port: int, addr: str = "0.0.0.0") -> Callable[[], None]:
    """Expose ``registry`` on ``http://addr:port/metrics``; returns a function that stops the server."""
    from prometheus_client import start_http_server

    server, thread = start_http_server(port, addr=addr, registry=registry)

    def stop() -> None:
        server.shutdown()
        thread.join(timeout=5)

    return stop


def run_monitor(
    workspace: Path | None,
    *,
    every: float | None = None,
    once: bool = False,
    port: int | None = None,
    addr: str = "0.0.0.0",
    on_report: Callable[[CheckReport], None] | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Run the checks every ``every`` seconds (default ``[monitor] every``) until ``stop`` is set, or
    once; returns the last exit code."""
    from embedops.workspace import Workspace

    state = MonitorState()
    stop = stop or threading.Event()
    with Workspace.open(workspace) as ws:
        interval = every if every is not None else ws.settings.monitor.seconds("every")
        shutdown = serve_metrics(build_registry(ws, state), port, addr) if port is not None else None
        try:
            code = 0
            while True:
                started = time.perf_counter()
                report = run_checks(ws, fresh_models=True)
                _count(state, report, time.perf_counter() - started)
                code = report.exit_code
                if on_report is not None:
                    on_report(report)
                if once or stop.wait(interval):
                    return code
        finally:
            if shutdown is not None:
                shutdown()


def _count(state: MonitorState, report: CheckReport, seconds: float) -> None:
    state.runs += 1
    state.last_run_seconds = round(seconds, 3)
    for result in report.results:
        if result.summary.startswith("error:"):
            state.errors[result.name] = state.errors.get(result.name, 0) + 1
