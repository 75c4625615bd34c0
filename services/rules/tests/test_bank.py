"""The points bank on SQLite and PostgreSQL: lots from earns and adjustments, allocations,
negative balance policies and debt, the expiry run and its webhooks, the balance and lots
routes; invariants under random sequences (hypothesis) and expiry racing debits."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections import defaultdict
from decimal import Decimal as D
from typing import TYPE_CHECKING, Any

import grpc
import pytest
import sqlalchemy as sa
from accrual.rules.v1 import rules_pb2
from accrual_platform.db import utcnow
from accrual_platform.facts import data_of
from accrual_rules import storage
from accrual_rules.domain.bank import Allocation
from accrual_rules.expiry import BankJobs
from accrual_rules.merging import merge_ledgers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

if TYPE_CHECKING:
    from conftest import Stack

UTC = dt.UTC
ROLLING_1M = rules_pb2.ExpiryPolicy(type=rules_pb2.EXPIRY_TYPE_ROLLING, period="P1M")
POLICIES = {"FORBID": rules_pb2.NEGATIVE_BALANCE_POLICY_FORBID, "CLAMP": rules_pb2.NEGATIVE_BALANCE_POLICY_CLAMP,
            "ALLOW": rules_pb2.NEGATIVE_BALANCE_POLICY_ALLOW}


def program(stack: Stack, md: list[tuple[str, str]], formula: str = "properties.amount", **kw: Any) -> str:
    pid = str(stack.stub.CreateProgram(rules_pb2.CreateProgramRequest(name="Bank", **kw), metadata=md).program_id)
    stack.stub.CreateRule(rules_pb2.CreateRuleRequest(program_id=pid, name="earn", formula=formula), metadata=md)
    return pid


def earn(stack: Stack, tenant: str, pid: str, amount: int, at: dt.datetime, who: str = "bank-user") -> str:
    event_id = stack.event(pid, external_id=who, data={"amount": amount}, at=at)
    stack.process(tenant, event_id)
    return event_id


def adjust(stack: Stack, md: list[tuple[str, str]], pid: str, participant: str, amount: str,
           key: str | None = None, **kw: Any) -> rules_pb2.Adjustment:
    return stack.stub.CreateAdjustment(rules_pb2.CreateAdjustmentRequest(
        program_id=pid, participant_id=participant, amount=amount, reason="test",
        idempotency_key=key or str(uuid.uuid4()), **kw), metadata=md)


def lots(stack: Stack, md: list[tuple[str, str]], pid: str, participant: str, status: int = 0) -> list[rules_pb2.Lot]:
    return list(stack.stub.ListLots(rules_pb2.ListLotsRequest(program_id=pid, participant_id=participant,
                                                              status=status), metadata=md).lots)


def check_invariants(stack: Stack, tenant: str) -> dict[tuple[str, str], dict[str, D]]:
    """The bank's invariants over every account of the tenant; returns the per-account sums."""
    lt, at, et, bt = storage.lots, storage.lot_allocations, storage.ledger, storage.balances
    with stack.runtime.db.transaction() as session:
        lot_rows = session.execute(sa.select(lt).where(lt.c.tenant_id == tenant)).all()
        alloc_rows = session.execute(sa.select(at).where(at.c.tenant_id == tenant)).all()
        entries = session.execute(sa.select(et).where(et.c.tenant_id == tenant)).all()
        balances = session.execute(sa.select(bt).where(bt.c.tenant_id == tenant)).all()
    taken: dict[str, D] = defaultdict(D)
    for a in alloc_rows:
        taken[a.lot_id] += a.amount
    kinds = {e.id: e.kind for e in entries}
    sums: dict[tuple[str, str], dict[str, D]] = defaultdict(lambda: defaultdict(D))
    for lot in lot_rows:
        assert D(0) <= lot.remaining <= lot.original, lot
        assert lot.original - lot.remaining == taken[lot.id], lot
        assert (lot.remaining == 0) == (lot.status in ("EXHAUSTED", "EXPIRED", "CANCELLED")), lot
        sums[(lot.program_id, lot.participant_id)][lot.status] += lot.remaining
    for e in entries:
        sums[(e.program_id, e.participant_id)]["ledger"] += e.amount
        sums[(e.program_id, e.participant_id)][f"kind:{e.kind}"] += e.amount
    expired_by_allocation: dict[tuple[str, str], D] = defaultdict(D)
    lot_account = {lot.id: (lot.program_id, lot.participant_id) for lot in lot_rows}
    for a in alloc_rows:
        if kinds.get(a.entry_id) == "EXPIRE":
            expired_by_allocation[lot_account[a.lot_id]] += a.amount
    for b in balances:
        s = sums[(b.program_id, b.participant_id)]
        assert b.debt >= 0
        assert b.available == s["ACTIVE"] - b.debt, (b, dict(s))
        assert b.pending == s["PENDING"], (b, dict(s))
        # what the ledger credited is available, pending, expired or taken by debits
        assert s["ledger"] == b.available + b.pending, (b, dict(s))
        assert -s["kind:EXPIRE"] == expired_by_allocation[(b.program_id, b.participant_id)]
        s["available"], s["debt"] = b.available, b.debt
    return sums


