"""What curation costs in a sync, and what it keeps out of the index.

A corpus is written as a folder: SciFact abstracts (``shared/data/scifact``,
read at run time) or, without them, generated prose; then planted into it:
exact copies of 10% of the documents, near-copies of another 10% (3% of the
words substituted), and 2% too-short stubs. The same folder is synced into two
fresh workspaces with the ``hashing`` embedder (so the figure is curation's
cost against the rest of a sync, not a model's): one with ``[curate] enabled =
false``, one with the defaults. Reported: wall and CPU seconds of each first
sync and their ratio, the documents quarantined by reason against what was
planted, chunks embedded (what a paid model would have been sent), and a
no-op re-sync of each (curation must add nothing there).

    .venv/bin/python bench/curation_sync.py [--data ../shared/data] [--docs 2000] [--generated]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO_ROOT, Check, Report, SentenceMaker, log, timed  # noqa: E402

sys.path.insert(0, str(REPO_ROOT / "src"))

# Targets: curation decides at least this many documents per CPU second of the whole sync (the
# hashing embedder costs next to nothing, so the on/off ratio is curation's own cost and is
# reported, not bounded: with a real model it shrinks by the model's time); a curated no-op
# re-sync within this much of the uncurated one; every planted copy and stub quarantined.
DOCS_PER_CPU_S_MIN = 50.0
NOOP_EXTRA_MAX_S = 0.5


def originals(data: Path, n: int, generated: bool) -> list[str]:
    """``n`` distinct texts of at least 40 words."""
    corpus = data / "scifact" / "corpus.jsonl"
    if not generated and corpus.is_file():
        texts = []
        with corpus.open(encoding="utf-8") as fh:
            for line in fh:
                record = json.loads(line)
                text = f"{record.get('title', '')}\n\n{record['text']}".strip()
                if len(text.split()) >= 40:
                    texts.append(text)
                if len(texts) == n:
                    break
        return texts
    maker = SentenceMaker(seed=7)
    return [" ".join(maker.document(random.Random(i).randint(60, 220))) for i in range(n)]


def edit(text: str, rng: random.Random, share: float = 0.03) -> str:
    words = text.split()
    for i in rng.sample(range(len(words)), k=max(1, int(len(words) * share))):
        words[i] = words[rng.randrange(len(words))]
    return " ".join(words)


def write_corpus(folder: Path, texts: list[str], seed: int = 1) -> dict[str, int]:
    """The originals plus planted copies and stubs; returns what was planted."""
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    for i, text in enumerate(texts):
        (folder / f"doc{i:05d}.md").write_text(text, encoding="utf-8")
    picked = rng.sample(range(len(texts)), k=len(texts) // 5)
    exact, near = picked[: len(picked) // 2], picked[len(picked) // 2 :]
    for i in exact:
        (folder / f"copy{i:05d}.md").write_text(texts[i], encoding="utf-8")
    for i in near:
        (folder / f"near{i:05d}.md").write_text(edit(texts[i], rng), encoding="utf-8")
    stubs = len(texts) // 50
    for i in range(stubs):
        (folder / f"stub{i:05d}.md").write_text(f"See page {i}.", encoding="utf-8")
    return {"duplicate": len(exact), "near_duplicate": len(near), "too_short": stubs}


def sync_twice(root: Path, folder: Path, curate: bool) -> dict[str, Any]:
    from embedops.workspace import Workspace

    ws = Workspace.init(root, embedder="hashing", curate=curate)
    try:
        ws.add_source("docs", folder)
        with timed() as first:
            result = ws.sync()
        with timed() as noop:
            again = ws.sync()
        status = ws.status()
    finally:
        ws.close()
    return {"first_s": first.seconds, "first_cpu_s": first.cpu_seconds, "noop_s": noop.seconds,
            "embedded": result.counts.embedded, "noop_embedded": again.counts.embedded,
            "documents": status["documents"], "quarantined": status["quarantined_by_reason"],
            "by_language": status["documents_by_language"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--docs", type=int, default=2000, help="originals (before planting)")
    parser.add_argument("--generated", action="store_true", help="generated prose instead of SciFact")
    args = parser.parse_args()
    texts = originals(args.data, args.docs, args.generated)
    with tempfile.TemporaryDirectory(prefix="curation-bench-") as tmp:
        folder = Path(tmp) / "docs"
        planted = write_corpus(folder, texts)
        total = len(list(folder.iterdir()))
        log(f"{total} documents ({len(texts)} originals, planted {planted})")
        sync_twice(Path(tmp) / "warm", folder, True)  # lingua's models and imports load once, outside the timing
        off = sync_twice(Path(tmp) / "off", folder, False)
        on = sync_twice(Path(tmp) / "on", folder, True)
    ratio = on["first_s"] / off["first_s"]
    cpu_ratio = on["first_cpu_s"] / off["first_cpu_s"]
    report = Report("curation_sync", figures={"documents": total, "planted": planted, "off": off, "on": on,
                                              "wall_ratio": round(ratio, 3), "cpu_ratio": round(cpu_ratio, 3)})
    missed = sum(abs(on["quarantined"].get(reason, 0) - n) for reason, n in planted.items())
    missed += sum(n for reason, n in on["quarantined"].items() if reason not in planted)
    report.checks = [
        Check("curated sync: documents per CPU second", total / on["first_cpu_s"], DOCS_PER_CPU_S_MIN, at_most=False),
        Check("quarantined counts off from planted", missed, 0),
        Check("no-op re-sync: curated - uncurated", on["noop_s"] - off["noop_s"], NOOP_EXTRA_MAX_S, " s"),
        Check("no-op re-sync embedded (curated)", on["noop_embedded"], 0),
    ]
    rows = [[name, f"{r['first_s']:.2f} s ({r['first_cpu_s']:.2f} s cpu)", f"{r['noop_s']:.3f} s", str(r["embedded"]),
             str(r["documents"]), json.dumps(r["quarantined"])] for name, r in (("curation off", off), ("curation on", on))]
    rows.append(["ratio on/off", f"{ratio:.2f}x wall, {cpu_ratio:.2f}x cpu", "", "", "", f"planted {json.dumps(planted)}"])
    report.print(rows, ["sync", "first sync", "no-op re-sync", "chunks embedded", "live documents", "quarantined"])
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
