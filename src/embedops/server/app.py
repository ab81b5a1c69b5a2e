"""The FastAPI app: each route parses, calls the library once, and returns JSON.

>>> app = create_app("path/to/workspace")          # doctest: +SKIP
>>> uvicorn.run(app, host="127.0.0.1", port=8765)  # doctest: +SKIP
"""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at
# runtime, and they use closure variables (the limits of this app's ServerConfig).
import hmac
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import Body, FastAPI, Query, Response, Security
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, StringConstraints

from embedops import __version__
from embedops.errors import EmbedopsError
from embedops.search.engine import Filters
from embedops.search.params import parse_where, utc
from embedops.server import metrics as service_metrics
from embedops.server.config import ServerConfig
from embedops.server.middleware import ServiceMiddleware
from embedops.server.models import (
    ID_PATTERN, METADATA_VALUE, METADATA_VALUE_SCHEMA, NO_NUL, NOT_BLANK, WHERE_ITEM, DocumentIn, valid_id, IsoDateTime, DocumentResult, Health, Mode, Readiness, SearchHit, SyncRequest,
    search_request_model,
)
from embedops.server.problems import AuthNotConfigured, ErrorBody, Unauthorized, install_handlers
from embedops.server.service import Service
from embedops.sources.base import Document
from embedops.sources.validate import MAX_ID_CHARS
from embedops.sync.driver import SyncResult
from embedops.workspace import Workspace

DESCRIPTION = """\
Search, sync and push documents over HTTP; the same operations as the `embedops` CLI.

Writes (`POST /sync`, `PUT`/`DELETE` documents) need `Authorization: Bearer <token>`, where the
token is the value of the server's `EMBEDOPS_TOKEN` environment variable (or the variable named by
`--token-env`); reads need it too when the server runs with `--auth-reads`. Errors are JSON
`{"error", "message", "hint", "request_id"}` with the status of the error's class.
"""

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in {
        400: "Bad input (unknown mode, bad filter, configuration error)",
        401: "Missing or wrong bearer token",
        404: "Unknown alias, index, source, document or route",
        409: "Conflicts with the catalog's state (e.g. a sync already running, a configured model that needs a migration)",
        413: "Request body over the size limit",
        422: "Request does not match the schema or its limits",
        500: "Internal error; the body names the request id logged with the traceback",
        502: "The embedding provider failed",
        503: "Not ready, no token configured for a route that needs one, or writes busy",
    }.items()
}

WhereItem = Annotated[str, StringConstraints(pattern=WHERE_ITEM)]
# What a client (or a stateful fuzzer) can do with a document it has just put.
_DELETE_LINK = {"DeleteDocument": {"operationId": "delete_document", "parameters": {
    "source": "$request.path.source", "external_id": "$request.path.external_id"}}}


def create_app(workspace: str | Path | Workspace | None = None, config: ServerConfig | None = None) -> FastAPI:
    """The HTTP service over ``workspace`` (a directory, an open Workspace, or None: found as the CLI finds it).

    The workspace opens on the first request (or at startup, in a background
    warm-up that also loads the serving embedders); building the app touches nothing,
    so the OpenAPI schema can be produced without a workspace.
    """
    config = config or ServerConfig()
    service = Service(workspace, config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        threading.Thread(target=service.warm_up, name="embedops-warm-up", daemon=True).start()
        service.start_watch()
        yield
        service.close()

    app = FastAPI(title="embedops", version=__version__, description=DESCRIPTION, lifespan=lifespan, responses=_ERRORS,
                  generate_unique_id_function=lambda route: route.name)  # operationId = the function's name
    app.state.service = service
    install_handlers(app)
    app.add_middleware(ServiceMiddleware, metrics=service.metrics, max_body_bytes=config.max_body_bytes)
    guard = Security(BearerGuard(config))
    reads = [guard] if config.auth_reads else []
    _search_routes(app, service, config, reads)
    _write_routes(app, service, [guard])
    _read_routes(app, service, reads)
    _monitor_routes(app, service, reads)
    _probe_routes(app, service)
    _install_schema_components(app)
    return app


def _install_schema_components(app: FastAPI) -> None:
    """Add the recursive metadata value schema that DocumentIn's metadata refers to (pydantic cannot name it)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()  # built once, then cached by FastAPI: the component is added to the cached dict
        schema.setdefault("components", {}).setdefault("schemas", {})[METADATA_VALUE] = METADATA_VALUE_SCHEMA
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


_BEARER = HTTPBearer(auto_error=False, description="The value of the server's token environment variable.")


class BearerGuard:
    """The bearer-token check: constant-time comparison with the token from the configured env var."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config

    async def __call__(self, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)]) -> None:
        env = self.config.token_env
        token = self.config.token()
        if token is None:
            raise AuthNotConfigured(
                f"this route needs a bearer token and the server has none: {env} is not set in its environment",
                hint=f"start the server with {env} set (e.g. `export {env}=$(openssl rand -hex 32)`);"
                " clients send `Authorization: Bearer <token>`")
        if credentials is None:
            raise Unauthorized("missing bearer token", hint=f"send `Authorization: Bearer <token>`, the server's {env}")
        if not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
            raise Unauthorized("invalid bearer token", hint=f"use the value of the server's {env}")


