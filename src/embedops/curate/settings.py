"""The ``[curate]`` settings: which rules run, their thresholds, and the near-duplicate parameters.

Every key is optional; an unknown key, a value of the wrong type or one out of
its range is a :class:`~embedops.errors.ConfigError` naming the key, the value
and what is allowed.

>>> CurateSettings.from_toml({"min_words": 20, "allowed_languages": ["en", "de"]}).min_words
20
>>> CurateSettings.from_toml({"jaccard_threshold": 1.5})
Traceback (most recent call last):
...
embedops.errors.ConfigError: [curate] jaccard_threshold must be a number from 0.1 to 1.0 (got 1.5)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from embedops.errors import ConfigError

# Reason codes, in the order they are checked and reported.
DUPLICATE = "duplicate"
NEAR_DUPLICATE = "near_duplicate"
TOO_SHORT = "too_short"
TOO_LONG = "too_long"
NON_TEXT = "non_text"
BOILERPLATE = "boilerplate"
ENCODING = "encoding"
LANGUAGE = "language"
RULE_NAMES: tuple[str, ...] = (DUPLICATE, TOO_SHORT, TOO_LONG, NON_TEXT, BOILERPLATE, ENCODING, LANGUAGE, NEAR_DUPLICATE)
Scope = Literal["workspace", "source"]
SCOPES: tuple[Scope, ...] = ("workspace", "source")

# Candidates for language detection: widely used languages. Fewer candidates
# detect faster and confuse less; a language missing here is never detected.
DEFAULT_LANGUAGE_CANDIDATES: tuple[str, ...] = tuple(
    "ar bn cs da de el en es fa fi fr he hi hu id it ja ko nb nl pl pt ro ru sv th tr uk vi zh".split()
)

# Allowed ranges, also quoted in the error messages.
_INT_RANGES: dict[str, tuple[int, int]] = {
    "min_words": (0, 1_000_000),
    "max_words": (1, 1_000_000_000),
    "shingle_size": (1, 16),
    "num_perm": (16, 1024),
}
_FLOAT_RANGES: dict[str, tuple[float, float]] = {
    "max_non_text_ratio": (0.0, 1.0),
    "max_boilerplate_ratio": (0.0, 1.0),
    "max_encoding_errors": (0.0, 1.0),
    # Below 0.1 the LSH index returns most of the corpus as candidates.
    "jaccard_threshold": (0.1, 1.0),
}


@dataclass
class CurateSettings:
    """Curation rules and thresholds (``[curate]`` in ``embedops.toml``).

    ``enabled = false`` turns curation off: sync embeds every document, unchecked and
    untagged. An ``embedops.toml`` without the table is the same as ``enabled = false``
    (workspaces made before curation existed); ``embedops init`` writes ``enabled = true``.
    """

    enabled: bool = True
    # What a document is compared with for duplicates: every source's kept documents, or its own source's.
    scope: Scope = "workspace"
    rules: list[str] = field(default_factory=lambda: list(RULE_NAMES))
    min_words: int = 5
    max_words: int = 200_000
    max_non_text_ratio: float = 0.6
    max_boilerplate_ratio: float = 0.6
    max_encoding_errors: float = 0.01
    # Empty: every language is allowed (documents are still tagged).
    allowed_languages: list[str] = field(default_factory=list)
    language_candidates: list[str] = field(default_factory=lambda: list(DEFAULT_LANGUAGE_CANDIDATES))
    language_accuracy: Literal["low", "high"] = "low"
    shingle_size: int = 3
    num_perm: int = 128
    jaccard_threshold: float = 0.5

    @classmethod
    def from_toml(cls, data: dict[str, Any]) -> CurateSettings:
        """Validated settings from the ``[curate]`` table; unknown keys are an error."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(f"unknown setting(s) {unknown} in [curate]", hint=f"valid settings: {', '.join(known)}")
        settings = cls(**data)
        settings.validate()
        return settings

    def to_toml(self) -> dict[str, Any]:
        """Only the keys that differ from the defaults."""
        default = CurateSettings()
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != getattr(default, f.name)}

    def checks(self, rule: str) -> bool:
        """Whether ``rule`` (a reason code) runs."""
        return rule in self.rules

    def validate(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ConfigError(f"[curate] enabled must be true or false (got {self.enabled!r})")
        _names("rules", self.rules, RULE_NAMES)
        for name, (low, high) in _INT_RANGES.items():
            _int_between(name, getattr(self, name), low, high)
        for name, (flow, fhigh) in _FLOAT_RANGES.items():
            _number_between(name, getattr(self, name), flow, fhigh)
        if self.max_words < self.min_words:
            raise ConfigError(f"[curate] max_words must be at least min_words ({self.min_words}) (got {self.max_words})")
        if self.scope not in SCOPES:
            raise ConfigError(f"[curate] scope must be one of {', '.join(SCOPES)} (got {self.scope!r})")
        if self.language_accuracy not in ("low", "high"):
            raise ConfigError(f"[curate] language_accuracy must be one of low, high (got {self.language_accuracy!r})")
        _names("language_candidates", self.language_candidates, supported_languages())
        if len(set(self.language_candidates)) < 2:
            raise ConfigError(f"[curate] language_candidates must name at least two languages "
                              f"(got {self.language_candidates!r})", hint="lingua decides between candidates")
        _names("allowed_languages", self.allowed_languages, self.language_candidates,
               hint="a language outside language_candidates is never detected: add it there too")


def supported_languages() -> tuple[str, ...]:
    """ISO 639-1 codes lingua can detect."""
    from lingua import Language

    return tuple(sorted(language.iso_code_639_1.name.lower() for language in Language.all()))


def _names(key: str, values: object, allowed: Sequence[str], hint: str | None = None) -> None:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"[curate] {key} must be a list of strings (got {values!r})")
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ConfigError(f"[curate] {key}: unknown value(s) {bad}; allowed: {', '.join(allowed)}", hint=hint)


def _int_between(key: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"[curate] {key} must be an integer from {low} to {high} (got {value!r})")


def _number_between(key: str, value: object, low: float, high: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= float(value) <= high:
        raise ConfigError(f"[curate] {key} must be a number from {low} to {high} (got {value!r})")
