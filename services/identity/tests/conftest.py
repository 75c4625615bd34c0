"""Fixtures of the identity tests: migrated databases on both backends and a real gRPC
server in front of a runtime built by ``bootstrap.build``.

PostgreSQL tests touch only the ``identity`` schema (dropped and re-migrated once per
session) and use a fresh tenant per test, so they never see each other's rows. They are
marked ``integration`` and fail (never skip) when PostgreSQL is not there. The same
scenarios run on SQLite files under a temporary directory, migrated the same way.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import dramatiq
import grpc
import pytest
import sqlalchemy as sa
from accrual.identity.v1 import identity_pb2, identity_pb2_grpc
from accrual.messages.v1 import messages_pb2
from accrual_identity import bootstrap, keys
from accrual_identity.bootstrap import IdentityRuntime
from accrual_platform import queue
from accrual_platform.fixtures import RpcFailure, backend_fixtures, rpc_failure
from accrual_platform.grpc_server import ServiceInterceptor, build_server, internal_metadata
from accrual_platform.settings import Settings
from accrual_platform.testing import FakePrograms as Programs
from dramatiq.brokers.stub import StubBroker

TOKEN = "test-internal-token"


pg_url, sqlite_url, database_url = backend_fixtures(bootstrap.SCHEMA, bootstrap.MIGRATIONS)


def settings_for(url: str) -> Settings:
    # No key cache, so a revoked key is refused on the very next call.
    return Settings(database_url=url, broker_url="stub://", redis_url=None,
                    internal_token=TOKEN, api_key_cache_seconds=0)


def new_tenant_name() -> str:
    return f"tenant-{uuid.uuid4()}"


@dataclass
class Stack:
    """The identity runtime behind a real gRPC server, and a client of it."""

    runtime: IdentityRuntime
    broker: StubBroker
    server: grpc.Server
    channel: grpc.Channel
    stub: identity_pb2_grpc.IdentityServiceStub
    address: str
    programs: Programs
    _published: list[messages_pb2.Notification] = field(default_factory=list)

    def program(self, tenant_id: str) -> str:
        """A new program of the tenant, as the rules service would have it."""
        return self.programs.create(tenant_id)

    def key(self, *scopes: str, tenant: str | None = None) -> tuple[str, str]:
        """A new API key (of a new tenant unless named): (key, tenant_id)."""
        name = tenant or new_tenant_name()
        _, key = keys.create_api_key(self.runtime.db, name, frozenset(scopes))
        return key, keys.ensure_tenant(self.runtime.db, name)

    def tenant(self) -> str:
        return keys.ensure_tenant(self.runtime.db, new_tenant_name())

    @staticmethod
    def auth(key: str) -> list[tuple[str, str]]:
        return [("x-api-key", key)]

    @staticmethod
    def internal() -> list[tuple[str, str]]:
        return internal_metadata(TOKEN)

    def resolve(self, tenant_id: str,
                *items: identity_pb2.ResolveItem) -> list[identity_pb2.ResolveResult]:
        response = self.stub.ResolveParticipants(identity_pb2.ResolveParticipantsRequest(
            tenant_id=tenant_id, items=list(items)), metadata=self.internal(), timeout=60)
        return list(response.results)

    def notifications(self, tenant_id: str, count: int,
                      timeout: float = 10.0) -> list[messages_pb2.Notification]:
        """Wait until the relay published ``count`` notifications of the tenant."""
        deadline = time.monotonic() + timeout
        while True:
            self._drain()
            mine = [n for n in self._published if n.tenant_id == tenant_id]
            if len(mine) >= count or time.monotonic() > deadline:
                return mine
            time.sleep(0.02)

    def _drain(self) -> None:
        q = self.broker.queues.get(queue.NOTIFY_QUEUE)
        while q is not None and not q.empty():
            message = dramatiq.Message.decode(q.get_nowait())
            assert message.actor_name == "publish_notifications"
            batch = queue.decode(message.args[0], messages_pb2.Notifications)
            self._published.extend(batch.notifications)

    @staticmethod
    def failure(call: Callable[[], Any]) -> RpcFailure:
        """Run a call that must fail: its status code, ErrorInfo reason and violated fields."""
        return rpc_failure(call)

    def count(self, table: sa.Table, tenant_id: str) -> int:
        with self.runtime.db.transaction() as session:
            return int(session.execute(sa.select(sa.func.count()).select_from(table).where(
                table.c.tenant_id == tenant_id)).scalar_one())

    def execute(self, statement: Any) -> None:
        with self.runtime.db.transaction() as session:
            session.execute(statement)


@pytest.fixture(scope="module")
def stack(database_url: str) -> Iterator[Stack]:
    broker = StubBroker()
    runtime = bootstrap.build(settings_for(database_url), broker)
    programs = Programs()
    runtime.enrollments.program_exists = programs
    server, port = build_server([(runtime.service_full_name, runtime.register)],
                                "127.0.0.1:0", ServiceInterceptor(runtime.authenticator, TOKEN))
    server.start()
    runtime.start()
    address = f"127.0.0.1:{port}"
    channel = grpc.insecure_channel(address)
    yield Stack(runtime, broker, server, channel, identity_pb2_grpc.IdentityServiceStub(channel),
                address, programs)
    channel.close()
    server.stop(2).wait()
    runtime.stop()
    broker.close()