def test_earns_and_adjustments_make_lots_and_debits_record_allocations(stack: Stack) -> None:
    tenant, md = stack.tenant()
    pid = program(stack, md, expiry=ROLLING_1M, timezone="Europe/Paris")
    first = earn(stack, tenant, pid, 100, dt.datetime(2026, 1, 31, 10, tzinfo=UTC))
    participant = stack.identity.participant(tenant, "bank-user")
    earn(stack, tenant, pid, 50, dt.datetime(2026, 1, 10, 10, tzinfo=UTC))
    stack.process(tenant, first)  # a redelivery makes no second lot
    got = lots(stack, md, pid, participant)
    assert [(x.original, x.status) for x in got] == [("50", rules_pb2.LOT_STATUS_ACTIVE),
                                                     ("100", rules_pb2.LOT_STATUS_ACTIVE)]
    # Jan 31 + P1M ends with Feb 28, at midnight in Paris (23:00 UTC)
    assert got[1].expires_at.ToDatetime(UTC) == dt.datetime(2026, 2, 28, 23, tzinfo=UTC)
    assert got[1].event_id == first and got[1].earned_at.ToDatetime(UTC) == dt.datetime(2026, 1, 31, 10, tzinfo=UTC)
    debit = adjust(stack, md, pid, participant, "-70")
    # the lot expiring first (earned Jan 10) goes first
    assert [(a.lot_id, a.amount) for a in debit.transaction.allocations] == [(got[0].lot_id, "50"),
                                                                             (got[1].lot_id, "20")]
    assert debit.balance.available == "80"
    history = stack.stub.ListTransactions(rules_pb2.ListTransactionsRequest(
        program_id=pid, participant_id=participant), metadata=md).transactions
    assert [len(t.allocations) for t in history] == [2, 0, 0]
    assert lots(stack, md, pid, participant, rules_pb2.LOT_STATUS_EXHAUSTED)[0].lot_id == got[0].lot_id
    balance = stack.balance(md, pid, participant)
    assert [(e.expires_on, e.points) for e in balance.expiring] == [("2026-02-28", "80")]
    credit = adjust(stack, md, pid, participant, "5")
    assert [x.transaction_id for x in lots(stack, md, pid, participant)][-1] == credit.transaction.transaction_id
    check_invariants(stack, tenant)


