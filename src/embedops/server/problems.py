"""Errors as HTTP responses: one JSON shape, the status from the exception class.

Every error body is ``{"error", "message", "hint", "request_id", ...}``
(:meth:`EmbedopsError.to_dict` plus the request id). A stack trace never
reaches a client: unexpected exceptions become a 500 naming the request id,
and the traceback goes to the server log under that id.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException

from embedops.errors import EmbedopsError, SyncError, Terminal, Transient

log = logging.getLogger("embedops.server")


class Unauthorized(Terminal):
    """Missing or wrong bearer token."""

    http_status = 401


class AuthNotConfigured(Terminal):
    """The route needs a token and the server has none: refuse rather than run open."""

    http_status = 503


class RequestInvalid(Terminal):
    """The request does not match the API's schema or limits."""

    http_status = 422


class RequestTooLarge(Terminal):
    http_status = 413


class Busy(Transient):
    """Another write holds the workspace for longer than a write is willing to wait."""

    http_status = 503


class SyncRunning(SyncError, Terminal):
    http_status = 409


class RouteNotFound(Terminal):
    http_status = 404


class MethodNotAllowed(Terminal):
    http_status = 405


class HttpProblem(EmbedopsError):
    """Any other HTTP error raised by the framework, with its own status."""

    def __init__(self, status: int, message: str, **details: Any) -> None:
        super().__init__(message, **details)
        self.http_status = status


class ErrorBody(BaseModel):
    """What every error response holds."""

    model_config = ConfigDict(extra="allow")

    error: str
    message: str
    hint: str | None = None
    request_id: str | None = None


def error_response(request: Request, exc: EmbedopsError, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {**exc.to_dict(), "request_id": request_id(request)}
    return JSONResponse(body, status_code=exc.http_status, headers=headers)


def request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def install_handlers(app: FastAPI) -> None:
    """Map library errors, validation errors and routing errors to :class:`ErrorBody` responses."""
    app.add_exception_handler(EmbedopsError, _embedops_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)


async def _embedops_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EmbedopsError)
    if exc.http_status >= 500:
        log.warning("request %s: %s: %s", request_id(request), type(exc).__name__, exc.message)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return error_response(request, exc, headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [_problem(e) for e in exc.errors()]
    message = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:5]) or "invalid request"
    error = RequestInvalid(f"invalid request: {message}", hint="see /docs or /openapi.json for the request format",
                           problems=problems[:20])
    return error_response(request, error)


def _problem(error: Any) -> dict[str, str]:
    loc = [str(part) for part in error.get("loc", ())]
    if loc and loc[0] in ("body", "query", "path", "header"):  # where it was, not what: the field name says enough
        loc = loc[1:]
    return {"field": ".".join(loc) or "body", "problem": str(error.get("msg", "invalid"))}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    error: EmbedopsError
    if exc.status_code == 404:
        error = RouteNotFound(f"no route {request.method} {request.url.path}", hint="see /openapi.json for the routes")
    elif exc.status_code == 405:
        allowed = _allowed_methods(request)
        error = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}",
                                 hint=f"use {' or '.join(allowed)}", allowed=allowed)
        return error_response(request, error, {"Allow": ", ".join(allowed)})
    else:
        error = HttpProblem(exc.status_code, str(exc.detail))
    return error_response(request, error, dict(exc.headers) if exc.headers else None)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route accepts on this path (Starlette's own 405 names only the first route's)."""
    from starlette.routing import Match

    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)


def internal_error_body(rid: str) -> dict[str, Any]:
    """The 500 body: no detail beyond the request id under which the traceback was logged."""
    return {"error": "InternalError", "message": f"internal error (request {rid}); the traceback is in the server log",
            "hint": "retry; if it persists, report the request id to the operator", "request_id": rid}
