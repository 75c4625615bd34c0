"""Keys, tokens and secrets never appear in a log line or a traceback (SPEC 8, issue 18).

The whole suite runs in this process as ``accrual run`` hosts it (SQLite, in-process broker,
the REST gateway in front), logging at DEBUG in each format. Requests carry API keys in
``X-API-Key`` and ``Authorization: Bearer``, over REST and gRPC, through success, 401, 403
and two failures that log a traceback (one in a service, one in the gateway, the first with
the key in the exception's own message). Then everything logged, and everything written to
the process's stdout and stderr, is searched for the keys and the internal token.
"""

from __future__ import annotations

import contextlib
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
from accrual_gateway import codec as shim
from accrual_platform import auth
from accrual_platform.logging import configure_logging
from accrual_rules import service as rules_service

from tests.inprocess import InProcessSuite, in_process_suite


class Suite:
    def __init__(self, inner: InProcessSuite, admin_key: str, reader_key: str) -> None:
        self.settings, self.client, self.address = inner.settings, inner.client, inner.address
        self.admin_key, self.reader_key = admin_key, reader_key


@pytest.fixture(params=["console", "json"])
def logged(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[tuple[Suite, io.StringIO]]:
    captured = io.StringIO()
    root = logging.getLogger()
    token = f"itok-{uuid.uuid4().hex}"
    try:
        with contextlib.ExitStack() as stack:
            # logging is configured first, as the CLI does, so start-up is captured too
            configure_logging("suite", fmt=request.param, level="DEBUG", secrets=[token])
            handler = root.handlers[0]
            assert isinstance(handler, logging.StreamHandler)
            handler.setStream(captured)
            inner = stack.enter_context(in_process_suite(tmp_path, request.param, token))
            admin_key = inner.new_key("logs", frozenset({auth.ADMIN_SCOPE}))
            reader_key = inner.new_key("logs", frozenset({"events:read"}))
            yield Suite(inner, admin_key, reader_key), captured
    finally:
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