def test_negative_balance_policies(stack: Stack) -> None:
    tenant, md = stack.tenant()
    participant = str(uuid.uuid4())
    forbid = program(stack, md)
    adjust(stack, md, forbid, participant, "10")
    failure = stack.failure(lambda: adjust(stack, md, forbid, participant, "-15"))
    assert failure.reason == "insufficient_points" and failure.fields == ["amount"]
    clamp = program(stack, md, negative_balance=POLICIES["CLAMP"])
    adjust(stack, md, clamp, participant, "10")
    clamped = adjust(stack, md, clamp, participant, "-15")
    assert (clamped.transaction.amount, clamped.transaction.unrecovered, clamped.balance.available) == \
        ("-10", "5", "0")
    allow = program(stack, md, negative_balance=POLICIES["ALLOW"])
    adjust(stack, md, allow, participant, "10")
    owed = adjust(stack, md, allow, participant, "-15")
    assert (owed.balance.available, owed.balance.debt) == ("-5", "5")
    # a later credit pays the debt first: its lot keeps only the rest
    paid = adjust(stack, md, allow, participant, "8")
    assert (paid.balance.available, paid.balance.debt) == ("3", "0")
    (lot,) = lots(stack, md, allow, participant, rules_pb2.LOT_STATUS_ACTIVE)
    assert (lot.original, lot.remaining) == ("8", "3")
    # allow_negative keeps its old meaning under FORBID: the debit goes through, as debt
    legacy = adjust(stack, md, forbid, participant, "-25", allow_negative=True)
    assert (legacy.balance.available, legacy.balance.debt) == ("-15", "15")
    check_invariants(stack, tenant)


def test_policy_fields_are_validated_and_shown(stack: Stack) -> None:
    _, md = stack.tenant()
    bad = stack.failure(lambda: stack.stub.CreateProgram(rules_pb2.CreateProgramRequest(
        name="x", timezone="Nowhere/Else", expiry=rules_pb2.ExpiryPolicy(type=rules_pb2.EXPIRY_TYPE_ROLLING)),
        metadata=md))
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT and set(bad.fields) == {"timezone", "expiry.period"}
    pid = program(stack, md)
    shown = stack.stub.GetProgram(rules_pb2.GetProgramRequest(program_id=pid), metadata=md)
    assert (shown.expiry.type, shown.timezone, shown.negative_balance, list(shown.expiring_lead_days)) == \
        (rules_pb2.EXPIRY_TYPE_NONE, "UTC", rules_pb2.NEGATIVE_BALANCE_POLICY_FORBID, [30, 7])
    changed = stack.stub.UpdateProgram(rules_pb2.UpdateProgramRequest(
        program_id=pid, expiry=rules_pb2.ExpiryPolicy(type=rules_pb2.EXPIRY_TYPE_CALENDAR, month_day="12-31"),
        expiring_lead_days=[14]), metadata=md)
    assert (changed.expiry.month_day, changed.timezone, list(changed.expiring_lead_days)) == ("12-31", "UTC", [14])
    bad = stack.failure(lambda: stack.stub.UpdateProgram(rules_pb2.UpdateProgramRequest(
        program_id=pid, expiry=rules_pb2.ExpiryPolicy(type=7)), metadata=md))
    assert bad.fields == ["expiry.type"]
    rule = stack.stub.CreateRule(rules_pb2.CreateRuleRequest(
        program_id=pid, name="short", formula="1", expiry=rules_pb2.ExpiryPolicy(
            type=rules_pb2.EXPIRY_TYPE_ROLLING, period="P7D")), metadata=md)
    assert rule.HasField("expiry") and rule.expiry.period == "P7D"
    bad = stack.failure(lambda: stack.stub.CreateRule(rules_pb2.CreateRuleRequest(
        program_id=pid, name="bad", formula="1", expiry=rules_pb2.ExpiryPolicy(
            type=rules_pb2.EXPIRY_TYPE_ROLLING, period="soon")), metadata=md))
    assert bad.fields == ["expiry.period"]
    bad = stack.failure(lambda: stack.stub.ListLots(rules_pb2.ListLotsRequest(
        program_id=pid, participant_id=str(uuid.uuid4()), status=9), metadata=md))
    assert bad.fields == ["status"]


