"""A queue message that cannot be read, whatever the way, is dead-lettered at once with an
error line naming the message, instead of being retried 60 times; other failures still retry."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
import structlog
from accrual.messages.v1 import messages_pb2
from accrual_platform import queue
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Retries
from structlog.testing import capture_logs

ACTOR = "evaluate_events"

#: Every way a payload can be unreadable, each with the error decoding it raised before.
MALFORMED: dict[str, Any] = {
    "not_base64": "not base64 of a message!",  # binascii.Error
    "not_ascii": "ÿÿÿÿ",  # ValueError
    "corrupt_wire_form": base64.b64encode(b"\x0a\x05ab").decode(),  # protobuf DecodeError
    "string_not_utf8": base64.b64encode(b"\x12\x01\xff").decode(),  # protobuf DecodeError
    "not_text": 12,  # TypeError
    "bad_proto_json": {"event_ids": "not a list"},  # json_format.ParseError
}


def test_decode_raises_one_error_for_every_malformed_payload() -> None:
    for payload in MALFORMED.values():
        with pytest.raises(queue.MalformedMessage, match=r"accrual\.messages\.v1\.EventsAccepted"):
            queue.decode(payload, messages_pb2.EventsAccepted)


class Harness:
    def __init__(self, broker: dramatiq.Broker) -> None:
        self.broker = broker
        self.calls: list[list[str]] = []
        self.fail_first = 0

        def evaluate_events(payload: str | dict[str, Any]) -> None:
            msg = queue.decode(payload, messages_pb2.EventsAccepted)
            self.calls.append(list(msg.event_ids))
            if self.fail_first:
                self.fail_first -= 1
                raise ConnectionError("database restarting")

        # backoff of milliseconds so a retry, if any, happens within the test
        queue.declare_actor(broker, evaluate_events, queue=queue.RULES_QUEUE, name=ACTOR,
                            min_backoff=1, max_backoff=5)

    def send(self, *args: Any) -> dramatiq.Message[Any]:
        message = dramatiq.Message(queue_name=queue.RULES_QUEUE, actor_name=ACTOR, args=args,
                                   kwargs={}, options={})
        return self.broker.enqueue(message)

    def drain(self) -> None:
        self.broker.join(queue.RULES_QUEUE, fail_fast=False)
        self.broker.join(queue.RULES_QUEUE, fail_fast=False)  # retries land after the first join


@pytest.fixture
def harness() -> Iterator[Harness]:
    broker = queue.make_broker("stub://")
    assert isinstance(broker, StubBroker)
    # the suite's brokers keep Dramatiq's default middleware, Retries among them
    assert any(isinstance(m, Retries) for m in broker.middleware)
    h = Harness(broker)
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=20)
    worker.start()
    yield h
    worker.stop()
    broker.close()


@pytest.mark.parametrize("payload", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_payload_is_dead_lettered_not_retried(harness: Harness, payload: Any) -> None:
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        message = harness.send(payload)
        harness.drain()
    assert harness.calls == []
    assert isinstance(harness.broker, StubBroker)
    [dead] = harness.broker.dead_letters
    assert dead.message_id == message.message_id
    assert "retries" not in dead.options  # failed on the first delivery
    [line] = [e for e in logs if e["event"] == "message_malformed"]
    assert line["log_level"] == "error"
    assert (line["message_id"], line["actor"], line["service"]) == (message.message_id, ACTOR, "rules")
    assert "EventsAccepted" in line["error"]


@pytest.mark.parametrize("args", [(), ("a", "b")], ids=["no_payload", "two_payloads"])
def test_arguments_that_do_not_fit_the_actor_are_dead_lettered(harness: Harness, args: tuple[Any, ...]) -> None:
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        harness.send(*args)
        harness.drain()
    assert isinstance(harness.broker, StubBroker)
    assert len(harness.broker.dead_letters) == 1
    assert "retries" not in harness.broker.dead_letters[0].options
    [line] = [e for e in logs if e["event"] == "message_malformed"]
    assert line["error"].startswith(f"arguments do not fit actor {ACTOR}")


def test_other_failures_are_still_retried(harness: Harness) -> None:
    harness.fail_first = 2
    harness.send(queue.encode(messages_pb2.EventsAccepted(tenant_id="t", event_ids=["e1"])))
    harness.drain()
    assert harness.calls == [["e1"]] * 3
    assert isinstance(harness.broker, StubBroker)
    assert harness.broker.dead_letters == []
