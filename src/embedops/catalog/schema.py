"""The catalog's tables (SQLAlchemy Core), shared by every backend.

Timestamps are float epoch seconds (UTC): portable, cheap to compare and fast
to load for 100k-row diffs. Vectors are float32 bytes.
"""

from __future__ import annotations

import sqlalchemy as sa

SCHEMA_VERSION = max(3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)  # 4: thresholds, 5: monitoring tables (bottom of this file),
# 6: gate evidence, 7: writer locks, 8: storage variants (indexes.storage, projections), 9: chunks.metadata,
# 10: adopted embeddings, 11: curation (one self-contained table, see the end of this file), 12: spend,
# 13: spaces.query_fingerprint (an asymmetric model's query side), 14: curation.canonical_source (duplicates across
# sources), 15: sources.scan_fingerprint (a table's unchanged fast path)

metadata = sa.MetaData()

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

sources = sa.Table(
    "sources",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_scan_at", sa.Float),
    # What the source's id set looked like when the last sync left the catalog in line with it (catalog/scan_state.py);
    # NULL: nothing to trust. Schema version 15.
    sa.Column("scan_fingerprint", sa.Text),
)

documents = sa.Table(
    "documents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("source_id", sa.Integer, sa.ForeignKey("sources.id"), nullable=False),
    sa.Column("external_id", sa.Text, nullable=False),
    sa.Column("content_hash", sa.String(32), nullable=False),
    # Kept so a chunker migration can re-chunk without re-reading the source.
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("signature", sa.Text),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("source_updated_at", sa.Float),
    sa.Column("ingested_at", sa.Float, nullable=False),
    sa.Column("deleted_at", sa.Float),
    sa.UniqueConstraint("source_id", "external_id", name="uq_documents_source_external"),
)

chunkers = sa.Table(
    "chunkers",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
)

