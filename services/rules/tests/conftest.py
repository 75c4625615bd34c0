"""Fixtures of the rules tests: the rules runtime (built by ``bootstrap.build``) behind a real
gRPC server, on a migrated SQLite file and on PostgreSQL, plus a worker ``Processor`` whose
peers (ingest's ClaimEvents, identity's ResolveParticipants) are in-memory fakes that follow
their contracts, so the ledger, caps and redelivery can be driven event by event.

PostgreSQL tests use the ``rules`` schema (dropped and re-migrated once per session) and a
fresh tenant per test; they are marked ``integration`` and fail (never skip) without it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import dramatiq
import grpc
import pytest
import sqlalchemy as sa
from accrual.identity.v1 import identity_pb2
from accrual.ingest.v1 import ingest_pb2
from accrual.messages.v1 import messages_pb2
from accrual.rules.v1 import rewards_pb2_grpc, rules_pb2, rules_pb2_grpc
from accrual_platform import auth, contract, queue
from accrual_platform.fixtures import RpcFailure, backend_fixtures, rpc_failure
from accrual_platform.grpc_server import ServiceInterceptor, build_server
from accrual_platform.settings import Settings
from accrual_rules import bootstrap, storage
from accrual_rules.bootstrap import RulesRuntime
from accrual_rules.event_points import EventInfo
from accrual_rules.processing import Processor
from dramatiq.brokers.stub import StubBroker
from google.protobuf import json_format

TOKEN = "test-internal-token"


pg_url, sqlite_url, database_url = backend_fixtures(bootstrap.SCHEMA, bootstrap.MIGRATIONS)


def _authenticate(key: str) -> auth.Principal | None:
    """Test keys are ``key-<tenant id>`` with every scope but internal."""
    if key.startswith("key-"):
        return auth.Principal(tenant_id=key[4:], key_id="k", scopes=frozenset({"admin"}))
    return None


@dataclass
class FakeIngest:
    """IngestService.ClaimEvents over events the test submitted."""

    events: dict[str, ingest_pb2.Event] = field(default_factory=dict)
    #: what GetEvent says of an event's status (PENDING unless set)
    statuses: dict[str, str] = field(default_factory=dict)

    def lookup(self, tenant_id: str, event_id: str) -> EventInfo | None:
        """The EventLookup of reversals: status and event_data of a stored event."""
        event = self.events.get(event_id)
        if event is None:
            return None
        return EventInfo(self.statuses.get(event_id, "PENDING"), json_format.MessageToDict(event.event_data))

    def ClaimEvents(self, request: ingest_pb2.ClaimEventsRequest, **_: Any) -> ingest_pb2.ClaimEventsResponse:
        return ingest_pb2.ClaimEventsResponse(events=[self.events[i] for i in request.event_ids
                                                      if i in self.events])


@dataclass
class FakeIdentity:
    """IdentityService.ResolveParticipants: one participant per (tenant, identity), created on
    first sight (CREATE) or participant_not_found (REJECT); program-less items list the
    participant's ACTIVE programs from ``enrollments``."""

    participants: dict[tuple[str, int, str], str] = field(default_factory=dict)
    # Participant ids GetParticipant does not know (every other id exists).
    missing: set[str] = field(default_factory=set)
    enrollments: dict[str, list[str]] = field(default_factory=dict)
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def participant(self, tenant: str, value: str, kind: int = identity_pb2.IDENTITY_TYPE_EXTERNAL) -> str:
        with self.lock:
            return self.participants.setdefault((tenant, kind, value), str(uuid.uuid4()))

    def ResolveParticipants(self, request: identity_pb2.ResolveParticipantsRequest,
                            **_: Any) -> identity_pb2.ResolveParticipantsResponse:
        results = []
        for item in request.items:
            result = identity_pb2.ResolveResult()
            if item.participant_id:
                result.participant_id = item.participant_id
            else:
                ident = item.identities[0]
                key = (request.tenant_id, ident.type, ident.value)
                if key not in self.participants and \
                        item.on_unknown_participant == identity_pb2.UNKNOWN_PARTICIPANT_POLICY_REJECT:
                    result.error_code, result.error_message = "participant_not_found", "unknown"
                    results.append(result)
                    continue
                result.participant_id = self.participant(request.tenant_id, ident.value, ident.type)
            result.attributes.update(self.attributes.get(result.participant_id, {}))
            if not item.program_id:
                result.active_program_ids.extend(self.enrollments.get(result.participant_id, []))
            results.append(result)
        return identity_pb2.ResolveParticipantsResponse(results=results)