def test_a_rule_expiry_overrides_the_program_and_policy_changes_apply_to_new_lots(stack: Stack) -> None:
    tenant, md = stack.tenant()
    pid = program(stack, md, formula="10", expiry=ROLLING_1M)
    stack.stub.CreateRule(rules_pb2.CreateRuleRequest(
        program_id=pid, name="bonus", formula="1", expiry=rules_pb2.ExpiryPolicy(
            type=rules_pb2.EXPIRY_TYPE_ROLLING, period="P7D")), metadata=md)
    at = dt.datetime(2026, 6, 10, 12, tzinfo=UTC)
    earn(stack, tenant, pid, 0, at)
    participant = stack.identity.participant(tenant, "bank-user")
    ends = sorted(x.expires_at.ToDatetime(UTC) for x in lots(stack, md, pid, participant))
    assert ends == [dt.datetime(2026, 6, 18, tzinfo=UTC), dt.datetime(2026, 7, 11, tzinfo=UTC)]
    stack.stub.UpdateProgram(rules_pb2.UpdateProgramRequest(
        program_id=pid, expiry=rules_pb2.ExpiryPolicy(type=rules_pb2.EXPIRY_TYPE_NONE)), metadata=md)
    earn(stack, tenant, pid, 0, at)
    after = lots(stack, md, pid, participant)
    assert sorted(x.expires_at.ToDatetime(UTC) for x in after[:2]) == ends  # the old lots keep their dates
    assert sum(not x.HasField("expires_at") for x in after) == 1


def test_expiry_run_expires_the_remainder_once_and_announces_it(stack: Stack) -> None:
    tenant, md = stack.tenant()
    pid = program(stack, md, expiry=ROLLING_1M, expiring_lead_days=[30, 7])
    start = dt.datetime(2026, 3, 5, 12, tzinfo=UTC)
    earn(stack, tenant, pid, 100, start)
    participant = stack.identity.participant(tenant, "bank-user")
    adjust(stack, md, pid, participant, "-30")
    jobs = BankJobs(stack.runtime.store)
    stack.drain_notifications()
    # 7 days before the end of Apr 5: one points.expiring with what is left
    jobs.run(dt.datetime(2026, 3, 29, 8, tzinfo=UTC))
    jobs.run(dt.datetime(2026, 3, 29, 9, tzinfo=UTC))  # the same day again: nothing new
    notes = [n for n in stack.drain_notifications() if n.tenant_id == tenant]
    assert [(n.type, data_of(n)["points"], data_of(n)["expires_on"], data_of(n)["lead_days"]) for n in notes] == \
        [("points.expiring", "70", "2026-04-05", 7)]
    due = dt.datetime(2026, 4, 6, 0, 0, tzinfo=UTC)
    for _ in range(2):
        jobs.run(due)
    (lot,) = lots(stack, md, pid, participant)
    assert (lot.status, lot.remaining) == (rules_pb2.LOT_STATUS_EXPIRED, "0")
    history = stack.stub.ListTransactions(rules_pb2.ListTransactionsRequest(
        program_id=pid, participant_id=participant), metadata=md).transactions
    expired = [t for t in history if t.kind == rules_pb2.ENTRY_KIND_EXPIRE]
    assert [(t.amount, [a.amount for a in t.allocations]) for t in expired] == [("-70", ["70"])]
    assert stack.balance(md, pid, participant).available == "0"
    notes = [n for n in stack.drain_notifications() if n.tenant_id == tenant]
    assert [(n.type, data_of(n)["points"]) for n in notes] == [("points.expired", "70")]
    # nothing left: no points.expiring for a later day either
    jobs.run(dt.datetime(2026, 4, 20, tzinfo=UTC))
    assert not [n for n in stack.drain_notifications() if n.tenant_id == tenant]
    check_invariants(stack, tenant)


