"""One of the concurrency test's writer/reader processes (tests/test_concurrency.py).

Runs random operations on a workspace for a while: sync, backfill, search, push,
edit a source file. A ``Busy`` refusal is an expected conflict (counted, and its
message must say "already running"); anything else that raises is a failure,
recorded with its traceback. Prints one JSON line of counts at the end.

    python -m tests.concurrency_worker WORKSPACE DOCS_DIR SEED SECONDS
"""

from __future__ import annotations

import json
import random
import sys
import time
import traceback
from pathlib import Path

from embedops.compose import migrator
from embedops.errors import Busy, NoMigration
from embedops.sources.base import Document
from embedops.workspace import Workspace


def main(workspace: str, docs: str, seed: int, seconds: float) -> dict[str, object]:
    rng = random.Random(seed)
    counts: dict[str, int] = {"sync": 0, "backfill": 0, "search": 0, "push": 0, "edit": 0, "busy": 0}
    failures: list[str] = []
    busy_said_already_running = True
    files = sorted(Path(docs).rglob("*.md"))
    pushed = 0
    deadline = time.monotonic() + seconds
    with Workspace.open(workspace) as ws:
        while time.monotonic() < deadline:
            op = rng.choice(["sync", "backfill", "search", "search", "push", "edit"])
            try:
                if op == "sync":
                    ws.sync()
                elif op == "backfill":
                    migrator(ws).backfill()
                elif op == "search":
                    ws.search(rng.choice(["cell protein", "galaxy orbit", "database index"]), k=5)
                elif op == "push":
                    ws.upsert_documents("events", [Document(f"w{seed}-{pushed}", f"event {seed} {pushed} cell", {}, None)])
                    pushed += 1
                else:
                    path = rng.choice(files)
                    path.write_text(path.read_text() + f"\nEdited by worker {seed}.\n")
                counts[op] += 1
            except Busy as exc:
                counts["busy"] += 1
                busy_said_already_running &= "already running" in exc.message
            except NoMigration:
                counts[op] += 1  # the migration was closed: nothing to backfill
            except Exception:  # noqa: BLE001 - every other failure is the finding
                failures.append(f"{op}: {traceback.format_exc()}")
    return {"counts": counts, "failures": failures, "pushed": pushed,
            "busy_said_already_running": busy_said_already_running}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))))
