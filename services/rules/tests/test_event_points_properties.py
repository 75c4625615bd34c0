"""Properties of pending points and reversals (hypothesis), on SQLite and PostgreSQL: random
sequences of earns processed in any order and redelivered, activating events, reversals
(retried with their key, or reusing it with another body), cancellations, early
activations, spending, activation and expiry runs keep the bank exact:

- available = the remaining of ACTIVE lots - debt; pending = the remaining of PENDING lots;
- the ledger's sum = available + pending (EXPIRE entries included);
- no lot below 0 or above its original;
- an event's reversals and cancellation never take more than it earned;
- lifetime earned = earned - what reversals and cancellations took back.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
from typing import TYPE_CHECKING, Any

import grpc
import sqlalchemy as sa
from accrual.rules.v1 import rules_pb2
from accrual_rules import storage
from accrual_rules.expiry import BankJobs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

if TYPE_CHECKING:
    from conftest import Stack

D = decimal.Decimal
NOW = dt.datetime.now(dt.UTC)
RATIOS = ("0.1", "0.25", "0.5", "1")

ops = st.lists(st.one_of(
    st.tuples(st.just("earn"), st.integers(1, 300), st.sampled_from([0, 0, 20])),
    st.tuples(st.just("process"), st.integers(0, 7), st.booleans()),
    st.tuples(st.just("deliver"), st.integers(0, 7), st.booleans()),
    st.tuples(st.just("reverse"), st.integers(0, 7), st.sampled_from(RATIOS), st.integers(0, 2)),
    st.tuples(st.just("cancel"), st.integers(0, 7)),
    st.tuples(st.just("activate"), st.integers(0, 7)),
    st.tuples(st.just("spend"), st.integers(1, 200)),
    st.tuples(st.just("run"), st.sampled_from([0, 5, 11, 30, 45, 80])),
), min_size=1, max_size=14)


def _run(stack: Stack, steps: list[tuple[Any, ...]], pending: str, negative: str) -> None:
    tenant, md = stack.tenant()
    policy = (rules_pb2.PendingPolicy(type=rules_pb2.PENDING_TYPE_DURATION, duration="P10D") if pending == "DURATION"
              else rules_pb2.PendingPolicy(type=rules_pb2.PENDING_TYPE_ON_EVENT, event_types=["delivered"]))
    pid = str(stack.stub.CreateProgram(rules_pb2.CreateProgramRequest(
        name="props", pending=policy, expiry=rules_pb2.ExpiryPolicy(type=rules_pb2.EXPIRY_TYPE_ROLLING, period="P1M"),
        negative_balance=rules_pb2.NegativeBalancePolicy.Value(
            f"NEGATIVE_BALANCE_POLICY_{negative}"),
        tiers=[rules_pb2.Tier(name="gold", min_lifetime_points="500", multiplier="1.5")]), metadata=md).program_id)
    stack.stub.CreateRule(rules_pb2.CreateRuleRequest(program_id=pid, name="spend", formula="properties.amount",
                                                      event_type="purchase"), metadata=md)
    who = stack.identity.participant(tenant, "user_abc123")
    events: list[str] = []
    done: set[str] = set()
    spent = 0

    def pick(i: int) -> str | None:
        return events[i % len(events)] if events else None

    def allowed(call: Any, *reasons: str) -> None:
        refused: list[grpc.RpcError] = []
        try:
            call()
        except grpc.RpcError as exc:
            refused.append(exc)
        if refused:
            failure = stack.failure(functools.partial(_raise, refused[0]))
            assert failure.reason in reasons, (failure.code, failure.reason, failure.message)

    for step in steps:
        kind = step[0]
        if kind == "earn":
            events.append(stack.event(pid, data={"amount": step[1]}, at=NOW - dt.timedelta(days=step[2])))
        elif kind == "process" and (event_id := pick(step[1])):
            stack.process(tenant, event_id)
            if step[2]:
                stack.process(tenant, event_id)  # redelivered
            done.add(event_id)
        elif kind == "deliver" and (event_id := pick(step[1])):
            ref = ({"original_event_id": event_id} if step[2] else
                   {"original_idempotency_key": stack.ingest.events[event_id].idempotency_key})
            stack.process(tenant, stack.event(pid, event_type="delivered", data=ref))
        elif kind == "reverse" and (event_id := pick(step[1])):
            allowed(lambda e=event_id, s=step: stack.stub.CreateReversal(rules_pb2.CreateReversalRequest(
                event_id=e, idempotency_key=f"k{s[3]}", ratio=s[2], reason="refund"), metadata=md),
                "event_not_completed", "reversal_exceeds_original", "insufficient_points", "idempotency_conflict")
        elif kind == "cancel" and (event_id := pick(step[1])):
            allowed(lambda e=event_id: stack.stub.CancelPoints(rules_pb2.CancelPointsRequest(event_id=e),
                                                               metadata=md),
                    "event_not_completed", "not_pending", "insufficient_points")
        elif kind == "activate" and (event_id := pick(step[1])):
            allowed(lambda e=event_id: stack.stub.ActivatePoints(rules_pb2.ActivatePointsRequest(event_id=e),
                                                                 metadata=md),
                    "event_not_completed", "not_pending")
        elif kind == "spend":
            spent += 1
            allowed(lambda s=step, n=spent: stack.stub.CreateAdjustment(rules_pb2.CreateAdjustmentRequest(
                program_id=pid, participant_id=who, amount=f"-{s[1]}", reason="spend",
                idempotency_key=f"spend-{n}"), metadata=md), "insufficient_points")
        elif kind == "run":  # the scheduler's bank jobs at a later time: activation, then expiry
            stack.runtime.points.activate_due(NOW + dt.timedelta(days=step[1]))
            BankJobs(stack.runtime.store).run(NOW + dt.timedelta(days=step[1]))
        _check(stack, md, tenant, pid, who)
    for event_id in events:
        if event_id not in done:
            stack.process(tenant, event_id)
    stack.runtime.points.activate_due(NOW + dt.timedelta(days=11))
    _check(stack, md, tenant, pid, who)


def _raise(exc: BaseException) -> None:
    raise exc


def _check(stack: Stack, md: list[tuple[str, str]], tenant: str, pid: str, who: str) -> None:
    balance = stack.balance(md, pid, who)
    available, pending, debt = D(balance.available), D(balance.pending), D(balance.debt)
    lots, entries = storage.lots, storage.ledger
    with stack.runtime.db.transaction() as session:
        rows = list(session.execute(sa.select(lots).where(lots.c.tenant_id == tenant)))
        ledger = list(session.execute(sa.select(entries).where(entries.c.tenant_id == tenant)))
    for lot in rows:
        assert 0 <= lot.remaining <= lot.original, lot
    assert available == sum((r.remaining for r in rows if r.status == "ACTIVE"), D(0)) - debt
    assert pending == sum((r.remaining for r in rows if r.status == "PENDING"), D(0))
    assert sum((e.amount for e in ledger), D(0)) == available + pending
    earned: dict[str, D] = {}
    taken: dict[str, D] = {}
    for e in ledger:
        if e.kind == "EARN":
            earned[e.event_id] = earned.get(e.event_id, D(0)) + e.amount
        elif e.kind in ("REVERSAL", "CANCEL"):
            taken[e.event_id] = taken.get(e.event_id, D(0)) - e.amount + (e.unrecovered or 0)
    for event_id, points in taken.items():
        assert points <= earned.get(event_id, D(0)), event_id
    assert D(balance.lifetime_earned) == sum(earned.values(), D(0)) - sum(taken.values(), D(0))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(steps=ops, pending=st.sampled_from(["DURATION", "ON_EVENT"]),
       negative=st.sampled_from(["FORBID", "CLAMP", "ALLOW"]))
def test_random_sequences_keep_the_bank_exact(stack: Stack, steps: list[tuple[Any, ...]], pending: str,
                                              negative: str) -> None:
    _run(stack, steps, pending, negative)
