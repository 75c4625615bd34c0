"""Wires the notify service: endpoints API, publish and deliver actors."""

from __future__ import annotations

from typing import Any

import dramatiq
import grpc

from accrual.messages.v1 import messages_pb2
from accrual.notify.v1 import notify_pb2_grpc
from accrual_notify import storage
from accrual_notify.api import NotifyServicer
from accrual_notify.service import NotifyService
from accrual_platform import queue
from accrual_platform.auth import Authenticator
from accrual_platform.db import Database
from accrual_platform.runtime import migrations_dir
from accrual_platform.settings import Settings

MIGRATIONS = migrations_dir(__file__)
SCHEMA = storage.SCHEMA


class NotifyRuntime:
    name = "notify"
    service_full_name = "accrual.notify.v1.NotifyService"
    schema = SCHEMA
    queues = (queue.NOTIFY_QUEUE,)

    def __init__(self, settings: Settings, broker: dramatiq.Broker) -> None:
        self.db = Database(settings.database_url, SCHEMA, pool_size=10)
        self.service = NotifyService(self.db, settings, broker)

    def register(self, server: grpc.Server) -> None:
        notify_pb2_grpc.add_NotifyServiceServicer_to_server(NotifyServicer(self.service), server)

    def declare_actors(self, broker: dramatiq.Broker) -> None:
        def publish_notifications(payload: dict[str, Any]) -> None:
            msg = queue.from_payload(payload, messages_pb2.Notifications)
            self.service.publish(list(msg.notifications))

        def deliver_webhook(payload: dict[str, Any]) -> None:
            msg = queue.from_payload(payload, messages_pb2.DeliveryRequested)
            self.service.deliver(msg.delivery_id)

        queue.declare_actor(broker, publish_notifications, queue=queue.NOTIFY_QUEUE,
                            name="publish_notifications")
        queue.declare_actor(broker, deliver_webhook, queue=queue.NOTIFY_QUEUE,
                            name="deliver_webhook", max_retries=3)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.db.dispose()


def build(settings: Settings, broker: dramatiq.Broker,
          authenticator: Authenticator | None = None) -> NotifyRuntime:
    return NotifyRuntime(settings, broker)
