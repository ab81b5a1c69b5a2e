"""Client-side pacing for remote providers: per-minute budgets, backoff, ``Retry-After``.

Pure and clock-injected, so the arithmetic is tested with literal times:

>>> t = [0.0]
>>> limiter = RateLimiter(requests_per_minute=60, now=lambda: t[0], sleep=lambda s: t.__setitem__(0, t[0] + s))
>>> [limiter.acquire() for _ in range(61)][-1]  # a full minute's budget, then one request per second
1.0
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol


@dataclass
class _Bucket:
    """A token bucket refilled continuously: ``capacity`` per minute, starting full."""

    capacity: float
    level: float
    stamp: float

    @classmethod
    def per_minute(cls, limit: float, now: float) -> _Bucket:
        return cls(capacity=float(limit), level=float(limit), stamp=now)

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.capacity / 60.0)
        self.stamp = now

    def wait(self, amount: float) -> float:
        """Seconds until ``amount`` can be taken (an amount over capacity waits for a full bucket)."""
        missing = min(amount, self.capacity) - self.level
        return 0.0 if missing <= 0 else missing * 60.0 / self.capacity


class RateLimiter:
    """Requests and tokens per minute, shared by every thread of one embedder.

    ``acquire(tokens)`` blocks until one request and ``tokens`` fit both budgets
    and any pause asked by the provider (``Retry-After``) is over; it returns the
    seconds waited. Token counts are estimates until the response's ``usage``
    arrives: ``settle`` charges the difference. ``None`` means no limit.
    """

    def __init__(
        self,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        *,
        now: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._now, self._sleep = now, sleep
        start = now()
        self._requests = _Bucket.per_minute(requests_per_minute, start) if requests_per_minute else None
        self._tokens = _Bucket.per_minute(tokens_per_minute, start) if tokens_per_minute else None
        self._paused_until = start
        self._lock = threading.Lock()

    def acquire(self, tokens: int = 0) -> float:
        waited = 0.0
        while (delay := self.try_acquire(tokens)) > 0:
            # Sleep outside the lock; re-check after, since another thread may have taken the budget.
            self._sleep(delay)
            waited += delay
        return waited

    def try_acquire(self, tokens: int = 0) -> float:
        """Take one request and ``tokens`` now and return 0.0, or take nothing and return the seconds to wait.

        The non-blocking half of ``acquire``: a limiter shared by processes (a Ray actor) answers
        this, and each caller sleeps on its own side."""
        with self._lock:
            delay = self._delay(tokens)
            if delay > 0:
                return delay
            if self._requests:
                self._requests.level -= 1
            if self._tokens:
                self._tokens.level -= tokens
            return 0.0

    def _delay(self, tokens: int) -> float:
        now = self._now()
        delays = [self._paused_until - now]
        for bucket, amount in ((self._requests, 1), (self._tokens, tokens)):
            if bucket is not None:
                bucket.refill(now)
                delays.append(bucket.wait(amount))
        return max(delays)

    def settle(self, extra_tokens: int) -> None:
        """Charge (or refund, when negative) tokens beyond the estimate ``acquire`` took."""
        if self._tokens is not None and extra_tokens:
            with self._lock:
                self._tokens.level -= extra_tokens

    def pause(self, seconds: float) -> None:
        """No request from any thread for ``seconds`` (the provider said so with ``Retry-After``)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._now() + seconds)


class Limiter(Protocol):
    """What an HTTP embedder paces its requests with: a :class:`RateLimiter` in this process, or a
    proxy to one shared by every worker of a Ray run (``execute/raydata.py``)."""

    def acquire(self, tokens: int = 0) -> float: ...

    def settle(self, extra_tokens: int) -> None: ...

    def pause(self, seconds: float) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with equal jitter; a provider's ``Retry-After`` wins when given.

    ``max_retry_after``: a provider asking for a longer wait is treated as down
    (the command fails, resumable) rather than blocking a worker for that long.
    """

    max_retries: int = 6
    base: float = 0.5
    cap: float = 30.0
    max_retry_after: float = 300.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt + 1`` (``attempt`` counts from 0)."""
        if retry_after is not None:
            # What the provider asked, plus a little spread so that workers do not return in lockstep.
            return retry_after + rng.uniform(0.0, min(self.base, 0.1 * retry_after + 0.05))
        backoff = min(self.cap, self.base * 2.0**attempt)
        return backoff / 2.0 + rng.uniform(0.0, backoff / 2.0)


def parse_retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """Seconds a response asks to wait: ``retry-after-ms``, else ``Retry-After`` (seconds or HTTP date).

    >>> parse_retry_after({"retry-after": "2"}), parse_retry_after({"retry-after-ms": "250"})
    (2.0, 0.25)
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None  # unreadable: fall back to our own backoff
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())
