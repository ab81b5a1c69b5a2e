"""Benchmark: the HTTP service under a bounded load, then the same load across migration cutovers.

Setup (not timed): a fresh workspace holding SciFact (5,183 abstracts, BEIR folder)
synced with ``minilm-l3`` (onnxruntime; the model of the SciFact reference figures)
plus an empty push source ``live``. SciFact rather than a generated corpus with
``hashing``: the query embedding then costs what a real model costs, which is most
of a search request's time. ``--docs N`` takes the first N documents for a smoke run.

1. ``embedops serve`` starts in a subprocess on 127.0.0.1 (token in its
   environment); this process is the client: ``--clients`` (50) asyncio workers
   over one httpx connection pool, each sending its next request as soon as the
   previous one is answered (closed loop), for ``--seconds`` (60). The mix:
   vector search 60%, hybrid 15%, BM25 15%, document upserts (PUT into ``live``,
   ids drawn from 1,000, so most later ones are updates) 10%.
   Reported: throughput, p50/p99 per kind, 5xx, failures (any non-2xx or transport error).
2. ``embedops migrate start --to`` (default ``minilm-l6-int8``) and ``migrate
   backfill`` run beforehand (not under load). Then the same load again while a
   third process runs ``embedops migrate cutover`` / ``rollback`` / ``cutover``
   (``--swaps``) through the CLI, as an operator would. Reported: the same
   figures, the results that mixed spaces within one response (must be 0), which
   spaces answered, and each swap's transaction time. Phase 2 lasts ``--seconds`` and at least
   until 5 s after the last swap (each CLI call runs the gate and loads both models).

    .venv/bin/python bench/serve_load.py                       # full SciFact, ~6-8 min
    .venv/bin/python bench/serve_load.py --docs 500 --seconds 15 --clients 20   # smoke, ~1.5 min
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO_ROOT, Check, Report, log, timed  # noqa: E402
from migration import load_queries, prepare_corpus  # noqa: E402

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "scifact"
FROM_MODEL = "minilm-l3"
TO_MODEL = "minilm-l6-int8"
TOKEN = "bench-token"
MIX = (("vector", 0.60), ("hybrid", 0.15), ("bm25", 0.15), ("upsert", 0.10))
UPSERT_IDS = 1_000
EMBEDOPS = [sys.executable, "-m", "embedops.cli"]


@dataclass
class Sample:
    kind: str
    status: int  # 0: transport error
    seconds: float
    spaces: tuple[str, ...] = ()
    error: str | None = None


@dataclass
class PhaseResult:
    samples: list[Sample] = field(default_factory=list)
    seconds: float = 0.0

    def figures(self) -> dict[str, Any]:
        import numpy as np

        ok = [s for s in self.samples if 200 <= s.status < 300]
        out: dict[str, Any] = {
            "seconds": round(self.seconds, 1),
            "requests": len(self.samples), "throughput_rps": round(len(self.samples) / self.seconds, 1),
            "server_errors_5xx": sum(1 for s in self.samples if s.status >= 500),
            "failed": len(self.samples) - len(ok),
            "mixed_space_responses": sum(1 for s in ok if len(set(s.spaces)) > 1),
        }
        for kind in ("all", *(k for k, _ in MIX)):
            lat = np.array([s.seconds for s in ok if kind in ("all", s.kind)]) * 1000
            if len(lat):
                out[f"{kind}_p50_ms"] = round(float(np.percentile(lat, 50)), 1)
                out[f"{kind}_p99_ms"] = round(float(np.percentile(lat, 99)), 1)
        errors: dict[str, int] = {}
        for s in self.samples:
            if s.error:
                errors[s.error[:120]] = errors.get(s.error[:120], 0) + 1
        out["errors"] = dict(sorted(errors.items(), key=lambda kv: -kv[1])[:5])
        answering: dict[str, int] = {}
        for s in ok:
            if s.spaces:
                answering[s.spaces[0]] = answering.get(s.spaces[0], 0) + 1
        out["responses_by_space"] = answering
        return out


# -- setup -----------------------------------------------------------------------------------
def cli(ws: Path | None, *args: str) -> dict[str, Any]:
    """Run one embedops command with --json (a separate process, as an operator would)."""
    where = ["--workspace", str(ws)] if ws is not None else []
    done = subprocess.run([*EMBEDOPS, *args, "--json", *where], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"embedops {' '.join(args)} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def build_workspace(ws: Path, corpus: Path) -> float:
    cli(None, "init", str(ws), "--embedder", FROM_MODEL)
    cli(ws, "source", "add", "scifact", str(corpus), "--kind", "beir")
    cli(ws, "source", "add", "live", "--kind", "push")
    with timed() as t:
        cli(ws, "sync")
    return t.seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(ws: Path, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "EMBEDOPS_TOKEN": TOKEN}
    handle = log_path.open("wb")
    proc = subprocess.Popen([*EMBEDOPS, "serve", "--port", str(port), "--workspace", str(ws)], env=env,
                            stdout=handle, stderr=subprocess.STDOUT)
    import httpx2 as httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the server did not become ready; see {log_path}")


# -- the load ------------------------------------------------------------------------------------
async def run_load(url: str, queries: list[str], clients: int, seconds: float, seed: int,
                   until: threading.Event | None = None) -> PhaseResult:
    """``clients`` closed-loop workers for ``seconds``, and on until ``until`` is set (plus 5 s) when given."""
    import httpx2 as httpx

    result = PhaseResult()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    started = time.monotonic()
    tail: list[float] = []

    def done() -> bool:
        now = time.monotonic()
        if now < started + seconds:
            return False
        if until is None:
            return True
        if until.is_set() and not tail:
            tail.append(now + 5.0)  # a few seconds of load after the last swap
        return bool(tail) and now >= tail[0]

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120, headers=headers) as client:
        await asyncio.gather(*(_worker(client, queries, done, random.Random(seed + i), result.samples)
                               for i in range(clients)))
    result.seconds = time.monotonic() - started
    return result


async def _worker(client: Any, queries: list[str], done: Any, rng: random.Random, out: list[Sample]) -> None:
    kinds = [kind for kind, _ in MIX]
    weights = [weight for _, weight in MIX]
    while not done():
        kind = rng.choices(kinds, weights)[0]
        query = rng.choice(queries)
        t0 = time.perf_counter()
        try:
            if kind == "upsert":
                body = {"text": f"{query} {rng.choice(queries)}", "metadata": {"bench": "serve_load"}}
                response = await client.put(f"/sources/live/documents/doc-{rng.randrange(UPSERT_IDS)}", json=body)
            else:
                response = await client.get("/search", params={"query": query, "k": 10, "mode": kind})
        except Exception as exc:  # a transport error is a failed request, recorded, never fatal
            out.append(Sample(kind, 0, time.perf_counter() - t0, error=f"{type(exc).__name__}: {exc}"))
            continue
        elapsed = time.perf_counter() - t0
        spaces: tuple[str, ...] = ()
        error = None
        if response.status_code == 200 and kind != "upsert":
            spaces = tuple(hit["tags"]["space"] for hit in response.json())
        elif response.status_code != 200:
            error = f"{response.status_code} {response.text[:200]}"
        out.append(Sample(kind, response.status_code, elapsed, spaces, error))


def prepare_migration(ws: Path, to: str) -> tuple[str, float]:
    """Start the migration (or reuse the open one) and backfill it; the first swap step and the backfill seconds."""
    try:
        status = cli(ws, "migrate", "status")["status"]
    except RuntimeError:  # no migration open
        cli(ws, "migrate", "start", "--to", to)
        status = "open"
    with timed() as t:
        cli(ws, "migrate", "backfill")
    return ("rollback" if status == "cut_over" else "cutover"), t.seconds


def swap_loop(ws: Path, first: str, swaps: int, every: float, log_out: list[dict[str, Any]],
              done: threading.Event) -> None:
    """cutover, rollback, cutover, ... (from ``first``) through the CLI, ``every`` seconds apart, under load."""
    other = "rollback" if first == "cutover" else "cutover"
    steps = [first if i % 2 == 0 else other for i in range(swaps)]
    for step in steps:
        time.sleep(every)
        t0 = time.perf_counter()
        data = cli(ws, "migrate", step)
        log_out.append({"step": step, "at": time.time(), "command_s": round(time.perf_counter() - t0, 2),
                        "swap_s": data.get("seconds"), "index": data.get("index") or data.get("to_index")})
    done.set()


# -- main ------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="BEIR SciFact folder")
    parser.add_argument("--docs", type=int, default=None, help="only the first N documents (smoke run)")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--to", default=TO_MODEL, help="embedder the migration moves to")
    parser.add_argument("--swaps", type=int, default=3, help="cutover/rollback steps during phase 2 (odd: ends cut over)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the workspace and server log here")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse the workspace in --workdir (synced, migration open): skips the sync and start")
    args = parser.parse_args()
    if not (args.data / "corpus.jsonl").is_file():
        sys.exit(f"no SciFact corpus at {args.data}; pass --data")
    tmp = Path(tempfile.mkdtemp(prefix="serve-load-")) if args.workdir is None else args.workdir
    tmp.mkdir(parents=True, exist_ok=True)
    ws = tmp / "ws"
    corpus = prepare_corpus(args.data, args.docs, tmp)
    queries = load_queries(corpus)
    report = Report("serve_load")
    if not (args.reuse and (ws / "embedops.toml").is_file()):
        log(f"syncing {corpus} with {FROM_MODEL} into {ws} ...")
        report.figures["sync_s"] = round(build_workspace(ws, corpus), 1)
    port = free_port()
    server = start_server(ws, port, tmp / "server.log")
    url = f"http://127.0.0.1:{port}"
    try:
        log(f"phase 1: {args.clients} clients for {args.seconds:g} s ...")
        steady = asyncio.run(run_load(url, queries, args.clients, args.seconds, seed=1)).figures()
        log(f"migration to {args.to}: start (or reuse) + backfill (no load) ...")
        first, backfill_s = prepare_migration(ws, args.to)
        report.figures["backfill_s"] = round(backfill_s, 1)
        swaps: list[dict[str, Any]] = []
        done = threading.Event()
        every = args.seconds / (args.swaps + 1) / 2  # each CLI step also takes seconds (gate, model loads)
        swapper = threading.Thread(target=swap_loop, args=(ws, first, args.swaps, every, swaps, done), daemon=True)
        log(f"phase 2: the same load with {args.swaps} cutover/rollback steps through the CLI ...")
        swapper.start()
        during = asyncio.run(run_load(url, queries, args.clients, args.seconds, seed=2, until=done)).figures()
        swapper.join(timeout=300)
    finally:
        server.terminate()
        server.wait(timeout=30)
    report.figures.update({"clients": args.clients, "seconds": args.seconds, "docs": args.docs or "all",
                           "from": FROM_MODEL, "to": args.to, "steady": steady, "during_cutover": during,
                           "swaps": swaps, "workdir": str(tmp)})
    report.checks = [
        Check("steady 5xx", steady["server_errors_5xx"], 0),
        Check("steady failed requests", steady["failed"], 0),
        Check("cutover 5xx", during["server_errors_5xx"], 0),
        Check("cutover failed requests", during["failed"], 0),
        Check("cutover mixed-space responses", during["mixed_space_responses"], 0),
        Check("swaps completed", len(swaps), args.swaps, at_most=False),
    ]
    rows = [[phase, str(f["requests"]), str(f["throughput_rps"]), *(str(f.get(f"{k}_{q}_ms", "-"))
             for k in ("all", "vector", "hybrid", "bm25", "upsert") for q in ("p50", "p99")),
             str(f["server_errors_5xx"]), str(f["failed"])]
            for phase, f in (("steady", steady), ("during cutover", during))]
    header = ["phase", "requests", "req/s", *(f"{k} {q}" for k in ("all", "vector", "hybrid", "bm25", "upsert")
                                              for q in ("p50", "p99")), "5xx", "failed"]
    report.print(rows, header)
    print(f"swaps: {json.dumps(swaps)}")
    print(f"responses by space during phase 2: {json.dumps(during['responses_by_space'])}")
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
