"""Request ids and body limits, as plain ASGI middleware.

Every request gets an id (the caller's `X-Request-Id` when it is a sane
token, else a fresh one), echoed in the response and written in the access
log line, so a caller's complaint and the server's log meet on one string,
across several server processes. A body longer than the limit is refused
with 413 before it is read (by `Content-Length`) or as soon as it passes the
limit (chunked uploads). Plain ASGI rather than Starlette's
`BaseHTTPMiddleware`, which buffers and would hold live streams back.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_SANE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="-")
_log = logging.getLogger("ledger.service.access")


class BodyTooLargeError(Exception):
    """A request body went past the limit while being read."""


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


async def _reply(send: Send, status: int, reason: str, request_id: str) -> None:
    body = orjson.dumps({"error": reason, "request_id": request_id})
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode())]})
    await send({"type": "http.response.body", "body": body})


class RequestMiddleware:
    """Request id, access log, and the body limit, around the whole app."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, name: str = "ledger"):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.name = name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"x-request-id")
        request_id = given if given is not None and _SANE.match(given) else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        started = time.monotonic()
        status = 0
        length = _header(scope, b"content-length")
        try:
            if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
                status = 413
                await _reply(send, 413, f"request body over {self.max_body_bytes} bytes", request_id)
                return
            received = 0

            async def limited_receive() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.max_body_bytes:
                        raise BodyTooLargeError
                return message

            async def tagged_send(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    message["headers"] = [*message.get("headers", []),
                                          (b"x-request-id", request_id.encode())]
                await send(message)

            try:
                await self.app(scope, limited_receive, tagged_send)
            except BodyTooLargeError:
                if status == 0:
                    status = 413
                    await _reply(send, 413, f"request body over {self.max_body_bytes} bytes", request_id)
        finally:
            _log.info("%s %s %s %s %d %.1fms", self.name, request_id, scope.get("method"),
                      scope.get("path"), status, (time.monotonic() - started) * 1000)
            REQUEST_ID.reset(token)
