"""The rules worker's log context: each message's lines name the service, the message and the
tenant, and every line about one event (the isolating path's, its failure's) names the event."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dramatiq
import pytest
import structlog
from accrual.messages.v1 import messages_pb2
from accrual.rules.v1 import rules_pb2
from accrual_platform import queue
from dramatiq.brokers.stub import StubBroker
from structlog.testing import capture_logs

if TYPE_CHECKING:
    from conftest import Stack


def test_lines_about_one_event_name_it(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    tenant, md = stack.tenant()
    pid = stack.stub.CreateProgram(rules_pb2.CreateProgramRequest(name="Demo"), metadata=md).program_id
    stack.stub.CreateRule(rules_pb2.CreateRuleRequest(program_id=pid, name="amount",
                                                      formula="properties.amount * 1"), metadata=md)
    events = [stack.event(pid, data={"amount": n}) for n in (1, 2, 3)]
    poisoned = events[1]
    real = stack.processor._apply
    probe = structlog.get_logger("test.probe")

    def apply(session: Any, tenant_id: str, item: Any, *args: Any) -> None:
        probe.info("applying", item=item.event.event_id)  # any line of one event's work
        if item.event.event_id == poisoned:
            raise KeyError("a bug")
        real(session, tenant_id, item, *args)

    monkeypatch.setattr(stack.processor, "_apply", apply)
    monkeypatch.setattr(stack.runtime, "_processor", stack.processor)
    broker = StubBroker()
    stack.runtime.declare_actors(broker)
    worker = dramatiq.Worker(broker, worker_timeout=50)
    worker.start()
    try:
        with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
            message = broker.enqueue(dramatiq.Message(
                queue_name=queue.RULES_QUEUE, actor_name="evaluate_events", kwargs={}, options={},
                args=(queue.encode(messages_pb2.EventsAccepted(tenant_id=tenant, event_ids=events)),)))
            broker.join(queue.RULES_QUEUE, fail_fast=True)
    finally:
        worker.stop()
        broker.close()
    stack.drain_outcomes()
    mine = [e for e in logs if e.get("message_id") == message.message_id]
    assert {e["event"] for e in mine} >= {"applying", "batch_failed_isolating", "event_processing_failed"}
    for line in mine:
        assert (line["service"], line["actor"], line["tenant_id"]) == ("rules", "evaluate_events", tenant)
    assert all("event_id" not in e for e in mine if e["event"] == "batch_failed_isolating")
    [failed] = [e for e in mine if e["event"] == "event_processing_failed"]
    assert failed["event_id"] == poisoned
    alone = [e for e in mine if e["event"] == "applying" and "event_id" in e]
    assert alone and all(e["event_id"] == e["item"] for e in alone)
    assert poisoned in {e["event_id"] for e in alone}
