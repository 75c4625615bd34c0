"""An event's points after evaluation, on SQLite and PostgreSQL: reversals (proportional,
idempotent, never past the original, clawback order, negative balance policies, gifts),
pending points (DURATION, ON_EVENT in either order, backdated), cancel-points and
activate-points, the scheduler's activation, and the webhook facts."""

from __future__ import annotations

import datetime as dt
import decimal
import threading
from typing import TYPE_CHECKING, Any

import grpc
import pytest
import sqlalchemy as sa
from accrual.rules.v1 import rules_pb2
from accrual_platform.facts import data_of
from accrual_rules import storage

if TYPE_CHECKING:
    from conftest import Stack

D = decimal.Decimal
NOW = dt.datetime.now(dt.UTC)


def program(stack: Stack, md: list[tuple[str, str]], *, negative: str = "FORBID", **kw: Any) -> str:
    pid = str(stack.stub.CreateProgram(rules_pb2.CreateProgramRequest(name="Bank", **kw), metadata=md).program_id)
    if negative != "FORBID":
        p = storage.programs
        with stack.runtime.db.transaction() as session:
            session.execute(sa.update(p).where(p.c.id == pid).values(bank_policy={"negative_balance": negative}))
    return pid


def rule(stack: Stack, md: list[tuple[str, str]], pid: str, formula: str, **kw: Any) -> None:
    stack.stub.CreateRule(rules_pb2.CreateRuleRequest(program_id=pid, name=formula, formula=formula, **kw),
                          metadata=md)


def earn(stack: Stack, tenant: str, pid: str, amount: Any, **kw: Any) -> str:
    event_id = stack.event(pid, data={"amount": amount, **kw.pop("data", {})}, **kw)
    [outcome] = stack.process(tenant, event_id)
    assert outcome.error_code == "", outcome.error_message
    return event_id


def reverse(stack: Stack, md: list[tuple[str, str]], event_id: str, key: str, **kw: Any) -> rules_pb2.Reversal:
    kw.setdefault("reason", "refund")
    return stack.stub.CreateReversal(rules_pb2.CreateReversalRequest(event_id=event_id, idempotency_key=key, **kw),
                                     metadata=md)


def lots(stack: Stack, tenant: str) -> list[Any]:
    t = storage.lots
    with stack.runtime.db.transaction() as session:
        return list(session.execute(sa.select(t).where(t.c.tenant_id == tenant).order_by(t.c.created_at, t.c.id)))


def ledger_sum(stack: Stack, tenant: str, participant: str) -> D:
    e = storage.ledger
    with stack.runtime.db.transaction() as session:
        return D(str(session.execute(sa.select(sa.func.coalesce(sa.func.sum(e.c.amount), 0)).where(
            e.c.tenant_id == tenant, e.c.participant_id == participant)).scalar_one()))


def balance(stack: Stack, md: list[tuple[str, str]], pid: str, who: str) -> tuple[str, str]:
    b = stack.balance(md, pid, who)
    return b.available, b.pending


def test_partial_reversals_are_proportional_and_the_last_takes_the_exact_remainder(stack: Stack) -> None:
    tenant, md = stack.tenant()
    pid = program(stack, md, tiers=[rules_pb2.Tier(name="gold", min_lifetime_points="0", multiplier="1.5")])
    rule(stack, md, pid, "properties.amount", apply_tier_multiplier=True)
    rule(stack, md, pid, "7")
    event_id = earn(stack, tenant, pid, 101)  # 151 (101 x 1.5 floored) + 7 (7 x 1.5 floored: 10)
    who = stack.identity.participant(tenant, "user_abc123")
    assert balance(stack, md, pid, who) == ("161", "0")
    first = reverse(stack, md, event_id, "r1", ratio="0.3")
    assert (first.points, first.ratio, first.reversed_ratio) == ("48", "0.3", "0.3")  # 45 + 3
    assert sorted(t.amount for t in first.transactions) == ["-3", "-45"]
    assert all(t.kind == rules_pb2.ENTRY_KIND_REVERSAL and t.event_id == event_id for t in first.transactions)
    second = reverse(stack, md, event_id, "r2", ratio="0.7")
    assert (second.points, second.reversed_ratio) == ("113", "1")  # the exact remainders 106 + 7
    assert balance(stack, md, pid, who) == ("0", "0")
    assert ledger_sum(stack, tenant, who) == 0
    over = stack.failure(lambda: reverse(stack, md, event_id, "r3", ratio="0.01"))
    assert (over.code, over.reason) == (grpc.StatusCode.ABORTED, "reversal_exceeds_original")
    assert stack.balance(md, pid, who).lifetime_earned == "0"


