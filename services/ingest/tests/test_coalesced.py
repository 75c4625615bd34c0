"""Concurrent single-event REST submissions go upstream coalesced (CoalescedSubmitEvents), and
each is still admitted and answered exactly as if it had been sent alone: its own key, scope,
rate limit, validation, deduplication and conflict."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import grpc
import httpx
import pytest
from accrual.ingest.v1 import ingest_pb2
from google.rpc import code_pb2

if TYPE_CHECKING:
    from conftest import Stack

PROGRAM = str(uuid.uuid4())
TOKEN = "test-internal-token"  # the suite token of conftest (not importable in importlib mode)


def body(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"program_id": PROGRAM, "idempotency_key": f"order-{uuid.uuid4()}",
                            "external_id": "user_abc123", "event_type": "purchase", "event_data": {"amount": 125}}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not ...}


@pytest.mark.integration
def test_a_concurrent_burst_answers_each_call_as_if_alone(pg_stack: Stack) -> None:
    key_a, tenant_a = pg_stack.tenant()
    key_b, tenant_b = pg_stack.tenant()
    reader = pg_stack.keys.create(tenant_a, frozenset({"events:read"}))
    taken = body()
    with pg_stack.http(key_a) as c:
        assert c.post("/v1/events", json=taken).status_code == 200
    calls: list[tuple[str | None, dict[str, Any], int, str]] = []
    for _ in range(12):
        calls.append((key_a, body(), 200, ""))
        calls.append((key_b, body(), 200, ""))
    calls += [
        ("sk_test_unknown", body(), 401, "unauthenticated"),
        (None, body(), 401, "unauthenticated"),
        (reader, body(), 403, "permission_denied"),
        (key_a, body(participant_id="not-a-uuid", external_id=...), 400, "invalid_argument"),
        (key_a, {**taken, "event_data": {"amount": 126}}, 409, "idempotency_conflict"),
        (key_a, dict(taken), 200, ""),  # a retry of the same payload: the original event
        (key_b, dict(taken), 200, ""),  # the same key in another tenant is another event
    ]
    gate = threading.Barrier(len(calls))

    def send(call: tuple[str | None, dict[str, Any], int, str]) -> httpx.Response:
        key, sent, _, _ = call
        with pg_stack.http(key) as c:
            gate.wait()
            return c.post("/v1/events", json=sent)

    with ThreadPoolExecutor(len(calls)) as pool:
        answers = list(pool.map(send, calls))
    for (_, sent, status, code), answer in zip(calls, answers, strict=True):
        assert answer.status_code == status, (sent, answer.text)
        assert answer.headers["X-Request-Id"]
        if code:
            error = answer.json()["error"]
            assert error["code"] == code and error["request_id"] == answer.headers["X-Request-Id"]
        else:
            event = answer.json()
            assert event["idempotency_key"] == sent["idempotency_key"] and event["status"] == "PENDING"
    by_key = {(k, s["idempotency_key"]): a.json() for (k, s, st, _), a in zip(calls, answers, strict=True)
              if st == 200}
    assert by_key[(key_a, taken["idempotency_key"])]["deduplicated"] is True
    assert by_key[(key_b, taken["idempotency_key"])]["deduplicated"] is False
    bad = answers[calls.index(next(c for c in calls if c[3] == "invalid_argument"))].json()["error"]
    assert [d["field"] for d in bad["details"] if "field" in d] == ["participant_id"]
    assert pg_stack.count(tenant_a) == 1 + 12
    assert pg_stack.count(tenant_b) == 12 + 1


def _carried(key: str | None, **metadata: str) -> ingest_pb2.CoalescedSubmitEventCall:
    call = ingest_pb2.CoalescedSubmitEventCall(request=ingest_pb2.SubmitEventRequest(
        program_id=PROGRAM, idempotency_key=uuid.uuid4().hex, external_id="u1"))
    if key:
        call.metadata["x-api-key"] = key
    call.metadata.update(metadata)
    return call


def test_the_carrying_call_admits_each_call_by_its_own_metadata(stack: Stack) -> None:
    """The carrying RPC needs no key of its own, and grants nothing: a carried call is admitted
    only by the caller credentials it carries, never by an internal token smuggled into it."""
    key, tenant = stack.tenant()

    response = stack.stub.CoalescedSubmitEvents(ingest_pb2.CoalescedSubmitEventsRequest(calls=[
        _carried(key, **{"x-request-id": "req_1"}),
        _carried(None, **{"x-internal-token": TOKEN, "x-tenant-id": tenant}),
        _carried(None),
    ]))
    ok, smuggled, anonymous = response.results
    assert ok.WhichOneof("result") == "response" and ok.response.status == ingest_pb2.EVENT_STATUS_PENDING
    for refused in (smuggled, anonymous):
        assert refused.WhichOneof("result") == "status"
        assert refused.status.code == code_pb2.UNAUTHENTICATED
    assert stack.count(tenant) == 1


def test_an_internal_caller_cannot_submit_through_the_carrier_without_keys(stack: Stack) -> None:
    _, tenant = stack.tenant()

    response = stack.stub.CoalescedSubmitEvents(
        ingest_pb2.CoalescedSubmitEventsRequest(calls=[_carried(None)]),
        metadata=[("x-internal-token", TOKEN), ("x-tenant-id", tenant)])
    assert response.results[0].status.code == code_pb2.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError):  # and a plain SubmitEvent without a key stays refused
        stack.stub.SubmitEvent(_carried(None).request)
    assert stack.count(tenant) == 0


def test_the_carrier_takes_at_most_a_batch_of_calls(stack: Stack) -> None:
    key, tenant = stack.tenant()
    with pytest.raises(grpc.RpcError) as refused:
        stack.stub.CoalescedSubmitEvents(ingest_pb2.CoalescedSubmitEventsRequest(
            calls=[_carried(key) for _ in range(1001)]))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert stack.count(tenant) == 0
