"""Wires the rules service, the one place that does: database, store, outbox relay, sandbox,
servicer, worker actors and the scheduler."""

from __future__ import annotations

import dramatiq
import grpc
from accrual.identity.v1 import identity_pb2, identity_pb2_grpc
from accrual.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from accrual.messages.v1 import messages_pb2
from accrual.rules.v1 import rewards_pb2_grpc, rules_pb2_grpc
from accrual_platform import clients, contract, errors, queue, structs
from accrual_platform.db import Database, utcnow
from accrual_platform.grpc_server import internal_metadata
from accrual_platform.outbox import OutboxRelay
from accrual_platform.runtime import migrations_dir
from accrual_platform.settings import Settings

from accrual_rules import storage, worker
from accrual_rules.api import RulesServicer
from accrual_rules.event_points import EventInfo, EventPoints
from accrual_rules.merging import merge_ledgers
from accrual_rules.processing import Processor
from accrual_rules.rewards_api import RewardsServicer
from accrual_rules.rewards_service import RewardsService
from accrual_rules.rewards_store import RewardsStore
from accrual_rules.sandbox import Sandbox
from accrual_rules.scheduler import Clock, TriggerScheduler
from accrual_rules.service import RulesService
from accrual_rules.store import RulesStore

MIGRATIONS = migrations_dir(__file__)
SCHEMA = storage.SCHEMA


class RulesRuntime:
    name = "rules"
    service_full_name = "accrual.rules.v1.RulesService"
    #: the rewards catalogue and redemptions (their own contract, rewards.proto) live here too
    also_serves = ("accrual.rules.v1.RewardsService",)
    schema = SCHEMA
    queues = (queue.RULES_QUEUE,)

    def __init__(self, settings: Settings, broker: dramatiq.Broker) -> None:
        self.settings = settings
        self.db = Database(settings.database_url, SCHEMA, pool_size=20)
        # Each worker transaction writes an outcomes row and a facts row: the relay sends the
        # rows of one read as one message per actor, so consumers pay per batch, not per row.
        self.relay = OutboxRelay(self.db, storage.outbox, broker, mergers=dict([
            contract.merging(contract.RECORD_OUTCOMES, "outcomes", limit=500),
            contract.merging(contract.PUBLISH_NOTIFICATIONS, "notifications", limit=500),
        ]))
        self.sandbox = Sandbox(deadline_ms=settings.rule_eval_deadline_ms, memory_mb=settings.rule_eval_memory_mb,
                               processes=settings.rule_eval_processes,
                               suspend_after=settings.rule_suspend_after_breaches)
        self.store = RulesStore(self.db)
        rewards_store = RewardsStore(self.db)
        self.service = RulesService(self.store, self.sandbox, on_commit=self.relay.notify,
                                    participant_exists=self._participant_exists, held=rewards_store.held)
        self.rewards = RewardsService(rewards_store, self.service, on_commit=self.relay.notify)
        self._identity: identity_pb2_grpc.IdentityServiceStub | None = None
        self._ingest: ingest_pb2_grpc.IngestServiceStub | None = None
        self._processor: Processor | None = None
        self.points = EventPoints(self.store, self._event, on_commit=self.relay.notify)

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

    def _event(self, tenant_id: str, event_id: str) -> EventInfo | None:
        """Asks ingest for an event (reversals only need it), on first use connecting to it."""
        if self._ingest is None:
            self._ingest = ingest_pb2_grpc.IngestServiceStub(clients.channel(self.settings.peer("ingest")))
        try:
            event = self._ingest.GetEvent(ingest_pb2.GetEventRequest(event_id=event_id),
                                          metadata=internal_metadata(self.settings.internal_token, tenant_id),
                                          timeout=10)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise errors.Unavailable("ingest service unavailable, retry") from None
        return EventInfo(ingest_pb2.EventStatus.Name(event.status).removeprefix("EVENT_STATUS_"),
                         structs.text_or_struct(event.event_data_json, event.event_data))

    def processor(self) -> Processor:
        """Built on first use: only workers need the peer channels."""
        if self._processor is None:
            self._processor = Processor(
                self.store,
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
            self.settings.internal_token, clock, on_commit=self.relay.notify, points=self.points,
            expire_holds=self.rewards.expire_holds)

    def register(self, server: grpc.Server) -> None:
        rules_pb2_grpc.add_RulesServiceServicer_to_server(RulesServicer(self.service, self.points), server)
        rewards_pb2_grpc.add_RewardsServiceServicer_to_server(RewardsServicer(self.rewards), server)

    def declare_actors(self, broker: dramatiq.Broker) -> None:
        worker.declare_actors(broker, self.processor, self._merge)

    def _merge(self, msg: messages_pb2.ParticipantsMerged) -> None:
        if merge_ledgers(self.db, msg):
            self.relay.notify()

    def start(self) -> None:
        self.relay.start()

    def stop(self) -> None:
        self.relay.stop()
        self.sandbox.close()
        self.db.dispose()


def build(settings: Settings, broker: dramatiq.Broker) -> RulesRuntime:
    return RulesRuntime(settings, broker)
