"""The points bank's statements: lots and their allocations (issue 22).

Every change of a lot happens under its account's balance row lock (see
:mod:`accrual_rules.ledger`), in the transaction of the ledger entry that causes it: a credit
inserts its lot with its entry, a debit its allocations, the expiry run its EXPIRE entries.
The decisions (which lots, how much, what a policy allows) are pure, in
:mod:`accrual_rules.domain.bank`; the in-memory account follows them here so the caller
stores balances once per transaction.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from accrual_platform.db import in_values, insert_rows, update_rows
from accrual_platform.ids import new_id
from sqlalchemy.orm import Session

from accrual_rules import ledger, storage
from accrual_rules.domain.bank import (
    ZERO,
    Allocation,
    Debit,
    Lot,
    allocate,
    apply_allocations,
    pay_debt,
    restore_plan,
    spend_order,
)
from accrual_rules.ledger import Account


@dataclass(frozen=True)
class LotRecord:
    """One lot as stored."""

    id: str
    tenant_id: str
    program_id: str
    participant_id: str
    entry_id: str
    event_id: str | None
    original: decimal.Decimal
    remaining: decimal.Decimal
    status: str
    earned_at: dt.datetime
    activates_at: dt.datetime | None
    expires_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime

    def lot(self) -> Lot:
        return Lot(self.id, self.status, self.original, self.remaining, self.earned_at, self.activates_at,
                   self.expires_at)


@dataclass(frozen=True)
class AllocationRecord:
    entry_id: str
    lot_id: str
    amount: decimal.Decimal


def _lot(row: Any) -> LotRecord:
    return LotRecord(**row._mapping)


def lot_row(*, tenant_id: str, program_id: str, participant_id: str, entry_id: str, amount: decimal.Decimal,
            earned_at: dt.datetime, now: dt.datetime, event_id: str | None = None, status: str = "ACTIVE",
            activates_at: dt.datetime | None = None, expires_at: dt.datetime | None = None) -> dict[str, Any]:
    """A new lot for a credit entry (insert with :func:`insert_lots`)."""
    return {"id": new_id(), "tenant_id": tenant_id, "program_id": program_id, "participant_id": participant_id,
            "entry_id": entry_id, "event_id": event_id, "original": amount, "remaining": amount,
            "status": status, "earned_at": earned_at, "activates_at": activates_at, "expires_at": expires_at,
            "created_at": now, "updated_at": now}


def allocation_row(tenant_id: str, entry_id: str, lot_id: str, amount: decimal.Decimal,
                   now: dt.datetime) -> dict[str, Any]:
    return {"entry_id": entry_id, "lot_id": lot_id, "tenant_id": tenant_id, "amount": amount, "created_at": now}


@dataclass
class Credit:
    """What a credit queued: its lot and, when it paid off debt, the allocation that says so
    (the credit's own entry taking from its own lot)."""

    lot: dict[str, Any]
    payoff: dict[str, Any] | None = None


def credit(account: Account, tenant_id: str, entry_id: str, amount: decimal.Decimal, *, earned_at: dt.datetime,
           now: dt.datetime, event_id: str | None = None, status: str = "ACTIVE",
           activates_at: dt.datetime | None = None, expires_at: dt.datetime | None = None) -> Credit:
    """The lot of a credit entry of ``amount`` (> 0), and its effect on the locked ``account``
    in memory: an ACTIVE credit pays off debt first and raises ``available`` by ``amount``;
    a PENDING one raises ``pending``. Lifetime earned and tiers are the caller's."""
    row = lot_row(tenant_id=tenant_id, program_id=account.program_id, participant_id=account.participant_id,
                  entry_id=entry_id, amount=amount, earned_at=earned_at, now=now, event_id=event_id,
                  status=status, activates_at=activates_at, expires_at=expires_at)
    out = Credit(row)
    if status == "PENDING":
        account.pending += amount
        return out
    account.available += amount
    paid = pay_debt(amount, account.debt)
    if paid:
        account.debt -= paid
        row["remaining"] = amount - paid
        if row["remaining"] == 0:
            row["status"] = "EXHAUSTED"
        out.payoff = allocation_row(tenant_id, entry_id, row["id"], paid, now)
    return out


def activate(account: Account, lot: LotRecord) -> decimal.Decimal:
    """A PENDING lot's points become spendable (in memory): they pay off debt first; returns
    what they paid (record it with :func:`allocation_row` under the activating entry)."""
    account.pending -= lot.remaining
    account.available += lot.remaining
    paid = pay_debt(lot.remaining, account.debt)
    account.debt -= paid
    return paid


def slide(session: Session, tenant_id: str, until: dict[tuple[str, str], dt.datetime], now: dt.datetime) -> None:
    """SLIDING expiry: move the still-alive, expiring active lots of each (program,
    participant) to its new expiry when that is later (one statement per distinct date; the
    accounts are locked by the caller)."""
    t = storage.lots
    by_date: dict[dt.datetime, list[tuple[str, str]]] = {}
    for key, at in until.items():
        by_date.setdefault(at, []).append(key)
    for at, keys in sorted(by_date.items()):
        session.execute(sa.update(t).where(
            t.c.tenant_id == tenant_id, in_values(session, [t.c.program_id, t.c.participant_id], sorted(keys)),
            t.c.status == "ACTIVE", t.c.expires_at.isnot(None), t.c.expires_at > now, t.c.expires_at < at,
        ).values(expires_at=at, updated_at=now))


def move_lots(session: Session, tenant_id: str, program_id: str, source: str, target: str, now: dt.datetime) -> None:
    """A merge: the source participant's active and pending lots become the target's."""
    t = storage.lots
    session.execute(sa.update(t).where(
        t.c.tenant_id == tenant_id, t.c.program_id == program_id, t.c.participant_id == source,
        t.c.status.in_(["ACTIVE", "PENDING"])).values(participant_id=target, updated_at=now))


def insert_lots(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert new lots (their entry ids are new: COPY when there are many; a lot whose entry
    already has one is skipped, so a replay never doubles one)."""
    if rows:
        insert_rows(session, storage.lots, rows,
                    conflict=lambda s: s.on_conflict_do_nothing(index_elements=["entry_id"]), expect_new=True)


def insert_allocations(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        insert_rows(session, storage.lot_allocations, rows,
                    conflict=lambda s: s.on_conflict_do_nothing(index_elements=["entry_id", "lot_id"]),
                    expect_new=True)


def lock_lots(session: Session, dialect: str, tenant_id: str, program_id: str, participant_id: str,
              statuses: Sequence[str] = ("ACTIVE",), event_id: str | None = None) -> list[LotRecord]:
    """The account's lots of ``statuses`` with points left (only ``event_id``'s when given),
    locked, in spend order. The caller holds the account's balance lock already."""
    t = storage.lots
    query = sa.select(t).where(t.c.tenant_id == tenant_id, t.c.program_id == program_id,
                               t.c.participant_id == participant_id, t.c.status.in_(list(statuses)),
                               t.c.remaining > 0)
    if event_id is not None:
        query = query.where(t.c.event_id == event_id)
    if dialect == "postgresql":
        query = query.with_for_update()
    rows = [_lot(r) for r in session.execute(query)]
    by_id = {r.id: r for r in rows}
    return [by_id[lot.id] for lot in spend_order(r.lot() for r in rows)]


def write_lots(session: Session, lots: Iterable[Lot], now: dt.datetime) -> None:
    """Store lots' remaining and status (and expiry: restore and sliding change it)."""
    update_rows(session, storage.lots, ("id",), [
        {"id": lot.id, "remaining": lot.remaining, "status": lot.status, "expires_at": lot.expires_at,
         "updated_at": now} for lot in lots])


def debit(session: Session, tenant_id: str, account: Account, lots: Sequence[LotRecord], amount: decimal.Decimal,
          policy: str, entry_id: str, now: dt.datetime) -> Debit:
    """Take ``amount`` (> 0) for the entry ``entry_id`` from ``lots`` in the order given
    (locked: :func:`lock_lots`), then per the negative balance ``policy`` (FORBID raises
    :class:`~accrual_rules.domain.bank.InsufficientPoints` before anything is written).
    Writes the allocations and the lots; changes the account in memory (available, pending,
    debt). The entry itself, for ``-result.amount``, is the caller's."""
    decided = allocate([lot.lot() for lot in lots], amount, policy)
    apply_debit(session, tenant_id, account, lots, decided, entry_id, now)
    return decided


def apply_debit(session: Session, tenant_id: str, account: Account, lots: Sequence[LotRecord], decided: Debit,
                entry_id: str, now: dt.datetime) -> None:
    """Write a debit already decided with :func:`~accrual_rules.domain.bank.allocate` over
    ``lots`` (when the entry must go in first, to learn whether its source is new)."""
    by_id = {lot.id: lot for lot in lots}
    for a in decided.allocations:
        if by_id[a.lot_id].status == "PENDING":
            account.pending -= a.amount
        else:
            account.available -= a.amount
    account.available -= decided.debt
    account.debt += decided.debt
    _write_allocations(session, tenant_id, entry_id, decided.allocations, {k: v.lot() for k, v in by_id.items()},
                       now)


def _write_allocations(session: Session, tenant_id: str, entry_id: str, allocations: Sequence[Allocation],
                       lots: dict[str, Lot], now: dt.datetime) -> list[Lot]:
    if not allocations:
        return []
    changed = apply_allocations(lots, allocations)
    insert_allocations(session, [allocation_row(tenant_id, entry_id, a.lot_id, a.amount, now) for a in allocations])
    write_lots(session, changed, now)
    return changed


def lock_lot_ids(session: Session, dialect: str, tenant_id: str, ids: Sequence[str]) -> dict[str, LotRecord]:
    """Lots by id, locked (the caller holds their accounts' balance locks)."""
    t = storage.lots
    query = sa.select(t).where(t.c.tenant_id == tenant_id, in_values(session, [t.c.id], sorted(set(ids))))
    if dialect == "postgresql":
        query = query.order_by(t.c.id).with_for_update()
    return {r.id: r for r in map(_lot, session.execute(query))}


def _expire_entry(tenant_id: str, lot: LotRecord, amount: decimal.Decimal, source: str,
                  now: dt.datetime) -> dict[str, Any]:
    return ledger.entry_row(tenant_id=tenant_id, program_id=lot.program_id, participant_id=lot.participant_id,
                            amount=-amount, kind="EXPIRE", source=source, reason="points expired",
                            occurred_at=lot.expires_at or now, now=now, event_id=lot.event_id)


def restore(session: Session, dialect: str, tenant_id: str, account: Account, entry_id: str,
            taken: Sequence[Allocation], amount: decimal.Decimal,
            now: dt.datetime) -> tuple[list[Allocation], decimal.Decimal]:
    """Give ``amount`` back, for the credit entry ``entry_id``, into the lots a debit took it
    from (``taken``: its allocations), last taken first. What goes back into a lot whose
    expiry has passed expires at once (an EXPIRE entry of its own), so cancelling a debit
    never saves points from expiry. Returns (the restoring allocations, the points that
    expired at once); the account changes in memory."""
    plan = restore_plan(taken, amount)
    if not plan:
        return [], ZERO
    locked = lock_lot_ids(session, dialect, tenant_id, [a.lot_id for a in plan])
    lots = {k: v.lot() for k, v in locked.items()}
    refilled = {lot.id: lot for lot in _write_allocations(session, tenant_id, entry_id, plan, lots, now)}
    expired = ZERO
    entries: list[dict[str, Any]] = []
    expiring: list[Allocation] = []
    for a in plan:
        record, lot = locked[a.lot_id], refilled[a.lot_id]
        gave = -a.amount
        if lot.status == "PENDING":
            account.pending += gave
            continue
        account.available += gave
        if record.status == "EXPIRED" or (lot.expires_at is not None and lot.expires_at <= now):
            entry = _expire_entry(tenant_id, record, gave, f"expire:{lot.id}:{entry_id}", now)
            entries.append(entry)
            expiring.append(Allocation(lot.id, gave))
            account.available -= gave
            expired += gave
    if entries:
        ledger.insert_entries(session, entries)
        after = dict(refilled)
        for entry, a in zip(entries, expiring, strict=True):
            changed = _write_allocations(session, tenant_id, entry["id"], [a], after, now)
            # a lot the expiry run has not reached yet keeps its own remainder for that run
            after[a.lot_id] = replace(changed[0], status="EXPIRED" if changed[0].remaining == 0 else changed[0].status)
        write_lots(session, [after[a.lot_id] for a in expiring], now)
    return plan, expired


@dataclass(frozen=True)
class Expired:
    """One lot's remainder the expiry run took."""

    lot: LotRecord
    entry_id: str
    amount: decimal.Decimal


def expire_due(session: Session, dialect: str, now: dt.datetime, limit: int) -> tuple[list[Expired], int]:
    """Expire up to ``limit`` ACTIVE lots whose expiry has passed: an EXPIRE entry for each
    one's remainder (source ``expire:<lot id>``, so never twice), its allocation, the lot
    EXPIRED and its account's available lowered, in the caller's transaction. Accounts are
    locked first, in one order (tenant, program, participant), then the lots, which are read
    again under the locks: a debit that got there first leaves less, or nothing, to expire.
    Returns what expired and how many lots were picked (fewer than ``limit``: none are left)."""
    t = storage.lots
    picks = session.execute(sa.select(t.c.id, t.c.tenant_id, t.c.program_id, t.c.participant_id).where(
        t.c.status == "ACTIVE", t.c.expires_at <= now).order_by(t.c.expires_at, t.c.id).limit(limit)).all()
    by_tenant: dict[str, list[Any]] = {}
    for p in picks:
        by_tenant.setdefault(p.tenant_id, []).append(p)
    out: list[Expired] = []
    for tenant_id in sorted(by_tenant):
        chosen = by_tenant[tenant_id]
        accounts = ledger.lock_accounts(session, dialect, tenant_id,
                                        {(p.program_id, p.participant_id) for p in chosen}, create=False)
        locked = lock_lot_ids(session, dialect, tenant_id, [p.id for p in chosen])
        entries: list[dict[str, Any]] = []
        allocations: list[dict[str, Any]] = []
        changed: list[str] = []
        for record in sorted(locked.values(), key=lambda r: r.id):
            if record.status != "ACTIVE" or record.expires_at is None or record.expires_at > now:
                continue
            entry = _expire_entry(tenant_id, record, record.remaining, f"expire:{record.id}", now)
            entries.append(entry)
            allocations.append(allocation_row(tenant_id, entry["id"], record.id, record.remaining, now))
            changed.append(record.id)
            accounts[(record.program_id, record.participant_id)].available -= record.remaining
            out.append(Expired(record, entry["id"], record.remaining))
        ledger.insert_entries(session, entries, last=True)
        insert_allocations(session, allocations)
        if changed:  # every expired lot gets the same values: one plain UPDATE
            t = storage.lots
            session.execute(sa.update(t).where(in_values(session, [t.c.id], changed)).values(
                remaining=ZERO, status="EXPIRED", updated_at=now))
        ledger.write_accounts(session, tenant_id, [accounts[k] for k in sorted(
            {(e.lot.program_id, e.lot.participant_id) for e in out if e.lot.tenant_id == tenant_id})], now)
    return out, len(picks)


def allocations_of(session: Session, tenant_id: str, entry_ids: Sequence[str]) -> dict[str, list[AllocationRecord]]:
    """The allocations of the entries, by entry id (lots in spend order of the debit)."""
    a, t = storage.lot_allocations, storage.lots
    out: dict[str, list[AllocationRecord]] = {}
    if not entry_ids:
        return out
    rows = session.execute(sa.select(a.c.entry_id, a.c.lot_id, a.c.amount).join(t, t.c.id == a.c.lot_id).where(
        a.c.tenant_id == tenant_id, in_values(session, [a.c.entry_id], list(entry_ids))).order_by(
        a.c.entry_id, t.c.expires_at.is_(None), t.c.expires_at, t.c.earned_at, t.c.id))
    for r in rows:
        out.setdefault(r.entry_id, []).append(AllocationRecord(r.entry_id, r.lot_id, r.amount))
    return out

