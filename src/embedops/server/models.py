"""Request and response shapes; the limits come from the ServerConfig, so the OpenAPI schema states them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import re

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from embedops.server.config import ServerConfig
from embedops.sources.validate import LIMITS_HINT, MAX_METADATA_KEYS, id_problem, metadata_problem, text_problem
from embedops.vectors.rows import METADATA_KEY

Mode = Literal["vector", "bm25", "hybrid"]
# No NUL anywhere: PostgreSQL refuses one even in a value it only compares. Stated as patterns, so that
# the schema says what is accepted (a fuzzer generating from it sends nothing the service refuses).
NO_NUL = r"^[^\x00]*$"
NOT_BLANK = r"^[^\x00]*[^\s\x00][^\x00]*$"  # some text that is not whitespace, and no NUL
WHERE_ITEM = METADATA_KEY.rstrip("$") + r"=[^\x00\n]{0,1000}$"
# A document id in a URL: not blank, and no line break either (the router would drop a final one).
ID_PATTERN = r"^[^\x00\n]*[^\s\x00][^\x00\n]*$"


def _no_nul(value: str) -> str:
    if (at := value.find("\x00")) != -1:
        raise ValueError(f"contains a NUL character at character {at}; no name, id, query or text may hold one")
    return value


# A body string that is looked up or searched for: the schema states the pattern, the validator says
# what is wrong in words ("String should match pattern '^[^\x00]*$'" would not).
NoNul = Annotated[str, AfterValidator(_no_nul), Field(json_schema_extra={"pattern": NO_NUL})]


def _iso_only(value: Any) -> Any:
    """Times are ISO 8601 strings, as the schema says; pydantic alone would also take 0 as 1970-01-01."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or re.fullmatch(r"\s*[-+]?[0-9.eE+-]*\s*", value):
        raise ValueError("expected an ISO 8601 date-time string, e.g. 2024-05-01T12:00:00Z")
    return value


IsoDateTime = Annotated[datetime, BeforeValidator(_iso_only)]


def _check_where(where: dict[str, str]) -> dict[str, str]:
    bad = [key for key in where if not re.fullmatch(METADATA_KEY, key)]
    if bad:
        raise ValueError(f"filter keys must match {METADATA_KEY}; got {', '.join(map(repr, bad[:3]))}")
    return where


# patternProperties rather than propertyNames: fuzzers and client generators understand it.
WhereFilter = Annotated[
    dict[str, Annotated[NoNul, Field(max_length=1000)]],
    AfterValidator(_check_where),
    WithJsonSchema({"type": "object", "additionalProperties": False,
                    "patternProperties": {METADATA_KEY: {"type": "string", "maxLength": 1000, "pattern": NO_NUL}}}),
]


class SearchHit(BaseModel):
    """One result; the same shape as ``embedops search --json`` (fields added there pass through)."""

    model_config = ConfigDict(extra="allow")

    document_id: str
    chunk_id: int
    score: float
    text: str
    span: list[int] = Field(min_length=2, max_length=2, description="[start, end) character offsets in the document")
    source: str
    metadata: dict[str, Any]
    tags: dict[str, str | None] = Field(description="lineage: space, chunker, embedded_at, source_updated_at")
    stale: bool = Field(False, description="the source changed since, or was not re-checked within its max lag")


# Metadata is any JSON without a NUL, nested: a recursive schema component, added to the app's schema by
# app._install_schema_components; depth, key and size limits are in the description (JSON Schema cannot count them).
METADATA_VALUE = "MetadataValue"
_VALUE_REF = {"$ref": f"#/components/schemas/{METADATA_VALUE}"}
_OBJECT: dict[str, Any] = {"type": "object", "patternProperties": {NO_NUL: _VALUE_REF}, "additionalProperties": False}
METADATA_SCHEMA: dict[str, Any] = {**_OBJECT, "maxProperties": MAX_METADATA_KEYS}
METADATA_VALUE_SCHEMA: dict[str, Any] = {
    "description": "A metadata value: a string without NUL, a number, a boolean, null, an array or an object of them.",
    "anyOf": [{"type": "string", "pattern": NO_NUL}, {"type": "number"}, {"type": "boolean"}, {"type": "null"},
              {"type": "array", "items": _VALUE_REF}, _OBJECT],
}


def _valid_text(text: str) -> str:
    if (found := text_problem(text)) is not None:
        raise ValueError(str(found))
    return text


def _valid_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    # The JSON parser lets a lone surrogate through in an untyped value, and nests as deep as sent.
    if (found := metadata_problem(metadata)) is not None:
        raise ValueError(str(found))
    return metadata


def valid_id(external_id: str) -> str:
    """A document id from a URL, refused in words (blank, too long) rather than by its schema pattern."""
    if (found := id_problem(external_id)) is not None:
        raise ValueError(str(found))
    return external_id


class DocumentIn(BaseModel):
    """A document pushed into a push source."""

    model_config = ConfigDict(extra="forbid")

    text: Annotated[str, Field(min_length=1, pattern=r"\S", json_schema_extra={"pattern": NOT_BLANK},
                               description="The document's text (not blank)."), AfterValidator(_valid_text)]
    metadata: Annotated[dict[str, Any], AfterValidator(_valid_metadata), WithJsonSchema(METADATA_SCHEMA)] = Field(
        default_factory=dict, description=f"Any JSON object; searchable with `where`; {LIMITS_HINT}.")
    updated_at: IsoDateTime | None = Field(None, description="When the document last changed at its origin (ISO 8601).")


class DocumentResult(BaseModel):
    source: str
    id: str
    # quarantined: stored, not embedded: curation held it back (`embedops quarantine show`).
    result: Literal["added", "updated", "unchanged", "deleted", "quarantined"]
    embedded: int = Field(description="chunks embedded by the write this document went into (0: content already embedded)")
    documents: int = Field(description="documents in that write: pushes queued together are written together")
    seconds: float = Field(description="duration of that write")


class SyncRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: Annotated[NoNul, Field(min_length=1, max_length=200)] | None = Field(None, description="Sync only this source.")
    plan: bool = Field(False, description="Dry run: report what would change, change nothing.")
    allow_mass_delete: bool = Field(
        False, description="Delete more than max_delete_share of a source (refused by default: an emptied source).")


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, str] = Field(description="catalog, alias, embedder: 'ok ...' or what is wrong")


def search_request_model(config: ServerConfig) -> type[BaseModel]:
    """The POST /search body, with this server's limits."""

    class SearchRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")

        query: Annotated[NoNul, Field(min_length=1, max_length=config.max_query_chars, pattern=r"\S",
                                      json_schema_extra={"pattern": NOT_BLANK})]
        k: Annotated[int, Field(ge=1, le=config.max_k)] = 10
        alias: Annotated[NoNul, Field(min_length=1, max_length=200)] | None = Field(None, description="Alias to query (default: the workspace's, prod).")
        index: Annotated[NoNul, Field(min_length=1, max_length=200)] | None = Field(None, description="Query one index directly.")
        mode: Mode = "vector"
        source: Annotated[NoNul, Field(min_length=1, max_length=200)] | None = Field(None, description="Only documents of this source.")
        where: WhereFilter = Field(default_factory=dict, description="Document metadata equal to these values.")
        updated_after: IsoDateTime | None = Field(None, description="Only documents updated at or after this time (naive = UTC).")

    return SearchRequest
