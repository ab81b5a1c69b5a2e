"""One ASGI middleware around the app: request ids, the body-size limit, metrics, the last-resort 500.

It is plain ASGI (not ``BaseHTTPMiddleware``) so that it can refuse an
oversize body before the app reads it, and catch what escapes every handler.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from embedops.server.metrics import ServiceMetrics
from embedops.server.problems import RequestInvalid, internal_error_body

log = logging.getLogger("embedops.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class ServiceMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: ServiceMetrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()
        status = {"code": 500, "sent": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["sent"] = message["status"], True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            if (problem := _url_problem(scope)) is not None:
                await _send_json(send_with_id, 422, _bad_url(rid, problem))
                return
            body = await self._read_body(scope, receive)
            if body is None:
                await _send_json(send_with_id, 413, _too_large(rid, self.max_body_bytes))
            else:
                await self.app(scope, _replay(body, receive), send_with_id)
        except Exception:  # the last resort: log the traceback, tell the client only the request id
            log.exception("request %s %s %s failed", rid, scope.get("method"), scope.get("path"))
            if not status["sent"]:
                await _send_json(send_with_id, 500, internal_error_body(rid))
        finally:
            route = scope.get("route")
            template = getattr(route, "path_format", None) or getattr(route, "path", None) or "unmatched"
            self.metrics.observe(scope.get("method", "?"), template, int(status["code"]), time.perf_counter() - started)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole request body, or None when it exceeds the limit (refused unread when the length is declared)."""
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # client went away; the app sees an empty body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _url_problem(scope: Scope) -> str | None:
    """What no route may receive: a NUL (PostgreSQL refuses one even in a value it only compares), or a line
    break in the path (the router's ``$`` matches before a final one, so ``a%0A`` would be taken as ``a``)."""
    path = scope.get("path", "")
    if "\x00" in path or b"%00" in scope.get("query_string", b""):
        return "a NUL character (%00)"
    if "\n" in path:
        return "a line break (%0A) in its path"
    return None


def _bad_url(rid: str, problem: str) -> dict[str, Any]:
    error = RequestInvalid(f"invalid request: the URL holds {problem}", hint="no name or id contains one; remove it")
    return {**error.to_dict(), "request_id": rid}


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect, as a server would

    return replay


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            given = str(value.decode("latin-1"))
            if _CLIENT_ID.match(given):
                return given
    return uuid.uuid4().hex[:16]


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _too_large(rid: str, limit: int) -> dict[str, Any]:
    return {"error": "RequestTooLarge", "message": f"the request body is larger than the limit of {limit:,} bytes",
            "hint": "send fewer or smaller documents per request, or raise the server's --max-body-bytes",
            "request_id": rid, "limit_bytes": limit}


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