def test_a_reversal_key_replays_the_original_and_refuses_another_body(stack: Stack) -> None:
    tenant, md = stack.tenant()
    pid = program(stack, md)
    rule(stack, md, pid, "properties.amount")
    event_id = earn(stack, tenant, pid, 100)
    first = reverse(stack, md, event_id, "k", ratio="0.25")
    again = reverse(stack, md, event_id, "k", ratio="0.250")
    assert again.deduplicated and not first.deduplicated
    assert (again.reversal_id, again.points, list(again.transactions)) == (
        first.reversal_id, first.points, list(first.transactions))
    clash = stack.failure(lambda: reverse(stack, md, event_id, "k", ratio="0.5"))
    assert (clash.code, clash.reason) == (grpc.StatusCode.ABORTED, "idempotency_conflict")
    who = stack.identity.participant(tenant, "user_abc123")
    assert balance(stack, md, pid, who) == ("75", "0")


def test_reversal_requests_are_checked_field_by_field(stack: Stack) -> None:
    tenant, md = stack.tenant()
    pid = program(stack, md)
    rule(stack, md, pid, "properties.amount")
    event_id = earn(stack, tenant, pid, 100)
    for kw, field in (({"ratio": "0"}, "ratio"), ({"ratio": "1.5"}, "ratio"), ({}, "ratio"),
                      ({"ratio": "0.5", "amount": "3"}, "ratio"), ({"amount": "abc"}, "amount"),
                      ({"ratio": "0.5", "reason": ""}, "reason")):
        bad = stack.failure(lambda kw=kw: reverse(stack, md, event_id, "k", **kw))
        assert bad.code == grpc.StatusCode.INVALID_ARGUMENT and field in bad.fields, (kw, bad)
    bad = stack.failure(lambda: reverse(stack, md, "not-a-uuid", "k", ratio="0.5"))
    assert "event_id" in bad.fields
    no_field = stack.failure(lambda: reverse(stack, md, event_id, "k", amount="10"))
    assert no_field.code == grpc.StatusCode.INVALID_ARGUMENT and "amount" in no_field.fields


def test_an_amount_is_a_share_of_the_programs_monetary_field(stack: Stack) -> None:
    tenant, md = stack.tenant()
    pid = program(stack, md, monetary_field="total")
    assert stack.stub.GetProgram(rules_pb2.GetProgramRequest(program_id=pid), metadata=md).monetary_field == "total"
    rule(stack, md, pid, "properties.total * 2")
    event_id = stack.event(pid, data={"total": 80})
    stack.process(tenant, event_id)
    part = reverse(stack, md, event_id, "refund-1", amount="20")
    assert (part.ratio, part.points) == ("0.25", "40")
    too_much = stack.failure(lambda: reverse(stack, md, event_id, "refund-2", amount="81"))
    assert too_much.code == grpc.StatusCode.INVALID_ARGUMENT and "amount" in too_much.fields
    rest = reverse(stack, md, event_id, "refund-3", amount="60")
    assert (rest.points, rest.reversed_ratio) == ("120", "1")


def test_only_completed_events_are_reversed(stack: Stack) -> None:
    tenant, md = stack.tenant()
    pid = program(stack, md)
    waiting = stack.event(pid, data={"amount": 10})
    stack.ingest.statuses[waiting] = "PROCESSING"
    got = stack.failure(lambda: reverse(stack, md, waiting, "k", ratio="1"))
    assert (got.code, got.reason) == (grpc.StatusCode.ABORTED, "event_not_completed")
    missing = stack.failure(lambda: reverse(stack, md, "00000000-0000-4000-8000-000000000000", "k", ratio="1"))
    assert (missing.code, missing.reason) == (grpc.StatusCode.NOT_FOUND, "event_not_found")
    other_tenant, other_md = stack.tenant()
    rule(stack, md, pid, "properties.amount")
    event_id = earn(stack, tenant, pid, 10)
    foreign = stack.failure(lambda: reverse(stack, other_md, event_id, "k", ratio="1"))
    assert foreign.code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ABORTED)
    assert other_tenant != tenant


