"""The queue contract: every queue, every actor and the message each actor takes.

Services hand work to each other by queue and actor name, never by importing each other's
code, so those names are part of the contract between them, like the protos. They live here
once. A producer sends a :class:`Route`'s message (directly with :func:`send`, or through its
outbox with :func:`outbox_row`), and a consumer declares a handler
for the decoded message with :func:`declare`.

Notifications for partners always travel through the producing service's outbox, committed
with the data they announce: one delivery guarantee for every service.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import dramatiq
from accrual.messages.v1 import messages_pb2
from google.protobuf.message import Message

from accrual_platform import outbox, queue

M = TypeVar("M", bound=Message)

RULES_QUEUE = queue.RULES_QUEUE
INGEST_QUEUE = queue.INGEST_QUEUE
NOTIFY_QUEUE = queue.NOTIFY_QUEUE


@dataclass(frozen=True)
class Route(Generic[M]):
    """One actor of one queue, and the message it takes."""

    queue: str
    actor: str
    message: type[M]

    @property
    def key(self) -> tuple[str, str]:
        """(queue, actor): how the outbox relay's mergers name a route."""
        return self.queue, self.actor

    def decode(self, payload: str | dict[str, Any]) -> M:
        """The message of a payload of this route; :class:`queue.MalformedMessage` if it is not one."""
        return queue.decode(payload, self.message)


#: Ingest announces accepted events to the rules worker (through ingest's outbox).
EVALUATE_EVENTS: Route[messages_pb2.EventsAccepted] = Route(
    RULES_QUEUE, "evaluate_events", messages_pb2.EventsAccepted)
#: Identity announces a merge so that rules moves the ledger (through identity's outbox).
MERGE_LEDGERS: Route[messages_pb2.ParticipantsMerged] = Route(
    RULES_QUEUE, "merge_ledgers", messages_pb2.ParticipantsMerged)
#: The rules worker reports each event's outcome back to ingest.
RECORD_OUTCOMES: Route[messages_pb2.EventOutcomes] = Route(
    INGEST_QUEUE, "record_outcomes", messages_pb2.EventOutcomes)
#: Any service's facts for partners' webhooks (always through the producer's outbox).
PUBLISH_NOTIFICATIONS: Route[messages_pb2.Notifications] = Route(
    NOTIFY_QUEUE, "publish_notifications", messages_pb2.Notifications)
#: Notify's own scheduling of one delivery attempt.
DELIVER_WEBHOOK: Route[messages_pb2.DeliveryRequested] = Route(
    NOTIFY_QUEUE, "deliver_webhook", messages_pb2.DeliveryRequested)

def merging(route: Route[M], repeated: str, *, group_by: Sequence[str] = (),
            limit: int = 200) -> tuple[tuple[str, str], outbox.Merger]:
    """An outbox relay merger for ``route`` (see :func:`outbox.merge_messages`), keyed as the
    relay looks it up and reading the message type the route takes."""
    return route.key, outbox.merge_messages(route.message, repeated, group_by=group_by, limit=limit)


def _check(route: Route[M], message: Message) -> None:
    if not isinstance(message, route.message):
        raise TypeError(f"{route.actor} takes {route.message.DESCRIPTOR.full_name}, "
                        f"not {message.DESCRIPTOR.full_name}")


def outbox_row(route: Route[M], message: M) -> dict[str, Any]:
    """The outbox row that sends ``message`` to ``route``'s actor once its transaction commits."""
    _check(route, message)
    return outbox.outbox_row(route.queue, route.actor, message)


def send(broker: dramatiq.Broker, route: Route[M], message: M, *, delay_ms: int | None = None) -> None:
    """Enqueue ``message`` for ``route``'s actor now (not transactional: use the outbox for
    messages that announce committed data)."""
    _check(route, message)
    queue.enqueue(broker, route.queue, route.actor, message, delay_ms=delay_ms)


def declare(broker: dramatiq.Broker, route: Route[M], handler: Callable[[M], None],
            **options: Any) -> dramatiq.Actor[Any, Any]:
    """Declare ``route``'s actor on ``broker``: it decodes each payload and calls ``handler``
    with the message (a payload that is not one is dead-lettered, see
    :func:`queue.declare_actor`)."""

    def run(payload: str | dict[str, Any]) -> None:
        handler(route.decode(payload))

    run.__name__ = route.actor
    run.__doc__ = handler.__doc__
    return queue.declare_actor(broker, run, queue=route.queue, name=route.actor, **options)
