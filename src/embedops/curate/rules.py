"""Quality rules: each measures one thing about a text and compares it with its threshold.

Every rule is a pure function ``(text, settings) -> Finding | None``; a finding
carries the reason code, the measured value, the limit it broke and a
sentence for a person. The measures:

``too_short`` / ``too_long``
    words (see :mod:`embedops.curate.text`: a character of a script written
    without spaces counts as one word) below ``min_words`` / above ``max_words``.
``non_text``
    share of the non-whitespace characters that are not letters (Unicode
    categories L and M): digits, symbols and punctuation. Chinese runs higher
    than English for the same content (one character per word, full-width
    punctuation), which the default leaves room for.
``boilerplate``
    share of the characters of the non-blank lines that sit on boilerplate
    lines (:func:`boilerplate_lines`).
``encoding``
    broken-encoding marks per non-whitespace character: replacement characters
    (U+FFFD), control characters other than tab/newline/carriage return, and
    mojibake sequences (UTF-8 read as Latin-1/cp1252, counted by ftfy).
``language`` (:func:`language_finding`)
    the detected language is not in ``allowed_languages``; a text whose
    language cannot be detected passes (``non_text`` is the rule for garbage).

>>> too_short("two words", CurateSettings()).detail
'2 words, fewer than min_words = 5'
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from embedops.curate.settings import (
    BOILERPLATE, ENCODING, LANGUAGE, NON_TEXT, TOO_LONG, TOO_SHORT, CurateSettings,
)
from embedops.curate.text import content_lines, word_count


@dataclass(frozen=True)
class Finding:
    """Why a document is quarantined: a reason code, the measured value, the limit it broke."""

    reason: str
    detail: str
    value: float | None = None
    limit: float | None = None


def too_short(text: str, settings: CurateSettings) -> Finding | None:
    count = word_count(text)
    if count >= settings.min_words:
        return None
    return Finding(TOO_SHORT, f"{count} words, fewer than min_words = {settings.min_words}", count, settings.min_words)


def too_long(text: str, settings: CurateSettings) -> Finding | None:
    count = word_count(text)
    if count <= settings.max_words:
        return None
    return Finding(TOO_LONG, f"{count} words, more than max_words = {settings.max_words}", count, settings.max_words)


_ALPHA_RUN = re.compile(r"[^\W\d_]+")  # runs of letters, and of numerals that are not digits (½, Ⅻ)
_NOT_WORD = re.compile(r"[^\w\s]")  # punctuation, symbols and combining marks
_SPACE = re.compile(r"\s")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # category Cc less tab, newline, CR


def visible_chars(text: str) -> int:
    """Number of non-whitespace characters."""
    return len(text) - len(_SPACE.findall(text))


def non_text_ratio(text: str) -> float:
    """Share of non-whitespace characters that are not letters or combining marks."""
    chars = visible_chars(text)
    if not chars:
        return 0.0
    # Regexes do the bulk; only the rare mixed runs and the non-word characters are looked at one by one.
    letters = sum(len(run) if run.isalpha() else sum(c.isalpha() for c in run) for run in _ALPHA_RUN.findall(text))
    marks = sum(1 for c in _NOT_WORD.findall(text) if unicodedata.category(c)[0] == "M")
    return (chars - letters - marks) / chars


def non_text(text: str, settings: CurateSettings) -> Finding | None:
    ratio = non_text_ratio(text)
    if ratio <= settings.max_non_text_ratio:
        return None
    limit = settings.max_non_text_ratio
    return Finding(NON_TEXT, f"{ratio:.0%} of characters are digits, symbols or punctuation "
                   f"(max_non_text_ratio = {limit})", round(ratio, 4), limit)


# A line of at least three short items between separators: "Home | News | Contact", "Docs › API › v2".
_SEPARATORS = re.compile(r"\s*(?:[|•·»›>→]|\s[-–]\s)\s*")
_MENU_ITEM_WORDS = 3
# Stock phrases of page chrome (English only; other languages rely on the repeat and menu tests).
# Anchored at a word start, so "catalog index" holds no "log in" (plurals and suffixes still match).
_STOCK = re.compile(
    r"©|(?<!\w)(?:all rights reserved|copyright|privacy policy|terms of (?:use|service)|cookie|sign (?:in|up)"
    r"|log ?in|subscribe|newsletter|share (?:this|on)|follow us|skip to|back to top|read more|click here"
    r"|javascript|advertisement)"
)
_STOCK_MAX_WORDS = 12
# Runs of at least this many very short lines without sentence punctuation: a vertical menu.
_RUN_LINES = 3
_RUN_MAX_WORDS = 3
_SENTENCE_END = re.compile(r"[.!?。！？:;]$")


def boilerplate_lines(lines: list[str]) -> list[bool]:
    """Which lines are boilerplate: a repeat of an earlier line (case, spacing and digits
    ignored), a menu line (≥ 3 items of ≤ 3 words between separators such as ``|`` ``»`` ``›``),
    a short line (≤ 12 words) with a stock phrase of page chrome (copyright, cookie, sign in,
    share this...), or one of a run of ≥ 3 lines of ≤ 3 words each without sentence punctuation."""
    seen: set[str] = set()
    flags = []
    for line in lines:
        key = re.sub(r"\d", "0", " ".join(line.casefold().split()))
        flags.append(key in seen or _is_menu(line) or _is_stock(line))
        seen.add(key)
    for start, end in _short_runs(lines):
        flags[start:end] = [True] * (end - start)
    return flags


def _is_menu(line: str) -> bool:
    items = [item for item in _SEPARATORS.split(line) if item]
    return len(items) >= 3 and all(word_count(item) <= _MENU_ITEM_WORDS for item in items)


def _is_stock(line: str) -> bool:
    return word_count(line) <= _STOCK_MAX_WORDS and _STOCK.search(line.casefold()) is not None


def _short_runs(lines: list[str]) -> list[tuple[int, int]]:
    """(start, end) of each run of at least ``_RUN_LINES`` consecutive menu-item-like lines."""
    runs, start = [], None
    for i, line in enumerate([*lines, "."]):  # a sentinel line closes the last run
        short = word_count(line) <= _RUN_MAX_WORDS and not _SENTENCE_END.search(line)
        if short and start is None:
            start = i
        elif not short and start is not None:
            if i - start >= _RUN_LINES:
                runs.append((start, i))
            start = None
    return runs


def boilerplate_ratio(text: str) -> float:
    """Share of the characters of the non-blank lines that are on boilerplate lines."""
    lines = content_lines(text)
    total = sum(len(line) for line in lines)
    if not total:
        return 0.0
    return sum(len(line) for line, flag in zip(lines, boilerplate_lines(lines), strict=True) if flag) / total


def boilerplate(text: str, settings: CurateSettings) -> Finding | None:
    ratio = boilerplate_ratio(text)
    if ratio <= settings.max_boilerplate_ratio:
        return None
    limit = settings.max_boilerplate_ratio
    return Finding(BOILERPLATE, f"{ratio:.0%} of the text is repeated lines, menus or page chrome "
                   f"(max_boilerplate_ratio = {limit})", round(ratio, 4), limit)


def encoding_marks(text: str) -> int:
    """Replacement characters + control characters (not tab/newline/CR) + mojibake sequences."""
    from ftfy.badness import badness

    return text.count("\ufffd") + len(_CONTROL.findall(text)) + int(badness(text))


def encoding(text: str, settings: CurateSettings) -> Finding | None:
    chars = visible_chars(text)
    marks = encoding_marks(text)
    ratio = marks / chars if chars else 0.0
    if not marks or ratio <= settings.max_encoding_errors:
        return None
    limit = settings.max_encoding_errors
    return Finding(ENCODING, f"{marks} broken-encoding marks in {chars} characters ({ratio:.1%}: replacement or "
                   f"control characters, mojibake; max_encoding_errors = {limit})", round(ratio, 4), limit)


def language_finding(language: str, settings: CurateSettings) -> Finding | None:
    """The ``language`` rule, on an already detected ISO 639-1 code (``unknown`` passes)."""
    allowed = settings.allowed_languages
    if not allowed or language in allowed or language == "unknown":
        return None
    return Finding(LANGUAGE, f"language {language} is not in allowed_languages ({', '.join(allowed)})")


# The text rules, in reporting order (language needs detection and is applied by the caller).
TEXT_RULES: dict[str, Callable[[str, CurateSettings], Finding | None]] = {
    TOO_SHORT: too_short,
    TOO_LONG: too_long,
    NON_TEXT: non_text,
    BOILERPLATE: boilerplate,
    ENCODING: encoding,
}


def quality_findings(text: str, settings: CurateSettings, language: str = "unknown") -> list[Finding]:
    """Every enabled quality rule that ``text`` breaks, in reporting order."""
    findings = [f for name, rule in TEXT_RULES.items() if settings.checks(name) and (f := rule(text, settings))]
    if settings.checks(LANGUAGE) and (found := language_finding(language, settings)):
        findings.append(found)
    return findings
