"""Keys, tokens and secrets never appear in a log line or a traceback (SPEC 8, issue 18).

The whole suite runs in this process as ``accrual run`` hosts it (SQLite, in-process broker,
the REST gateway in front), logging at DEBUG in each format. Requests carry API keys in
``X-API-Key`` and ``Authorization: Bearer``, over REST and gRPC, through success, 401, 403
and two failures that log a traceback (one in a service, one in the gateway, the first with
the key in the exception's own message). Then everything logged, and everything written to
the process's stdout and stderr, is searched for the keys and the internal token.
"""

from __future__ import annotations

import io
import logging
import pathlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from accrual.rules.v1 import rules_pb2, rules_pb2_grpc
from accrual_gateway import shim
from accrual_gateway.app import create_app
from accrual_identity import keys
from accrual_platform import auth, queue
from accrual_platform.db import Database
from accrual_platform.logging import configure_logging
from accrual_platform.settings import Settings
from accrual_platform.testing import free_port
from accrual_rules import service as rules_service
from accrual_suite import hosting
from starlette.testclient import TestClient

CHANNELS = {"ingest": "accrual.ingest.v1.IngestService",
            "identity": "accrual.identity.v1.IdentityService",
            "rules": "accrual.rules.v1.RulesService",
            "notify": "accrual.notify.v1.NotifyService"}


class Suite:
    def __init__(self, settings: Settings, client: TestClient, admin_key: str, reader_key: str,
                 address: str) -> None:
        self.settings, self.client, self.address = settings, client, address
        self.admin_key, self.reader_key = admin_key, reader_key


@pytest.fixture(params=["console", "json"])
def logged(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[tuple[Suite, io.StringIO]]:
    captured = io.StringIO()
    port = free_port()
    address = f"127.0.0.1:{port}"
    settings = Settings(database_url=f"sqlite:///{tmp_path}/{{schema}}.db", broker_url="stub://",
                        redis_url=None, internal_token=f"itok-{uuid.uuid4().hex}",
                        peers={n: address for n in hosting.SERVICES}, grpc_port=port,
                        webhook_allow_private=True, log_format=request.param)
    configure_logging("suite", fmt=request.param, level="DEBUG", secrets=[settings.internal_token])
    root = logging.getLogger()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(captured)
    hosting.migrate(settings)
    broker = hosting.prepare_broker(queue.make_broker(settings.broker_url))
    runtimes, authenticator = hosting.build_runtimes(settings, broker, hosting.SERVICES)
    server, _ = hosting.start_server(settings, runtimes, authenticator)
    worker = hosting.start_worker(settings, broker, runtimes)
    for r in runtimes:
        r.start()
    db = Database(settings.database_url, "identity", pool_size=1)
    try:
        _, admin_key = keys.create_api_key(db, "logs", frozenset({auth.ADMIN_SCOPE}))
        _, reader_key = keys.create_api_key(db, "logs", frozenset({"events:read"}))
    finally:
        db.dispose()
    app = create_app({full: address for full in CHANNELS.values()})
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Suite(settings, client, admin_key, reader_key, address), captured
    finally:
        server.stop(5).wait()
        worker.stop()
        for r in runtimes:
            r.stop()
        broker.close()
        root.setLevel(logging.INFO)


def test_no_key_or_token_reaches_the_logs(logged: tuple[Suite, io.StringIO],
                                          monkeypatch: pytest.MonkeyPatch,
                                          capfd: pytest.CaptureFixture[str]) -> None:
    suite, captured = logged
    c = suite.client
    admin = {"X-API-Key": suite.admin_key}
    bearer = {"Authorization": f"Bearer {suite.admin_key}"}
    unknown_key = auth.new_api_key()

    pid = c.post("/v1/programs", json={"name": "Logs"}, headers=admin).json()["program_id"]
    assert c.post(f"/v1/programs/{pid}/rules", headers=bearer, json={
        "name": "1 per unit", "event_type": "purchase", "formula": "properties.amount * 1"}).status_code == 200
    submitted = c.post("/v1/events", headers=bearer, json={
        "program_id": pid, "idempotency_key": "o-1", "external_id": "u-1", "event_type": "purchase",
        "event_data": {"amount": 3}})
    assert submitted.status_code == 200, submitted.text
    event_id = submitted.json()["event_id"]
    deadline = time.time() + 30
    while c.get(f"/v1/events/{event_id}", headers=admin).json()["status"] != "COMPLETED":
        assert time.time() < deadline, "the event never completed"
        time.sleep(0.1)
    assert c.get("/v1/programs", headers={"X-API-Key": unknown_key}).status_code == 401
    assert c.get("/v1/programs", headers={"Authorization": f"Bearer {unknown_key}"}).status_code == 401
    assert c.post("/v1/programs", json={"name": "x"},
                  headers={"X-API-Key": suite.reader_key}).status_code == 403

    # a failure inside a service, logged with its traceback; its message even holds the key
    def broken_list(self: Any, *args: Any) -> Any:
        raise RuntimeError(f"storage broke while serving {suite.admin_key}")

    monkeypatch.setattr(rules_service.RulesService, "list_programs", broken_list)
    assert c.get("/v1/programs", headers=admin).status_code == 500
    with grpc.insecure_channel(suite.address) as ch, pytest.raises(grpc.RpcError) as failed:
        rules_pb2_grpc.RulesServiceStub(ch).ListPrograms(
            rules_pb2.ListProgramsRequest(), metadata=[("x-api-key", suite.admin_key)], timeout=10)
    assert failed.value.code() == grpc.StatusCode.INTERNAL

    # a failure inside the gateway itself, while the request's headers are in its frames
    def broken_query(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("query parsing broke")

    monkeypatch.setattr(shim, "query_to_dict", broken_query)
    assert c.get("/v1/events", headers=bearer, params={"status": "PENDING"}).status_code == 500

    out, err = capfd.readouterr()
    text = "\n".join((captured.getvalue(), out, err))
    # the logs did record the requests and both tracebacks, so the search below means something
    assert "rpc_failed" in text and "http_request_failed" in text
    assert text.count("Traceback (most recent call last)") >= 3
    assert "storage broke while serving" in text and "query parsing broke" in text
    assert "rpc_done" in text and "evaluate_events" in text and "record_outcomes" in text
    for secret in (suite.admin_key, suite.reader_key, unknown_key, suite.settings.internal_token):
        assert secret not in text
        # not even a large piece of it
        assert secret[3:20] not in text
