"""Scheduled events (issue 7) through the whole pipeline on PostgreSQL + RabbitMQ: identity,
ingest, rules and notify hosted in this process with their workers, the scheduler driven by an
injectable clock.

- a birthday fires once (a SYSTEM event, awarded by a birthday rule) across two runs, a
  simulated restart that lost its watermark, and two schedulers at once (one leader);
- missed days are caught up;
- an inactivity trigger fires only once the configured gap has passed since the last event.

Fails (never skips) without PostgreSQL and RabbitMQ.
"""

from __future__ import annotations

import datetime as dt
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from accrual.identity.v1 import identity_pb2, identity_pb2_grpc
from accrual.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from accrual.rules.v1 import rules_pb2, rules_pb2_grpc
from accrual_identity import keys
from accrual_platform import auth, queue
from accrual_platform.db import Database
from accrual_platform.settings import Settings
from accrual_platform.testing import AMQP_URL, PG_URL, SECRETS_KEY
from accrual_rules import storage as rules_storage
from accrual_rules.scheduler import TriggerScheduler
from accrual_suite import hosting

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeClock:
    def __init__(self, at: dt.datetime) -> None:
        self.at = at

    def __call__(self) -> dt.datetime:
        return self.at

    def set_day(self, day: str) -> None:
        self.at = dt.datetime.fromisoformat(f"{day}T12:00:00+00:00")


@dataclass
class Suite:
    runtimes: dict[str, Any]
    channel: grpc.Channel
    key: str
    tenant_id: str

    @property
    def md(self) -> list[tuple[str, str]]:
        return [("x-api-key", self.key)]

    def scheduler(self, clock: FakeClock) -> TriggerScheduler:
        s: TriggerScheduler = self.runtimes["rules"].scheduler(clock)
        return s

    def system_events(self, program_id: str) -> list[ingest_pb2.Event]:
        resp = ingest_pb2_grpc.IngestServiceStub(self.channel).ListEvents(ingest_pb2.ListEventsRequest(
            program_id=program_id, origin=ingest_pb2.EVENT_ORIGIN_SYSTEM, page_size=200), metadata=self.md, timeout=10)
        return list(resp.events)

    def wait_done(self, event_id: str) -> ingest_pb2.Event:
        stub = ingest_pb2_grpc.IngestServiceStub(self.channel)
        deadline = time.time() + 30
        while True:
            event = stub.GetEvent(ingest_pb2.GetEventRequest(event_id=event_id), metadata=self.md, timeout=10)
            if event.status in (ingest_pb2.EVENT_STATUS_COMPLETED, ingest_pb2.EVENT_STATUS_FAILED):
                return event
            assert time.time() < deadline, f"event {event_id} never finished"
            time.sleep(0.1)

    def balance(self, program_id: str, participant_id: str) -> str:
        return rules_pb2_grpc.RulesServiceStub(self.channel).GetBalance(rules_pb2.GetBalanceRequest(
            program_id=program_id, participant_id=participant_id), metadata=self.md, timeout=10).available


@pytest.fixture(scope="module")
def suite() -> Iterator[Suite]:
    port = _free_port()
    address = f"127.0.0.1:{port}"
    settings = Settings(database_url=PG_URL, broker_url=AMQP_URL, redis_url=None, internal_token=uuid.uuid4().hex,
                        peers={n: address for n in hosting.SERVICES}, grpc_port=port, worker_threads=4,
                        webhook_allow_private=True, secrets_keys=(SECRETS_KEY,))
    hosting.migrate(settings)
    broker = hosting.prepare_broker(queue.make_broker(settings.broker_url))
    runtimes, authenticator = hosting.build_runtimes(settings, broker, hosting.SERVICES)
    server, _, listener = hosting.start_server(settings, runtimes, authenticator)
    worker = hosting.start_worker(settings, broker, runtimes)
    for r in runtimes:
        r.start()
    tenant_name = f"sched-{uuid.uuid4().hex[:8]}"
    db = Database(PG_URL, "identity", pool_size=1)
    try:
        _, key = keys.create_api_key(db, tenant_name, frozenset({auth.ADMIN_SCOPE}))
        principal = authenticator(key)
        assert principal is not None
    finally:
        db.dispose()
    channel = grpc.insecure_channel(address)
    try:
        yield Suite({r.name: r for r in runtimes}, channel, key, principal.tenant_id)
    finally:
        channel.close()
        server.stop(5).wait()
        listener.stop()
        worker.stop()
        for r in runtimes:
            r.stop()
        broker.close()


