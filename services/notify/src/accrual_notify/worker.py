"""Dramatiq actors of the ``notify`` queue.

Thin on purpose: decode the payload, bind the log context, hand on. A payload that cannot
be decoded is dead-lettered by :func:`accrual_platform.contract.declare`, not retried.
The actors' names and messages are part of the queue contract (:mod:`accrual_platform.contract`).
"""

from __future__ import annotations

import dramatiq
import structlog
from accrual.messages.v1 import messages_pb2
from accrual_platform import contract
from accrual_platform.logging import bind_subject

from accrual_notify.delivery import Deliverer, Publisher


def declare_actors(broker: dramatiq.Broker, publisher: Publisher, deliverer: Deliverer) -> None:
    def publish_notifications(notes: messages_pb2.Notifications) -> None:
        """Store facts (once each) and schedule one delivery per subscribed endpoint."""
        bind_subject(tenant_ids=(n.tenant_id for n in notes.notifications))
        publisher.publish(list(notes.notifications))

    def deliver_webhook(request: messages_pb2.DeliveryRequested) -> None:
        """One attempt of one delivery; retries are new delayed messages, not actor retries."""
        structlog.contextvars.bind_contextvars(tenant_id=request.tenant_id,
                                               delivery_id=request.delivery_id)
        deliverer.deliver(request.tenant_id, request.delivery_id)

    contract.declare(broker, contract.PUBLISH_NOTIFICATIONS, publish_notifications)
    contract.declare(broker, contract.DELIVER_WEBHOOK, deliver_webhook)
