"""The ``[monitor]`` section of ``embedops.toml``: thresholds of every health check.

Durations are strings with a unit (``"90s"``, ``"30m"``, ``"1h"``, ``"7d"``) or
numbers of seconds; ``"off"`` disables a freshness SLO. Every key is optional.

>>> parse_duration("1h30m")
5400.0
>>> MonitorSettings.from_toml({"max_lag": "2h", "query_log": True}).max_lag_seconds
7200.0
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from embedops.errors import ConfigError

CHECK_NAMES: tuple[str, ...] = ("freshness", "fingerprint", "drift", "canary", "coverage", "languages")

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")


def parse_duration(value: str | int | float, *, what: str = "duration") -> float:
    """Seconds in ``value``: a number of seconds or a string such as ``"1h"``, ``"1h30m"``, ``"7d"``."""
    hint = 'use a number of seconds or a string like "30m", "1h", "7d"'
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):  # a TOML table, list or date is none
        raise ConfigError(f"bad {what} {value!r}", hint=hint)
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = value.strip().lower().replace(" ", "")
        parts = _PART.findall(text)
        if not text or "".join(n + u for n, u in parts) != text:
            raise ConfigError(f"bad {what} {value!r}", hint=hint)
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{what} must be a positive, finite duration (got {value!r})", hint=hint)
    return seconds


def optional_duration(value: str | int | float | None, *, what: str) -> float | None:
    """Like :func:`parse_duration`, but ``None``/``"off"`` mean no limit."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("off", "none", "")):
        return None
    return parse_duration(value, what=what)


@dataclass
class MonitorSettings:
    """Thresholds of the health checks (``[monitor]`` in ``embedops.toml``)."""

    checks: list[str] = field(default_factory=lambda: list(CHECK_NAMES))
    # freshness: default SLO of every source; [sources.NAME] max_lag overrides it
    max_lag: str | None = "24h"
    # fingerprint: run the model check before a sync and a process's first search
    verify_model: bool = True
    fingerprint_min_cosine: float = 0.99999
    probe_size: int = 20
    probe_k: int = 10
    probe_min_agreement: float = 0.9
    # drift
    drift_sample: int = 500
    drift_min_samples: int = 30
    drift_window: str = "7d"
    drift_alpha: float = 0.01
    drift_min_mmd: float = 0.02
    drift_permutations: int = 500
    # canaries
    canary_k: int = 10
    canary_max_drop: float = 0.05
    # query log and eval-set coverage
    query_log: bool = False
    query_log_text: bool = True
    query_log_retention: str = "30d"
    coverage_window: str = "7d"
    coverage_min_similarity: float = 0.6
    coverage_max_uncovered: float = 0.5
    coverage_max_age: str = "180d"
    # corpus languages vs the embedder's
    language_sample: int = 300
    language_max_share: float = 0.05
    # the monitor loop
    every: str = "5m"

    @classmethod
    def from_toml(cls, data: dict[str, Any]) -> MonitorSettings:
        """Validated settings from the ``[monitor]`` table; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown setting(s) {sorted(unknown)} in [monitor]", hint=f"valid settings: {sorted(known)}")
        settings = cls(**data)
        settings.validate()
        return settings

    def to_toml(self) -> dict[str, Any]:
        """Only the keys that differ from the defaults (``None`` written as ``"off"``)."""
        default = MonitorSettings()
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value != getattr(default, f.name):
                out[f.name] = "off" if value is None else value
        return out

    def validate(self) -> None:
        for name in ("verify_model", "query_log", "query_log_text"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"[monitor] {name} must be true or false (got {getattr(self, name)!r})")
        if not isinstance(self.checks, list) or not all(isinstance(c, str) for c in self.checks):
            raise ConfigError(f"[monitor] checks must be a list of check names (got {self.checks!r})",
                              hint=f"checks: {', '.join(CHECK_NAMES)}")
        bad = [c for c in self.checks if c not in CHECK_NAMES]
        if bad:
            raise ConfigError(f"unknown check(s) {bad} in [monitor] checks", hint=f"checks: {', '.join(CHECK_NAMES)}")
        for name in ("max_lag",):
            optional_duration(getattr(self, name), what=f"[monitor] {name}")
        for name in ("drift_window", "query_log_retention", "coverage_window", "coverage_max_age", "every"):
            parse_duration(getattr(self, name), what=f"[monitor] {name}")
        _between("fingerprint_min_cosine", self.fingerprint_min_cosine, 0.0, 1.0)
        _between("probe_min_agreement", self.probe_min_agreement, 0.0, 1.0)
        _between("drift_alpha", self.drift_alpha, 0.0, 1.0)
        _between("coverage_min_similarity", self.coverage_min_similarity, -1.0, 1.0)
        _between("coverage_max_uncovered", self.coverage_max_uncovered, 0.0, 1.0)
        _between("canary_max_drop", self.canary_max_drop, 0.0, 1.0)
        _between("language_max_share", self.language_max_share, 0.0, 1.0)
        _between("drift_min_mmd", self.drift_min_mmd, 0.0, 4.0)
        for name in ("probe_size", "probe_k", "drift_sample", "drift_min_samples", "drift_permutations", "canary_k",
                     "language_sample"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"[monitor] {name} must be a positive integer (got {value!r})")
        if self.drift_sample < self.drift_min_samples:
            raise ConfigError("[monitor] drift_sample must be at least drift_min_samples")

    @property
    def max_lag_seconds(self) -> float | None:
        return optional_duration(self.max_lag, what="[monitor] max_lag")

    def seconds(self, name: str) -> float:
        """A duration setting (``drift_window``, ``query_log_retention``...) in seconds."""
        return parse_duration(getattr(self, name), what=f"[monitor] {name}")


def _between(name: str, value: object, low: float, high: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= float(value) <= high:
        raise ConfigError(f"[monitor] {name} must be a number between {low} and {high} (got {value!r})")


def source_slos(monitor: MonitorSettings, sources: Mapping[str, Any]) -> dict[str, float | None]:
    """Freshness SLO in seconds (None: none) per source name: its own ``max_lag``, else [monitor]'s.

    A push source has no default SLO: its documents arrive through the API and
    there is nothing to re-scan, so the time since the last scan says nothing
    about them (an explicit ``[sources.NAME] max_lag`` still applies).
    """
    default = monitor.max_lag_seconds
    return {
        name: (None if cfg.kind == "push" else default) if cfg.max_lag is None
        else optional_duration(cfg.max_lag, what=f"[sources.{name}] max_lag")
        for name, cfg in sources.items()
    }
