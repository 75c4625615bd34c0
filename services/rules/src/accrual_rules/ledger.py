"""Ledger writes shared by the worker and the API.

Every change of a balance happens in one transaction that first locks the balance row
(``SELECT … FOR UPDATE`` on PostgreSQL; SQLite transactions are ``BEGIN IMMEDIATE`` and
therefore serial), then appends entries whose ``source`` is unique, then updates the balance.
Cap usage is read from the ledger inside that same transaction, after the locks: per
participant caps are serialised by the beneficiary's balance lock, a rule's total budget by a
lock on the rule row, so concurrent events can never award past a cap.
"""

from __future__ import annotations

import calendar
import datetime as dt
import decimal
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from accrual.messages.v1 import messages_pb2
from accrual_platform import facts
from accrual_platform.db import in_values, insert_rows, update_rows, utcnow
from accrual_platform.ids import new_id
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from accrual_rules import storage
from accrual_rules.domain import Json
from accrual_rules.domain.evaluation import CapUsage, ProgramPolicy, RuleSpec, window_starts

ZERO = decimal.Decimal(0)


def insert_for(dialect: str) -> Any:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


@dataclass
class Account:
    """A locked balance row, as read at lock time."""

    program_id: str
    participant_id: str
    available: decimal.Decimal
    lifetime_earned: decimal.Decimal
    tier: str | None
    #: points owed (ALLOW policy), paid off first by later active credits
    debt: decimal.Decimal = ZERO
    #: the remaining points of PENDING lots
    pending: decimal.Decimal = ZERO


def _account(row: Any) -> Account:
    return Account(row.program_id, row.participant_id, row.available, row.lifetime_earned, row.tier,
                   row.debt, row.pending)


def lock_account(session: Session, dialect: str, tenant_id: str, program_id: str,
                 participant_id: str) -> Account:
    b = storage.balances
    session.execute(insert_for(dialect)(b).values(
        tenant_id=tenant_id, program_id=program_id, participant_id=participant_id,
        available=ZERO, lifetime_earned=ZERO, tier=None, updated_at=utcnow(),
    ).on_conflict_do_nothing(index_elements=["tenant_id", "program_id", "participant_id"]))
    query = sa.select(b).where(b.c.tenant_id == tenant_id, b.c.program_id == program_id,
                               b.c.participant_id == participant_id)
    if dialect == "postgresql":
        query = query.with_for_update()
    return _account(session.execute(query).one())


def lock_accounts(session: Session, dialect: str, tenant_id: str,
                  keys: Iterable[tuple[str, str]], *, create: bool = True) -> dict[tuple[str, str], Account]:
    """Lock many balance rows, creating missing ones (unless not ``create``: callers whose
    accounts exist, like the expiry run), in (program, participant) order: a few statements
    for a whole batch instead of two per event, and one lock order for every worker, so
    overlapping batches queue instead of deadlocking."""
    ordered = sorted(set(keys))
    if not ordered:
        return {}
    b = storage.balances
    now = utcnow()
    out: dict[tuple[str, str], Account] = {}
    for start in range(0, len(ordered), 500):
        chunk = ordered[start:start + 500]
        if create:
            insert_rows(session, b, [
                {"tenant_id": tenant_id, "program_id": program_id, "participant_id": participant_id,
                 "available": ZERO, "lifetime_earned": ZERO, "tier": None, "updated_at": now}
                for program_id, participant_id in chunk],
                conflict=lambda s: s.on_conflict_do_nothing(
                    index_elements=["tenant_id", "program_id", "participant_id"]))
        query = sa.select(b).where(b.c.tenant_id == tenant_id,
                                   in_values(session, [b.c.program_id, b.c.participant_id], chunk)
                                   ).order_by(b.c.program_id, b.c.participant_id)
        if dialect == "postgresql":
            query = query.with_for_update()
        for row in session.execute(query):
            out[(row.program_id, row.participant_id)] = _account(row)
    return out


def read_accounts(session: Session, tenant_id: str,
                  keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Account]:
    """Many balance rows as they are, without locks (a missing one reads as zero)."""
    wanted = sorted(set(keys))
    b = storage.balances
    out = {key: Account(key[0], key[1], ZERO, ZERO, None) for key in wanted}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        for row in session.execute(sa.select(b).where(
                b.c.tenant_id == tenant_id, in_values(session, [b.c.program_id, b.c.participant_id], chunk))):
            out[(row.program_id, row.participant_id)] = _account(row)
    return out


def read_account(session: Session, tenant_id: str, program_id: str, participant_id: str) -> Account:
    b = storage.balances
    row = session.execute(sa.select(b).where(
        b.c.tenant_id == tenant_id, b.c.program_id == program_id,
        b.c.participant_id == participant_id)).first()
    if row is None:
        return Account(program_id, participant_id, ZERO, ZERO, None)
    return _account(row)


def lock_budget_rules(session: Session, dialect: str, tenant_id: str, rules: Iterable[RuleSpec]) -> None:
    """Lock the rows of rules with a total budget, in id order (no deadlock between workers)."""
    ids = sorted({r.rule_id for r in rules if r.caps.total_budget is not None})
    if ids and dialect == "postgresql":
        r = storage.rules
        session.execute(sa.select(r.c.id).where(r.c.tenant_id == tenant_id, r.c.id.in_(ids))
                        .order_by(r.c.id).with_for_update())


def _next_month(start: dt.datetime) -> dt.datetime:
    days = calendar.monthrange(start.year, start.month)[1]
    return start + dt.timedelta(days=days)