def test_points_restored_into_an_expired_lot_expire_at_once(stack: Stack) -> None:
    tenant, md = stack.tenant()
    pid = program(stack, md, expiry=ROLLING_1M)
    participant = stack.identity.participant(tenant, "bank-user")
    earn(stack, tenant, pid, 40, dt.datetime(2026, 1, 5, tzinfo=UTC))
    debit = adjust(stack, md, pid, participant, "-25")
    BankJobs(stack.runtime.store).run(dt.datetime(2026, 3, 1, tzinfo=UTC))
    taken = [Allocation(a.lot_id, D(a.amount)) for a in debit.transaction.allocations]
    now = utcnow()
    with stack.runtime.store.ledger_transaction() as tx:
        account = tx.lock_account(tenant, pid, participant)
        entry_id = str(uuid.uuid4())
        tx.post(tenant_id=tenant, program_id=pid, participant_id=participant, amount=D(25), kind="ADJUSTMENT",
                source=f"restore:{entry_id}", reason="undo", occurred_at=now, now=now, entry_id=entry_id)
        plan, expired = tx.restore(tenant, account, entry_id, taken, D(25), now)
        tx.write_accounts(tenant, [account], now)
    assert (plan, expired) == ([Allocation(taken[0].lot_id, D(-25))], D(25))
    assert stack.balance(md, pid, participant).available == "0"
    (lot,) = lots(stack, md, pid, participant)
    assert (lot.status, lot.remaining) == (rules_pb2.LOT_STATUS_EXPIRED, "0")
    check_invariants(stack, tenant)


def test_sliding_expiry_extends_active_lots_on_activity(stack: Stack) -> None:
    tenant, md = stack.tenant()
    pid = program(stack, md, expiry=rules_pb2.ExpiryPolicy(
        type=rules_pb2.EXPIRY_TYPE_SLIDING, period="P30D", activity=["purchase"]))
    participant = stack.identity.participant(tenant, "bank-user")
    soon = utcnow() + dt.timedelta(days=1)
    earn(stack, tenant, pid, 10, soon)
    first = lots(stack, md, pid, participant)[0].expires_at.ToDatetime(UTC)
    later = soon + dt.timedelta(days=5)
    stack.event(pid, external_id="bank-user", event_type="login", data={"amount": 0}, at=later)
    stack.process(tenant, *[e for e in stack.ingest.events if stack.ingest.events[e].event_type == "login"
                            and stack.ingest.events[e].program_id == pid])
    assert lots(stack, md, pid, participant)[0].expires_at.ToDatetime(UTC) == first  # not an activity kind
    earn(stack, tenant, pid, 0, later)
    assert lots(stack, md, pid, participant)[0].expires_at.ToDatetime(UTC) == first + dt.timedelta(days=5)
    # two purchases in one batch: every lot, the batch's own too, ends with the later one
    batch = [stack.event(pid, external_id="bank-user", data={"amount": 3}, at=later + dt.timedelta(days=d))
             for d in (3, 1)]
    stack.process(tenant, *batch)
    ends = {x.expires_at.ToDatetime(UTC) for x in lots(stack, md, pid, participant, rules_pb2.LOT_STATUS_ACTIVE)}
    assert ends == {first + dt.timedelta(days=8)}


def test_a_merge_moves_lots_and_debt(stack: Stack) -> None:
    from accrual.messages.v1 import messages_pb2
    tenant, md = stack.tenant()
    pid = program(stack, md, negative_balance=POLICIES["ALLOW"], expiry=ROLLING_1M)
    merged, survivor = str(uuid.uuid4()), str(uuid.uuid4())
    adjust(stack, md, pid, merged, "10")
    adjust(stack, md, pid, survivor, "-4")
    msg = messages_pb2.ParticipantsMerged(tenant_id=tenant, merge_id=str(uuid.uuid4()),
                                          merged_participant_id=merged, survivor_participant_id=survivor)
    merge_ledgers(stack.runtime.db, msg)
    assert len(lots(stack, md, pid, survivor)) == 1 and not lots(stack, md, pid, merged)
    balance = stack.balance(md, pid, survivor)
    assert (balance.available, balance.debt) == ("6", "4")
    check_invariants(stack, tenant)


