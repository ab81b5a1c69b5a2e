"""Names a user gives things: sources, aliases, eval sets, thresholds.

One rule for all of them, checked where a name is created: a name is a key in
``embedops.toml``, a path segment over HTTP (``/sources/{source}/...``), a word
in the ledger and on the terminal, so it keeps to letters, digits and ``._:-``.
Surrounding whitespace (a stray space in a shell argument) is stripped first.

>>> checked_name("source", "  docs ")
'docs'
>>> checked_name("source", "my docs")
Traceback (most recent call last):
...
embedops.errors.ConfigError: invalid source name 'my docs': use 1-200 letters, digits and . _ : -, starting with a letter or digit
  hint: e.g. docs, support-tickets, kb.v2
"""

from __future__ import annotations

import re

from embedops.errors import ConfigError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,199}")
RULE = "use 1-200 letters, digits and . _ : -, starting with a letter or digit"
_EXAMPLES = {"source": "docs, support-tickets, kb.v2", "alias": "prod, staging", "eval set": "faq, scifact-test",
             "threshold": "dedup, cache-hit"}


def checked_name(kind: str, name: str) -> str:
    """``name`` without surrounding whitespace, or a :class:`ConfigError` naming the rule."""
    stripped = name.strip() if isinstance(name, str) else name
    if not isinstance(stripped, str) or NAME.fullmatch(stripped) is None:
        raise ConfigError(f"invalid {kind} name {name!r}: {RULE}",
                          hint=f"e.g. {_EXAMPLES.get(kind, 'docs')}", **{kind.replace(' ', '_'): repr(name)})
    return stripped


__all__ = ["NAME", "RULE", "checked_name"]
