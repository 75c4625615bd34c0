"""Listing and revoking API keys through the API (admin scope), and how fast a revocation
reaches every key cache: within a second, on both backends, and on PostgreSQL also in
caches of other processes (simulated by separate caches, each with its own listener)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc
import pytest
import sqlalchemy as sa
from accrual.identity.v1 import identity_pb2
from accrual_gateway.app import create_app
from accrual_identity import bootstrap, keys
from accrual_platform import auth, clients, revocations
from accrual_platform.db import Database
from accrual_platform.grpc_server import ServiceInterceptor, build_server
from accrual_platform.settings import Settings
from dramatiq.brokers.stub import StubBroker
from starlette.testclient import TestClient

if TYPE_CHECKING:
    from conftest import Stack

#: what SPEC and the issue promise: a revoked key is refused everywhere within this
REVOCATION_DEADLINE = 1.0
TOKEN = "key-admin-internal-token"


def _client(address: str) -> Iterator[TestClient]:
    app = create_app({"accrual.identity.v1.IdentityService": address},
                     files=[identity_pb2.DESCRIPTOR])
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[TestClient]:
    yield from _client(stack.address)


def h(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def test_list_shows_the_tenants_keys_without_their_secrets(stack: Stack,
                                                          client: TestClient) -> None:
    name = f"tenant-{uuid.uuid4()}"
    admin_id, admin = keys.create_api_key(stack.runtime.db, name, frozenset({"admin"}))
    writer_id, writer = keys.create_api_key(stack.runtime.db, name,
                                            frozenset({"events:write", "events:read"}))
    _, stranger = keys.create_api_key(stack.runtime.db, f"tenant-{uuid.uuid4()}",
                                      frozenset({"admin"}))
    tenant_id = keys.ensure_tenant(stack.runtime.db, name)

    got = client.get("/v1/keys", headers=h(admin))

    assert got.status_code == 200, got.text
    body = got.json()
    assert [k["key_id"] for k in body["keys"]] == [admin_id, writer_id]
    listed = body["keys"][1]
    assert listed["tenant_id"] == tenant_id and listed["scopes"] == ["events:read", "events:write"]
    assert listed["prefix"] == writer[:10] and listed["created_at"] and listed.get("revoked_at") is None
    for secret in (admin, writer, stranger):
        assert secret not in got.text
    assert stranger[:10] not in got.text  # another tenant's keys are not listed
    paged = client.get("/v1/keys", params={"page_size": 1}, headers=h(admin)).json()
    assert [k["key_id"] for k in paged["keys"]] == [admin_id]
    rest = client.get("/v1/keys", params={"page_token": paged["next_page_token"]},
                      headers=h(admin)).json()
    assert [k["key_id"] for k in rest["keys"]] == [writer_id] and not rest.get("next_page_token")
    bad = client.get("/v1/keys", params={"page_token": "%%%"}, headers=h(admin))
    assert bad.status_code == 400 and bad.json()["error"]["details"][-1]["field"] == "page_token"


def test_list_and_revoke_need_the_admin_scope(stack: Stack, client: TestClient) -> None:
    key_id, writer = keys.create_api_key(stack.runtime.db, f"tenant-{uuid.uuid4()}",
                                         frozenset({"events:write", "programs:write"}))
    assert client.get("/v1/keys", headers=h(writer)).status_code == 403
    assert client.post(f"/v1/keys/{key_id}:revoke", json={}, headers=h(writer)).status_code == 403
    assert client.get("/v1/keys").status_code == 401
    assert keys.authenticate(stack.runtime.db, writer) is not None  # nothing was revoked


def test_revoke_is_idempotent_and_only_for_the_tenants_own_keys(stack: Stack,
                                                                client: TestClient) -> None:
    name = f"tenant-{uuid.uuid4()}"
    _, admin = keys.create_api_key(stack.runtime.db, name, frozenset({"admin"}))
    key_id, key = keys.create_api_key(stack.runtime.db, name, frozenset({"events:read"}))
    other_id, other = keys.create_api_key(stack.runtime.db, f"tenant-{uuid.uuid4()}",
                                          frozenset({"events:read"}))

    first = client.post(f"/v1/keys/{key_id}:revoke", json={}, headers=h(admin))
    again = client.post(f"/v1/keys/{key_id}:revoke", headers=h(admin))

    assert first.status_code == 200, first.text
    assert first.json()["key_id"] == key_id and first.json()["revoked_at"]
    assert key not in first.text
    assert (again.status_code, again.json()) == (200, first.json())
    assert keys.authenticate(stack.runtime.db, key) is None
    listed = client.get("/v1/keys", headers=h(admin)).json()["keys"]
    assert [k.get("revoked_at") for k in listed if k["key_id"] == key_id] == [first.json()["revoked_at"]]

    foreign = client.post(f"/v1/keys/{other_id}:revoke", json={}, headers=h(admin))
    unknown = client.post(f"/v1/keys/{uuid.uuid4()}:revoke", json={}, headers=h(admin))
    for response in (foreign, unknown):
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "api_key_not_found"
    assert keys.authenticate(stack.runtime.db, other) is not None  # still works
    malformed = client.post("/v1/keys/not-a-key:revoke", json={}, headers=h(admin))
    assert malformed.status_code == 400
    assert [d["field"] for d in malformed.json()["error"]["details"] if "field" in d] == ["key_id"]


def test_current_key_tells_any_key_its_tenant_and_what_its_scopes_allow(
        stack: Stack, client: TestClient) -> None:
    name = f"tenant-{uuid.uuid4()}"
    tenant_id = keys.ensure_tenant(stack.runtime.db, name)
    key_id, writer = keys.create_api_key(stack.runtime.db, name,
                                         frozenset({"events:write", "participants:read"}))
    _, admin = keys.create_api_key(stack.runtime.db, name, frozenset({"admin"}))

    got = client.get("/v1/keys/current", headers=h(writer))

    assert got.status_code == 200, got.text
    body = got.json()
    assert body["tenant_name"] == name and writer not in got.text
    assert (body["key"]["key_id"], body["key"]["tenant_id"], body["key"]["prefix"]) == (
        key_id, tenant_id, writer[:10])
    assert body["key"]["scopes"] == ["events:write", "participants:read"]
    assert body["allowed_scopes"] == ["events:read", "events:write", "participants:read"]
    everything = client.get("/v1/keys/current", headers=h(admin)).json()["allowed_scopes"]
    assert everything == sorted(auth.KNOWN_SCOPES)
    assert client.get("/v1/keys/current").status_code == 401
    assert client.get("/v1/keys/current", headers=h("sk_" + "x" * 43)).status_code == 401
    keys.revoke_api_key(stack.runtime.db, key_id)
    revoked = client.get("/v1/keys/current", headers=h(writer))
    assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "unauthenticated"


def test_current_key_over_grpc(stack: Stack) -> None:
    key_id, key = keys.create_api_key(stack.runtime.db, f"tenant-{uuid.uuid4()}",
                                      frozenset({"webhooks:read"}))
    got = stack.stub.GetCurrentApiKey(identity_pb2.GetCurrentApiKeyRequest(), metadata=stack.auth(key))
    assert (got.key.key_id, list(got.allowed_scopes)) == (key_id, ["webhooks:read"])
    internal = stack.failure(lambda: stack.stub.GetCurrentApiKey(
        identity_pb2.GetCurrentApiKeyRequest(), metadata=stack.internal()))
    assert internal.code == grpc.StatusCode.UNAUTHENTICATED


def test_revoke_over_grpc(stack: Stack) -> None:
    name = f"tenant-{uuid.uuid4()}"
    _, admin = keys.create_api_key(stack.runtime.db, name, frozenset({"admin"}))
    key_id, _ = keys.create_api_key(stack.runtime.db, name, frozenset({"events:read"}))
    got = stack.stub.RevokeApiKey(identity_pb2.RevokeApiKeyRequest(key_id=key_id),
                                  metadata=stack.auth(admin))
    assert got.key_id == key_id and got.HasField("revoked_at")
    missing = stack.failure(lambda: stack.stub.RevokeApiKey(
        identity_pb2.RevokeApiKeyRequest(key_id=str(uuid.uuid4())), metadata=stack.auth(admin)))
    assert (missing.code, missing.reason) == (grpc.StatusCode.NOT_FOUND, "API_KEY_NOT_FOUND")


# -- a revocation reaches every cache within a second ----------------------------------------

class CachedStack:
    """An identity server whose key cache keeps hits for 30 s (the old default), so only an
    eviction can make a revocation felt within a second."""

    def __init__(self, database_url: str) -> None:
        self.settings = Settings(database_url=database_url, broker_url="stub://", redis_url=None,
                                 internal_token=TOKEN, api_key_cache_seconds=30.0)
        self.broker = StubBroker()
        self.runtime = bootstrap.build(self.settings, self.broker)
        self.server, port = build_server(
            [(self.runtime.service_full_name, self.runtime.register)], "127.0.0.1:0",
            ServiceInterceptor(self.runtime.authenticator, TOKEN))
        self.server.start()
        self.address = f"127.0.0.1:{port}"
        self.listeners: list[revocations.RevocationListener] = []
        self.channels: list[grpc.Channel] = []
        self.listen(self.runtime.authenticator)
        self._clients = _client(self.address)
        self.client = next(self._clients)

    def listen(self, cache: auth.CachedAuthenticator) -> None:
        listener = revocations.RevocationListener(self.settings.database_url, cache.evict).start()
        if listener.enabled:
            assert listener.listening.wait(10), "the revocation listener did not connect"
        self.listeners.append(listener)

    def other_process_cache(self) -> auth.CachedAuthenticator:
        """A key cache as another service's process has it: a client of IdentityService
        with its own cache and its own listener (its own database connection)."""
        channel = clients.channel(self.address)
        self.channels.append(channel)
        cache = auth.CachedAuthenticator(clients.IdentityAuthenticator(channel, TOKEN), ttl=30.0)
        self.listen(cache)
        return cache

    def close(self) -> None:
        self._clients.close()
        for listener in self.listeners:
            listener.stop()
        for channel in self.channels:
            channel.close()
        self.server.stop(2).wait()
        self.runtime.stop()
        self.broker.close()


@pytest.fixture(scope="module")
def cached(database_url: str) -> Iterator[CachedStack]:
    made = CachedStack(database_url)
    yield made
    made.close()


def _within(deadline: float, check: Callable[[], bool]) -> float:
    """Seconds until ``check()`` held; fails when it did not within ``deadline``."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < deadline, "not within the deadline"
        time.sleep(0.01)
    return time.monotonic() - start


