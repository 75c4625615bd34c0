"""The one place that wires the notify service: database, HTTP client, actors, servicer.

Nothing is created at import time, so tests build a runtime with their own settings (a
compressed retry schedule, a short timeout) and broker.
"""

from __future__ import annotations

import pathlib

import dramatiq
import grpc
from accrual.notify.v1 import notify_pb2_grpc
from accrual_platform import queue
from accrual_platform.db import Database
from accrual_platform.runtime import migrations_dir
from accrual_platform.settings import Settings

from accrual_notify import storage, worker
from accrual_notify.api import NotifyServicer
from accrual_notify.delivery import Deliverer, Publisher, Scheduler
from accrual_notify.endpoints import Endpoints
from accrual_notify.secretbox import SecretBox
from accrual_notify.storage import NotifyStore
from accrual_notify.sweeper import StalledDeliverySweeper
from accrual_notify.transport import WebhookClient

MIGRATIONS: pathlib.Path = migrations_dir(__file__)
SCHEMA = storage.SCHEMA


class NotifyRuntime:
    name = "notify"
    service_full_name = "accrual.notify.v1.NotifyService"
    schema = SCHEMA
    queues: tuple[str, ...] = (queue.NOTIFY_QUEUE,)

    def __init__(self, settings: Settings, broker: dramatiq.Broker) -> None:
        self.settings = settings
        self.db = Database(settings.database_url, SCHEMA, pool_size=10)
        # At start, not at the first delivery: a missing or wrong SECRETS_KEY stops the
        # process here, and secrets stored in plain text are encrypted.
        self.store = NotifyStore(self.db, SecretBox(settings.secrets_keys))
        self.store.prepare_secrets()
        self.client = WebhookClient(settings.webhook_timeout_seconds)
        self.scheduler = Scheduler(broker)
        self.endpoints = Endpoints(self.store, settings)
        self.publisher = Publisher(self.store, self.scheduler, settings)
        self.deliverer = Deliverer(self.store, self.client, self.scheduler, settings)
        self.sweeper = StalledDeliverySweeper(self.store, self.scheduler)

    def register(self, server: grpc.Server) -> None:
        notify_pb2_grpc.add_NotifyServiceServicer_to_server(NotifyServicer(self.endpoints, self.deliverer), server)

    def declare_actors(self, broker: dramatiq.Broker) -> None:
        worker.declare_actors(broker, self.publisher, self.deliverer)

    def start(self) -> None:
        self.sweeper.start()

    def stop(self) -> None:
        self.sweeper.stop()
        self.client.close()
        self.db.dispose()


def build(settings: Settings, broker: dramatiq.Broker) -> NotifyRuntime:
    """The notify runtime; API keys are checked by the hosting server's interceptor."""
    return NotifyRuntime(settings, broker)