def test_clawback_takes_the_events_lots_then_pending_then_active_by_expiry(stack: Stack) -> None:
    tenant, md = stack.tenant()
    pid = program(stack, md, negative="ALLOW")
    rule(stack, md, pid, "properties.amount")
    older = earn(stack, tenant, pid, 30)
    event_id = earn(stack, tenant, pid, 50)
    who = stack.identity.participant(tenant, "user_abc123")
    stack.stub.CreateAdjustment(rules_pb2.CreateAdjustmentRequest(
        program_id=pid, participant_id=who, amount="-40", reason="spent", idempotency_key="spend"), metadata=md)
    assert balance(stack, md, pid, who) == ("40", "0")
    got = reverse(stack, md, event_id, "refund", ratio="1")
    assert (got.points, got.debt) == ("50", "10")
    assert balance(stack, md, pid, who) == ("-10", "0")
    assert ledger_sum(stack, tenant, who) == D(-10) + D(10) - D(10)  # entries; the debt is in available
    by_event = {r.event_id: r for r in lots(stack, tenant)}
    assert by_event[event_id].remaining == 0 and by_event[older].remaining == 0
    # a later earn pays the debt first
    earn(stack, tenant, pid, 25)
    assert balance(stack, md, pid, who) == ("15", "0")
    assert stack.balance(md, pid, who).debt == "0"


def test_forbid_refuses_what_the_balance_cannot_cover_and_clamp_records_it(stack: Stack) -> None:
    tenant, md = stack.tenant()
    for negative, expect in (("FORBID", None), ("CLAMP", ("100", "60"))):
        pid = program(stack, md, negative=negative)
        rule(stack, md, pid, "properties.amount")
        who_key = f"user-{negative}"
        event_id = earn(stack, tenant, pid, 100, external_id=who_key)
        who = stack.identity.participant(tenant, who_key)
        stack.stub.CreateAdjustment(rules_pb2.CreateAdjustmentRequest(
            program_id=pid, participant_id=who, amount="-60", reason="spent", idempotency_key="spend"), metadata=md)
        if expect is None:
            refused = stack.failure(lambda event_id=event_id: reverse(stack, md, event_id, "r", ratio="1"))
            assert (refused.code, refused.reason) == (grpc.StatusCode.ABORTED, "insufficient_points")
            assert balance(stack, md, pid, who) == ("40", "0")  # nothing was written
            assert stack.balance(md, pid, who).lifetime_earned == "100"
            continue
        got = reverse(stack, md, event_id, "r", ratio="1")
        assert (got.points, got.unrecovered) == expect
        assert [t.amount for t in got.transactions] == ["-40"]
        assert balance(stack, md, pid, who) == ("0", "0")
        assert ledger_sum(stack, tenant, who) == 0


def test_a_gifted_events_reversal_takes_the_points_from_the_recipient(stack: Stack) -> None:
    tenant, md = stack.tenant()
    pid = program(stack, md)
    rule(stack, md, pid, "25")
    event_id = stack.event(pid, external_id="giver", recipient_external_id="friend")
    stack.process(tenant, event_id)
    friend, giver = (stack.identity.participant(tenant, n) for n in ("friend", "giver"))
    got = reverse(stack, md, event_id, "r", ratio="1")
    assert {t.participant_id for t in got.transactions} == {friend}
    assert balance(stack, md, pid, friend) == ("0", "0")
    assert balance(stack, md, pid, giver) == ("0", "0")


def test_reversal_facts_have_deterministic_ids(stack: Stack) -> None:
    tenant, md = stack.tenant()
    pid = program(stack, md)
    rule(stack, md, pid, "properties.amount")
    event_id = earn(stack, tenant, pid, 100)
    stack.drain_notifications()
    got = reverse(stack, md, event_id, "r", ratio="0.5")
    reverse(stack, md, event_id, "r", ratio="0.5")  # a retry announces nothing new
    notes = [n for n in stack.drain_notifications() if n.tenant_id == tenant]
    assert [(n.type, n.fact_id) for n in notes] == [("points.reversed", f"points.reversed:{got.reversal_id}:{pid}")]
    data = data_of(notes[0])
    assert (data["event_id"], data["points"], data["reversal_id"]) == (event_id, "50", got.reversal_id)


# -- pending points -----------------------------------------------------------------------
def pending_program(stack: Stack, md: list[tuple[str, str]], **pending: Any) -> str:
    pid = program(stack, md, pending=rules_pb2.PendingPolicy(**pending))
    rule(stack, md, pid, "properties.amount")
    return pid


