"""Refuse request bodies over the limit (413) before anything reads them whole.

One limit for every route but those given their own: POST /v1/batches takes up to
100 MiB (50,000 jobs), every other body 1 MiB."""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aijobs.batches import schemas as batch_schemas

MAX_BODY_BYTES = 1024 * 1024
# (method, path) -> its own limit.
LARGER = {("POST", "/v1/batches"): batch_schemas.MAX_BODY_BYTES}


def _too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"request bodies are limited to {limit} bytes")


def _problem_bytes(limit: int) -> bytes:
    return json.dumps(
        {
            "type": "urn:aijobs:problem:invalid_request",
            "title": "Payload too large",
            "status": 413,
            "detail": f"request bodies are limited to {limit} bytes",
            "code": "invalid_request",
        }
    ).encode()


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = LARGER.get((scope.get("method", ""), scope.get("path", "")), self.max_bytes)
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._reject(send, limit)
                return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # Raised inside the app, so the problem+json handler renders it.
                    raise _too_large(limit)
            return message

        await self.app(scope, limited_receive, send)

    async def _reject(self, send: Send, limit: int) -> None:
        body = _problem_bytes(limit)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
