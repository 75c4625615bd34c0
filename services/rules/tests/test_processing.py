"""The rules worker on SQLite and PostgreSQL: events in, ledger entries, balances, outcomes and
webhook facts out; redelivery, caps (also under concurrency), CDP fan-out and merges."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from typing import TYPE_CHECKING, Any

import dramatiq
import dramatiq.errors
import grpc
import pytest
import sqlalchemy as sa
from accrual.messages.v1 import messages_pb2
from accrual.rules.v1 import rules_pb2
from accrual_platform import errors
from accrual_platform.facts import data_of
from accrual_rules import storage
from accrual_rules.merging import merge_ledgers

if TYPE_CHECKING:
    from conftest import Stack

COMPLETED = messages_pb2.OUTCOME_STATUS_COMPLETED
FAILED = messages_pb2.OUTCOME_STATUS_FAILED
TS = dt.datetime(2026, 5, 20, 12, tzinfo=dt.UTC)


def program(stack: Stack, md: list[tuple[str, str]], **kw: Any) -> str:
    return str(stack.stub.CreateProgram(rules_pb2.CreateProgramRequest(name="Demo", **kw), metadata=md).program_id)


def rule(stack: Stack, md: list[tuple[str, str]], program_id: str, formula: str, **kw: Any) -> rules_pb2.Rule:
    kw.setdefault("name", formula)
    return stack.stub.CreateRule(rules_pb2.CreateRuleRequest(program_id=program_id, formula=formula, **kw),
                                 metadata=md)


def ledger_rows(stack: Stack, tenant: str) -> list[Any]:
    e = storage.ledger
    with stack.runtime.db.transaction() as session:
        return list(session.execute(sa.select(e).where(e.c.tenant_id == tenant).order_by(e.c.created_at)))


def test_seed_rules_award_the_seed_numbers(stack: Stack) -> None:
    tenant, md = stack.tenant()
    pid = program(stack, md)
    per_dollar = rule(stack, md, pid, "properties.amount * 1", event_type="purchase", order=1)
    bonus = rule(stack, md, pid, "properties.amount > 100 ? 50 : 0", event_type="purchase", order=2,
                 name="big-order bonus")
    electronics = rule(stack, md, pid, "properties.amount * 2", order=3,
                       condition='properties.category == "electronics"')
    e1 = stack.event(pid, data={"amount": 125})
    [outcome] = stack.process(tenant, e1)
    assert outcome.status == COMPLETED and outcome.points_awarded == "175"
    got = {(r.rule_id, r.rule_version): (r.matched, r.skip_reason, r.points) for r in outcome.rule_evaluations}
    assert got == {(per_dollar.rule_id, 1): (True, "", "125"), (bonus.rule_id, 1): (True, "", "50"),
                   (electronics.rule_id, 1): (False, "condition_false", "0")}
    participant = stack.identity.participant(tenant, "user_abc123")
    assert all(r.recipient_id == participant for r in outcome.rule_evaluations if r.matched)
    balance = stack.balance(md, pid, participant)
    assert (balance.available, balance.lifetime_earned) == ("175", "175")
    e2 = stack.event(pid, data={"amount": 50, "category": "electronics"})
    [outcome] = stack.process(tenant, e2)
    assert outcome.points_awarded == "150"  # 50 + 0 bonus + 100 electronics
    transactions = stack.stub.ListTransactions(rules_pb2.ListTransactionsRequest(
        program_id=pid, participant_id=participant), metadata=md).transactions
    assert sorted(t.amount for t in transactions) == ["100", "125", "50", "50"]
    assert {t.source for t in transactions} >= {f"event:{e1}:rule:{per_dollar.rule_id}"}


def test_a_message_delivered_twice_awards_once(stack: Stack) -> None:
    tenant, md = stack.tenant()
    pid = program(stack, md)
    rule(stack, md, pid, "properties.amount * 1")
    stack.drain_notifications()
    event_id = stack.event(pid, data={"amount": 40})
    [first] = stack.process(tenant, event_id)
    first_notes = stack.drain_notifications()
    [second] = stack.process(tenant, event_id)
    second_notes = stack.drain_notifications()
    assert len(ledger_rows(stack, tenant)) == 1
    assert second == first
    assert [n.fact_id for n in second_notes] == [n.fact_id for n in first_notes]
    assert [n.type for n in first_notes] == ["points.awarded"]
    participant = stack.identity.participant(tenant, "user_abc123")
    assert stack.balance(md, pid, participant).available == "40"


def test_a_delivery_that_loses_the_evaluation_race_rolls_back_and_replays(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """A delivery that read no stored evaluation, then found one stored by a concurrent
    delivery when it wrote its own, keeps none of its writes and announces the stored result."""
    tenant, md = stack.tenant()
    pid = program(stack, md)
    rule(stack, md, pid, "properties.amount * 1")
    event_id = stack.event(pid, data={"amount": 40})
    [first] = stack.process(tenant, event_id)
    stack.drain_notifications()
    real = stack.processor._stored
    calls = {"n": 0}

    def stale_once(session: Any, ids: Any) -> Any:
        calls["n"] += 1
        return {} if calls["n"] == 1 else real(session, ids)

    monkeypatch.setattr(stack.processor, "_stored", stale_once)
    [second] = stack.process(tenant, event_id)
    assert calls["n"] == 2  # the stale read, then the replay after the rollback
    assert second == first
    assert len(ledger_rows(stack, tenant)) == 1
    participant = stack.identity.participant(tenant, "user_abc123")
    assert stack.balance(md, pid, participant).available == "40"
    assert [n.type for n in stack.drain_notifications()] == ["points.awarded"]


def test_unknown_program_and_unregistered_types_fail_the_event(stack: Stack) -> None:
    tenant, md = stack.tenant()
    [missing] = stack.process(tenant, stack.event(str(uuid.uuid4())))
    assert (missing.status, missing.error_code) == (FAILED, "program_not_found")
    pid = program(stack, md, event_type_policy=rules_pb2.EVENT_TYPE_POLICY_REGISTERED)
    stack.stub.CreateEventType(rules_pb2.CreateEventTypeRequest(program_id=pid, name="purchase", properties=[
        rules_pb2.EventTypeProperty(name="amount", type=rules_pb2.PROPERTY_TYPE_NUMBER, required=True)]),
        metadata=md)
    rule(stack, md, pid, "properties.amount * 1")
    [unregistered] = stack.process(tenant, stack.event(pid, event_type="review", external_id="x1"))
    assert (unregistered.status, unregistered.error_code) == (FAILED, "event_type_not_registered")
    assert ("review") in unregistered.error_message
    [bad] = stack.process(tenant, stack.event(pid, data={"amount": "12"}, external_id="x2"))
    assert (bad.status, bad.error_code) == (FAILED, "event_data_invalid")
    [ok] = stack.process(tenant, stack.event(pid, data={"amount": 12}, external_id="x3"))
    assert (ok.status, ok.points_awarded) == (COMPLETED, "12")
    # Refused events created nobody: only x3 was resolved.
    assert {k[2] for k in stack.identity.participants if k[0] == tenant} == {"x3"}


def test_an_erroring_rule_is_skipped_and_the_others_run(stack: Stack) -> None:
    tenant, md = stack.tenant()
    pid = program(stack, md)
    broken = rule(stack, md, pid, "properties.missing * 2", order=1)
    rule(stack, md, pid, "10", order=2)
    [outcome] = stack.process(tenant, stack.event(pid, data={"amount": 5}))
    first, second = outcome.rule_evaluations
    assert (first.rule_id, first.matched, first.skip_reason) == (broken.rule_id, False, "evaluation_error")
    assert "Unsupported type" in first.message
    assert (second.matched, second.points) == (True, "10")
    assert outcome.points_awarded == "10"


def test_numbers_no_rule_can_compute_with_fail_those_rules_not_the_batch(stack: Stack) -> None:
    """Valid JSON, so accepted: a property past the engine's range, a formula giving "NaN" or
    more points than the ledger holds. Each used to raise out of the worker, failing the whole
    batch on every redelivery."""
    tenant, md = stack.tenant()
    pid = program(stack, md)
    rule(stack, md, pid, "properties.amount", order=1)
    rule(stack, md, pid, "properties.code", order=2, condition="properties.code != null")
    rule(stack, md, pid, "1", order=3)
    events = [stack.event(pid, data={"amount": 1e29}), stack.event(pid, data={"amount": 5e19}),
              stack.event(pid, data={"amount": 2, "code": "NaN"}), stack.event(pid, data={"amount": 3})]
    outcomes = {o.event_id: o for o in stack.process(tenant, *events)}
    assert [outcomes[e].points_awarded for e in events] == ["1", "1", "3", "4"]
    assert all(o.status == COMPLETED for o in outcomes.values())
    errors = [[r.message for r in outcomes[e].rule_evaluations if r.skip_reason == "evaluation_error"]
              for e in events]
    assert "beyond what expressions compute with" in errors[0][0]
    assert "one award may be at most 1e18" in errors[1][0]
    assert "non-finite" in errors[2][0]
    assert errors[3] == []


def test_an_event_the_worker_cannot_handle_fails_alone(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug that raises for one event: the batch is split until that event is alone, it is
    FAILED with the error, and every other event of the batch completes once."""
    tenant, md = stack.tenant()
    pid = program(stack, md)
    rule(stack, md, pid, "properties.amount * 1")
    events = [stack.event(pid, data={"amount": n}) for n in range(1, 8)]
    poisoned = events[4]
    real = stack.processor._apply

    def apply(session: Any, tenant_id: str, item: Any, *args: Any) -> None:
        if item.event.event_id == poisoned:
            raise KeyError("a bug")
        real(session, tenant_id, item, *args)

    monkeypatch.setattr(stack.processor, "_apply", apply)
    outcomes = stack.process(tenant, *events)
    assert sorted(o.event_id for o in outcomes) == sorted(events)
    failed = [o for o in outcomes if o.status == FAILED]
    assert [(o.event_id, o.error_code) for o in failed] == [(poisoned, "processing_error")]
    assert "KeyError" in failed[0].error_message
    participant = stack.identity.participant(tenant, "user_abc123")
    assert stack.balance(md, pid, participant).available == str(sum(range(1, 8)) - 5)
    assert len(ledger_rows(stack, tenant)) == 6


