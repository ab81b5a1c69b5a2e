"""Language tags for documents and chunks (lingua, offline models in the wheel).

A tag is an ISO 639-1 code, or ``unknown`` when lingua cannot decide (numbers,
code, symbols, empty text). Detection runs over a configurable candidate set
(fewer candidates: faster, fewer confusions; a language not among them is
never returned) and on the first :data:`SAMPLE_CHARS` characters: a page's
language shows in its first paragraphs, and lingua's time grows with the text.

>>> detect_language("Der schnelle braune Fuchs springt über den faulen Hund.", ["en", "de"])
'de'
>>> detect_languages(["The cat sat on the mat and looked out of the window.", "1234 5678"], ["en", "de"])
['en', 'unknown']

Whatever is tagged outside a sync (queries for drift and evaluation segments,
chunks synced while curation was off) goes through a :class:`LanguageDetector`
built from the workspace's ``[curate]`` settings, so its tags are drawn from the
same candidates as the stored ones and comparable with them.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from embedops.curate.settings import DEFAULT_LANGUAGE_CANDIDATES, CurateSettings
from embedops.errors import ConfigError

UNKNOWN = "unknown"
SAMPLE_CHARS = 1000
Accuracy = Literal["low", "high"]


def detect_language(text: str, candidates: Sequence[str] = DEFAULT_LANGUAGE_CANDIDATES, *,
                    accuracy: Accuracy = "low") -> str:
    """The language of one document or chunk."""
    found = _detector(tuple(sorted(candidates)), accuracy).detect_language_of(text[:SAMPLE_CHARS])
    return _code(found)


def detect_languages(texts: Sequence[str], candidates: Sequence[str] = DEFAULT_LANGUAGE_CANDIDATES, *,
                     accuracy: Accuracy = "low") -> list[str]:
    """The language of each text, detected in parallel (lingua's threads): the call for a batch of chunks."""
    if not texts:
        return []
    detector = _detector(tuple(sorted(candidates)), accuracy)
    return [_code(found) for found in detector.detect_languages_in_parallel_of([t[:SAMPLE_CHARS] for t in texts])]


def detect_query_languages(texts: Sequence[str], candidates: Sequence[str] = DEFAULT_LANGUAGE_CANDIDATES, *,
                           accuracy: Accuracy = "low") -> list[str]:
    """The language of each of a set of short texts (queries), the set itself taken as evidence.

    Short queries full of names and jargon fool any detector (8% of SciFact's
    English claims come out French, Romanian...). Each query's confidences are
    weighted by how common each language is in a first pass over the whole set
    (an empirical prior, add-one smoothed), which halves those errors without
    hiding a real minority language.
    """
    if not texts:
        return []
    detector = _detector(tuple(sorted(candidates)), accuracy)
    confidences = detector.compute_language_confidence_values_in_parallel([t[:SAMPLE_CHARS] for t in texts])
    counts = Counter(_code(c[0].language) if c else UNKNOWN for c in confidences)
    denominator = len(texts) + len(candidates)
    labels = []
    for values in confidences:
        best = max(values, key=lambda v: v.value * (counts[_code(v.language)] + 1) / denominator, default=None)
        labels.append(_code(best.language) if best is not None and best.value > 0 else UNKNOWN)
    return labels


@dataclass(frozen=True)
class LanguageDetector:
    """The ingest's detector configuration (``[curate] language_candidates`` and ``language_accuracy``).

    >>> LanguageDetector.of(CurateSettings(language_candidates=["en", "de"])).documents(["Guten Morgen, wie geht es dir heute?"])
    ['de']
    """

    candidates: tuple[str, ...] = DEFAULT_LANGUAGE_CANDIDATES
    accuracy: Accuracy = "low"

    @classmethod
    def of(cls, settings: CurateSettings | None) -> LanguageDetector:
        """The detector of a workspace's ``[curate]`` table (the defaults without one; also when curation is off)."""
        settings = settings or CurateSettings()
        return cls(tuple(settings.language_candidates), settings.language_accuracy)

    def documents(self, texts: Sequence[str]) -> list[str]:
        """Tags for documents or chunks, each on its own: what a sync stores."""
        return detect_languages(texts, self.candidates, accuracy=self.accuracy)

    def queries(self, texts: Sequence[str]) -> list[str]:
        """Tags for a set of queries (:func:`detect_query_languages`)."""
        return detect_query_languages(texts, self.candidates, accuracy=self.accuracy)


def _code(language: Any) -> str:
    return UNKNOWN if language is None else str(language.iso_code_639_1.name.lower())


# One detector per candidate set: building is cheap, but each keeps its loaded models.
@functools.lru_cache(maxsize=8)
def _detector(candidates: tuple[str, ...], accuracy: Accuracy) -> Any:
    from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

    try:
        languages = [Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper())) for code in candidates]
    except AttributeError as exc:
        raise ConfigError(f"unknown language code in {list(candidates)}", hint="use ISO 639-1 codes lingua knows") from exc
    if len(languages) < 2:
        raise ConfigError(f"language detection needs at least two candidate languages (got {list(candidates)})")
    builder = LanguageDetectorBuilder.from_languages(*languages)
    return (builder.with_low_accuracy_mode() if accuracy == "low" else builder).build()