# -- search ------------------------------------------------------------------------------
def _search_routes(app: FastAPI, service: Service, config: ServerConfig, deps: list[Any]) -> None:
    SearchRequest = search_request_model(config)
    query_doc = f"Query text (at most {config.max_query_chars:,} characters)."

    @app.get("/search", response_model=list[SearchHit], dependencies=deps, tags=["search"])
    async def search(
        query: Annotated[str, Query(min_length=1, max_length=config.max_query_chars, pattern=NOT_BLANK,
                                    description=query_doc)],
        response: Response,
        k: Annotated[int, Query(ge=1, le=config.max_k, description="Number of results.")] = 10,
        alias: Annotated[str | None, Query(min_length=1, max_length=200, pattern=NO_NUL)] = None,
        index: Annotated[str | None, Query(min_length=1, max_length=200, pattern=NO_NUL, description="Query one index directly.")] = None,
        mode: Mode = "vector",
        source: Annotated[str | None, Query(min_length=1, max_length=200, pattern=NO_NUL)] = None,
        where: Annotated[list[WhereItem] | None, Query(description="Metadata filter KEY=VALUE (repeatable).")] = None,
        updated_after: Annotated[IsoDateTime | None, Query(description="ISO 8601; naive times are UTC.")] = None,
    ) -> list[dict[str, Any]]:
        """Top-k chunks for a query, embedded with the serving index's own embedder."""
        metadata = parse_where(where or [])
        hits, notes = await service.read(
            lambda ws: _search(ws, query, k, alias, index, mode, source, metadata, updated_after))
        return _noted(response, hits, notes)

    @app.post("/search", response_model=list[SearchHit], dependencies=deps, tags=["search"])
    async def search_post(body: SearchRequest, response: Response) -> list[dict[str, Any]]:  # type: ignore[valid-type]
        """The same as GET /search, with the arguments in a JSON body."""
        b: Any = body
        hits, notes = await service.read(
            lambda ws: _search(ws, b.query, b.k, b.alias, b.index, b.mode, b.source, b.where, b.updated_after))
        return _noted(response, hits, notes)


def _search(ws: Workspace, query: str, k: int, alias: str | None, index: str | None, mode: str, source: str | None,
            where: dict[str, str], updated_after: datetime | None) -> tuple[list[dict[str, Any]], list[str]]:
    filters = Filters(source=source, metadata=where, updated_after=utc(updated_after))
    results = ws.search(query, k=k, alias=alias, index=index, filters=filters or None, mode=mode)
    return [r.to_dict() for r in results], [] if results else ws.filter_notes(filters)


def _noted(response: Response, hits: list[dict[str, Any]], notes: list[str]) -> list[dict[str, Any]]:
    """Why a search found nothing, in a header: the body stays the plain list of hits."""
    if notes:  # keys match METADATA_KEY (ASCII), so the note is a valid header value
        response.headers["X-Embedops-Note"] = "; ".join(notes)
    return hits


