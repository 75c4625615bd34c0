"""Dramatiq actors of the ``notify`` queue.

Thin on purpose: parse the proto-JSON payload, bind the log context, hand on. Other services
enqueue ``publish_notifications`` by name, so that name is part of the contract.
"""

from __future__ import annotations

from typing import Any

import dramatiq
import structlog
from accrual.messages.v1 import messages_pb2
from accrual_platform import queue
from google.protobuf import json_format

from accrual_notify.delivery import DELIVER_ACTOR, PUBLISH_ACTOR, Deliverer, Publisher

log = structlog.get_logger("accrual.notify")


def declare_actors(broker: dramatiq.Broker, publisher: Publisher, deliverer: Deliverer) -> None:
    def publish_notifications(payload: str | dict[str, Any]) -> None:
        """Store facts (once each) and schedule one delivery per subscribed endpoint."""
        try:
            notes = queue.decode(payload, messages_pb2.Notifications)
        except json_format.ParseError as exc:
            log.error("payload_invalid", actor=PUBLISH_ACTOR, error=str(exc))
            return  # redelivering a malformed message would never succeed
        publisher.publish(list(notes.notifications))

    def deliver_webhook(payload: str | dict[str, Any]) -> None:
        """One attempt of one delivery; retries are new delayed messages, not actor retries."""
        try:
            request = queue.decode(payload, messages_pb2.DeliveryRequested)
        except json_format.ParseError as exc:
            log.error("payload_invalid", actor=DELIVER_ACTOR, error=str(exc))
            return
        structlog.contextvars.bind_contextvars(tenant_id=request.tenant_id,
                                               delivery_id=request.delivery_id)
        deliverer.deliver(request.tenant_id, request.delivery_id)

    queue.declare_actor(broker, publish_notifications, queue=queue.NOTIFY_QUEUE,
                        name=PUBLISH_ACTOR)
    queue.declare_actor(broker, deliver_webhook, queue=queue.NOTIFY_QUEUE, name=DELIVER_ACTOR)
