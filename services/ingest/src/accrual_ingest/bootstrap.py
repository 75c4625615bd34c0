"""The one place that wires the ingest service: database, store, outbox relay, use cases,
servicer and actors. Nothing is created at import time."""

from __future__ import annotations

import dramatiq
import grpc
from accrual.ingest.v1 import ingest_pb2_grpc
from accrual_platform import clients, contract, queue
from accrual_platform.db import Database
from accrual_platform.outbox import OutboxRelay
from accrual_platform.runtime import migrations_dir
from accrual_platform.settings import Settings

from accrual_ingest import storage, waiting, worker
from accrual_ingest.api import IngestServicer
from accrual_ingest.insights import EngagementQueries
from accrual_ingest.service import IngestService, StaleEventSweeper
from accrual_ingest.storage import CLAIM_CHUNK, IngestStore
from accrual_ingest.waiting import Waiters

MIGRATIONS = migrations_dir(__file__)
SCHEMA = storage.SCHEMA


class IngestRuntime:
    name = "ingest"
    service_full_name = "accrual.ingest.v1.IngestService"
    schema = SCHEMA
    queues = (queue.INGEST_QUEUE,)

    def __init__(self, settings: Settings, broker: dramatiq.Broker) -> None:
        self.db = Database(settings.database_url, SCHEMA, pool_size=20)
        self.relay = OutboxRelay(self.db, storage.outbox, broker, linger_seconds=settings.outbox_linger_seconds,
                                 mergers=dict([
                                     contract.merging(contract.EVALUATE_EVENTS, "event_ids",
                                                      group_by=("tenant_id",), limit=CLAIM_CHUNK),
                                     contract.merging(contract.PUBLISH_NOTIFICATIONS, "notifications", limit=500),
                                 ]))
        self.store = IngestStore(self.db)
        self.waiters = Waiters(max(settings.submit_wait_max_calls, 0))
        self.service = IngestService(self.store, self.relay.notify, self.waiters)
        #: the process's gRPC server listens to these (accrual_suite.hosting.start_server)
        #: and keeps this many more threads, for the calls waiting for an outcome
        self.notification_handlers = {waiting.CHANNEL: self.waiters.on_notice}
        self.server_threads = max(settings.submit_wait_max_calls, 0)
        # Programs belong to the rules service; analytics and segment routes ask it they exist.
        self.programs = clients.ProgramDirectory(lambda: clients.channel(settings.peer("rules")),
                                                 settings.internal_token)
        self.queries = EngagementQueries(self.store, program_exists=self.programs)
        self.sweeper = StaleEventSweeper(self.service, interval=settings.stale_event_sweep_seconds,
                                         older_than=settings.stale_event_after_seconds,
                                         at_start=settings.announce_unfinished_at_start)

    def register(self, server: grpc.Server) -> None:
        ingest_pb2_grpc.add_IngestServiceServicer_to_server(
            IngestServicer(self.service, self.queries), server)

    def declare_actors(self, broker: dramatiq.Broker) -> None:
        worker.declare_actors(broker, self.service)

    def start(self) -> None:
        self.relay.start()
        self.sweeper.start()

    def stop(self) -> None:
        self.sweeper.stop()
        self.service.close()
        self.relay.stop()
        self.db.dispose()


def build(settings: Settings, broker: dramatiq.Broker) -> IngestRuntime:
    return IngestRuntime(settings, broker)
