"""gRPC server bootstrap: health, reflection, interceptors and graceful stop.

The interceptor does, per RPC: bind service, request id and tenant to the log context, authenticate
(API key or the internal token), count the call against the key's rate limit (public calls
only, see :mod:`accrual_platform.ratelimit`), check the method's ``required_scope`` option,
and turn the error tree into rich ``google.rpc.Status`` answers. Rate-limit metadata
(``x-ratelimit-*``, ``retry-after``) rides in the trailing metadata of every answer to an
authenticated public call, errors included.
"""

from __future__ import annotations

import collections
import contextvars
import hmac
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent import futures
from typing import Any

import grpc
import structlog
from accrual.options.v1 import options_pb2
from google.protobuf import descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status
from sqlalchemy import exc as sa_exc

from accrual_platform import auth, ids, ratelimit
from accrual_platform.errors import (
    AppError,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

log = structlog.get_logger("accrual.grpc")

_scope_cache: dict[str, str | None] = {}


def required_scope(full_method: str) -> str | None:
    """The method's required_scope option, or None for methods outside our contracts."""
    if full_method in _scope_cache:
        return _scope_cache[full_method]
    service, _, method = full_method.lstrip("/").rpartition("/")
    scope: str | None
    try:
        desc = descriptor_pool.Default().FindMethodByName(f"{service}.{method}")
        scope = desc.GetOptions().Extensions[options_pb2.required_scope] or None
    except KeyError:
        scope = None
    if service.startswith("accrual.") and scope is None:
        scope = auth.ADMIN_SCOPE  # an accrual method without a declared scope is admin-only
    _scope_cache[full_method] = scope
    return scope


def service_of(full_method: str) -> str:
    """The short name of the service a method belongs to: ``rules`` for
    ``/accrual.rules.v1.RulesService/GetRule``, the full service name outside our contracts."""
    service = full_method.lstrip("/").rpartition("/")[0]
    parts = service.split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "accrual" else service


def _metadata(context: grpc.ServicerContext) -> dict[str, str]:
    return {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}


def api_key_from_metadata(md: dict[str, str]) -> str | None:
    key = md.get("x-api-key")
    if key:
        return key.strip()
    authz = md.get("authorization", "")
    scheme, _, value = authz.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


class _Status(collections.namedtuple("_Status", ("code", "details", "trailing_metadata")),
              grpc.Status):  # type: ignore[misc]
    pass


def _with_metadata(status: Any, extra: Sequence[tuple[str, str]]) -> Any:
    """``status`` (from grpc_status) with ``extra`` added to its trailing metadata."""
    if not extra:
        return status
    return _Status(status.code, status.details, (*status.trailing_metadata, *extra))


_DEFAULT_LIMIT: Any = object()


class _RateLimited(ResourceExhausted):
    def __init__(self, limit_metadata: list[tuple[str, str]], wait: str) -> None:
        super().__init__(f"rate limit exceeded for this API key; retry after {wait} s",
                         reason="rate_limited", metadata={"retry_after_seconds": wait})
        self.limit_metadata = limit_metadata


#: Scope of a method that carries other calls: each is admitted by its own metadata (see
#: :func:`admit`), the carrying call by nothing.
PER_CALL_SCOPE = "per_call"


class Refused(Exception):
    """An API call refused at admission, with the rate-limit metadata its answer carries."""

    def __init__(self, error: AppError, limit_metadata: list[tuple[str, str]]) -> None:
        super().__init__(error.message)
        self.error = error
        self.limit_metadata = limit_metadata


#: How the RPC being served admits calls: ``admit(metadata, scope)``. Set by the interceptor
#: for the length of every call, so an internal method that carries other callers' calls
#: (CoalescedSubmitEvents) admits each of them exactly as a call of its own would be.
_admit: contextvars.ContextVar[Callable[[dict[str, str], str], tuple[auth.Principal, list[tuple[str, str]]]]] = \
    contextvars.ContextVar("accrual_admit")


def admit(metadata: dict[str, str], scope: str) -> tuple[auth.Principal, list[tuple[str, str]]]:
    """Authenticate, rate-limit and authorize one call by its metadata, with the limiter and
    authenticator of the RPC being served; (principal, rate-limit metadata), or Refused."""
    return _admit.get()(metadata, scope)


Admission = tuple[auth.Principal, list[tuple[str, str]]] | Refused
_admit_many: contextvars.ContextVar[Callable[[Sequence[dict[str, str]], str], list[Admission]]] = \
    contextvars.ContextVar("accrual_admit_many")


def admit_many(metadata: Sequence[dict[str, str]], scope: str) -> list[Admission]:
    """:func:`admit` for each of several calls, in their order, each answer what admit
    would give (its result, or the Refused it would raise); the rate limiter is asked once
    per key for all of that key's calls (one Redis round trip instead of one per call)."""
    return _admit_many.get()(metadata, scope)


class ServiceInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, authenticator: auth.Authenticator, internal_token: str,
                 limiter: ratelimit.RateLimiter | None = _DEFAULT_LIMIT) -> None:
        """``limiter`` defaults to the default limit in this process (the suite passes the
        one its settings configure); pass None to turn rate limiting off."""
        self._authenticate = authenticator
        self._internal_token = internal_token
        self._limiter: ratelimit.RateLimiter | None = (
            ratelimit.LocalRateLimiter(ratelimit.RateLimitConfig.DEFAULT) if limiter is _DEFAULT_LIMIT
            else limiter)

    def intercept_service(self, continuation: Callable[[Any], Any],
                          details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        method: str = details.method
        scope = required_scope(method)
        if scope is None:
            return handler
        inner = handler.unary_unary
        service = service_of(method)

        def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
            md = _metadata(context)
            request_id = md.get("x-request-id") or ids.new_request_id()
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(service=service, request_id=request_id, rpc=method)
            token = auth.current_principal.set(None)
            admit_token = _admit.set(self.admit)
            admit_many_token = _admit_many.set(self.admit_many)
            started = time.perf_counter()
            code = "OK"
            limit_md: list[tuple[str, str]] = []
            try:
                if scope != PER_CALL_SCOPE:
                    try:
                        principal, limit_md = self.admit(md, scope)
                    except Refused as refused:
                        limit_md = refused.limit_metadata
                        raise refused.error from None
                    if limit_md:
                        context.set_trailing_metadata(limit_md)
                    auth.current_principal.set(principal)
                    structlog.contextvars.bind_contextvars(tenant_id=principal.tenant_id)
                return inner(request, context)
            except AppError as exc:
                code = exc.grpc_code.name
                context.abort_with_status(_with_metadata(rpc_status.to_status(exc.to_status()), limit_md))
            except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
                code = "UNAVAILABLE"
                log.warning("database_unavailable", error=str(exc).splitlines()[0])
                err = Unavailable("database unavailable, retry")
                context.abort_with_status(_with_metadata(rpc_status.to_status(err.to_status()), limit_md))
            except Exception as exc:
                if isinstance(exc, grpc.RpcError) or getattr(context, "_state", None) is None:
                    raise
                code = "INTERNAL"
                log.exception("rpc_failed")
                context.abort(grpc.StatusCode.INTERNAL, "internal error")
            finally:
                _admit.reset(admit_token)
                _admit_many.reset(admit_many_token)
                auth.current_principal.reset(token)
                log.debug("rpc_done", code=code, ms=round((time.perf_counter() - started) * 1e3, 2))
            return None

        return grpc.unary_unary_rpc_method_handler(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def admit(self, md: dict[str, str], scope: str) -> tuple[auth.Principal, list[tuple[str, str]]]:
        """Authenticate the call (API key or internal token), count it against its key's rate
        limit (public calls only) and check ``scope``; (principal, rate-limit metadata for
        the answer), or Refused with the error and the metadata its answer carries."""
        limit_md: list[tuple[str, str]] = []
        try:
            try:
                principal = self._principal(md)
            except Unauthenticated as exc:
                # A refused key is counted too (in a bucket of its own, keyed by its
                # digest), so a 401 carries the rate-limit headers like any answer.
                if md.get("x-internal-token") is None:
                    limit_md = self._count("unauthenticated:" + auth.hash_api_key(
                        api_key_from_metadata(md) or ""))
                raise Refused(exc, limit_md) from None
            if not principal.internal:
                limit_md = self._count(principal.key_id)
            self._authorize(principal, scope)
        except _RateLimited as exc:
            raise Refused(exc, exc.limit_metadata) from None
        except PermissionDenied as exc:
            raise Refused(exc, limit_md) from None
        return principal, limit_md

    def admit_many(self, mds: Sequence[dict[str, str]], scope: str) -> list[Admission]:
        """:meth:`admit` of each call, with one limiter step per bucket (see admit_many)."""
        found: list[tuple[auth.Principal | Unauthenticated, str | None]] = []
        for md in mds:
            try:
                principal = self._principal(md)
                found.append((principal, None if principal.internal else principal.key_id))
            except Unauthenticated as exc:
                bucket = None if md.get("x-internal-token") is not None else \
                    "unauthenticated:" + auth.hash_api_key(api_key_from_metadata(md) or "")
                found.append((exc, bucket))
        decisions: dict[str, Iterator[ratelimit.Decision]] = {}
        if self._limiter is not None:
            counts = collections.Counter(bucket for _, bucket in found if bucket is not None)
            decisions = {bucket: iter(self._limiter.hit_many(bucket, n)) for bucket, n in counts.items()}
        out: list[Admission] = []
        for who, bucket in found:
            limit_md: list[tuple[str, str]] = []
            if bucket is not None and self._limiter is not None:
                decision = next(decisions[bucket])
                limit_md = decision.metadata()
                if not decision.allowed:
                    out.append(Refused(_RateLimited(limit_md, dict(limit_md)["retry-after"]), limit_md))
                    continue
            if isinstance(who, Unauthenticated):
                out.append(Refused(who, limit_md))
                continue
            try:
                self._authorize(who, scope)
            except PermissionDenied as exc:
                out.append(Refused(exc, limit_md))
                continue
            out.append((who, limit_md))
        return out

    def _count(self, bucket: str) -> list[tuple[str, str]]:
        """Take a token of ``bucket``; its metadata goes on the answer, and an empty bucket
        is RESOURCE_EXHAUSTED with retry-after."""
        if self._limiter is None:
            return []
        decision = self._limiter.hit(bucket)
        limit_md = decision.metadata()
        if not decision.allowed:
            wait = dict(limit_md)["retry-after"]
            raise _RateLimited(limit_md, wait)
        return limit_md

    def _principal(self, md: dict[str, str]) -> auth.Principal:
        token = md.get("x-internal-token")
        if token is not None:
            if not hmac.compare_digest(token, self._internal_token):
                raise Unauthenticated("invalid internal token", reason="unauthenticated")
            tenant = md.get("x-tenant-id", "")
            return auth.Principal(tenant_id=tenant, key_id="internal",
                                  scopes=frozenset(), internal=True)
        key = api_key_from_metadata(md)
        if not key:
            raise Unauthenticated("missing API key: send X-API-Key or Authorization: Bearer",
                                  reason="unauthenticated")
        principal = self._authenticate(key)
        if principal is None:
            raise Unauthenticated("unknown or revoked API key", reason="unauthenticated")
        return principal

    @staticmethod
    def _authorize(principal: auth.Principal, scope: str) -> None:
        if not principal.allows(scope):
            raise PermissionDenied(f"API key lacks scope {scope}", reason="permission_denied",
                                   metadata={"required_scope": scope})


Registrar = Callable[[grpc.Server], None]


def build_server(registrars: Sequence[tuple[str, Registrar]], address: str,
                 interceptor: ServiceInterceptor, *, max_workers: int = 32,
                 also_serving: Sequence[str] = ()) -> tuple[grpc.Server, int]:
    """A server with the given services plus grpc.health.v1 and reflection, bound to address.
    ``also_serving``: more services the registrars add (a runtime serving two contracts)."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        interceptors=[interceptor],
        options=[("grpc.max_receive_message_length", 64 * 1024 * 1024),
                 ("grpc.so_reuseport", 0)],
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = []
    for name, register in registrars:
        register(server)
        names.append(name)
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    for name in also_serving:
        names.append(name)
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME], server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"cannot bind gRPC server to {address}")
    return server, port


def wait_for_termination(stoppers: Iterable[Callable[[], None]]) -> None:
    """Block until SIGTERM/SIGINT, then run the stoppers (each stops gracefully)."""
    done = threading.Event()

    def _handler(signum: int, _frame: Any) -> None:
        log.info("shutdown_requested", signal=signal.Signals(signum).name)
        done.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
    done.wait()
    for stop in stoppers:
        stop()


def internal_metadata(token: str, tenant_id: str = "") -> list[tuple[str, str]]:
    md = [("x-internal-token", token)]
    if tenant_id:
        md.append(("x-tenant-id", tenant_id))
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    if request_id:
        md.append(("x-request-id", str(request_id)))
    return md