chunks = sa.Table(
    "chunks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("document_id", sa.Integer, sa.ForeignKey("documents.id"), nullable=False),
    sa.Column("chunker_key", sa.String(200), sa.ForeignKey("chunkers.key"), nullable=False),
    sa.Column("ordinal", sa.Integer, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("start", sa.Integer, nullable=False),
    sa.Column("end", sa.Integer, nullable=False),
    sa.Column("content_hash", sa.String(32), nullable=False),
    # What the chunker says the chunk is (code: kind, symbol, language, lines); schema version 9.
    sa.Column("metadata", sa.JSON),
    sa.UniqueConstraint("document_id", "chunker_key", "ordinal", name="uq_chunks_doc_chunker_ordinal"),
)

spaces = sa.Table(
    "spaces",
    metadata,
    sa.Column("key", sa.String(300), primary_key=True),
    sa.Column("embedder", sa.String(500), nullable=False),
    sa.Column("ref", sa.JSON, nullable=False),
    sa.Column("dims", sa.Integer, nullable=False),
    sa.Column("fingerprint", sa.LargeBinary, nullable=False),
    sa.Column("fingerprint_digest", sa.String(32), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # The sentinels embedded as queries: asymmetric spaces only (NULL: symmetric, or registered before version 13
    # and not verified since).
    sa.Column("query_fingerprint", sa.LargeBinary, nullable=True),
)

# The content-hash cache: identical text is embedded once per space.
embeddings = sa.Table(
    "embeddings",
    metadata,
    sa.Column("space_key", sa.String(300), sa.ForeignKey("spaces.key"), primary_key=True),
    sa.Column("content_hash", sa.String(32), primary_key=True),
    sa.Column("vector", sa.LargeBinary, nullable=False),
    sa.Column("embedded_at", sa.Float, nullable=False),
)

indexes = sa.Table(
    "indexes",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("space_key", sa.String(300), sa.ForeignKey("spaces.key"), nullable=False),
    sa.Column("chunker_key", sa.String(200), sa.ForeignKey("chunkers.key"), nullable=False),
    # active: kept current by sync; dropped: finalized away, rows deleted.
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # Version 7: the storage variant (vectors/storage.py), part of the index's identity like its chunker.
    sa.Column("storage", sa.String(80), nullable=False, server_default="f32"),
)

# One row per chunk per index, with its lineage tags. ``seq`` is the ANN key and
# the change sequence for additions (monotonic, never reused).
vectors = sa.Table(
    "vectors",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("index_id", sa.String(64), sa.ForeignKey("indexes.id"), nullable=False),
    sa.Column("chunk_id", sa.Integer, sa.ForeignKey("chunks.id"), nullable=False),
    sa.Column("content_hash", sa.String(32), nullable=False),
    sa.Column("space_key", sa.String(300), nullable=False),
    sa.Column("chunker_key", sa.String(200), nullable=False),
    sa.Column("source_version", sa.String(32), nullable=False),
    sa.Column("embedded_at", sa.Float, nullable=False),
    sa.UniqueConstraint("index_id", "chunk_id", name="uq_vectors_index_chunk"),
    sqlite_autoincrement=True,
)

# Deletions, in order, so a derived ANN index can catch up without a rebuild.
vector_deletions = sa.Table(
    "vector_deletions",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("index_id", sa.String(64), nullable=False),
    sa.Column("vector_seq", sa.Integer, nullable=False),
    sqlite_autoincrement=True,
)

aliases = sa.Table(
    "aliases",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("index_id", sa.String(64), sa.ForeignKey("indexes.id"), nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

ledger = sa.Table(
    "ledger",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
    sqlite_autoincrement=True,
)

sa.Index("ix_documents_source", documents.c.source_id, documents.c.deleted_at)
sa.Index("ix_chunks_document", chunks.c.document_id, chunks.c.chunker_key)
sa.Index("ix_chunks_hash", chunks.c.content_hash)
sa.Index("ix_vectors_index", vectors.c.index_id, vectors.c.seq)
sa.Index("ix_vectors_chunk", vectors.c.chunk_id)
sa.Index("ix_deletions_index", vector_deletions.c.index_id, vector_deletions.c.seq)
sa.Index("ix_ledger_kind", ledger.c.kind, ledger.c.at)

# -- eval sets (schema version 2) -----------------------------------------------
# Versioned queries with graded judgments, bound to one source: judgments name
# the source's external ids, so an eval set survives re-chunking and model
# changes. A re-import with different content is a new version, never an edit.
evalsets = sa.Table(
    "evalsets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("source_id", sa.Integer, sa.ForeignKey("sources.id"), nullable=False),
    # The alias this set guards (migration gates, monitors); not a foreign key:
    # a set may be bound before the alias exists.
    sa.Column("alias", sa.String(200)),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("content_hash", sa.String(32), nullable=False),
    sa.Column("is_canary", sa.Boolean, nullable=False, default=False),
    sa.Column("format", sa.String(16), nullable=False),
    sa.Column("split", sa.String(64)),
    sa.Column("origin", sa.Text, nullable=False),
    # Lines of the imported files that could not be used, with their reasons.
    sa.Column("problems", sa.JSON, nullable=False),
    sa.UniqueConstraint("name", "version", name="uq_evalsets_name_version"),
)

evalset_queries = sa.Table(
    "evalset_queries",
    metadata,
    sa.Column("evalset_id", sa.Integer, sa.ForeignKey("evalsets.id"), primary_key=True),
    sa.Column("query_id", sa.Text, primary_key=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("line", sa.Integer),
)

evalset_qrels = sa.Table(
    "evalset_qrels",
    metadata,
    sa.Column("evalset_id", sa.Integer, sa.ForeignKey("evalsets.id"), primary_key=True),
    sa.Column("query_id", sa.Text, primary_key=True),
    sa.Column("doc_id", sa.Text, primary_key=True),
    sa.Column("grade", sa.Integer, nullable=False),
    sa.Column("line", sa.Integer),
)

# -- migrations (schema version 3) ---------------------------------------------
# One row per move of an alias from one index to another. ``status``: open
# (shadow being built, alias on the old index), cut_over (alias on the new
# index, old one still kept current), finalized (old index dropped), aborted
# (shadow dropped before any cutover).
migrations = sa.Table(
    "migrations",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("alias", sa.String(200), nullable=False),
    sa.Column("from_index", sa.String(64), sa.ForeignKey("indexes.id"), nullable=False),
    sa.Column("to_index", sa.String(64), sa.ForeignKey("indexes.id"), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("plan", sa.JSON, nullable=False),
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("gate", sa.JSON),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    # Version 6: what the gate measured (eval comparisons, agreement) and the index stamps it held for.
    sa.Column("evidence", sa.JSON),
)


# -- writer locks (schema version 7) -----------------------------------------------
# One row per lock held (catalog/lock.py): who holds it and its heartbeat.
locks = sa.Table(
    "locks",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("token", sa.String(32), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("command", sa.Text, nullable=False),
    sa.Column("since", sa.Float, nullable=False),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
)


# -- thresholds (schema version 4) ---------------------------------------------
# A named similarity cut-off a business rule depends on (dedup at 0.95). Its
# number only means something in one space, so values are stored per space and
# never overwritten: the current value for a space is its latest row. Readers
# resolve the space the alias serves at the time of the read.
thresholds = sa.Table(
    "thresholds",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("description", sa.Text, nullable=False),
    # Labelled pairs [[text_a, text_b, label], ...] for label matching, and where they came from.
    sa.Column("labels", sa.JSON),
    sa.Column("labels_origin", sa.JSON),
    sa.Column("created_at", sa.Float, nullable=False),
)

# Not a foreign key to spaces: a value may be set for a model's space before
# any index of that model exists (before `migrate start`).
threshold_values = sa.Table(
    "threshold_values",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), sa.ForeignKey("thresholds.name"), nullable=False),
    sa.Column("space_key", sa.String(300), nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("method", sa.String(16), nullable=False),  # manual | distribution | labels
    sa.Column("evidence", sa.JSON, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
    sqlite_autoincrement=True,
)

sa.Index("ix_threshold_values_name_space", threshold_values.c.name, threshold_values.c.space_key, threshold_values.c.id)
THRESHOLD_TABLES = [thresholds, threshold_values]


# -- monitoring (schema version 5) ---------------------------------------------
# Written only by the health checks (embedops/monitor/); never read by sync.
MONITOR_TABLES: list[sa.Table] = []

# A live document whose source no longer matches what was embedded, as last
# observed by a freshness check. It stays stale while the document still has
# the signature (or, without one, the content hash) it had when marked, so a
# sync that catches up clears it without touching this table.
freshness_marks = sa.Table(
    "freshness_marks",
    metadata,
    sa.Column("document_id", sa.Integer, sa.ForeignKey("documents.id"), primary_key=True),
    sa.Column("source_id", sa.Integer, sa.ForeignKey("sources.id"), nullable=False),
    sa.Column("catalog_key", sa.String(64), nullable=False),  # coalesce(signature, content_hash) when marked
    sa.Column("reason", sa.String(16), nullable=False),  # changed | deleted
    sa.Column("changed_at", sa.Float),
    sa.Column("detected_at", sa.Float, nullable=False),
)

# When each source was last compared with the catalog by a freshness check.
source_checks = sa.Table(
    "source_checks",
    metadata,
    sa.Column("source_id", sa.Integer, sa.ForeignKey("sources.id"), primary_key=True),
    sa.Column("checked_at", sa.Float, nullable=False),
    sa.Column("summary", sa.JSON, nullable=False),
)

# A fixed sample of an index's chunks with the vectors stored for them: the
# live model must still produce those vectors and their neighbours.
probes = sa.Table(
    "probes",
    metadata,
    sa.Column("index_id", sa.String(64), sa.ForeignKey("indexes.id"), primary_key=True),
    sa.Column("ordinal", sa.Integer, primary_key=True),
    sa.Column("content_hash", sa.String(32), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("vector", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

# Reference samples for drift: ``stream`` is "corpus" (index vectors) or
# "queries" (logged query vectors); rows up to ``cutoff`` are the reference,
# later ones are "recent".
drift_references = sa.Table(
    "drift_references",
    metadata,
    sa.Column("index_id", sa.String(64), sa.ForeignKey("indexes.id"), primary_key=True),
    sa.Column("stream", sa.String(16), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("cutoff", sa.Float, nullable=False),
    sa.Column("vectors", sa.LargeBinary, nullable=False),
    sa.Column("labels", sa.JSON, nullable=False),  # per row: [source, language]
)

# Opt-in log of served queries ([monitor] query_log = true), pruned by retention.
query_log = sa.Table(
    "query_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("index_id", sa.String(64), nullable=False),
    sa.Column("space_key", sa.String(300), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("text", sa.Text),  # None when [monitor] query_log_text = false
    sa.Column("text_hash", sa.String(32), nullable=False),
    sa.Column("vector", sa.LargeBinary),  # None for BM25-only queries
    sqlite_autoincrement=True,
)

# Eval sets that run on every check, by name (the latest version runs).
canaries = sa.Table(
    "canaries",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

# One row per canary run: the recall trend.
canary_runs = sa.Table(
    "canary_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("evalset_id", sa.Integer, sa.ForeignKey("evalsets.id"), nullable=False),
    sa.Column("index_id", sa.String(64), nullable=False),
    sa.Column("k", sa.Integer, nullable=False),
    sa.Column("recall", sa.Float, nullable=False),
    sa.Column("ndcg", sa.Float, nullable=False),
    sa.Column("queries", sa.Integer, nullable=False),
    sqlite_autoincrement=True,
)

sa.Index("ix_freshness_marks_source", freshness_marks.c.source_id)
sa.Index("ix_query_log_at", query_log.c.at)
sa.Index("ix_query_log_space", query_log.c.space_key, query_log.c.at)
sa.Index("ix_canary_runs", canary_runs.c.evalset_id, canary_runs.c.index_id, canary_runs.c.at)
MONITOR_TABLES.extend([freshness_marks, source_checks, probes, drift_references, query_log, canaries, canary_runs])


# -- storage variants (schema version 8) -----------------------------------------
# PCA projections fitted on a corpus, named by a hash of their bytes; an index
# whose storage key says ``pca128@<id>`` reduces stored vectors and queries with it.
projections = sa.Table(
    "projections",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("space_key", sa.String(300), nullable=False),
    sa.Column("dims", sa.Integer, nullable=False),
    sa.Column("mean", sa.LargeBinary, nullable=False),
    sa.Column("components", sa.LargeBinary, nullable=False),
    sa.Column("fitted_on", sa.Integer, nullable=False),  # vectors the fit saw
    sa.Column("created_at", sa.Float, nullable=False),
)

# -- adopted embeddings (schema version 10) -------------------------------------------
# An embedding embedops did not compute: taken over from an existing table or file by
# `embedops adopt` after a random sample of it was re-embedded and matched. Its row in
# ``embeddings`` is the vector; this row says where it came from. Vectors join it on
# (space_key, content_hash); a chunk whose text changes gets a new hash, embedded anew.
adopted_embeddings = sa.Table(
    "adopted_embeddings",
    metadata,
    sa.Column("space_key", sa.String(300), primary_key=True),
    sa.Column("content_hash", sa.String(32), primary_key=True),
    sa.Column("source", sa.String(200), nullable=False),  # the source the documents belong to
    sa.Column("origin", sa.Text, nullable=False),  # the table or file the vector was read from (no credentials)
    sa.Column("adopted_at", sa.Float, nullable=False),
)


# -- curation (schema version 11) -------------------------------------------------------
# The curator's decision for each live document of a workspace with [curate] enabled
# (embedops/curate, written by sync in the same transaction as the document). ``status``:
# kept (chunked and embedded), quarantined (no chunks, no vectors), released (quarantined,
# then embedded by `embedops quarantine release`; not re-checked until its content changes).
# A live document without a row has not been checked (synced while curation was off).
# ``canonical`` is the external id of the kept document a duplicate copies, in the source
# ``canonical_source`` (schema 14; NULL: the duplicate's own source, as every row written
# before 14) (the source may not have stored it yet: no foreign key). ``signature``: MinHash
# bytes of a kept document (curate/signature.py). ``language``: ISO 639-1 or "unknown".
curation = sa.Table(
    "curation",
    metadata,
    sa.Column("document_id", sa.Integer, sa.ForeignKey("documents.id"), primary_key=True),
    sa.Column("source_id", sa.Integer, sa.ForeignKey("sources.id"), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("first_seen", sa.Float, nullable=False),
    sa.Column("content_hash", sa.String(32), nullable=False),
    sa.Column("signature", sa.LargeBinary),
    sa.Column("canonical", sa.Text),
    sa.Column("canonical_source", sa.Integer),
    sa.Column("similarity", sa.Float),
    sa.Column("reason", sa.String(32)),
    sa.Column("findings", sa.JSON, nullable=False),
    sa.Column("language", sa.String(16), nullable=False),
    sa.Column("decided_at", sa.Float, nullable=False),
)
sa.Index("ix_curation_source", curation.c.source_id, curation.c.status)

# -- spend (schema version 12) ------------------------------------------------------
# What embedding cost, one row per (committed piece of a job, space): written in the
# same transaction as the ledger row it names, so a killed job's spend is exactly that
# of what it committed. ``estimated_tokens`` is the part of ``tokens`` the provider did
# not report (counted with the model's tokenizer, or estimated). Not a foreign key to
# the ledger: the ledger is append-only and never joined for writes.
spend = sa.Table(
    "spend",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ledger_id", sa.Integer, nullable=False),
    sa.Column("job", sa.String(32), nullable=False),  # one sync / backfill / eval run / query flush
    sa.Column("kind", sa.String(32), nullable=False),  # sync | backfill | fill | eval | query | fingerprint
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("day", sa.String(10), nullable=False),  # UTC YYYY-MM-DD, for --by day and the monthly budget
    sa.Column("space_key", sa.String(300), nullable=False),
    sa.Column("embedder", sa.String(500), nullable=False),
    sa.Column("source", sa.String(200)),
    sa.Column("requests", sa.Integer, nullable=False),
    sa.Column("tokens", sa.Integer, nullable=False),
    sa.Column("estimated_tokens", sa.Integer, nullable=False),
    sa.Column("cost", sa.Float, nullable=False),
    sa.Column("cache_hits", sa.Integer, nullable=False),
    sa.Column("cache_saved_tokens", sa.Integer, nullable=False),
    sa.Column("cache_saved_cost", sa.Float, nullable=False),
    sqlite_autoincrement=True,
)
sa.Index("ix_spend_at", spend.c.at)
sa.Index("ix_spend_job", spend.c.job)