@dataclass
class Stack:
    runtime: RulesRuntime
    broker: StubBroker
    stub: rules_pb2_grpc.RulesServiceStub
    ingest: FakeIngest
    identity: FakeIdentity
    processor: Processor
    rewards: rewards_pb2_grpc.RewardsServiceStub
    address: str = ""

    def tenant(self) -> tuple[str, list[tuple[str, str]]]:
        """A new tenant and the metadata of its API key."""
        tenant = str(uuid.uuid4())
        return tenant, [("x-api-key", f"key-{tenant}")]

    def event(self, program_id: str, *, external_id: str = "user_abc123",
              event_type: str = "purchase", data: dict[str, Any] | None = None,
              at: dt.datetime | None = None, **extra: Any) -> str:
        """Store an accepted event in the fake ingest; returns its id."""
        event = ingest_pb2.Event(event_id=str(uuid.uuid4()), program_id=program_id,
                                 idempotency_key=str(uuid.uuid4()), event_type=event_type, **extra)
        if program_id and "participant_id" not in extra:
            event.external_id = external_id
        event.event_data.update(data or {})
        event.event_timestamp.FromDatetime(at or dt.datetime.now(dt.UTC))
        self.ingest.events[event.event_id] = event
        return event.event_id

    def process(self, tenant: str, *event_ids: str) -> list[messages_pb2.EventOutcome]:
        """Run the worker on one message and return the outcomes it sent to ingest."""
        self.processor.process(tenant, list(event_ids))
        return [o for o in self.drain_outcomes() if o.event_id in event_ids]

    def drain_outcomes(self) -> list[messages_pb2.EventOutcome]:
        """The outcomes the worker put in the outbox for ingest (taken out of it; the rows
        for other actors stay for the relay)."""
        t = storage.outbox
        with self.runtime.db.transaction() as session:
            rows = session.execute(sa.select(t.c.id, t.c.payload).where(
                t.c.actor == contract.RECORD_OUTCOMES.actor).order_by(t.c.id)).all()
            session.execute(sa.delete(t).where(t.c.id.in_([r.id for r in rows])))
        return [o for r in rows for o in contract.RECORD_OUTCOMES.decode(r.payload).outcomes]

    def drain_notifications(self) -> list[messages_pb2.Notification]:
        while self.runtime.relay.relay_once():
            pass
        out = []
        q = self.broker.queues.get(queue.NOTIFY_QUEUE)
        while q is not None and not q.empty():
            message = dramatiq.Message.decode(q.get_nowait())
            out.extend(queue.decode(message.args[0], messages_pb2.Notifications).notifications)
        return out

    def balance(self, md: list[tuple[str, str]], program_id: str, participant_id: str) -> rules_pb2.Balance:
        return self.stub.GetBalance(rules_pb2.GetBalanceRequest(
            program_id=program_id, participant_id=participant_id), metadata=md)

    @staticmethod
    def failure(call: Callable[[], Any]) -> RpcFailure:
        failure = rpc_failure(call)
        return dataclasses.replace(failure, reason=failure.reason.lower())


@pytest.fixture(scope="module")
def stack(database_url: str) -> Iterator[Stack]:
    broker = StubBroker()
    settings = Settings(database_url=database_url, broker_url="stub://", redis_url=None,
                        internal_token=TOKEN)
    runtime = bootstrap.build(settings, broker)
    server, port = build_server([(runtime.service_full_name, runtime.register)], "127.0.0.1:0",
                                ServiceInterceptor(_authenticate, TOKEN))
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    ingest, identity = FakeIngest(), FakeIdentity()
    processor = Processor(runtime.store, ingest, identity, TOKEN, runtime.sandbox)
    runtime.service.participant_exists = lambda tenant, pid: pid not in identity.missing
    runtime.points.lookup = ingest.lookup
    yield Stack(runtime, broker, rules_pb2_grpc.RulesServiceStub(channel), ingest, identity, processor,
                rewards_pb2_grpc.RewardsServiceStub(channel), f"127.0.0.1:{port}")
    channel.close()
    server.stop(2).wait()
    runtime.stop()
    broker.close()
