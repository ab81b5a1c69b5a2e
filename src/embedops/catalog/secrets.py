"""Credentials never written: database URLs stored and logged without their password.

>>> redact("postgresql://alice:s3cret@db:5432/prod and more")
'postgresql://alice:***@db:5432/prod and more'
>>> strip_password("postgresql://alice:s3cret@db/prod")
('postgresql://alice@db/prod', True)
>>> strip_password(".embedops/catalog.db")
('.embedops/catalog.db', False)
"""

from __future__ import annotations

import re

# scheme://user:password@ — the password is everything up to the last "@" before the host.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@\s]*)@")
_KEYWORD = re.compile(r"(?i)\b(password|passwd|pwd)=([^\s&;]+)")


def redact(text: str) -> str:
    """``text`` with every URL password and ``password=...`` value replaced by ``***``."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _KEYWORD.sub(lambda m: f"{m[1]}=***", text)


def strip_password(url: str) -> tuple[str, bool]:
    """The URL without its password, and whether it had one."""
    stripped = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}@", url, count=1)
    return stripped, stripped != url