# -- writes ---------------------------------------------------------------------------------
def _write_routes(app: FastAPI, service: Service, deps: list[Any]) -> None:
    source_param = Annotated[str, PathParam(min_length=1, max_length=200, pattern=NO_NUL, description="A push source's name.")]
    id_param = Annotated[str, PathParam(min_length=1, max_length=MAX_ID_CHARS, json_schema_extra={"pattern": ID_PATTERN},
                                                  description="The document's id."),
                         AfterValidator(valid_id)]

    @app.post("/sync", dependencies=deps, tags=["sync"], response_model=dict[str, Any])
    async def sync(body: Annotated[SyncRequest | None, Body()] = None) -> dict[str, Any]:
        """Bring the indexes in line with the sources (as `embedops sync --json`); one sync at a time."""
        request = body or SyncRequest(source=None, plan=False, allow_mass_delete=False)
        return await service.sync(request.source, request.plan, allow_mass_delete=request.allow_mass_delete)

    @app.put("/sources/{source}/documents/{external_id:path}", response_model=DocumentResult, dependencies=deps,
             tags=["documents"], responses={200: {"links": _DELETE_LINK}})
    async def put_document(source: source_param, external_id: id_param, document: DocumentIn) -> dict[str, Any]:
        """Add or update one document of a push source (`embedops source add NAME --kind push`)."""
        doc = Document(external_id, document.text, dict(document.metadata), utc(document.updated_at))
        outcome = await service.pushes.upsert(source, doc)  # written together with the pushes queued beside it
        return {"source": source, "id": external_id, "result": outcome.result, "embedded": outcome.embedded,
                "documents": outcome.documents, "seconds": round(outcome.seconds, 4)}

    @app.delete("/sources/{source}/documents/{external_id:path}", response_model=DocumentResult, dependencies=deps,
                tags=["documents"])
    async def delete_document(source: source_param, external_id: id_param) -> dict[str, Any]:
        """Delete one document of a push source; its vectors leave every kept index. 404 when it is not there."""
        result = await service.write(lambda ws: ws.delete_documents(source, [external_id]))
        return _document_result(source, external_id, result)


def _document_result(source: str, external_id: str, result: SyncResult) -> dict[str, Any]:
    c = result.counts
    outcome = "added" if c.added else "updated" if c.updated else "deleted" if c.deleted else "unchanged"
    return {"source": source, "id": external_id, "result": outcome, "embedded": c.embedded, "documents": 1,
            "seconds": round(result.seconds, 4)}


# -- reads ----------------------------------------------------------------------------------
def _read_routes(app: FastAPI, service: Service, deps: list[Any]) -> None:
    @app.get("/status", dependencies=deps, tags=["status"], response_model=dict[str, Any])
    async def status() -> dict[str, Any]:
        """Sources, documents, chunks, indexes, aliases and spaces (as `embedops status --json`)."""
        return await service.read(lambda ws: ws.status())

    @app.get("/sync/status", dependencies=deps, tags=["sync"], response_model=dict[str, Any])
    async def sync_status() -> dict[str, Any]:
        """Whether a sync started here is running, the last one's summary, and each source's last scan."""
        status = await service.read(lambda ws: ws.status())
        sources = [{k: s[k] for k in ("name", "kind", "documents", "last_scan_at")} for s in status["sources"]]
        return {**service.sync_state.to_dict(), "sources": sources}

    @app.get("/migrations/status", dependencies=deps, tags=["migrations"], response_model=dict[str, Any])
    async def migration_status(alias: Annotated[str | None, Query(min_length=1, max_length=200, pattern=NO_NUL)] = None) -> dict[str, Any]:
        """The alias, the index it serves now, and its open migration (as `embedops migrate status --json`) or null."""
        def read(ws: Workspace) -> dict[str, Any]:
            name = alias or ws.settings.alias
            serving = ws.searcher.resolve(alias=name)
            return {"alias": name, "index": serving.id, "migration": service.migration(name)}

        return await service.read(read)

    # No response_class=PlainTextResponse: it would document the JSON error bodies as text/plain too.
    @app.get("/metrics", dependencies=deps, tags=["status"],
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                              "description": "Prometheus text format"}})
    async def metrics() -> PlainTextResponse:
        """Request counts and latencies, catalog gauges, and the monitor's metrics when installed."""
        text = await service.read(lambda ws: _metrics_text(service, ws))
        return PlainTextResponse(text, media_type=service_metrics.CONTENT_TYPE)


def _metrics_text(service: Service, ws: Workspace) -> str:
    lines = service.metrics.lines()
    lines += service_metrics.workspace_lines(ws.status(), service.migration(None))
    lines += service_metrics.family("embedops_sync_running", "gauge", "1 while a sync started by this service runs.",
                                    [("", {}, int(service.sync_state.running))])
    text = "\n".join(lines) + "\n" + service_metrics.monitor_exposition(ws)
    if service.watch_state is not None:  # serve --watch
        from prometheus_client import CollectorRegistry, generate_latest

        from embedops.sync.watch import WatchCollector

        registry = CollectorRegistry(auto_describe=False)
        registry.register(WatchCollector(service.watch_state))
        text += generate_latest(registry).decode()
    return text


