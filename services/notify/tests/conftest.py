"""Fixtures of the notify tests: a migrated PostgreSQL schema, a real HTTP receiver that
verifies Standard Webhooks signatures, and a runtime with a StubBroker and a real Dramatiq
worker, on a compressed retry schedule.

Integration tests touch only the ``notify`` schema (dropped and re-migrated once per
session) and use a fresh tenant id per test, so they do not see each other's rows.
"""

from __future__ import annotations

import dataclasses
import http.server
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import dramatiq
import grpc
import pytest
from accrual.messages.v1 import messages_pb2
from accrual.notify.v1 import notify_pb2_grpc
from accrual_notify import bootstrap, storage
from accrual_notify.bootstrap import NotifyRuntime
from accrual_platform import auth, facts, queue
from accrual_platform.db import utcnow
from accrual_platform.fixtures import postgres_schema
from accrual_platform.grpc_server import ServiceInterceptor, build_server
from accrual_platform.settings import Settings
from accrual_platform.testing import SECRETS_KEY
from standardwebhooks import Webhook

FAST_SCHEDULE = (0.0, 0.2, 0.2, 0.2)


pg_schema = postgres_schema(bootstrap.SCHEMA, bootstrap.MIGRATIONS, name="pg_schema")


# -- the receiver --------------------------------------------------------------------------

@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: str = "ok"
    sleep: float = 0.0


@dataclass(frozen=True)
class Received:
    at: float
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    error: str


class Receiver:
    """A partner's webhook endpoint on 127.0.0.1: answers scripted replies per path (the
    last one repeats) and verifies every request with the reference library."""

    def __init__(self) -> None:
        self.secrets: dict[str, list[str]] = {}
        self._scripts: dict[str, list[Reply]] = {}
        self._received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                reply = receiver._record(self.path, headers, body)
                if reply.sleep:
                    time.sleep(reply.sleep)
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    data = reply.body.encode()
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the sender gave up (timeout)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def script(self, path: str, *replies: dict[str, Any]) -> None:
        """Replies to the next requests on ``path``, as Reply fields (status, headers, body,
        sleep); the last one repeats."""
        with self._lock:
            self._scripts[path] = [Reply(**r) for r in replies]

    def received(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self._received if path is None or r.path == path]

    def _record(self, path: str, headers: dict[str, str], body: bytes) -> Reply:
        verified, error = False, "no secret"
        for secret in self.secrets.get(path, []):
            try:
                Webhook(secret).verify(body, headers)
                verified, error = True, ""
                break
            except Exception as exc:
                error = str(exc)
        with self._lock:
            self._received.append(Received(time.monotonic(), path, headers, body, verified, error))
            script = self._scripts.get(path) or [Reply()]
            return script.pop(0) if len(script) > 1 else script[0]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


# -- the service under test ----------------------------------------------------------------

def base_settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, broker_url="stub://", redis_url=None,
                    internal_token="test-internal-token", webhook_retry_schedule=FAST_SCHEDULE,
                    webhook_timeout_seconds=2.0, webhook_allow_private=True,
                    secrets_keys=(SECRETS_KEY,))


class Harness:
    """A notify runtime with a StubBroker and a started Dramatiq worker, for one tenant."""

    def __init__(self, settings: Settings, *, worker: bool = True) -> None:
        self.settings = settings
        self.broker = queue.make_broker("stub://")
        self.runtime: NotifyRuntime = bootstrap.build(settings, self.broker)
        self.runtime.declare_actors(self.broker)
        self.worker: dramatiq.Worker | None = None
        if worker:
            self.worker = dramatiq.Worker(self.broker, worker_threads=2, worker_timeout=50)
            self.worker.start()
        self.tenant = f"t-{uuid.uuid4()}"

    @property
    def store(self) -> storage.NotifyStore:
        return self.runtime.store

    def endpoint(self, receiver: Receiver, path: str = "/hook",
                 events: tuple[str, ...] = ("*",), tenant: str | None = None) -> str:
        created, secret = self.runtime.endpoints.create(
            tenant or self.tenant, receiver.url(path), list(events), "test endpoint")
        receiver.secrets.setdefault(path, []).append(secret)
        return created.id

    def notification(self, type_: str = "event.completed", fact_id: str | None = None,
                     data: dict[str, Any] | None = None,
                     tenant: str | None = None) -> messages_pb2.Notification:
        return facts.notification(tenant or self.tenant, type_, fact_id or f"fact-{uuid.uuid4()}",
                                  utcnow(), data or {"event_id": "e-1", "points": "10"})

    def publish(self, *notes: messages_pb2.Notification) -> None:
        """Enqueue as another service would: by queue and actor name."""
        queue.enqueue(self.broker, queue.NOTIFY_QUEUE, "publish_notifications",
                      messages_pb2.Notifications(notifications=list(notes)))

    def deliveries(self, endpoint_id: str, tenant: str | None = None) -> list[storage.Delivery]:
        return self.store.list_deliveries(tenant or self.tenant, endpoint_id, 1000, None)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 15.0,
                 what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def wait_final(self, endpoint_id: str, count: int = 1,
                   timeout: float = 15.0) -> list[storage.Delivery]:
        """Wait until ``count`` deliveries of the endpoint reached SUCCEEDED or FAILED."""
        def done() -> bool:
            rows = self.deliveries(endpoint_id)
            return len(rows) >= count and all(r.status != storage.PENDING for r in rows)

        self.wait_for(done, timeout, f"{count} finished deliveries")
        return self.deliveries(endpoint_id)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        self.runtime.stop()
        self.broker.close()


@pytest.fixture
def harness_factory(pg_schema: str) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(*, worker: bool = True, **overrides: Any) -> Harness:
        h = Harness(dataclasses.replace(base_settings(pg_schema), **overrides), worker=worker)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


# -- the gRPC API ----------------------------------------------------------------------------

@dataclass
class Api:
    """A real gRPC server with the platform interceptor in front of a Harness; keys:
    sk_writer_a / sk_reader_a / sk_events_a (tenant_a, the harness's tenant) and
    sk_writer_b (tenant_b)."""

    stub: notify_pb2_grpc.NotifyServiceStub
    harness: Harness
    tenant_a: str
    tenant_b: str

    def call(self, method: str, request: object, key: str = "sk_writer_a") -> Any:
        return getattr(self.stub, method)(request, metadata=[("x-api-key", key)], timeout=10)


@pytest.fixture
def api_factory(harness_factory: Callable[..., Harness]) -> Iterator[Callable[..., Api]]:
    cleanups: list[tuple[grpc.Channel, grpc.Server]] = []

    def make(**overrides: Any) -> Api:
        h = harness_factory(**overrides)
        tenant_a, tenant_b = h.tenant, f"b-{uuid.uuid4()}"
        keys = {
            "sk_writer_a": auth.Principal(tenant_a, "k1", frozenset({"webhooks:write"})),
            "sk_reader_a": auth.Principal(tenant_a, "k2", frozenset({"webhooks:read"})),
            "sk_events_a": auth.Principal(tenant_a, "k3", frozenset({"events:write"})),
            "sk_writer_b": auth.Principal(tenant_b, "k4", frozenset({"webhooks:write"})),
        }
        server, port = build_server([(h.runtime.service_full_name, h.runtime.register)],
                                    "127.0.0.1:0", ServiceInterceptor(keys.get, "internal"))
        server.start()
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        cleanups.append((channel, server))
        return Api(notify_pb2_grpc.NotifyServiceStub(channel), h, tenant_a, tenant_b)

    yield make
    for channel, server in cleanups:
        channel.close()
        server.stop(0)
