"""A BEIR dataset's corpus as a source.

A BEIR dataset folder holds ``corpus.jsonl`` with ``{"_id", "title", "text"}``
records (optionally ``"metadata": {...}``). The document text is built exactly
as BEIR's own dense-retrieval code builds it,
``(title + " " + text).strip()``, because any other concatenation changes the
vectors and makes published scores impossible to reproduce.

>>> src = BeirSource("scifact", "datasets/scifact")   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from embedops.errors import SourceError
from embedops.sources.jsonl import JsonlSource

CORPUS_FILES = ("corpus.jsonl", "corpus.jsonl.gz")


class BeirSource(JsonlSource):
    """The ``corpus.jsonl`` of a BEIR dataset folder (or that file itself).

    metadata is ``{"title": title}`` plus the entries of the record's
    ``metadata`` object when it has one.
    """

    kind = "beir"

    def __init__(self, name: str, path: str | Path) -> None:
        super().__init__(name, path, id_field="_id", text_field="text", title_field="title")

    def _records_path(self) -> Path:
        if self.path.is_file():
            return self.path
        if self.path.is_dir():
            for candidate in CORPUS_FILES:
                if (self.path / candidate).is_file():
                    return self.path / candidate
            raise SourceError(
                f"source {self.name!r}: {self.path} has no corpus.jsonl",
                hint="point the source at an unzipped BEIR dataset folder (the one holding "
                "corpus.jsonl, queries.jsonl and qrels/)",
                source=self.name,
                path=str(self.path),
            )
        raise SourceError(
            f"source {self.name!r}: BEIR dataset folder {self.path} does not exist",
            hint="download and unzip the dataset (e.g. from the BEIR dataset page), then point "
            "the source at its folder",
            source=self.name,
            path=str(self.path),
        )

    def _compose_text(self, obj: dict[str, Any], text: str) -> str:
        # BEIR: (doc["title"] + " " + doc["text"]).strip() when a title field
        # exists, else doc["text"].strip().
        title = obj.get("title")
        if type(title) is str:
            return (title + " " + text).strip()
        return text.strip()

    def _metadata(self, obj: dict[str, Any]) -> dict[str, Any]:
        extra = obj.get("metadata")
        metadata: dict[str, Any] = dict(extra) if type(extra) is dict else {}
        title = obj.get("title")
        metadata["title"] = title if type(title) is str else ""
        return metadata
