"""The gateway application: generated routes plus operations endpoints."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import structlog
import swagger_ui_bundle
from accrual.identity.v1 import identity_pb2
from accrual.ingest.v1 import ingest_pb2
from accrual.notify.v1 import notify_pb2
from accrual.rules.v1 import rules_pb2
from accrual_platform import clients
from google.protobuf.descriptor import FileDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount
from starlette.routing import Route as StarletteRoute
from starlette.staticfiles import StaticFiles

from accrual_gateway import coalesce, prefer, shim
from accrual_gateway.openapi import build_openapi

log = structlog.get_logger("accrual.gateway")
DEFAULT_FILES = (ingest_pb2.DESCRIPTOR, identity_pb2.DESCRIPTOR, rules_pb2.DESCRIPTOR,
                 notify_pb2.DESCRIPTOR)
REQUEST_ID_KEY = "accrual.request_id"
#: keys are "sk_" and 43 characters; this leaves room for other spellings
MAX_API_KEY_LENGTH = 256
FORWARD_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "retry-after",
                   "preference-applied")

DOCS_HTML = """<!doctype html><html><head><title>Accrual API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head><body><div id="ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script></body></html>"""


def create_app(addresses: Mapping[str, str], files: Sequence[FileDescriptor] | None = None, *,
               call_timeout: float = 10.0, max_body_bytes: int = 16 * 1024 * 1024,
               coalesce_calls: bool = True) -> RequestIdMiddleware:
    """``coalesce_calls``: send concurrent calls of a method with a ``coalesced_by`` option
    (SubmitEvent) upstream together (see :mod:`accrual_gateway.coalesce`)."""
    routes = shim.build_routes(files or DEFAULT_FILES)
    spec = shim.dumps(build_openapi(routes))
    registry = CollectorRegistry()
    requests = Counter("accrual_http_requests", "HTTP requests", ["route", "method", "status"],
                       registry=registry)
    latency = Histogram("accrual_http_request_seconds", "HTTP latency", ["route", "method"],
                        registry=registry)
    callables: dict[str, Any] = {}
    coalescers: dict[str, coalesce.Coalescer] = {}
    channels: dict[str, Any] = {}

    def connect() -> None:
        """grpc.aio channels belong to the serving event loop: create them inside it."""
        by_address: dict[str, Any] = {}
        for name, address in addresses.items():
            if address not in by_address:
                where, options = clients.target(address)
                by_address[address] = grpc.aio.insecure_channel(where, options=[
                    ("grpc.max_receive_message_length", 64 * 1024 * 1024), *options])
            channels[name] = by_address[address]
        for r in routes:
            if r.full_method not in callables:
                ch = shim.channel_for(channels, r)
                callables[r.full_method] = _unary(ch, r.method)
                carrier = shim.coalesced_by(r.method)
                if carrier is not None and coalesce_calls:
                    coalescers[r.full_method] = coalesce.Coalescer(
                        _with_timeout(_unary(ch, carrier), call_timeout), shim.request_class(carrier))

    def error(status: int, body: dict[str, Any], request_id: str,
              headers: dict[str, str] | None = None) -> Response:
        body.setdefault("request_id", request_id)
        return Response(shim.dumps({"error": body} if "error" not in body else body), status,
                        media_type="application/json",
                        headers={"X-Request-Id": request_id, **(headers or {})})

    async def dispatch(request: Request) -> Response:
        started = time.perf_counter()
        request_id = request_id_of(request)
        path = request.url.path
        verb = request.method
        matched: shim.Route | None = None
        match = None
        allowed = False
        for r in routes:
            m = r.regex.match(path)
            if m is None:
                continue
            allowed = True
            if r.verb == verb:
                matched, match = r, m
                break
        if matched is None or match is None:
            status = 405 if allowed else 404
            return error(status, {"code": "method_not_allowed" if allowed else "not_found",
                                  "message": f"{verb} {path} is not a route", "details": []},
                         request_id)
        response = await _call(request, matched, match, request_id)
        requests.labels(matched.template, verb, str(response.status_code)).inc()
        latency.labels(matched.template, verb).observe(time.perf_counter() - started)
        return response

    async def _call(request: Request, route: shim.Route, match: Any, request_id: str) -> Response:
        try:
            message = shim.request_class(route.method)()
            data: dict[str, Any] = {}
            if route.body:
                raw = await _read_body(request, max_body_bytes)
                parsed = shim.parse_body(raw) if raw.strip() else {}
                if route.body == "*":
                    if not isinstance(parsed, dict):
                        raise shim.ShimError(400, "invalid_json", "request body must be a JSON object",
                                             [("body", "must be a JSON object")])
                    if route.verb == "PUT" and not any(v is not None for v in parsed.values()):
                        raise shim.empty_replacement(route)
                    data = parsed
                else:
                    data = {route.body: parsed}
            else:
                data = shim.query_to_dict(route.method.input_type,
                                          list(request.query_params.multi_items()),
                                          set(route.path_fields))
            for i, name in enumerate(route.path_fields):
                shim.set_path(data, name, match.group(f"f{i}"))
            shim.parse_into(message, data)
        except shim.ShimError as exc:
            # Routes whose contract answers bad input with another status (CDP: 422
            # validation_failed) answer the shim's own input errors the same way.
            body = exc.body(request_id)
            status = exc.status
            if status == 400 and route.invalid_status != 400:
                status = route.invalid_status
                if exc.code == "invalid_argument":
                    body["error"]["code"] = "validation_failed"
            return Response(shim.dumps(body), status, media_type="application/json",
                            headers={"X-Request-Id": request_id})
        if not callables:
            connect()
        metadata = [("x-request-id", request_id)]
        key = request.headers.get("x-api-key")
        if not key:
            scheme, _, value = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() == "bearer":
                key = value.strip()
        if key and len(key) > MAX_API_KEY_LENGTH:
            # No key is this long, and one this long would pass gRPC's metadata limit: the
            # call would fail in the transport (a 429 naming gRPC internals), not as a 401.
            return error(401, {"code": "unauthenticated", "message": "unknown or revoked API key",
                               "details": []}, request_id)
        if key:
            metadata.append(("x-api-key", key))
        coalescer = coalescers.get(route.full_method)
        wait = prefer.apply_wait(message, request.headers.getlist("prefer"))
        try:
            if coalescer is not None and not wait:
                reply, trailing = await coalescer.call(message, metadata)
                headers = _forward(trailing)
            else:
                call = callables[route.full_method](message, metadata=metadata, timeout=call_timeout + wait)
                reply = await call
                headers = _forward(await call.initial_metadata(), await call.trailing_metadata())
        except (grpc.aio.AioRpcError, coalesce.CallFailed) as exc:
            status, body = shim.error_from_rpc(exc, route.invalid_status)
            headers = _forward(exc.initial_metadata(), exc.trailing_metadata())
            if status >= 500:
                log.warning("upstream_error", code=exc.code().name, details=exc.details(),
                            request_id=request_id)
            return error(status, body, request_id, headers)
        body = shim.to_json(reply)
        if route.response_body:
            body = body[route.response_body]
        return Response(shim.dumps(body), 200, media_type="application/json",
                        headers={"X-Request-Id": request_id, **headers})

    def _forward(*mds: Any) -> dict[str, str]:
        out: dict[str, str] = {}
        for md in mds:
            for k, v in md or ():
                if k in FORWARD_HEADERS:
                    out["-".join(p.capitalize() for p in k.split("-")).replace("Ratelimit", "RateLimit")] = str(v)
        return out

    async def openapi(_: Request) -> Response:
        return Response(spec, media_type="application/json")

    async def docs(_: Request) -> Response:
        return HTMLResponse(DOCS_HTML)

    async def healthz(_: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def readyz(_: Request) -> Response:
        if not channels:
            connect()
        failures: dict[str, str] = {}
        for name, ch in channels.items():
            try:
                resp = await health_pb2_grpc.HealthStub(ch).Check(
                    health_pb2.HealthCheckRequest(service=name), timeout=2)
                if resp.status != health_pb2.HealthCheckResponse.SERVING:
                    failures[name] = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
            except grpc.aio.AioRpcError as exc:
                failures[name] = exc.code().name
        body = {"status": "ok" if not failures else "unavailable", "failures": failures}
        return Response(shim.dumps(body), 200 if not failures else 503, media_type="application/json")

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app: Any = Starlette(routes=[
        StarletteRoute("/openapi.json", openapi), StarletteRoute("/docs", docs),
        Mount("/docs/assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path)),
        StarletteRoute("/healthz", healthz), StarletteRoute("/readyz", readyz),
        StarletteRoute("/metrics", metrics),
        StarletteRoute("/{path:path}", dispatch,
                       methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ])
    return RequestIdMiddleware(app)


def _unary(channel: Any, method: Any) -> Any:
    """The unary multicallable of ``method`` (a MethodDescriptor) on ``channel``."""
    return channel.unary_unary(
        f"/{method.containing_service.full_name}/{method.name}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=shim.response_class(method).FromString)


def _with_timeout(multicallable: Any, timeout: float) -> coalesce.Send:
    async def send(message: Any) -> Any:
        return await multicallable(message, timeout=timeout)
    return send


def request_id_of(request: Request) -> str:
    """The id RequestIdMiddleware chose for this request."""
    rid = request.scope.get(REQUEST_ID_KEY)
    return rid if isinstance(rid, str) else shim.new_request_id(request.headers.get("x-request-id"))


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused (400 body_too_large) as soon as it is known to exceed ``limit``."""
    too_large = shim.ShimError(400, "body_too_large", f"request body exceeds {limit} bytes",
                               [("body", f"must be at most {limit} bytes")])
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


class RequestIdMiddleware:
    """Gives every HTTP response an ``X-Request-Id`` (the caller's, when well-formed, or a new
    one), including operations endpoints and 404s, and turns an unexpected exception into a
    JSON 500 that names the request id instead of a bare text page."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for k, v in scope.get("headers") or ():
            if k == b"x-request-id":
                incoming = v.decode("latin-1")
        request_id = shim.new_request_id(incoming)
        scope[REQUEST_ID_KEY] = request_id
        started = False

        async def send_with_id(message: Any) -> None:
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
            body = shim.dumps({"error": {"code": "internal", "message": "internal error", "details": [],
                                         "request_id": request_id}})
            await send({"type": "http.response.start", "status": 500, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                (b"x-request-id", request_id.encode())]})
            await send({"type": "http.response.body", "body": body})


def serve_app(app: Any, host: str, port: int) -> None:
    import signal

    import uvicorn

    # uvicorn stops gracefully on SIGTERM/SIGINT, then re-raises the signal with the handler
    # that was installed before it started; with the default one the process dies by the
    # signal (exit -15) after a clean stop. A no-op handler lets it exit normally instead
    # (and lets `accrual run` stop its other parts).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False,
                loop="uvloop", http="httptools")