def _program(suite: Suite, triggers: dict[str, Any], rules: list[tuple[str, str]]) -> str:
    stub = rules_pb2_grpc.RulesServiceStub(suite.channel)
    req = rules_pb2.CreateProgramRequest(name=f"p-{uuid.uuid4().hex[:6]}")
    for name, config in triggers.items():
        getattr(req.scheduled_triggers, name).CopyFrom(rules_pb2.ScheduledTrigger(**config))
    program = stub.CreateProgram(req, metadata=suite.md, timeout=10)
    for event_type, formula in rules:
        stub.CreateRule(rules_pb2.CreateRuleRequest(program_id=program.program_id, name=f"{event_type} bonus",
                                                    event_type=event_type, formula=formula),
                        metadata=suite.md, timeout=10)
    return program.program_id


def _participant(suite: Suite, program_id: str, birth_date: str | None = None) -> str:
    stub = identity_pb2_grpc.IdentityServiceStub(suite.channel)
    req = identity_pb2.CreateParticipantRequest(identities=[identity_pb2.Identity(
        type=identity_pb2.IDENTITY_TYPE_EXTERNAL, value=f"u-{uuid.uuid4().hex[:10]}")])
    if birth_date:
        req.attributes.update({"birth_date": birth_date})
    participant = stub.CreateParticipant(req, metadata=suite.md, timeout=10)
    stub.CreateEnrollment(identity_pb2.CreateEnrollmentRequest(
        program_id=program_id, participant_id=participant.participant_id), metadata=suite.md, timeout=10)
    return participant.participant_id


def _forget_watermarks(suite: Suite, program_id: str) -> None:
    """A crash after the events were submitted but before the watermark was written."""
    w = rules_storage.scheduler_watermarks
    with suite.runtimes["rules"].db.transaction() as session:
        session.execute(sa.delete(w).where(w.c.program_id == program_id))


def _wait_all(suite: Suite, events: list[ingest_pb2.Event]) -> list[ingest_pb2.Event]:
    return [suite.wait_done(e.event_id) for e in events]


def test_birthday_fires_once_across_runs_restarts_and_two_schedulers(suite: Suite) -> None:
    program = _program(suite, {"birthday": {"enabled": True}}, [("birthday", "100")])
    celebrated = _participant(suite, program, "1990-05-10")
    other = _participant(suite, program, "1990-05-11")
    clock = FakeClock(dt.datetime(2026, 5, 10, 8, 0, tzinfo=dt.UTC))
    first, second = suite.scheduler(clock), suite.scheduler(clock)
    try:
        report = first.run_once()
        assert report.leader and report.days[(program, "birthday")] == [dt.date(2026, 5, 10)]
        # Two schedulers at once: only the leader runs.
        assert second.run_once().leader is False
        assert (program, "birthday") not in first.run_once().days  # the same day again: nothing left
        _forget_watermarks(suite, program)  # a restart that lost its progress fires again ...
        again = first.run_once()
        assert again.days[(program, "birthday")] == [dt.date(2026, 5, 10)]
        # ... and ingest answers with the first event: nothing new.
        events = [e for e in suite.system_events(program) if e.participant_id == celebrated]
        assert len(events) == 1
        done = _wait_all(suite, events)[0]
        assert done.status == ingest_pb2.EVENT_STATUS_COMPLETED and done.event_type == "birthday"
        assert done.origin == ingest_pb2.EVENT_ORIGIN_SYSTEM
        assert done.idempotency_key == f"birthday:{celebrated}:2026-05-10" and done.points_awarded == "100"
        assert done.event_timestamp.ToDatetime(dt.UTC) == dt.datetime(2026, 5, 10, tzinfo=dt.UTC)
        assert suite.balance(program, celebrated) == "100"

        # The leader stops (or dies): the other scheduler takes over and catches up the missed
        # days; the other participant's birthday on 11 May fires once.
        first.stop()
        clock.set_day("2026-05-13")
        caught = second.run_once()
        assert caught.leader
        assert caught.days[(program, "birthday")] == [dt.date(2026, 5, d) for d in (11, 12, 13)]
        events = suite.system_events(program)
        assert sorted((e.participant_id, e.idempotency_key) for e in events) == sorted([
            (celebrated, f"birthday:{celebrated}:2026-05-10"), (other, f"birthday:{other}:2026-05-11")])
        _wait_all(suite, events)
        assert suite.balance(program, celebrated) == "100" and suite.balance(program, other) == "100"

        # Switched off and on again, the trigger starts on that day: no backlog of the days it was off.
        rules = rules_pb2_grpc.RulesServiceStub(suite.channel)
        for enabled in (False, True):
            req = rules_pb2.UpdateProgramRequest(program_id=program)
            req.scheduled_triggers.birthday.enabled = enabled
            rules.UpdateProgram(req, metadata=suite.md, timeout=10)
        clock.set_day("2026-05-20")
        assert second.run_once().days[(program, "birthday")] == [dt.date(2026, 5, 20)]
    finally:
        first.stop()
        second.stop()


