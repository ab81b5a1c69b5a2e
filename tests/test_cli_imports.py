"""Control commands answer at once: they import no numpy (0.1 CPU-s of every such process, a tenth of a
``migrate plan``), because the modules on their path import it only inside the functions that compute with it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from embedops.workspace import Workspace

# One process runs each command in turn (as `embedops ARGS --json` would) and reports what it imported.
_RUN = """
import contextlib, io, json, sys
from embedops.cli import app
seen = {}
for args in json.loads(sys.argv[1]):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            app(args, standalone_mode=False)
        except SystemExit:
            pass
    seen[" ".join(a for a in args[:2] if not a.startswith("-"))] = {"numpy": "numpy" in sys.modules, "out": out.getvalue()[:2000]}
print(json.dumps(seen))
"""


def test_status_plan_and_migrate_status_import_no_numpy(tmp_path: Path, corpus: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", chunker="whole")
    ws.add_source("docs", corpus)
    ws.sync()
    ws.close()
    at = ["--workspace", str(tmp_path / "ws"), "--json"]
    commands = [["status", *at], ["migrate", "plan", "--to", "minilm-l3", *at], ["migrate", "status", *at],
                ["source", "list", *at], ["history", *at]]
    done = subprocess.run([sys.executable, "-c", _RUN, json.dumps(commands)], capture_output=True, text=True,
                          check=True)
    seen = json.loads(done.stdout)
    plan = json.loads(seen["migrate plan"]["out"])
    assert plan["chunks_to_embed"] == 30 and plan["tokens_to_embed"] > 0  # the plan did its work
    assert json.loads(seen["status"]["out"])["documents"] == 30
    assert {cmd: s["numpy"] for cmd, s in seen.items()} == {cmd: False for cmd in seen}


def test_a_command_line_builds_only_the_group_or_command_it_names() -> None:
    """Typer builds a click command of every registered function before parsing: `main` builds the named one."""
    from typer.main import get_command

    from embedops.cli import app, app_for

    def names(args: list[str]) -> set[str]:
        return set(get_command(app_for(args)).commands)  # type: ignore[attr-defined]

    everything = names([])
    assert {"migrate", "status", "eval", "sync"} <= everything and len(everything) > 20
    assert names(["migrate", "plan", "--to", "x"]) == {"migrate"}
    assert names(["--debug", "status", "--json"]) == {"status"}
    assert app_for(["--help"]) is app and app_for(["statuss"]) is app  # the whole tree: its help, its "did you mean"
    trimmed = get_command(app_for(["status"]))
    assert {p.name for p in trimmed.params} == {p.name for p in get_command(app).params}  # --debug, --version
