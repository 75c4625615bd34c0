"""SubmitEvent waiting for its outcome (issue 20: ``Prefer: wait=N`` / ``wait_seconds``).

The outcome is recorded by a stand-in worker thread through ``record_outcomes`` (what the
ingest worker's actor calls), or not at all (a paused worker). On PostgreSQL a waiter is
also woken from another connection by the recording transaction's NOTIFY.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from accrual.ingest.v1 import ingest_pb2
from accrual.messages.v1 import messages_pb2
from accrual_ingest import storage, waiting
from accrual_ingest.service import _consequences
from accrual_ingest.storage import IngestStore
from accrual_ingest.waiting import Waiters
from accrual_platform import listen
from accrual_platform.db import Database, utcnow

RULE = str(uuid.uuid4())


def body(program: str) -> dict[str, Any]:
    return {"program_id": program, "idempotency_key": f"order-{uuid.uuid4()}", "external_id": "user_abc123",
            "event_type": "purchase", "event_timestamp": "2024-01-15T10:30:00Z", "event_data": {"amount": 125}}


def outcome(tenant: str, event_id: str) -> messages_pb2.EventOutcome:
    o = messages_pb2.EventOutcome(tenant_id=tenant, event_id=event_id, status=messages_pb2.OUTCOME_STATUS_COMPLETED,
                                  participant_id=str(uuid.uuid4()), points_awarded=125)
    o.rule_evaluations.add(rule_id=RULE, rule_version=1, rule_name="1 point per dollar", matched=True,
                           points=125, recipient_id=o.participant_id)
    return o


class Worker:
    """Records a COMPLETED outcome for each event the tenant's calls announce, after
    ``delay`` seconds; ``checked_out`` is the pool's checked-out connections seen just
    before recording (while the call waits)."""

    def __init__(self, stack: Any, tenant: str, delay: float = 0.3) -> None:
        self.stack, self.tenant, self.delay = stack, tenant, delay
        self.done: set[str] = set()
        self.checked_out: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Worker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            for event_id in set(self.stack.accepted_messages(self.tenant)) - self.done:
                time.sleep(self.delay)
                self.checked_out.append(self.stack.runtime.db.engine.pool.checkedout())
                self.stack.runtime.service.record_outcomes([outcome(self.tenant, event_id)])
                self.done.add(event_id)


def test_rest_wait_answers_the_completed_event(stack: Any) -> None:
    key, tenant = stack.tenant(frozenset({"events:write", "events:read"}))
    program = stack.program(tenant)
    sent = body(program)
    with Worker(stack, tenant) as worker, stack.http(key) as c:
        started = time.monotonic()
        r = c.post("/v1/events", json=sent, headers={"Prefer": "wait=5"})
        elapsed = time.monotonic() - started
        assert r.status_code == 200, r.text
        event = r.json()
        assert event["status"] == "COMPLETED", event
        assert event["points_awarded"] == 125
        assert [e["rule_id"] for e in event["rule_evaluations"]] == [RULE]
        assert r.headers["Preference-Applied"] == "wait=5"
        assert elapsed < 4, elapsed
        # While the call waited, it held no database connection.
        assert worker.checked_out == [0]
        # A deduplicated retry with wait answers the finished event at once.
        again = c.post("/v1/events", json=sent, headers={"Prefer": "wait=5"})
        assert again.json()["status"] == "COMPLETED" and again.json()["deduplicated"] is True
        assert again.headers["Preference-Applied"] == "wait=5"


def test_rest_wait_answers_pending_when_the_worker_is_slow(stack: Any) -> None:
    key, tenant = stack.tenant()
    program = stack.program(tenant)
    with stack.http(key) as c:
        started = time.monotonic()
        r = c.post("/v1/events", json=body(program), headers={"Prefer": "respond-async, wait=1"})
        elapsed = time.monotonic() - started
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "PENDING"
        assert r.headers["Preference-Applied"] == "wait=1"
        assert 0.9 <= elapsed < 5, elapsed
        plain = c.post("/v1/events", json=body(program))
        assert plain.json()["status"] == "PENDING" and "Preference-Applied" not in plain.headers
        malformed = c.post("/v1/events", json=body(program), headers={"Prefer": "wait=soon"})
        assert malformed.status_code == 200 and "Preference-Applied" not in malformed.headers


def test_grpc_wait_seconds(stack: Any) -> None:
    key, tenant = stack.tenant()
    program = stack.program(tenant)
    request = ingest_pb2.SubmitEventRequest(program_id=program, idempotency_key=f"grpc-{uuid.uuid4()}",
                                            external_id="grpc_user", event_type="purchase", wait_seconds=5)
    with Worker(stack, tenant):
        event, call = stack.stub.SubmitEvent.with_call(request, metadata=stack.md(key), timeout=20)
    assert event.status == ingest_pb2.EVENT_STATUS_COMPLETED
    assert event.points_awarded == "125" and len(event.rule_evaluations) == 1
    assert ("preference-applied", "wait=5") in call.initial_metadata()


def test_a_cancelled_call_stops_waiting(stack: Any) -> None:
    key, tenant = stack.tenant()
    request = ingest_pb2.SubmitEventRequest(program_id=stack.program(tenant), idempotency_key=str(uuid.uuid4()),
                                            external_id="u", event_type="purchase", wait_seconds=10)
    with pytest.raises(grpc.RpcError) as failure:
        stack.stub.SubmitEvent(request, metadata=stack.md(key), timeout=1)
    assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    deadline = time.monotonic() + 5
    while stack.runtime.waiters.count:
        assert time.monotonic() < deadline, "the waiting thread outlived its call"
        time.sleep(0.05)


def test_waits_beyond_the_bound_are_answered_at_once(stack: Any) -> None:
    key, tenant = stack.tenant()
    program = stack.program(tenant)
    service = stack.runtime.service
    bounded, service.waiters = service.waiters, Waiters(0)
    try:
        with stack.http(key) as c:
            started = time.monotonic()
            r = c.post("/v1/events", json=body(program), headers={"Prefer": "wait=5"})
            assert time.monotonic() - started < 4
    finally:
        service.waiters = bounded
    assert r.json()["status"] == "PENDING" and "Preference-Applied" not in r.headers


def test_payloads_fit_postgres_limit() -> None:
    ids = [str(uuid.uuid4()) for _ in range(1000)]
    chunks = listen.joined(ids)
    assert len(chunks) > 1 and all(len(p.encode()) < 8000 for p in chunks)
    assert [i for p in chunks for i in p.split(",")] == ids


@pytest.fixture
def listening(pg_url: str) -> Iterator[Waiters]:
    """Waiters fed only by a PostgreSQL listener of their own (another connection than the
    recording one, as in another process)."""
    waiters = Waiters(10)
    listener = listen.Listener(pg_url, {waiting.CHANNEL: waiters.on_notice}).start()
    try:
        assert listener.listening.wait(10), "the listener did not connect"
        yield waiters
    finally:
        listener.stop()


@pytest.mark.integration
def test_notify_wakes_a_waiter_of_another_connection(pg_stack: Any, listening: Waiters) -> None:
    key, tenant = pg_stack.tenant()
    program = pg_stack.program(tenant)
    with pg_stack.http(key) as c:
        events = [c.post("/v1/events", json=body(program)).json()["event_id"] for _ in range(2)]
    with listening.waiter(events[0]) as first, listening.waiter(events[1]) as second:
        assert first is not None and second is not None
        # A separate store: its process's own waiters are not these.
        db = Database(pg_stack.runtime.db.engine.url.render_as_string(hide_password=False), storage.SCHEMA)
        try:
            recorded = IngestStore(db).record_outcomes([outcome(tenant, events[0])], utcnow(), _consequences)
        finally:
            db.dispose()
        assert recorded == [events[0]]
        assert first.wait(5), "the NOTIFY did not reach the waiter"
        assert not second.is_set()