def test_inactivity_fires_after_the_configured_gap(suite: Suite) -> None:
    program = _program(suite, {"inactivity": {"enabled": True, "days": 30, "event_type": "we_miss_you"}},
                       [("we_miss_you", "20")])
    participant = _participant(suite, program)
    ingest = ingest_pb2_grpc.IngestServiceStub(suite.channel)
    purchase = ingest.SubmitEvent(ingest_pb2.SubmitEventRequest(
        program_id=program, idempotency_key=f"order-{uuid.uuid4()}", participant_id=participant,
        event_type="purchase", event_timestamp=_ts("2026-06-01T10:00:00Z")), metadata=suite.md, timeout=10)
    assert suite.wait_done(purchase.event_id).status == ingest_pb2.EVENT_STATUS_COMPLETED
    clock = FakeClock(dt.datetime(2026, 6, 20, 9, 0, tzinfo=dt.UTC))
    scheduler = suite.scheduler(clock)
    try:
        scheduler.run_once()
        for day in ("2026-06-30",):  # 29 days after the last event: not yet
            clock.set_day(day)
            assert scheduler.run_once().count(program, "accepted") == 0
        assert suite.system_events(program) == []
        clock.set_day("2026-07-01")  # 30 days: fires
        assert scheduler.run_once().count(program, "accepted") == 1
        clock.set_day("2026-07-03")  # still inactive, but the same gap: nothing new
        report = scheduler.run_once()
        assert report.count(program, "accepted") == 0 and report.count(program, "duplicate") == 2
        assert report.count(program, "error") == 0
        events = _wait_all(suite, suite.system_events(program))
        assert [(e.event_type, e.idempotency_key, e.points_awarded) for e in events] == [
            ("we_miss_you", f"inactivity:{participant}:2026-06-01", "20")]
        assert events[0].event_timestamp.ToDatetime(dt.UTC) == dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
        # The SYSTEM event is not activity: the participant is still at risk, as of its day.
        segments = ingest.ListSegments(ingest_pb2.ListSegmentsRequest(program_id=program, as_of=_ts(
            "2026-07-03T00:00:00Z")), metadata=suite.md, timeout=10)
        assert {s.name: s.count for s in segments.segments}["at_risk"] == 1
    finally:
        scheduler.stop()


def test_triggers_are_set_and_validated_through_program_patch(suite: Suite) -> None:
    stub = rules_pb2_grpc.RulesServiceStub(suite.channel)
    program = _program(suite, {}, [])
    fetched = stub.GetProgram(rules_pb2.GetProgramRequest(program_id=program), metadata=suite.md, timeout=10)
    assert not fetched.scheduled_triggers.birthday.enabled
    assert fetched.scheduled_triggers.inactivity.days == 30
    assert fetched.scheduled_triggers.anniversary.event_type == "anniversary"
    req = rules_pb2.UpdateProgramRequest(program_id=program)
    req.scheduled_triggers.anniversary.enabled = True
    req.scheduled_triggers.anniversary.event_type = "membership_anniversary"
    updated = stub.UpdateProgram(req, metadata=suite.md, timeout=10)
    assert updated.scheduled_triggers.anniversary.enabled
    assert updated.scheduled_triggers.anniversary.event_type == "membership_anniversary"
    bad = rules_pb2.UpdateProgramRequest(program_id=program)
    bad.scheduled_triggers.inactivity.days = -3
    with pytest.raises(grpc.RpcError) as info:
        stub.UpdateProgram(bad, metadata=suite.md, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "scheduled_triggers.inactivity.days" in str(info.value.details())
    unchanged: Callable[[], Any] = lambda: stub.GetProgram(  # noqa: E731
        rules_pb2.GetProgramRequest(program_id=program), metadata=suite.md, timeout=10)
    assert unchanged().scheduled_triggers.anniversary.enabled


def _ts(value: str) -> Any:
    from google.protobuf import timestamp_pb2

    ts = timestamp_pb2.Timestamp()
    ts.FromJsonString(value)
    return ts
