"""Is a search result stale? Pure and cheap: it runs for every result of every query.

A document is stale when a freshness check saw its source change after its
vectors were made, and no sync has updated the document since (the mark's
``catalog_key`` is still the document's signature, or content hash when it has
no signature), or when its source has not been compared with the catalog (by
a sync or a freshness check) within the source's ``max_lag``.

>>> is_stale("9:10", "9:10", "abc", 100.0, None, 3600.0, now=200.0)
True
>>> is_stale("9:10", "12:10", "abc", 100.0, None, None, now=200.0)
False
>>> is_stale(None, "9:10", "abc", 100.0, None, 60.0, now=200.0)
True
"""

from __future__ import annotations


def is_stale(
    catalog_key: str | None,
    signature: str | None,
    content_hash: str,
    scanned_at: float | None,
    checked_at: float | None,
    max_lag: float | None,
    *,
    now: float,
) -> bool:
    """``catalog_key`` is the freshness mark's (None: no mark); ``scanned_at``/``checked_at``
    the source's last sync scan and last freshness check; ``max_lag`` its SLO in seconds."""
    if catalog_key is not None and catalog_key == (signature if signature is not None else content_hash):
        return True
    if max_lag is None:
        return False
    last = max(scanned_at or 0.0, checked_at or 0.0)
    return now - last > max_lag