def test_duration_points_are_pending_until_the_scheduler_activates_them(stack: Stack) -> None:
    tenant, md = stack.tenant()
    pid = pending_program(stack, md, type=rules_pb2.PENDING_TYPE_DURATION, duration="P30D")
    got = stack.stub.GetProgram(rules_pb2.GetProgramRequest(program_id=pid), metadata=md).pending
    assert (got.type, got.duration) == (rules_pb2.PENDING_TYPE_DURATION, "P30D")
    stack.drain_notifications()
    event_id = earn(stack, tenant, pid, 100, at=NOW)
    backdated = earn(stack, tenant, pid, 5, at=NOW - dt.timedelta(days=31))
    who = stack.identity.participant(tenant, "user_abc123")
    assert balance(stack, md, pid, who) == ("5", "100")
    pending_notes = [n for n in stack.drain_notifications() if n.type == "points.pending"]
    assert [n.fact_id for n in pending_notes] == [f"points.pending:{event_id}:{pid}:{who}"]
    assert stack.runtime.points.activate_due(NOW + dt.timedelta(days=29)) == 0
    assert stack.runtime.points.activate_due(NOW + dt.timedelta(days=30, minutes=1)) == 1
    assert stack.runtime.points.activate_due(NOW + dt.timedelta(days=31)) == 0
    assert balance(stack, md, pid, who) == ("105", "0")
    activated = [n for n in stack.drain_notifications() if n.type == "points.activated"]
    assert [n.fact_id for n in activated] == [f"points.activated:{event_id}:{pid}:{who}"]
    refused = stack.failure(lambda: stack.stub.CancelPoints(rules_pb2.CancelPointsRequest(event_id=event_id),
                                                            metadata=md))
    assert (refused.code, refused.reason) == (grpc.StatusCode.ABORTED, "not_pending")
    assert backdated


def test_cancel_points_inside_the_window_and_again(stack: Stack) -> None:
    tenant, md = stack.tenant()
    pid = pending_program(stack, md, type=rules_pb2.PENDING_TYPE_DURATION, duration="P14D")
    event_id = earn(stack, tenant, pid, 80)
    who = stack.identity.participant(tenant, "user_abc123")
    partial = reverse(stack, md, event_id, "part", ratio="0.25")
    assert partial.points == "20" and balance(stack, md, pid, who) == ("0", "60")
    cancel = rules_pb2.CancelPointsRequest(event_id=event_id, reason="returned")
    first = stack.stub.CancelPoints(cancel, metadata=md)
    assert first.points == "60" and [t.kind for t in first.transactions] == [rules_pb2.ENTRY_KIND_CANCEL]
    assert [(b.available, b.pending) for b in first.balances] == [("0", "0")]
    again = stack.stub.CancelPoints(cancel, metadata=md)
    assert again.points == "0" and not again.transactions
    assert {r.status for r in lots(stack, tenant)} == {"CANCELLED"}
    assert ledger_sum(stack, tenant, who) == 0
    assert stack.balance(md, pid, who).lifetime_earned == "0"
    over = stack.failure(lambda: reverse(stack, md, event_id, "late", ratio="0.1"))
    assert over.reason == "reversal_exceeds_original"


def test_activate_points_early_starts_the_points_now(stack: Stack) -> None:
    tenant, md = stack.tenant()
    pid = pending_program(stack, md, type=rules_pb2.PENDING_TYPE_DURATION, duration="P30D")
    event_id = earn(stack, tenant, pid, 40)
    who = stack.identity.participant(tenant, "user_abc123")
    got = stack.stub.ActivatePoints(rules_pb2.ActivatePointsRequest(event_id=event_id), metadata=md)
    assert got.points == "40" and [(b.available, b.pending) for b in got.balances] == [("40", "0")]
    again = stack.stub.ActivatePoints(rules_pb2.ActivatePointsRequest(event_id=event_id), metadata=md)
    assert again.points == "0"
    [lot] = lots(stack, tenant)
    assert lot.status == "ACTIVE" and lot.activates_at <= dt.datetime.now(dt.UTC)
    assert stack.runtime.points.activate_due(NOW + dt.timedelta(days=40)) == 0
    assert balance(stack, md, pid, who) == ("40", "0")


