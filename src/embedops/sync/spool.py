"""A sync plan's documents, held in memory up to a bound and spilled to a file past it (issue 17).

A first sync of a million records plans a million new documents before the first batch
is written: the mass-delete guard, curation and the ``--plan`` counts need the whole
diff. Their identifiers and counts are small; their texts are the corpus. A
:class:`Spool` keeps the first items appended in memory, up to ``bound`` bytes of text,
and pickles every later one to an unnamed temporary file (``tempfile.TemporaryFile``:
unlinked when made, so a killed sync leaves nothing behind, and the next sync starts with
none). What stays in memory per spilled item is its offset. The runner reads the items
back a batch at a time (``spool[start:stop]``), and curation one document at a time.

The file is in the workspace's state directory, not /tmp: /tmp may be a tmpfs, which
is memory again.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from array import array
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Generic, TypeVar, overload

T = TypeVar("T")
# How many spilled items one read brings back while iterating.
READ_BLOCK = 512


class Spool(Sequence[T], Generic[T]):
    """A list that appends and reads back in order; past ``bound`` bytes (``size`` of each item) it spills.

    >>> spool = Spool(None, bound=5, size=len)
    >>> for word in ["tea", "ox", "rice", "salt"]:
    ...     spool.append(word)
    >>> spool.held, spool.spilled, list(spool), spool[1:3]
    (2, 2, ['tea', 'ox', 'rice', 'salt'], ['ox', 'rice'])
    >>> spool.close()
    """

    def __init__(self, directory: Path | None, bound: int, size: Callable[[T], int]) -> None:
        self._directory = directory
        self._bound = bound
        self._size = size
        self._held: list[T] = []
        self._held_bytes = 0
        self._offsets = array("q")  # where each spilled item starts; the last one ends at self._end
        self._end = 0
        self._file: IO[bytes] | None = None
        self._unflushed = False

    @property
    def held(self) -> int:
        """Items held in memory."""
        return len(self._held)

    @property
    def spilled(self) -> int:
        """Items in the file."""
        return len(self._offsets)

    def append(self, item: T) -> None:
        n = self._size(item)
        if not self._offsets and self._held_bytes + n <= self._bound:  # once one spills, every later one does
            self._held.append(item)
            self._held_bytes += n
            return
        if self._file is None:
            if self._directory is not None:
                self._directory.mkdir(parents=True, exist_ok=True)
            self._file = tempfile.TemporaryFile(prefix="spool-", dir=self._directory)
        data = pickle.dumps(item, pickle.HIGHEST_PROTOCOL)
        self._file.write(data)
        self._offsets.append(self._end)
        self._end += len(data)
        self._unflushed = True

    def __len__(self) -> int:
        return len(self._held) + len(self._offsets)

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return [self[i] for i in range(start, stop, step)]
            return self._read(start, stop)
        i = index + len(self) if index < 0 else index
        if not 0 <= i < len(self):
            raise IndexError("spool index out of range")
        return self._read(i, i + 1)[0]

    def __iter__(self) -> Iterator[T]:
        for start in range(0, len(self), READ_BLOCK):
            yield from self._read(start, min(start + READ_BLOCK, len(self)))

    def _read(self, start: int, stop: int) -> list[T]:
        """Items ``start`` to ``stop``: the held ones, then the spilled ones in one read of the file."""
        held = len(self._held)
        out = self._held[start:stop]
        lo, hi = max(start - held, 0), stop - held
        if hi <= lo:
            return out
        assert self._file is not None
        if self._unflushed:
            self._file.flush()
            self._unflushed = False
        first = self._offsets[lo]
        last = self._offsets[hi] if hi < len(self._offsets) else self._end
        data = memoryview(os.pread(self._file.fileno(), last - first, first))
        ends = [*self._offsets[lo + 1 : hi], last]
        at = 0
        for end in ends:
            out.append(pickle.loads(data[at : end - first]))
            at = end - first
        return out

    def close(self) -> None:
        """Let go of the file (the items spilled are gone with it) and of the held items."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._held, self._offsets, self._end = [], array("q"), 0


def spool_factory(directory: Path | None, bound: int, made: list[Spool[Any]]) -> Callable[[], Spool[Any]]:
    """Makes the spools of a plan's documents (``Document`` or ``(row id, Document)``), each holding up to
    ``bound`` characters of text in memory; each one made is added to ``made`` (for its owner to close)."""
    def make() -> Spool[Any]:
        spool: Spool[Any] = Spool(directory, bound, _text_size)
        made.append(spool)
        return spool
    return make


def _text_size(item: object) -> int:
    doc = item[1] if isinstance(item, tuple) else item
    text = getattr(doc, "text", "")
    return len(text) if isinstance(text, str) else 0


__all__ = ["Spool", "spool_factory"]
