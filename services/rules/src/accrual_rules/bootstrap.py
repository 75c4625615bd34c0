"""Wires the rules service: database, servicer, and the evaluate_events actor."""

from __future__ import annotations

from typing import Any

import dramatiq
import grpc
from accrual.identity.v1 import identity_pb2, identity_pb2_grpc
from accrual.ingest.v1 import ingest_pb2_grpc
from accrual.rules.v1 import rules_pb2_grpc
from accrual_platform import clients, errors, queue
from accrual_platform.db import Database, utcnow
from accrual_platform.grpc_server import internal_metadata
from accrual_platform.logging import bind_subject
from accrual_platform.outbox import OutboxRelay
from accrual_platform.runtime import migrations_dir
from accrual_platform.settings import Settings

from accrual_rules import storage
from accrual_rules.api import RulesServicer
from accrual_rules.merging import merge_ledgers
from accrual_rules.processing import Processor
from accrual_rules.sandbox import Sandbox
from accrual_rules.scheduler import Clock, TriggerScheduler
from accrual_rules.service import RulesService

MIGRATIONS = migrations_dir(__file__)
SCHEMA = storage.SCHEMA


class RulesRuntime:
    name = "rules"
    service_full_name = "accrual.rules.v1.RulesService"
    schema = SCHEMA
    queues = (queue.RULES_QUEUE,)

    def __init__(self, settings: Settings, broker: dramatiq.Broker) -> None:
        self.settings = settings
        self.db = Database(settings.database_url, SCHEMA, pool_size=20)
        self.relay = OutboxRelay(self.db, storage.outbox, broker)
        self.sandbox = Sandbox(deadline_ms=settings.rule_eval_deadline_ms, memory_mb=settings.rule_eval_memory_mb,
                               processes=settings.rule_eval_processes,
                               suspend_after=settings.rule_suspend_after_breaches)
        self.service = RulesService(self.db, self.sandbox, on_commit=self.relay.notify,
                                    participant_exists=self._participant_exists)
        self._identity: identity_pb2_grpc.IdentityServiceStub | None = None
        self._broker = broker
        self._processor: Processor | None = None

    def _participant_exists(self, tenant_id: str, participant_id: str) -> bool:
        """Asks identity, on first use connecting to it (only adjustments need it)."""
        if self._identity is None:
            self._identity = identity_pb2_grpc.IdentityServiceStub(
                clients.channel(self.settings.peer("identity")))
        try:
            self._identity.GetParticipant(
                identity_pb2.GetParticipantRequest(participant_id=participant_id),
                metadata=internal_metadata(self.settings.internal_token, tenant_id), timeout=10)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise errors.Unavailable("identity service unavailable, retry") from None
        return True

    def processor(self) -> Processor:
        """Built on first use: only workers need the peer channels."""
        if self._processor is None:
            self._processor = Processor(
                self.db, self._broker,
                ingest_pb2_grpc.IngestServiceStub(clients.channel(self.settings.peer("ingest"))),
                identity_pb2_grpc.IdentityServiceStub(clients.channel(self.settings.peer("identity"))),
                self.settings.internal_token, self.sandbox, on_commit=self.relay.notify)
        return self._processor

    def scheduler(self, clock: Clock = utcnow) -> TriggerScheduler:
        """The birthday/anniversary/inactivity scheduler, on this runtime's database and the
        identity and ingest peers."""
        return TriggerScheduler(
            self.db, identity_pb2_grpc.IdentityServiceStub(clients.channel(self.settings.peer("identity"))),
            ingest_pb2_grpc.IngestServiceStub(clients.channel(self.settings.peer("ingest"))),
            self.settings.internal_token, clock)

    def register(self, server: grpc.Server) -> None:
        rules_pb2_grpc.add_RulesServiceServicer_to_server(RulesServicer(self.service), server)

    def declare_actors(self, broker: dramatiq.Broker) -> None:
        def evaluate_events(payload: str | dict[str, Any]) -> None:
            from accrual.messages.v1 import messages_pb2

            msg = queue.decode(payload, messages_pb2.EventsAccepted)
            bind_subject(tenant_ids=[msg.tenant_id])
            self.processor().process(msg.tenant_id, list(msg.event_ids))

        def merge_ledgers_actor(payload: str | dict[str, Any]) -> None:
            from accrual.messages.v1 import messages_pb2

            msg = queue.decode(payload, messages_pb2.ParticipantsMerged)
            bind_subject(tenant_ids=[msg.tenant_id])
            if merge_ledgers(self.db, msg):
                self.relay.notify()

        queue.declare_actor(broker, evaluate_events, queue=queue.RULES_QUEUE,
                            name="evaluate_events")
        queue.declare_actor(broker, merge_ledgers_actor, queue=queue.RULES_QUEUE,
                            name="merge_ledgers")

    def start(self) -> None:
        self.relay.start()

    def stop(self) -> None:
        self.relay.stop()
        self.sandbox.close()
        self.db.dispose()


def build(settings: Settings, broker: dramatiq.Broker) -> RulesRuntime:
    return RulesRuntime(settings, broker)
