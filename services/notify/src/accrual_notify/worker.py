"""Dramatiq actors of the ``notify`` queue.

Thin on purpose: decode the payload, bind the log context, hand on. A payload that cannot
be decoded is dead-lettered by :func:`accrual_platform.queue.declare_actor`, not retried.
Other services enqueue ``publish_notifications`` by name, so that name is part of the contract.
"""

from __future__ import annotations

from typing import Any

import dramatiq
import structlog
from accrual.messages.v1 import messages_pb2
from accrual_platform import queue
from accrual_platform.logging import bind_subject

from accrual_notify.delivery import DELIVER_ACTOR, PUBLISH_ACTOR, Deliverer, Publisher


def declare_actors(broker: dramatiq.Broker, publisher: Publisher, deliverer: Deliverer) -> None:
    def publish_notifications(payload: str | dict[str, Any]) -> None:
        """Store facts (once each) and schedule one delivery per subscribed endpoint."""
        notes = queue.decode(payload, messages_pb2.Notifications)
        bind_subject(tenant_ids=(n.tenant_id for n in notes.notifications))
        publisher.publish(list(notes.notifications))

    def deliver_webhook(payload: str | dict[str, Any]) -> None:
        """One attempt of one delivery; retries are new delayed messages, not actor retries."""
        request = queue.decode(payload, messages_pb2.DeliveryRequested)
        structlog.contextvars.bind_contextvars(tenant_id=request.tenant_id,
                                               delivery_id=request.delivery_id)
        deliverer.deliver(request.tenant_id, request.delivery_id)

    queue.declare_actor(broker, publish_notifications, queue=queue.NOTIFY_QUEUE,
                        name=PUBLISH_ACTOR)
    queue.declare_actor(broker, deliver_webhook, queue=queue.NOTIFY_QUEUE, name=DELIVER_ACTOR)
