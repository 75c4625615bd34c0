"""Fixtures of the ingest tests: the ingest runtime behind a real gRPC server (platform
interceptor included) and the REST gateway in front of it, served by uvicorn on a real port.

PostgreSQL tests use the ``ingest`` schema of ACCRUAL_TEST_DATABASE_URL (dropped and
re-migrated once per session) and a fresh tenant per test; they are marked ``integration``
and fail (never skip) without PostgreSQL. The same scenarios run on SQLite files.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import dramatiq
import grpc
import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from accrual.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from accrual.messages.v1 import messages_pb2
from accrual_gateway.app import create_app
from accrual_ingest import bootstrap, storage
from accrual_ingest.bootstrap import IngestRuntime
from accrual_platform import auth, queue, ratelimit
from accrual_platform.fixtures import RpcFailure, backend_fixtures, rpc_failure
from accrual_platform.grpc_server import ServiceInterceptor, build_server, internal_metadata
from accrual_platform.settings import Settings
from accrual_platform.testing import FakePrograms as Programs
from dramatiq.brokers.stub import StubBroker

TOKEN = "test-internal-token"
WRITE_SCOPES = frozenset({"events:write", "programs:write"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Keys:
    """A stand-in for identity's authenticator: API keys made up per test."""

    def __init__(self) -> None:
        self._keys: dict[str, auth.Principal] = {}

    def __call__(self, key: str) -> auth.Principal | None:
        return self._keys.get(key)

    def create(self, tenant_id: str, scopes: frozenset[str] = WRITE_SCOPES) -> str:
        key = f"sk_test_{uuid.uuid4().hex}"
        self._keys[key] = auth.Principal(tenant_id, f"key-{uuid.uuid4().hex[:12]}", scopes)
        return key


@dataclass
class Stack:
    runtime: IngestRuntime
    broker: StubBroker
    keys: Keys
    grpc_address: str
    base_url: str
    channel: grpc.Channel
    stub: ingest_pb2_grpc.IngestServiceStub
    programs: Programs

    def program(self, tenant_id: str) -> str:
        """A new program of the tenant, as the rules service would have it."""
        return self.programs.create(tenant_id)

    def tenant(self, scopes: frozenset[str] = WRITE_SCOPES) -> tuple[str, str]:
        """A new tenant and an API key of it: (key, tenant_id)."""
        tenant_id = str(uuid.uuid4())
        return self.keys.create(tenant_id, scopes), tenant_id

    def http(self, key: str | None = None) -> httpx.Client:
        headers = {"X-API-Key": key} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    @staticmethod
    def md(key: str) -> list[tuple[str, str]]:
        return [("x-api-key", key)]

    def count(self, tenant_id: str, table: sa.Table = storage.events) -> int:
        with self.runtime.db.transaction() as session:
            return int(session.execute(sa.select(sa.func.count()).select_from(table).where(
                table.c.tenant_id == tenant_id)).scalar_one())

    def accepted_messages(self, tenant_id: str) -> list[str]:
        """Event ids the outbox published to the rules queue for ``tenant_id`` so far."""
        self.runtime.relay.relay_once()
        ids: list[str] = []
        q = self.broker.queues.get(queue.RULES_QUEUE)
        for raw in list(q.queue) if q is not None else []:
            message = dramatiq.Message.decode(raw)
            batch = queue.decode(message.args[0], messages_pb2.EventsAccepted)
            if batch.tenant_id == tenant_id:
                ids.extend(batch.event_ids)
        return ids

    def claim(self, tenant_id: str, event_ids: list[str]) -> list[ingest_pb2.Event]:
        resp = self.stub.ClaimEvents(ingest_pb2.ClaimEventsRequest(tenant_id=tenant_id, event_ids=event_ids),
                                     metadata=internal_metadata(TOKEN), timeout=10)
        return list(resp.events)

    @staticmethod
    def failure(call: Callable[[], Any]) -> RpcFailure:
        return rpc_failure(call)


class GatewayThread:
    """The REST gateway on a real port, in a thread of this process."""

    def __init__(self, grpc_address: str) -> None:
        self.port = free_port()
        app = create_app({"accrual.ingest.v1.IngestService": grpc_address}, (ingest_pb2.DESCRIPTOR,),
                         max_body_bytes=4 * 1024 * 1024)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, access_log=False,
                                loop="asyncio", http="h11")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


pg_url, sqlite_url, database_url = backend_fixtures(bootstrap.SCHEMA, bootstrap.MIGRATIONS)


def start_stack(database_url: str, limiter: ratelimit.RateLimiter | None = None) -> Iterator[Stack]:
    broker = StubBroker()
    settings = Settings(database_url=database_url, broker_url="stub://", redis_url=None, internal_token=TOKEN)
    runtime = bootstrap.build(settings, broker)
    programs = Programs()
    runtime.queries.program_exists = programs
    keys = Keys()
    server, port = build_server([(runtime.service_full_name, runtime.register)], "127.0.0.1:0",
                                ServiceInterceptor(keys, TOKEN, limiter=limiter))
    server.start()
    address = f"127.0.0.1:{port}"
    channel = grpc.insecure_channel(address)
    try:
        with GatewayThread(address) as base_url:
            yield Stack(runtime, broker, keys, address, base_url, channel,
                        ingest_pb2_grpc.IngestServiceStub(channel), programs)
    finally:
        channel.close()
        server.stop(1).wait()
        runtime.stop()
        broker.close()


@pytest.fixture(scope="module")
def stack(database_url: str) -> Iterator[Stack]:
    yield from start_stack(database_url)


@pytest.fixture(scope="module")
def pg_stack(pg_url: str) -> Iterator[Stack]:
    yield from start_stack(pg_url)


@pytest.fixture(scope="session")
def stack_factory() -> Callable[..., Iterator[Stack]]:
    """``start_stack`` for test modules (conftest is not importable under importlib mode)."""
    return start_stack
