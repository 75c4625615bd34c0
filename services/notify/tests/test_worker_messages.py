"""Notify's actors: a message they cannot read is dead-lettered, not retried, and every line
of a message's work names the service, the message, the actor and the tenant."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import dramatiq
import pytest
import structlog
from accrual_platform import contract, queue
from dramatiq.brokers.stub import StubBroker
from structlog.testing import capture_logs

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import Harness, Receiver

    HarnessFactory = Callable[..., Harness]

#: Today's format gone wrong: not base64 (binascii.Error) and base64 of a corrupt wire form
#: (protobuf's DecodeError), which the actors used to retry 60 times; and proto-JSON that
#: does not parse (json_format.ParseError).
MALFORMED: dict[str, Any] = {
    "not_base64": "%%% not base64 %%%",
    "corrupt_wire_form": base64.b64encode(b"\x0a\x05ab").decode(),
    "bad_proto_json": {"notifications": "not a list", "delivery_id": ["x"]},
}


@pytest.mark.parametrize("actor", [contract.PUBLISH_NOTIFICATIONS.actor, contract.DELIVER_WEBHOOK.actor])
@pytest.mark.parametrize("payload", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_message_is_dead_lettered_at_once(
        harness_factory: HarnessFactory, actor: str, payload: Any) -> None:
    h = harness_factory()
    broker = h.broker
    assert isinstance(broker, StubBroker)
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        message = broker.enqueue(dramatiq.Message(queue_name=queue.NOTIFY_QUEUE, actor_name=actor,
                                                  args=(payload,), kwargs={}, options={}))
        broker.join(queue.NOTIFY_QUEUE, fail_fast=False)
    [dead] = broker.dead_letters
    assert dead.message_id == message.message_id and "retries" not in dead.options
    [line] = [e for e in logs if e["event"] == "message_malformed"]
    assert (line["service"], line["actor"], line["message_id"]) == ("notify", actor, message.message_id)


def test_each_messages_lines_carry_its_context(harness_factory: HarnessFactory,
                                               receiver: Receiver) -> None:
    h = harness_factory()
    endpoint_id = h.endpoint(receiver)
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        h.publish(h.notification())
        h.wait_final(endpoint_id)
    published = next(e for e in logs if e["event"] == "notifications_published")
    attempted = next(e for e in logs if e["event"] == "webhook_attempted")
    for line, actor in ((published, contract.PUBLISH_NOTIFICATIONS.actor),
                        (attempted, contract.DELIVER_WEBHOOK.actor)):
        assert (line["service"], line["actor"], line["tenant_id"]) == ("notify", actor, h.tenant)
        assert line["message_id"]
    assert published["message_id"] != attempted["message_id"]
