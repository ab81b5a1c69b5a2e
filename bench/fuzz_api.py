"""Fuzz the HTTP service from its own OpenAPI schema with schemathesis: zero 5xx, zero schema violations.

A workspace with a generated corpus (30 markdown files, ``hashing`` embedder:
the fuzzer's inputs, not a model, are under test here) and a push source
``events`` is served by ``embedops serve`` on 127.0.0.1 with a token; then

    schemathesis run http://127.0.0.1:PORT/openapi.json --checks all -H "Authorization: Bearer ..."

generates valid and invalid requests for every operation (examples, coverage,
fuzzing and stateful phases) and checks each response: no server error, status
code and content type documented, body valid against the documented schema,
invalid input rejected with a 4xx, valid input accepted, auth enforced.

Needs the ``fuzz`` extra (``pip install -e '.[fuzz]'``).

    .venv/bin/python bench/fuzz_api.py                      # ~100 examples per operation, ~3-6 min
    .venv/bin/python bench/fuzz_api.py --max-examples 20    # quick
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import Check, Report, log  # noqa: E402
from serve_load import EMBEDOPS, free_port  # noqa: E402

TOKEN = "fuzz-token"


def build_workspace(root: Path) -> Path:
    from tests.conftest import write_corpus

    from embedops.workspace import Workspace

    write_corpus(root / "docs", 30)
    with Workspace.init(root / "ws", embedder="hashing") as ws:
        ws.add_source("docs", root / "docs")
        ws.add_source("events", kind="push")
        ws.sync()
        ws.thresholds.add("dedup", 0.9)
    return root / "ws"


def start_server(ws: Path, port: int, log_path: Path, auth_reads: bool) -> subprocess.Popen[bytes]:
    import httpx2 as httpx

    env = {**os.environ, "EMBEDOPS_TOKEN": TOKEN}
    flags = ["--auth-reads"] if auth_reads else []
    proc = subprocess.Popen([*EMBEDOPS, "serve", "--port", str(port), "--workspace", str(ws), *flags], env=env,
                            stdout=log_path.open("wb"), stderr=subprocess.STDOUT)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server did not start; see {log_path}")


def run_schemathesis(port: int, out: Path, max_examples: int, seed: int) -> tuple[int, str]:
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    out.mkdir(parents=True, exist_ok=True)
    config = out / "schemathesis.toml"
    # Documents go to the push source and thresholds are read by a name that exists (an unknown
    # one is a 404 before any other logic runs); every other parameter is generated.
    config.write_text('[parameters]\n"path.source" = "events"\n"path.name" = "dedup"\n', encoding="utf-8")
    cmd = [exe, "--config-file", str(config), "run", f"http://127.0.0.1:{port}/openapi.json", "--checks", "all",
           "-H", f"Authorization: Bearer {TOKEN}", "--max-examples", str(max_examples), "--seed", str(seed),
           "--workers", "1", "--no-color", "--report", "junit,ndjson", "--report-dir", str(out),
           "--generation-database", "none"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr


def count_5xx(ndjson: Path) -> tuple[int, int]:
    """(responses, 5xx responses) recorded in schemathesis' event stream."""
    responses = server_errors = 0
    if not ndjson.is_file():
        return 0, 0
    for line in ndjson.read_text(encoding="utf-8").splitlines():
        for status in _statuses(json.loads(line)):
            responses += 1
            server_errors += status >= 500
    return responses, server_errors


def _statuses(node: Any) -> list[int]:
    found: list[int] = []
    if isinstance(node, dict):
        if isinstance(node.get("status_code"), int) and "elapsed" in node:
            found.append(node["status_code"])
        for value in node.values():
            found.extend(_statuses(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_statuses(value))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-examples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--auth-reads", action="store_true", help="serve with --auth-reads (reads need the token)")
    args = parser.parse_args()
    tmp = args.workdir or Path(tempfile.mkdtemp(prefix="fuzz-api-"))
    tmp.mkdir(parents=True, exist_ok=True)
    ws = build_workspace(tmp)
    port = free_port()
    server = start_server(ws, port, tmp / "server.log", args.auth_reads)
    started = time.perf_counter()
    try:
        log(f"schemathesis against http://127.0.0.1:{port} ({args.max_examples} examples per operation) ...")
        code, output = run_schemathesis(port, tmp / "report", args.max_examples, args.seed)
    finally:
        server.terminate()
        server.wait(timeout=30)
    seconds = time.perf_counter() - started
    print(output[-6000:])
    responses, server_errors = count_5xx(next((tmp / "report").glob("*.ndjson"), tmp / "none"))
    tracebacks = (tmp / "server.log").read_text(errors="replace").count("Traceback")
    report = Report("fuzz_api", {"max_examples": args.max_examples, "auth_reads": args.auth_reads, "seconds": round(seconds, 1),
                                 "responses": responses, "schemathesis_exit": code, "workdir": str(tmp)})
    report.checks = [
        Check("5xx responses", server_errors, 0),
        Check("server tracebacks", tracebacks, 0),
        Check("schemathesis failures (exit code)", code, 0),
        Check("responses checked", responses, 100, at_most=False),
    ]
    report.print([[str(responses), str(server_errors), str(code), f"{seconds:.0f} s"]],
                 ["responses", "5xx", "schemathesis exit", "time"])
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
