"""Host service runtimes in a process: migrations, gRPC server, workers, relays."""

from __future__ import annotations

import contextlib
import errno
import importlib
import socket
import types
from collections.abc import Sequence
from typing import Any

import dramatiq
import structlog
from accrual_platform import auth, clients, listen, migrations, queue, ratelimit, revocations
from accrual_platform.grpc_server import ServiceInterceptor, build_server
from accrual_platform.runtime import Runtime
from accrual_platform.settings import Settings
from dramatiq.middleware import CurrentMessage

SERVICES = ("identity", "ingest", "rules", "notify")
#: gRPC server threads for ordinary calls, before the runtimes' ``server_threads``
DEFAULT_SERVER_THREADS = 32
log = structlog.get_logger("accrual.suite")


def bootstrap_module(name: str) -> types.ModuleType:
    if name not in SERVICES:
        raise SystemExit(f"unknown service {name!r}; one of {', '.join(SERVICES)}")
    return importlib.import_module(f"accrual_{name}.bootstrap")


def migrate(settings: Settings, names: Sequence[str] = SERVICES) -> None:
    for name in names:
        module = bootstrap_module(name)
        before, after = migrations.upgrade(settings.database_url, module.SCHEMA, module.MIGRATIONS)
        log.info("migrated", service=name, schema=module.SCHEMA, from_revision=before, to_revision=after)


def prepare_broker(broker: dramatiq.Broker) -> dramatiq.Broker:
    """``broker`` with the middleware our workers need (each message's log context is
    :mod:`accrual_platform.queue`'s, added by make_broker)."""
    queue.with_log_context(broker)
    if not any(isinstance(m, CurrentMessage) for m in broker.middleware):
        broker.add_middleware(CurrentMessage())
    return broker


def remote_authenticator(settings: Settings) -> auth.CachedAuthenticator:
    """Key lookups through identity's AuthenticateApiKey, cached for API_KEY_CACHE_SECONDS."""
    return auth.CachedAuthenticator(
        clients.IdentityAuthenticator(clients.channel(settings.peer("identity")), settings.internal_token),
        ttl=settings.api_key_cache_seconds)


def build_runtimes(settings: Settings, broker: dramatiq.Broker,
                   names: Sequence[str]) -> tuple[list[Runtime], auth.Authenticator]:
    """Build the named runtimes; the authenticator is identity's own when it is hosted here,
    else a cached client of IdentityService."""
    runtimes: list[Any] = []
    authenticator: auth.Authenticator | None = None
    if "identity" in names:
        identity = bootstrap_module("identity").build(settings, broker)
        authenticator = identity.authenticator
        runtimes.append(identity)
    if authenticator is None:
        authenticator = remote_authenticator(settings)
    for name in names:
        if name != "identity":
            runtimes.append(bootstrap_module(name).build(settings, broker))
    return runtimes, authenticator


def check_ports(listeners: Sequence[tuple[str, str, int]]) -> None:
    """Exit with one line naming the setting to change when a (setting, host, port) cannot be
    listened on, before anything starts: the servers would otherwise fail deep in start-up
    with a traceback or a log line that names no setting. Port 0 (any free port) is skipped."""
    taken: dict[tuple[str, int], str] = {}
    for setting, host, port in listeners:
        if port and (host, port) in taken:
            raise SystemExit(f"{setting} and {taken[host, port]} are both {port}; give them different ports")
        taken[host, port] = setting
    for setting, host, port in listeners:
        if port:
            _try_listen(setting, host, port)


def _try_listen(setting: str, host: str, port: int) -> None:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        with contextlib.closing(socket.socket(family, kind, proto)) as sock:
            # as the gRPC server and uvicorn do, so a port left in TIME_WAIT is not "in use"
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise SystemExit(f"port {port} on {host} is already in use: set {setting} to a free port "
                             "(or stop what listens there)") from None
        reason = exc.strerror or str(exc)
        raise SystemExit(f"cannot listen on {host}:{port} ({reason}): check "
                         f"{setting.replace('_PORT', '_HOST')} and {setting}") from None


def start_server(settings: Settings, runtimes: Sequence[Runtime], authenticator: auth.Authenticator,
                 ) -> tuple[Any, int, listen.Listener]:
    """The gRPC server of the runtimes, and the process's one PostgreSQL listener: it evicts
    revoked keys from the key cache and feeds the runtimes' ``notification_handlers``
    (stop both). A runtime's ``server_threads`` are added to the server's pool."""
    interceptor = ServiceInterceptor(authenticator, settings.internal_token,
                                     limiter=ratelimit.build(settings.rate_limit, settings.redis_url))
    extra_threads = sum(getattr(r, "server_threads", 0) for r in runtimes)
    server, port = build_server([(r.service_full_name, r.register) for r in runtimes],
                                f"{settings.grpc_host}:{settings.grpc_port}", interceptor,
                                max_workers=DEFAULT_SERVER_THREADS + extra_threads,
                                also_serving=[n for r in runtimes for n in getattr(r, "also_serves", ())])
    handlers: dict[str, listen.Handler] = {
        revocations.CHANNEL: getattr(authenticator, "evict", lambda key_id: None)}
    for r in runtimes:
        handlers.update(getattr(r, "notification_handlers", {}))
    listener = listen.Listener(settings.database_url, handlers, name="pg-listener").start()
    server.start()
    return server, port, listener


#: Threads per worker process unless WORKER_THREADS says otherwise. The rules and ingest
#: workers are CPU- and database-bound: 4 rules threads keep both cores busy, and each holds
#: a whole batch (up to CLAIM_CHUNK events) in memory, so 8 of them took the ingest worker
#: past SPEC 9's 150 MB (bench/README.md, "Worker threads"). The notify worker waits on
#: partners' endpoints (up to the webhook timeout) and keeps 8.
CPU_BOUND_THREADS = 4
IO_BOUND_THREADS = 8


#: The ingest worker alone (record_outcomes) runs 2: each thread holds a batch's outcomes,
#: their rows and its notifications at once, so 4 threads took it to SPEC 9's 150 MB, and
#: 2 drain as fast (bench/README.md, "Worker threads").
OUTCOME_THREADS = 2


def worker_threads(settings: Settings, queues: set[str]) -> int:
    if settings.worker_threads:
        return settings.worker_threads
    if queues == {queue.INGEST_QUEUE}:
        return OUTCOME_THREADS
    return IO_BOUND_THREADS if queue.NOTIFY_QUEUE in queues or not queues else CPU_BOUND_THREADS


def start_worker(settings: Settings, broker: dramatiq.Broker,
                 runtimes: Sequence[Runtime]) -> dramatiq.Worker:
    queues: set[str] = set()
    for r in runtimes:
        r.declare_actors(broker)
        queues.update(r.queues)
    worker = dramatiq.Worker(broker, queues=queues or None, worker_threads=worker_threads(settings, queues))
    worker.start()
    return worker
