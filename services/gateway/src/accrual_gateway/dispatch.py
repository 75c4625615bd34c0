"""One API request: match its route, decode it into the method's request message, call the
service, and answer the reply or the error as JSON."""

from __future__ import annotations

import time
from typing import Any

import grpc
import structlog
from google.protobuf.message import Message
from starlette.requests import Request
from starlette.responses import Response

from accrual_gateway import coalesce, codec, prefer, routing
from accrual_gateway.access import MAX_API_KEY_LENGTH, AccessCheck, Caller
from accrual_gateway.errors import ShimError, error_from_app_error, error_from_rpc, error_response
from accrual_gateway.metrics import HttpMetrics
from accrual_gateway.middleware import request_id_of
from accrual_gateway.upstream import Upstream, forwarded_headers


def api_key_of(request: Request) -> str | None:
    """The caller's API key: ``X-API-Key``, or ``Authorization: Bearer``."""
    key = request.headers.get("x-api-key")
    if not key:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            key = value.strip()
    return key or None


def empty_replacement(route: routing.Route) -> ShimError:
    """The 400 of a replacing PUT whose body sets nothing: it would silently reset the
    resource to its defaults, which is never what a client that forgot its body meant."""
    fields = [f.name for f in route.method.input_type.fields if f.name not in route.path_fields]
    description = "is required: a PUT replaces the whole resource, and the body sets nothing"
    return ShimError(400, "invalid_argument",
                     f"the body must set at least one of {', '.join(fields)}",
                     [(name, description) for name in fields])


def body_too_large(limit: int) -> ShimError:
    return ShimError(400, "body_too_large", f"request body exceeds {limit} bytes",
                     [("body", f"must be at most {limit} bytes")])


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (400 body_too_large) as soon as it is known to exceed ``limit``."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise body_too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise body_too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def decode(request: Request, match: routing.Match, max_body_bytes: int) -> Message:
    """The route's request message from the body (or query) and the path; ShimError when the
    input cannot be that message."""
    route = match.route
    message = routing.request_class(route.method)()
    data: dict[str, Any] = {}
    if route.body:
        raw = await read_body(request, max_body_bytes)
        parsed = codec.parse_body(raw) if raw.strip() else {}
        if route.body == "*":
            if not isinstance(parsed, dict):
                raise ShimError(400, "invalid_json", "request body must be a JSON object",
                                [("body", "must be a JSON object")])
            if route.verb == "PUT" and not any(v is not None for v in parsed.values()):
                raise empty_replacement(route)
            data = parsed
        else:
            data = {route.body: parsed}
    else:
        data = codec.query_to_dict(route.method.input_type, list(request.query_params.multi_items()),
                                   set(route.path_fields))
    for name, value in match.path_values.items():
        codec.set_path(data, name, value)
    codec.parse_into(message, data)
    return message


def input_error(exc: ShimError, route: routing.Route, request_id: str) -> Response:
    """The gateway's own answer to input it cannot decode. Routes whose contract answers bad
    input with another status (CDP: 422 validation_failed) answer these the same way."""
    body = exc.body(request_id)
    status = exc.status
    if status == 400 and route.invalid_status != 400:
        status = route.invalid_status
        if exc.code == "invalid_argument":
            body["error"]["code"] = "validation_failed"
    return Response(codec.dumps(body), status, media_type="application/json",
                    headers={"X-Request-Id": request_id})


class Dispatcher:
    """The endpoint of every generated route. With an ``access`` check, a request the gateway
    would refuse itself is refused for its key first (401, then 403, then 400); without
    one (the shim alone, in tests) only the service checks keys."""

    def __init__(self, routes: routing.RouteTable, upstream: Upstream, metrics: HttpMetrics, *,
                 max_body_bytes: int, access: AccessCheck | None = None) -> None:
        self.routes = routes
        self.upstream = upstream
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.access = access
        #: this app's own logger, so a logging configuration made after another app cached
        #: its logger (tests capturing logs) still reaches this one's lines
        self.log = structlog.get_logger("accrual.gateway")

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        request_id = request_id_of(request)
        path, verb = request.url.path, request.method
        match = self.routes.match(path, verb)
        template: str | None = None
        caller: Caller | None = None
        status = 500
        try:
            if match is None:
                allowed = self.routes.has_path(path)
                response = error_response(405 if allowed else 404, {
                    "code": "method_not_allowed" if allowed else "not_found",
                    "message": f"{verb} {path} is not a route", "details": []}, request_id)
            else:
                template = match.route.template
                caller = Caller(api_key_of(request)) if self.access is None else \
                    await self.access.caller(api_key_of(request))
                response = await self._answer(request, match, caller, request_id)
                self.metrics.observe(template, verb, response.status_code, time.perf_counter() - started)
            status = response.status_code
            return response
        finally:
            # The access line: never the key, never the body.
            self.log.info("http_request", request_id=request_id, method=verb, route=template,
                          status=status, latency_ms=round((time.perf_counter() - started) * 1e3, 2),
                          tenant_id=caller.tenant_id if caller is not None else None)

    async def _answer(self, request: Request, match: routing.Match, caller: Caller,
                      request_id: str) -> Response:
        route = match.route
        try:
            message = await decode(request, match, self.max_body_bytes)
        except ShimError as exc:
            refusal = caller.refusal_for(route.full_method) if self.access is not None else None
            if refusal is not None:
                return error_response(*error_from_app_error(refusal), request_id)
            return input_error(exc, route, request_id)
        metadata = [("x-request-id", request_id)]
        key = caller.key
        if key and len(key) > MAX_API_KEY_LENGTH:
            # No key is this long, and one this long would pass gRPC's metadata limit: the
            # call would fail in the transport (a 429 naming gRPC internals), not as a 401.
            return error_response(401, {"code": "unauthenticated", "message": "unknown or revoked API key",
                                        "details": []}, request_id)
        if key:
            metadata.append(("x-api-key", key))
        try:
            wait = prefer.apply_wait(message, request.headers.getlist("prefer"))
            reply, headers = await self.upstream.call(route, message, metadata, wait_seconds=wait)
        except (grpc.aio.AioRpcError, coalesce.CallFailed) as exc:
            status, body = error_from_rpc(exc, route.invalid_status)
            if status >= 500:
                self.log.warning("upstream_error", code=exc.code().name, details=exc.details(),
                                 request_id=request_id)
            return error_response(status, body, request_id,
                                  forwarded_headers(exc.initial_metadata(), exc.trailing_metadata()))
        body = codec.to_json(reply)
        if route.response_body:
            body = body[route.response_body]
        return Response(codec.dumps(body), 200, media_type="application/json",
                        headers={"X-Request-Id": request_id, **headers})
