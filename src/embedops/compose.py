"""The composition root: where the library's parts are wired to each other.

Lower layers never look up a collaborator (no module-level hooks, no facade
imported back): they are handed what they use here. ``commands.py``, the HTTP
service and library users get a wired :class:`~embedops.migrate.run.Migrator`
from :func:`migrator`:

>>> from embedops import Workspace
>>> from embedops.compose import migrator
>>> with Workspace.open("path/to/workspace") as ws:              # doctest: +SKIP
...     report = migrator(ws).gate()
...     report.passed, [c.name for c in report.gate.failed]
"""

from __future__ import annotations

from embedops.evaluate.gate import EvalSetEvidence
from embedops.migrate.run import Migrator
from embedops.thresholds.registry import bound_thresholds
from embedops.workspace import Workspace


def migrator(ws: Workspace, alias: str | None = None) -> Migrator:
    """Migrations of ``alias`` (default: the workspace's), gated by the eval sets bound to it."""
    return Migrator(ws, alias, evidence=EvalSetEvidence(ws), thresholds=bound_thresholds)
