"""The gateway application: generated routes plus operations endpoints, wired together."""

from __future__ import annotations

import pathlib
import signal
from collections.abc import Mapping, Sequence

from accrual.identity.v1 import identity_pb2
from accrual.ingest.v1 import ingest_pb2
from accrual.notify.v1 import notify_pb2
from accrual.rules.v1 import rewards_pb2, rules_pb2
from accrual_platform import auth
from google.protobuf.descriptor import FileDescriptor
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from accrual_gateway import codec, routing
from accrual_gateway.access import AccessCheck
from accrual_gateway.console import console_routes
from accrual_gateway.dispatch import Dispatcher
from accrual_gateway.docs import docs_routes
from accrual_gateway.metrics import HttpMetrics
from accrual_gateway.middleware import RequestIdMiddleware
from accrual_gateway.openapi import build_openapi
from accrual_gateway.upstream import Upstream

DEFAULT_FILES = (ingest_pb2.DESCRIPTOR, identity_pb2.DESCRIPTOR, rules_pb2.DESCRIPTOR,
                 rewards_pb2.DESCRIPTOR, notify_pb2.DESCRIPTOR)
API_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]

def create_app(addresses: Mapping[str, str], files: Sequence[FileDescriptor] | None = None, *,
               call_timeout: float = 10.0, max_body_bytes: int = 16 * 1024 * 1024,
               coalesce_calls: bool = True,
               authenticator: auth.Authenticator | None = None,
               console_dir: pathlib.Path | None = None) -> RequestIdMiddleware:
    """The gateway of the services at ``addresses`` ({service full name: address}).

    ``authenticator``: the services' key lookup (see :mod:`accrual_gateway.access`); without
    one, input errors are answered before the key is known.

    ``console_dir``: the operator console's build served at /console (default: the source
    checkout's console/dist; see :mod:`accrual_gateway.console`).

    ``coalesce_calls``: send concurrent calls of a method with a ``coalesced_by`` option
    (SubmitEvent) upstream together (see :mod:`accrual_gateway.coalesce`)."""
    routes = routing.build_routes(files or DEFAULT_FILES)
    upstream = Upstream(addresses, routes, call_timeout=call_timeout, coalesce_calls=coalesce_calls)
    metrics = HttpMetrics()
    access = AccessCheck(authenticator) if authenticator is not None else None
    dispatch = Dispatcher(routing.RouteTable(routes), upstream, metrics, max_body_bytes=max_body_bytes,
                          access=access)
    ops = Operations(codec.dumps(build_openapi(routes)), upstream)
    return RequestIdMiddleware(Starlette(routes=[
        Route("/openapi.json", ops.openapi), *docs_routes(),
        Route("/healthz", ops.healthz), Route("/readyz", ops.readyz),
        Route("/metrics", metrics.endpoint), *console_routes(console_dir),
        Route("/{path:path}", dispatch.handle, methods=API_METHODS),
    ]))


class Operations:
    """The endpoints that are not API routes: the spec, liveness and readiness."""

    def __init__(self, spec: bytes, upstream: Upstream) -> None:
        self.spec = spec
        self.upstream = upstream

    async def openapi(self, _: Request) -> Response:
        return Response(self.spec, media_type="application/json")

    async def healthz(self, _: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def readyz(self, _: Request) -> Response:
        """200 when every service answers its health check as SERVING, else 503 naming why."""
        failures = await self.upstream.failures()
        body = {"status": "ok" if not failures else "unavailable", "failures": failures}
        return Response(codec.dumps(body), 200 if not failures else 503, media_type="application/json")


def serve_app(app: RequestIdMiddleware, host: str, port: int) -> None:
    import uvicorn

    # uvicorn stops gracefully on SIGTERM/SIGINT, then re-raises the signal with the handler
    # that was installed before it started; with the default one the process dies by the
    # signal (exit -15) after a clean stop. A no-op handler lets it exit normally instead
    # (and lets `accrual run` stop its other parts).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False,
                loop="uvloop", http="httptools")