def test_a_key_revoked_through_the_api_is_refused_within_a_second(cached: CachedStack) -> None:
    name = f"tenant-{uuid.uuid4()}"
    _, admin = keys.create_api_key(cached.runtime.db, name, frozenset({"admin"}))
    key_id, key = keys.create_api_key(cached.runtime.db, name, frozenset({"admin"}))
    others = [cached.other_process_cache(), cached.other_process_cache()]
    client = cached.client
    assert client.get("/v1/keys", headers=h(key)).status_code == 200  # cached as valid now
    for cache in others:
        assert cache(key) is not None

    revoked = client.post(f"/v1/keys/{key_id}:revoke", json={}, headers=h(admin))

    assert revoked.status_code == 200, revoked.text
    _within(REVOCATION_DEADLINE, lambda: client.get("/v1/keys", headers=h(key)).status_code == 401)
    if cached.settings.database_url.startswith("postgresql"):
        for cache in others:
            _within(REVOCATION_DEADLINE, lambda c=cache: c(key) is None)
    assert client.get("/v1/keys", headers=h(admin)).status_code == 200  # the others stay


@pytest.mark.integration
def test_a_key_revoked_elsewhere_leaves_every_cache_within_a_second(pg_url: str) -> None:
    """The CLI (or another identity replica) revokes straight in the database: only the
    PostgreSQL notification can reach the running processes' caches."""
    stack = CachedStack(pg_url)
    try:
        key_id, key = keys.create_api_key(stack.runtime.db, f"tenant-{uuid.uuid4()}",
                                          frozenset({"events:read"}))
        caches: list[Any] = [stack.runtime.authenticator, stack.other_process_cache(),
                             stack.other_process_cache()]
        for cache in caches:
            assert cache(key) is not None

        assert keys.revoke_api_key(stack.runtime.db, key_id)

        for cache in caches:
            _within(REVOCATION_DEADLINE, lambda c=cache: c(key) is None)
    finally:
        stack.close()


@pytest.mark.integration
def test_the_listener_forgets_every_key_when_it_reconnects(pg_url: str) -> None:
    """Revocations sent while the listening connection was down are lost, so a reconnected
    listener empties its cache rather than trust it."""
    evicted: list[str | None] = []
    listener = revocations.RevocationListener(pg_url, evicted.append, retry_seconds=0.1).start()
    db = Database(pg_url, "identity", pool_size=1)
    try:
        assert listener.listening.wait(10) and evicted == [None]
        with db.transaction() as session:
            session.execute(sa.select(sa.func.pg_terminate_backend(listener.backend_pid)))
        _within(5, lambda: evicted == [None, None] and listener.listening.is_set())
        with db.transaction() as session:
            revocations.announce(session, "k-1")
        _within(REVOCATION_DEADLINE, lambda: evicted == [None, None, "k-1"])
    finally:
        db.dispose()
        listener.stop()