# -- properties ---------------------------------------------------------------------------------
OPS = st.lists(st.one_of(
    st.tuples(st.just("earn"), st.integers(1, 60), st.booleans()),
    st.tuples(st.just("credit"), st.integers(1, 60), st.integers(0, 3)),
    st.tuples(st.just("debit"), st.integers(1, 80), st.integers(0, 3)),
    st.tuples(st.just("expire"), st.integers(1, 40), st.just(False)),
), min_size=1, max_size=14)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, policy=st.sampled_from(sorted(POLICIES)), period=st.sampled_from(["P10D", "P1M", "P2W"]))
def test_random_sequences_keep_the_bank_exact(stack: Stack, ops: list[tuple[str, int, Any]], policy: str,
                                              period: str) -> None:
    """Earns (some redelivered), credits and debits (keys reused: retries), and expiry runs at
    an advancing clock keep: available = active lots' remaining - debt; every lot between 0
    and its original, original - remaining = its allocations; the ledger's sum = available +
    pending, with EXPIRE entries equal to what expiry allocations took."""
    tenant, md = stack.tenant()
    pid = program(stack, md, negative_balance=POLICIES[policy], expiry=rules_pb2.ExpiryPolicy(
        type=rules_pb2.EXPIRY_TYPE_ROLLING, period=period))
    who = f"prop-{uuid.uuid4()}"
    participant = stack.identity.participant(tenant, who)
    clock = utcnow()
    jobs = BankJobs(stack.runtime.store, chunk=3)
    keys = [str(uuid.uuid4()) for _ in range(4)]
    events: list[str] = []
    for op, amount, extra in ops:
        if op == "earn":
            if extra and events:
                stack.process(tenant, events[-1])
            else:
                events.append(earn(stack, tenant, pid, amount, clock, who))
        elif op in ("credit", "debit"):
            value = str(amount if op == "credit" else -amount)
            try:
                adjust(stack, md, pid, participant, value, key=f"{keys[extra]}:{value}")
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.ABORTED and policy == "FORBID", exc
        else:
            clock += dt.timedelta(days=amount)
            jobs.run(clock)
        check_invariants(stack, tenant)


@pytest.mark.integration
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_expiry_racing_debits_on_the_same_lots_stays_exact(stack: Stack) -> None:
    """PostgreSQL row locks: 3 expiry runs (as if on three machines) and 4 debit threads over
    the same 60 lots; every point is taken once, by a debit or by expiry."""
    tenant, md = stack.tenant()
    pid = program(stack, md, expiry=rules_pb2.ExpiryPolicy(type=rules_pb2.EXPIRY_TYPE_ROLLING, period="P1D"),
                  negative_balance=POLICIES["CLAMP"])
    participants = [str(uuid.uuid4()) for _ in range(3)]
    for p in participants:
        for _ in range(20):
            adjust(stack, md, pid, p, "5")
    later = utcnow() + dt.timedelta(days=3)
    failures: list[BaseException] = []

    def expire() -> None:
        try:
            BankJobs(stack.runtime.store, chunk=7).run(later)
        except BaseException as exc:
            failures.append(exc)

    def debit(p: str) -> None:
        try:
            for _ in range(10):
                adjust(stack, md, pid, p, "-7")
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=expire) for _ in range(3)]
    threads += [threading.Thread(target=debit, args=(participants[i % 3],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    sums = check_invariants(stack, tenant)
    for p in participants:
        s = sums[(pid, p)]
        assert s["available"] == 0 and s["ACTIVE"] == 0
        # the 100 credited went to debits and expiry, nothing twice
        assert s["ledger"] == 0 and s["kind:EXPIRE"] <= 0
    lt = storage.lots
    with stack.runtime.db.transaction() as session:
        statuses = {r.status for r in session.execute(sa.select(lt.c.status).where(lt.c.tenant_id == tenant))}
    assert statuses <= {"EXPIRED", "EXHAUSTED"}