def cap_usage(session: Session, tenant_id: str, rules: Iterable[RuleSpec], participant_id: str,
              at: dt.datetime) -> dict[str, CapUsage]:
    """What each capped rule already awarded, in the windows of the event time ``at``."""
    e = storage.ledger
    starts = window_starts(at)
    ends = {"day": starts["day"] + dt.timedelta(days=1), "week": starts["week"] + dt.timedelta(days=7),
            "month": _next_month(starts["month"])}
    usage: dict[str, CapUsage] = {}
    for rule in rules:
        counted = rule.caps.counted()
        if not counted:
            continue
        base = [e.c.tenant_id == tenant_id, e.c.rule_id == rule.rule_id, e.c.kind == "EARN"]
        mine = [*base, e.c.participant_id == participant_id]

        def total(*where: Any) -> decimal.Decimal:
            value = session.execute(sa.select(sa.func.coalesce(sa.func.sum(e.c.amount), 0))
                                    .where(*where)).scalar_one()
            return decimal.Decimal(str(value))

        values: dict[str, decimal.Decimal] = {}
        for cap, window in (("per_participant_daily", "day"), ("per_participant_weekly", "week"),
                            ("per_participant_monthly", "month")):
            if cap in counted:
                values[window] = total(*mine, e.c.occurred_at >= starts[window],
                                       e.c.occurred_at < ends[window])
        if "per_participant_lifetime" in counted:
            values["lifetime"] = total(*mine)
        if "total_budget" in counted:
            values["budget"] = total(*base)
        usage[rule.rule_id] = CapUsage(**values)
    return usage


def post(session: Session, dialect: str, *, tenant_id: str, program_id: str, participant_id: str,
         amount: decimal.Decimal, kind: str, source: str, reason: str, occurred_at: dt.datetime,
         now: dt.datetime, event_id: str | None = None, rule_id: str | None = None,
         rule_version: int | None = None, payload_hash: str | None = None,
         unrecovered: decimal.Decimal | None = None, entry_id: str | None = None) -> str | None:
    """Append one entry; None when its source is already in the ledger (a redelivery)."""
    row = session.execute(insert_for(dialect)(storage.ledger).values(
        id=entry_id or new_id(), tenant_id=tenant_id, program_id=program_id, unrecovered=unrecovered,
        participant_id=participant_id, amount=amount, kind=kind, source=source,
        event_id=event_id, rule_id=rule_id, rule_version=rule_version, reason=reason,
        created_at=now, occurred_at=occurred_at, payload_hash=payload_hash,
    ).on_conflict_do_nothing(index_elements=["tenant_id", "source"]).returning(
        storage.ledger.c.id)).first()
    return None if row is None else str(row.id)


def entry_row(*, tenant_id: str, program_id: str, participant_id: str, amount: decimal.Decimal, kind: str,
              source: str, reason: str, occurred_at: dt.datetime, now: dt.datetime, event_id: str | None = None,
              rule_id: str | None = None, rule_version: int | None = None) -> dict[str, Any]:
    """A ledger row for :func:`insert_entries` (the worker writes a batch's entries at once)."""
    return {"id": new_id(), "tenant_id": tenant_id, "program_id": program_id,
            "participant_id": participant_id, "amount": amount, "kind": kind, "source": source,
            "event_id": event_id, "rule_id": rule_id, "rule_version": rule_version, "reason": reason,
            "created_at": now, "occurred_at": occurred_at, "payload_hash": None, "unrecovered": None}


def insert_entries(session: Session, rows: list[dict[str, Any]], *, last: bool = False) -> None:
    """Insert ledger entries, skipping a source already there. ``last``: the transaction's
    final insert of entries, which goes in by COPY (insert_rows' expect_new: the sources
    are new). Earlier ones (caps count a batch's earlier awards) stay plain INSERTs: a
    savepoint each would make a batch hold many subtransactions."""
    if rows:
        insert_rows(session, storage.ledger, rows,
                    conflict=lambda s: s.on_conflict_do_nothing(index_elements=["tenant_id", "source"]),
                    expect_new=last)


def apply_delta(program: ProgramPolicy, account: Account, available_delta: decimal.Decimal,
                lifetime_delta: decimal.Decimal) -> tuple[str | None, str | None]:
    """Change a locked account in memory and recompute its tier; (old tier, new tier)."""
    old_tier = account.tier
    account.available += available_delta
    account.lifetime_earned += lifetime_delta
    tier = program.tier_for(account.lifetime_earned)
    account.tier = tier.name if tier else None
    return old_tier, account.tier


def write_accounts(session: Session, tenant_id: str, accounts: Iterable[Account], now: dt.datetime) -> None:
    """Store the balances of locked accounts changed with :func:`apply_delta` (one statement)."""
    update_rows(session, storage.balances, ("tenant_id", "program_id", "participant_id"), [
        {"tenant_id": tenant_id, "program_id": a.program_id, "participant_id": a.participant_id,
         "available": a.available, "lifetime_earned": a.lifetime_earned, "tier": a.tier,
         "debt": a.debt, "pending": a.pending, "updated_at": now}
        for a in accounts])


def settle(session: Session, tenant_id: str, program: ProgramPolicy, account: Account,
           available_delta: decimal.Decimal, lifetime_delta: decimal.Decimal,
           now: dt.datetime) -> tuple[str | None, str | None]:
    """Apply deltas to a locked account, recompute its tier and store it; (old tier, new tier)."""
    tiers = apply_delta(program, account, available_delta, lifetime_delta)
    write_accounts(session, tenant_id, [account], now)
    return tiers


def tier_changed(tenant_id: str, fact_id: str, at: dt.datetime, account: Account,
                 old_tier: str | None, new_tier: str | None,
                 cause: dict[str, Json]) -> messages_pb2.Notification:
    return facts.notification(tenant_id, "tier.changed", fact_id, at, {
        "program_id": account.program_id, "participant_id": account.participant_id,
        "previous_tier": old_tier, "tier": new_tier, **cause})
