"""Request ids on every answer, and a JSON 500 for an unexpected exception."""

from __future__ import annotations

import re
from typing import Any

import orjson
import structlog
from accrual_platform import ids
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("accrual.gateway")
REQUEST_ID_KEY = "accrual.request_id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")


def new_request_id(incoming: str | None) -> str:
    """The caller's request id when well-formed, else a new one."""
    if incoming and _REQUEST_ID.fullmatch(incoming):
        return incoming
    fresh: str = ids.new_request_id()
    return fresh


def request_id_of(request: Request) -> str:
    """The id RequestIdMiddleware chose for this request."""
    rid: object = request.scope.get(REQUEST_ID_KEY)
    return rid if isinstance(rid, str) else new_request_id(request.headers.get("x-request-id"))


class RequestIdMiddleware:
    """Gives every HTTP response an ``X-Request-Id`` (the caller's, when well-formed, or a new
    one), including operations endpoints and 404s, and turns an unexpected exception into a
    JSON 500 that names the request id instead of a bare text page."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for k, v in scope.get("headers") or ():
            if k == b"x-request-id":
                incoming = v.decode("latin-1")
        request_id = new_request_id(incoming)
        scope[REQUEST_ID_KEY] = request_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("http_request_failed", request_id=request_id)
            if started:
                raise
            body = orjson.dumps({"error": {"code": "internal", "message": "internal error",
                                           "details": [], "request_id": request_id}})
            headers: list[tuple[bytes, bytes]] = [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                (b"x-request-id", request_id.encode())]
            start: dict[str, Any] = {"type": "http.response.start", "status": 500, "headers": headers}
            await send(start)
            await send({"type": "http.response.body", "body": body})