# -- thresholds and monitoring --------------------------------------------------------------
def _monitor_routes(app: FastAPI, service: Service, deps: list[Any]) -> None:
    name_param = Annotated[str, PathParam(min_length=1, max_length=200, pattern=NO_NUL, description="The threshold's name.")]
    space_param = Annotated[str | None, Query(min_length=1, max_length=200, pattern=NO_NUL,
                                              description="A space key, index id or embedder name (default: the alias's).")]
    alias_param = Annotated[str | None, Query(min_length=1, max_length=200, pattern=NO_NUL)]
    from embedops.monitor.checks import CHECKS

    check_name: Any = Literal[tuple(CHECKS)]  # the configured checks, as an enum in the schema

    @app.get("/thresholds", dependencies=deps, tags=["thresholds"], response_model=list[dict[str, Any]])
    async def thresholds_list(alias: alias_param = None) -> list[dict[str, Any]]:
        """Every threshold with its current value per space (as `embedops thresholds list --json`)."""
        from embedops.thresholds.registry import ThresholdRegistry

        return await service.read(lambda ws: [i.to_dict() for i in ThresholdRegistry(ws.engine, alias or ws.settings.alias, ws.settings.embedder, ws.settings.embedders).list()])

    @app.get("/thresholds/{name}", dependencies=deps, tags=["thresholds"], response_model=dict[str, Any])
    async def threshold(name: name_param, space: space_param = None, alias: alias_param = None,
                        evidence: bool = False) -> dict[str, Any]:
        """The value applications use: for the space the alias serves now (or ``space``); 404 when it has none.

        After a cutover the alias serves another space, so the same request returns that space's value.
        """
        return await service.read(
            lambda ws: ws.thresholds.current(name, space=space, alias=alias).to_dict(evidence=evidence))

    @app.get("/freshness", dependencies=deps, tags=["monitoring"], response_model=dict[str, Any])
    async def freshness(source: Annotated[str | None, Query(min_length=1, max_length=200, pattern=NO_NUL)] = None) -> dict[str, Any]:
        """Sources against the catalog: stale documents, lag, SLO status (as `embedops freshness --json`).

        Records the freshness marks search uses for `stale` and a ledger row, so it queues with the writes.
        """
        from embedops.monitor.freshness import check_freshness

        return await service.write(lambda ws: check_freshness(ws, source).to_dict())

    @app.get("/check", dependencies=deps, tags=["monitoring"], response_model=dict[str, Any])
    async def check(only: Annotated[list[check_name] | None, Query(description="Run only these checks (repeatable).")] = None
                    ) -> dict[str, Any]:
        """Run the configured health checks (as `embedops check --json`): `status` ok|warn|fail and `exit_code`
        0|1|2 in the body (the HTTP status is 200 whatever they found). Records a ledger row; queues with the writes.
        """
        from embedops.monitor.checks import run_checks

        return await service.write(lambda ws: run_checks(ws, only).to_dict())


# -- probes ---------------------------------------------------------------------------------
def _probe_routes(app: FastAPI, service: Service) -> None:
    @app.get("/healthz", response_model=Health, tags=["probes"])
    async def healthz() -> dict[str, str]:
        """The process is up (touches nothing else)."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=Readiness, tags=["probes"],
             responses={503: {"model": Readiness, "description": "Not ready: the failing check says why"}})
    async def readyz() -> JSONResponse:
        """Ready to serve: the catalog answers, the alias resolves, and its index's embedder is loaded."""
        checks = await service.in_reader(lambda: _readiness(service))
        ready = all(v.startswith("ok") for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


def _readiness(service: Service) -> dict[str, str]:
    checks = {"catalog": "not checked", "alias": "not checked", "embedder": "not checked"}
    try:
        ws = service.ws
        with ws.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        checks["catalog"] = "ok"
        index = ws.searcher.resolve(alias=ws.settings.alias)
        checks["alias"] = f"ok: {ws.settings.alias} -> {index.id}"
        ws.embedder_for(index)
        checks["embedder"] = f"ok: {index.embedder}"
    except EmbedopsError as exc:
        failed = next(name for name, value in checks.items() if value == "not checked")
        checks[failed] = f"{exc.message}" + (f" (hint: {exc.hint})" if exc.hint else "")
    except Exception as exc:  # a probe reports, it never raises: e.g. the database file is unreadable
        failed = next(name for name, value in checks.items() if value == "not checked")
        checks[failed] = f"{type(exc).__name__}: {exc}"
    return checks


__all__ = ["BearerGuard", "create_app"]