@pytest.mark.parametrize("by", ["original_event_id", "original_idempotency_key"])
@pytest.mark.parametrize("order", ["earn_first", "activation_first"])
def test_on_event_points_activate_when_the_named_event_comes(stack: Stack, by: str, order: str) -> None:
    tenant, md = stack.tenant()
    pid = pending_program(stack, md, type=rules_pb2.PENDING_TYPE_ON_EVENT, event_types=["delivered"])
    purchase = stack.event(pid, data={"amount": 30})
    ref = purchase if by == "original_event_id" else stack.ingest.events[purchase].idempotency_key
    delivered = stack.event(pid, event_type="delivered", data={by: ref})
    who = stack.identity.participant(tenant, "user_abc123")
    first, second = (purchase, delivered) if order == "earn_first" else (delivered, purchase)
    stack.process(tenant, first)
    if order == "earn_first":
        assert balance(stack, md, pid, who) == ("0", "30")
    stack.process(tenant, second)
    stack.process(tenant, second)  # a redelivery activates nothing twice
    assert balance(stack, md, pid, who) == ("30", "0")
    assert ledger_sum(stack, tenant, who) == 30


def test_pending_policies_are_validated(stack: Stack) -> None:
    _, md = stack.tenant()
    for pending, field in ((rules_pb2.PendingPolicy(type=rules_pb2.PENDING_TYPE_DURATION, duration="30d"),
                            "pending.duration"),
                           (rules_pb2.PendingPolicy(type=rules_pb2.PENDING_TYPE_ON_EVENT), "pending.event_types"),
                           (rules_pb2.PendingPolicy(type=99), "pending.type")):
        bad = stack.failure(lambda pending=pending: stack.stub.CreateProgram(
            rules_pb2.CreateProgramRequest(name="x", pending=pending), metadata=md))
        assert bad.code == grpc.StatusCode.INVALID_ARGUMENT and field in bad.fields, bad
    bad = stack.failure(lambda: stack.stub.CreateProgram(
        rules_pb2.CreateProgramRequest(name="x", monetary_field=" total"), metadata=md))
    assert "monetary_field" in bad.fields


@pytest.mark.integration
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_parallel_reversals_of_one_event_stay_exact(stack: Stack) -> None:
    """Row locks on PostgreSQL (SQLite writers are serial anyway): 8 reversals of one event."""
    tenant, md = stack.tenant()
    pid = program(stack, md)
    rule(stack, md, pid, "properties.amount")
    event_id = earn(stack, tenant, pid, 1001)
    who = stack.identity.participant(tenant, "user_abc123")
    results: list[Any] = []
    start = threading.Barrier(8)

    def one(i: int) -> None:
        start.wait()
        try:
            results.append(reverse(stack, md, event_id, f"k{i}", ratio="0.2"))
        except grpc.RpcError as exc:
            results.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = [r for r in results if isinstance(r, rules_pb2.Reversal)]
    refused = [r for r in results if not isinstance(r, rules_pb2.Reversal)]
    assert len(done) == 5 and len(refused) == 3
    assert all(r.code() == grpc.StatusCode.ABORTED for r in refused)
    assert sum(D(r.points) for r in done) == 1001
    assert balance(stack, md, pid, who) == ("0", "0")
    assert ledger_sum(stack, tenant, who) == 0


def test_a_pending_policy_change_applies_to_points_earned_afterwards(stack: Stack) -> None:
    tenant, md = stack.tenant()
    pid = pending_program(stack, md, type=rules_pb2.PENDING_TYPE_IMMEDIATE)
    earn(stack, tenant, pid, 10)
    changed = stack.stub.UpdateProgram(rules_pb2.UpdateProgramRequest(
        program_id=pid, pending=rules_pb2.PendingPolicy(type=rules_pb2.PENDING_TYPE_DURATION, duration="P7D"),
        monetary_field="total"), metadata=md)
    assert (changed.pending.duration, changed.monetary_field) == ("P7D", "total")
    earn(stack, tenant, pid, 5)
    who = stack.identity.participant(tenant, "user_abc123")
    assert balance(stack, md, pid, who) == ("10", "5")
    cleared = stack.stub.UpdateProgram(rules_pb2.UpdateProgramRequest(program_id=pid, monetary_field=""),
                                       metadata=md)
    assert (cleared.monetary_field, cleared.pending.type) == ("", rules_pb2.PENDING_TYPE_DURATION)
