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
from accrual_platform import migrations, queue
from accrual_platform.grpc_server import ServiceInterceptor, build_server, internal_metadata
from accrual_platform.settings import Settings
from accrual_platform.testing import FakePrograms as Programs
from accrual_platform.testing import fresh_schema
from dramatiq.brokers.stub import StubBroker
from google.rpc import error_details_pb2
from grpc_status import rpc_status

TOKEN = "test-internal-token"
BACKENDS = [pytest.param("sqlite", id="sqlite"),
            pytest.param("postgresql", id="postgresql", marks=pytest.mark.integration)]


@pytest.fixture(scope="session")
def pg_url() -> str:
    """Drop and re-migrate the identity schema; errors (never skips) without PostgreSQL."""
    return fresh_schema(bootstrap.SCHEMA, bootstrap.MIGRATIONS)


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('identity')}/{{schema}}.db"
    migrations.upgrade(url, bootstrap.SCHEMA, bootstrap.MIGRATIONS)
    return url


@pytest.fixture(scope="module", params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url")
    return url


def settings_for(url: str) -> Settings:
    # No key cache, so a revoked key is refused on the very next call.
    return Settings(database_url=url, broker_url="stub://", redis_url=None,
                    internal_token=TOKEN, api_key_cache_seconds=0)


def new_tenant_name() -> str:
    return f"tenant-{uuid.uuid4()}"


@dataclass(frozen=True)
class RpcFailure:
    code: grpc.StatusCode
    reason: str
    fields: list[str]
    message: str


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
        with pytest.raises(grpc.RpcError) as info:
            call()
        exc: Any = info.value
        status = rpc_status.from_call(exc)
        reason, fields = "", []
        for detail in status.details if status else []:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                error_info = error_details_pb2.ErrorInfo()
                detail.Unpack(error_info)
                reason = error_info.reason
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                fields = [v.field for v in bad.field_violations]
        return RpcFailure(exc.code(), reason, fields, exc.details())

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