class _Rpc(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


@pytest.mark.parametrize("failure", [
    errors.Unavailable("database unavailable, retry"),  # what Database.transaction raises
    sa.exc.OperationalError("SELECT 1", {}, ConnectionError("server closed the connection")),
    _Rpc(grpc.StatusCode.UNAVAILABLE), _Rpc(grpc.StatusCode.INTERNAL),
    dramatiq.errors.ConnectionClosed(ConnectionError("broker gone")), ConnectionRefusedError()],
    ids=type)
def test_a_transient_failure_is_raised_for_a_retry_not_isolated(
        stack: Stack, monkeypatch: pytest.MonkeyPatch, failure: Exception) -> None:
    """An outage must never fail events: the message is retried, whole."""
    tenant, md = stack.tenant()
    pid = program(stack, md)
    rule(stack, md, pid, "properties.amount * 1")
    events = [stack.event(pid, data={"amount": n}) for n in (1, 2)]

    def down(*args: Any) -> None:
        raise failure

    monkeypatch.setattr(stack.processor, "_evaluate_batch", down)
    with pytest.raises(type(failure)):
        stack.process(tenant, *events)
    assert stack.drain_outcomes() == []
    monkeypatch.undo()
    assert {o.status for o in stack.process(tenant, *events)} == {COMPLETED}


@pytest.mark.parametrize("failure", [_Rpc(grpc.StatusCode.INVALID_ARGUMENT), KeyError("a bug"),
                                     sa.exc.DataError("INSERT", {}, ValueError("numeric field overflow"))], ids=type)
def test_what_fails_the_same_every_time_is_isolated(
        stack: Stack, monkeypatch: pytest.MonkeyPatch, failure: Exception) -> None:
    tenant, md = stack.tenant()
    pid = program(stack, md)
    rule(stack, md, pid, "properties.amount * 1")
    [event] = [stack.event(pid, data={"amount": 1})]

    def broken(*args: Any) -> None:
        raise failure

    monkeypatch.setattr(stack.processor, "_evaluate_batch", broken)
    [outcome] = stack.process(tenant, event)
    assert (outcome.status, outcome.error_code) == (FAILED, "processing_error")
    assert type(failure).__name__ in outcome.error_message


def test_tiers_multiply_and_announce_changes(stack: Stack) -> None:
    tenant, md = stack.tenant()
    pid = program(stack, md, tiers=[rules_pb2.Tier(name="silver", min_lifetime_points="100", multiplier="1.5")])
    rule(stack, md, pid, "properties.amount * 1", apply_tier_multiplier=True)
    stack.drain_notifications()
    [first] = stack.process(tenant, stack.event(pid, data={"amount": 125}))
    assert first.points_awarded == "125"
    notes = stack.drain_notifications()
    assert [n.type for n in notes] == ["points.awarded", "tier.changed"]
    assert data_of(notes[1])["tier"] == "silver" and data_of(notes[1])["previous_tier"] is None
    [second] = stack.process(tenant, stack.event(pid, data={"amount": 125}))
    assert second.points_awarded == "187"  # 125 x 1.5 floored
    participant = stack.identity.participant(tenant, "user_abc123")
    balance = stack.balance(md, pid, participant)
    assert (balance.available, balance.tier) == ("312", "silver")


def test_points_go_to_the_recipient(stack: Stack) -> None:
    tenant, md = stack.tenant()
    pid = program(stack, md)
    rule(stack, md, pid, "25")
    [outcome] = stack.process(tenant, stack.event(pid, external_id="giver", recipient_external_id="friend"))
    friend = stack.identity.participant(tenant, "friend")
    giver = stack.identity.participant(tenant, "giver")
    assert outcome.recipient_id == friend and outcome.rule_evaluations[0].recipient_id == friend
    assert stack.balance(md, pid, friend).available == "25"
    assert stack.balance(md, pid, giver).available == "0"


def test_caps_award_what_is_left_then_skip(stack: Stack) -> None:
    tenant, md = stack.tenant()
    pid = program(stack, md)
    capped = rule(stack, md, pid, "properties.amount * 1", caps=rules_pb2.RuleCaps(
        max_points_per_event="120", per_participant_daily="150"))
    points = []
    for amount, at in ((500, TS), (100, TS + dt.timedelta(hours=1)), (100, TS + dt.timedelta(hours=2)),
                       (100, TS + dt.timedelta(days=1))):
        [outcome] = stack.process(tenant, stack.event(pid, data={"amount": amount}, at=at))
        ev = outcome.rule_evaluations[0]
        points.append((ev.matched, ev.skip_reason, ev.points, ev.message))
    assert points == [
        (True, "", "120", "capped by max_points_per_event"),
        (True, "", "30", "capped by per_participant_daily"),
        (False, "cap_reached", "0", "per_participant_daily reached"),
        (True, "", "100", ""),  # the next day has its own window (the event time decides)
    ]
    assert capped.caps.per_participant_daily == "150"


@pytest.mark.integration
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_budget_holds_under_concurrent_workers(stack: Stack) -> None:
    """Row locks on PostgreSQL (SQLite writers are serial anyway): 8 workers, 16 events."""
    tenant, md = stack.tenant()
    pid = program(stack, md)
    rule(stack, md, pid, "100", caps=rules_pb2.RuleCaps(total_budget="450", per_participant_lifetime="200"))
    events = [stack.event(pid, external_id=f"user-{i % 4}") for i in range(16)]
    errors: list[BaseException] = []

    def work(ids: list[str]) -> None:
        try:
            for event_id in ids:
                stack.processor.process(tenant, [event_id])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(events[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rows = ledger_rows(stack, tenant)
    assert sum(r.amount for r in rows) == 450
    per_user: dict[str, int] = {}
    for r in rows:
        per_user[r.participant_id] = per_user.get(r.participant_id, 0) + int(r.amount)
    assert max(per_user.values()) <= 200


def test_cdp_events_run_the_rules_of_every_active_program(stack: Stack) -> None:
    tenant, md = stack.tenant()
    shop, cafe, other = program(stack, md), program(stack, md), program(stack, md)
    shop_rule = rule(stack, md, shop, "properties.amount * 1")
    cafe_rule = rule(stack, md, cafe, "5")
    rule(stack, md, other, "1000")
    participant = stack.identity.participant(tenant, "ann@example.com", 2)
    stack.identity.enrollments[participant] = [shop, cafe]
    from accrual.ingest.v1 import ingest_pb2

    event_id = stack.event("", data={"amount": 30}, cdp_source="web", cdp_identities=[
        ingest_pb2.CdpIdentityValue(type="EMAIL", value="ann@example.com")])
    [outcome] = stack.process(tenant, event_id)
    assert outcome.status == COMPLETED and outcome.participant_id == participant
    assert {(r.rule_id, r.points) for r in outcome.rule_evaluations} == {
        (shop_rule.rule_id, "30"), (cafe_rule.rule_id, "5")}
    assert outcome.points_awarded == "35"
    assert stack.balance(md, shop, participant).available == "30"
    assert stack.balance(md, cafe, participant).available == "5"
    assert stack.balance(md, other, participant).available == "0"


def test_merge_moves_balances_once(stack: Stack) -> None:
    tenant, md = stack.tenant()
    pid = program(stack, md, tiers=[rules_pb2.Tier(name="gold", min_lifetime_points="100", multiplier="1")])
    rule(stack, md, pid, "properties.amount * 1")
    stack.process(tenant, stack.event(pid, external_id="old", data={"amount": 60}))
    stack.process(tenant, stack.event(pid, external_id="new", data={"amount": 50}))
    merged, survivor = stack.identity.participant(tenant, "old"), stack.identity.participant(tenant, "new")
    msg = messages_pb2.ParticipantsMerged(tenant_id=tenant, merge_id=str(uuid.uuid4()),
                                          merged_participant_id=merged, survivor_participant_id=survivor)
    assert merge_ledgers(stack.runtime.db, msg) == 1
    assert merge_ledgers(stack.runtime.db, msg) == 0  # redelivered
    after = stack.balance(md, pid, survivor)
    assert (after.available, after.lifetime_earned, after.tier) == ("110", "110", "gold")
    gone = stack.balance(md, pid, merged)
    assert (gone.available, gone.lifetime_earned) == ("0", "0")
    kinds = sorted((r.kind, str(r.amount)) for r in ledger_rows(stack, tenant) if r.source.startswith("merge:"))
    assert [k for k, _ in kinds] == ["ADJUSTMENT", "REVERSAL"]


def test_merge_ledgers_runs_as_an_actor_of_the_rules_queue(stack: Stack) -> None:
    from accrual_platform import queue
    from dramatiq.brokers.stub import StubBroker

    tenant, md = stack.tenant()
    pid = program(stack, md)
    rule(stack, md, pid, "properties.amount * 1")
    stack.process(tenant, stack.event(pid, external_id="twin-a", data={"amount": 7}))
    merged, survivor = stack.identity.participant(tenant, "twin-a"), str(uuid.uuid4())
    broker = StubBroker()
    stack.runtime.declare_actors(broker)
    worker = dramatiq.Worker(broker, worker_timeout=50)
    worker.start()
    try:
        msg = messages_pb2.ParticipantsMerged(tenant_id=tenant, merge_id="m-1", merged_participant_id=merged,
                                              survivor_participant_id=survivor)
        for _ in range(2):  # delivered twice
            queue.enqueue(broker, queue.RULES_QUEUE, "merge_ledgers", msg)
        broker.join(queue.RULES_QUEUE, fail_fast=True)
    finally:
        worker.stop()
        broker.close()
    assert stack.balance(md, pid, survivor).available == "7"
    assert stack.balance(md, pid, merged).available == "0"


@pytest.mark.integration
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_concurrent_redeliveries_of_overlapping_batches_award_once(stack: Stack) -> None:
    """The same events delivered to 6 workers at once, in opposite orders: no deadlock, no
    double award, every worker announces the same outcome."""
    tenant, md = stack.tenant()
    pid = program(stack, md)
    rule(stack, md, pid, "properties.amount * 1")
    events = [stack.event(pid, external_id=f"buyer-{i % 3}", data={"amount": 10 + i}) for i in range(9)]
    failures: list[BaseException] = []

    def work(batch: list[str]) -> None:
        try:
            stack.processor.process(tenant, batch)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(events if i % 2 else events[::-1],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    rows = ledger_rows(stack, tenant)
    assert sorted(int(r.amount) for r in rows) == [10 + i for i in range(9)]
    outcomes = [o for o in stack.drain_outcomes() if o.event_id in events]
    assert len(outcomes) == 6 * 9
    by_event: dict[str, set[str]] = {}
    for o in outcomes:
        by_event.setdefault(o.event_id, set()).add(o.points_awarded)
    assert all(len(points) == 1 for points in by_event.values())


def test_tenant_events_complete_without_points_or_earn_where_the_participant_is_active(stack: Stack) -> None:
    """Seed 002: an event without program nor CDP source completes with no points when it
    names nobody, and runs the rules of every program the participant is ACTIVE in when it does."""
    tenant, md = stack.tenant()
    shop, other = program(stack, md), program(stack, md)
    shop_rule = rule(stack, md, shop, "properties.amount * 1")
    rule(stack, md, other, "1000")
    anonymous = stack.event("", data={"amount": 30})
    [outcome] = stack.process(tenant, anonymous)
    assert (outcome.status, outcome.points_awarded, outcome.participant_id) == (COMPLETED, "0", "")
    assert not outcome.rule_evaluations
    participant = stack.identity.participant(tenant, "ann")
    stack.identity.enrollments[participant] = [shop]
    by_external, by_id = stack.event("", data={"amount": 30}), stack.event("", data={"amount": 4},
                                                                           participant_id=participant)
    stack.ingest.events[by_external].external_id = "ann"
    outcomes = stack.process(tenant, by_external, by_id)
    assert {(o.event_id, o.status, o.participant_id, o.points_awarded) for o in outcomes} == {
        (by_external, COMPLETED, participant, "30"), (by_id, COMPLETED, participant, "4")}
    assert {r.rule_id for o in outcomes for r in o.rule_evaluations} == {shop_rule.rule_id}
    assert stack.balance(md, shop, participant).available == "34"
    assert stack.balance(md, other, participant).available == "0"
