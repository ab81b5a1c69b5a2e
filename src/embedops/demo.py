"""The README's first command: ingest, search, change the corpus, re-sync, migrate the model, audit.

Runs the real CLI commands against a fresh workspace (``$EMBEDOPS_DEMO_DIR`` or a
temporary directory) with the packaged ``minilm-l3`` model.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from rich.console import Console

from embedops.cli import app

console = Console()


def run(*args: str, ok_codes: tuple[int, ...] = (0,)) -> None:
    """Run one CLI command in this process; an exit code outside ``ok_codes`` stops the demo."""
    console.print(f"\n[bold cyan]$ embedops {shlex.join(args)}[/]")
    try:
        app(list(args), standalone_mode=False)
    except SystemExit as exc:  # typer.Exit inside standalone_mode=False
        if (exc.code or 0) not in ok_codes:
            raise


# The demo's eval set: a question per document, judged by hand. Bound to `prod`, it gates the migration.
DEMO_QUERIES = {
    "how do cells divide": "cell-division.md",
    "what makes a black hole": "black-holes.md",
    "how do plants turn light into sugar": "photosynthesis.md",
    "why do earthquakes happen at plate boundaries": "plate-tectonics.md",
    "how do vaccines train the immune system": "vaccines.md",
    "what does a database index speed up": "sql-indexes.md",
    "how is DNA copied before a cell divides": "dna-replication.txt",
    "why is the climate getting warmer": "climate.md",
    "what happens in the brain during sleep": "sleep.md",
    "find the nearest neighbours of an embedding": "vector-search.md",
    "lazy sequences with yield in python": "python-generators.py",
    "why do we have tides": "tides.md",
}


def write_eval_set(path: Path) -> None:
    lines = [json.dumps({"id": f"q{i}", "query": q, "relevant_ids": [doc]}) for i, (q, doc) in enumerate(DEMO_QUERIES.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def copy_corpus(dest: Path) -> None:
    dest.mkdir(parents=True)
    corpus = resources.files("embedops") / "demo_corpus"
    for entry in corpus.iterdir():
        if entry.is_file():  # not a __pycache__ left by compiling the package (its .py file is a document)
            (dest / entry.name).write_text(entry.read_text(encoding="utf-8"), encoding="utf-8")


def main() -> None:
    base = Path(os.environ.get("EMBEDOPS_DEMO_DIR") or tempfile.mkdtemp(prefix="embedops-demo-"))
    if base.exists():
        shutil.rmtree(base)
    ws, docs = base / "workspace", base / "workspace" / "docs"
    copy_corpus(docs)
    os.chdir(base)
    console.rule("embedops demo: incremental sync and search")
    run("init", str(ws), "--embedder", "minilm-l3")
    os.chdir(ws)
    run("source", "add", "docs", "docs")
    run("sync", "--plan")
    run("sync")
    run("search", "how do cells divide", "-k", "3")
    run("search", "why is the sky getting warmer", "-k", "3")
    run("search", "find the nearest neighbours of an embedding", "-k", "3", "--where", "ext=md")

    console.rule("change the corpus: edit one file, delete one, add one")
    with (docs / "sleep.md").open("a", encoding="utf-8") as fh:
        fh.write("\n## Naps\n\nA short nap of twenty minutes restores alertness without grogginess.\n")
    (docs / "antibiotics.md").unlink()
    (docs / "tides.md").write_text(
        "# Tides\n\nThe Moon's gravity pulls the oceans into two bulges, so most coasts see two high tides a day.\n",
        encoding="utf-8",
    )
    run("sync", "--plan")
    run("sync")
    console.print("[dim]only the chunks whose text changed were embedded; the rest came from the content-hash cache[/]")
    run("search", "why do we have tides", "-k", "2")

    console.rule("an eval set guards the alias: every migration of prod is gated on it")
    write_eval_set(base / "demo-queries.jsonl")
    run("eval", "import", "demo", str(base / "demo-queries.jsonl"), "--alias", "prod")
    run("eval", "run", "demo")

    console.rule("upgrade the model as a migration: minilm-l3 → minilm-l6")
    run("migrate", "plan", "--to", "minilm-l6")
    run("migrate", "start", "--to", "minilm-l6")
    run("sync")  # dual-write: the shadow index is kept current while it is built
    run("migrate", "backfill")  # when the shadow is complete, the gate runs the eval set on both indexes
    run("migrate", "status")
    run("migrate", "gate")  # exit 0: the new model is at least as good on the eval set
    run("migrate", "cutover")
    run("search", "how do cells divide", "-k", "3")
    console.print("[dim]`embedops migrate rollback` would point prod back at the old index; finalize drops it[/]")
    run("doctor")

    console.rule("health report: a source file changes, nothing re-synced yet")
    with (docs / "tides.md").open("a", encoding="utf-8") as fh:
        fh.write("\nSpring tides, the largest, come when the Sun and the Moon line up.\n")
    run("check", ok_codes=(0, 1))  # exit code 1: a warning (the stale document), as a scheduler would see it
    run("sync")
    run("check", "--only", "freshness")
    run("status")
    run("history", "--limit", "10")
    console.print(f"\n[green]demo workspace left at[/] {ws}")


if __name__ == "__main__":
    main()
