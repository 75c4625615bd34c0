"""The statements of rewards and redemptions (issue 23), and the typed records they return.

A :class:`RedemptionTransaction` is a :class:`~accrual_rules.store.LedgerTransaction` (the
balance lock, ledger entries, lots and the outbox) plus the reward and redemption rows. Every
change of a redemption happens after its participant's balance row is locked, and a reward's
stock after that, so holds, captures, cancels, refunds and the expiry run of one participant
queue on one lock and never deadlock each other.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from accrual_platform.db import Database, newest_first
from sqlalchemy.orm import Session

from accrual_rules import bank, storage
from accrual_rules.bank import AllocationRecord
from accrual_rules.domain.bank import Allocation
from accrual_rules.domain.rewards import COUNTED_STATES, Redemption, RewardFields, RewardLimit
from accrual_rules.store import LedgerTransaction


@dataclass(frozen=True)
class RewardRecord:
    id: str
    tenant_id: str
    program_id: str
    fields: RewardFields
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True)
class RedemptionRecord:
    id: str
    tenant_id: str
    program_id: str
    participant_id: str
    idempotency_key: str
    payload_hash: str
    reward_id: str | None
    state: str
    points: decimal.Decimal
    captured_points: decimal.Decimal
    refunded_points: decimal.Decimal
    released_points: decimal.Decimal
    external_ref: str
    hold_entry_id: str
    hold_expires_at: dt.datetime
    created_at: dt.datetime
    updated_at: dt.datetime
    #: what the hold took from each lot (filled when asked for)
    allocations: tuple[AllocationRecord, ...] = ()

    def machine(self) -> Redemption:
        """The redemption as the state machine sees it."""
        return Redemption(self.state, self.points, self.hold_expires_at, self.captured_points,
                          self.refunded_points, self.released_points)


def _reward(row: Any) -> RewardRecord:
    limit = RewardLimit(row.limit_count, row.limit_period or "") if row.limit_count is not None else None
    return RewardRecord(
        id=row.id, tenant_id=row.tenant_id, program_id=row.program_id, created_at=row.created_at,
        updated_at=row.updated_at, fields=RewardFields(
            name=row.name, cost_points=row.cost_points, description=row.description, stock=row.stock,
            limit=limit, eligible_tiers=tuple(row.eligible_tiers), active_from=row.active_from,
            active_to=row.active_to, status=row.status))


def _reward_columns(fields: RewardFields) -> dict[str, Any]:
    return {"name": fields.name, "description": fields.description, "cost_points": fields.cost_points,
            "stock": fields.stock, "limit_count": fields.limit.count if fields.limit else None,
            "limit_period": (fields.limit.period or None) if fields.limit else None,
            "eligible_tiers": list(fields.eligible_tiers), "active_from": fields.active_from,
            "active_to": fields.active_to, "status": fields.status}


def _redemption(row: Any) -> RedemptionRecord:
    return RedemptionRecord(**row._mapping)


class RewardsStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- the catalogue ----------------------------------------------------------------------
    def insert_reward(self, tenant_id: str, program_id: str, reward_id: str, fields: RewardFields,
                      now: dt.datetime) -> None:
        with self.db.transaction() as session:
            session.execute(storage.rewards.insert().values(
                id=reward_id, tenant_id=tenant_id, program_id=program_id, created_at=now, updated_at=now,
                **_reward_columns(fields)))

    def reward(self, tenant_id: str, program_id: str, reward_id: str) -> RewardRecord | None:
        with self.db.transaction() as session:
            return _find_reward(session, tenant_id, program_id, reward_id)

    def rewards(self, tenant_id: str, program_id: str, status: str | None,
                after: tuple[dt.datetime, str] | None, limit: int) -> list[RewardRecord]:
        """A program's rewards, oldest first by (created_at, id), after ``after``."""
        t = storage.rewards
        query = sa.select(t).where(t.c.tenant_id == tenant_id, t.c.program_id == program_id)
        if status:
            query = query.where(t.c.status == status)
        if after is not None:
            at, last_id = after
            query = query.where(sa.or_(t.c.created_at > at, sa.and_(t.c.created_at == at, t.c.id > last_id)))
        with self.db.transaction() as session:
            return [_reward(r) for r in session.execute(query.order_by(t.c.created_at, t.c.id).limit(limit))]

    def update_reward(self, tenant_id: str, program_id: str, reward_id: str, fields: RewardFields,
                      now: dt.datetime) -> RewardRecord | None:
        t = storage.rewards
        with self.db.transaction() as session:
            row = session.execute(sa.update(t).where(
                t.c.tenant_id == tenant_id, t.c.program_id == program_id, t.c.id == reward_id,
            ).values(**_reward_columns(fields), updated_at=now).returning(*t.c)).first()
        return None if row is None else _reward(row)

    def redeemed_counts(self, tenant_id: str, participant_id: str,
                        windows: dict[str, dt.datetime | None]) -> dict[str, int]:
        """Per reward (of ``windows``: reward id -> window start), the participant's counted
        redemptions in its window."""
        with self.db.transaction() as session:
            return {reward_id: _count(session, tenant_id, participant_id, reward_id, start)
                    for reward_id, start in windows.items()}

    # -- redemptions --------------------------------------------------------------------------
    def redemption(self, tenant_id: str, redemption_id: str) -> RedemptionRecord | None:
        with self.db.transaction() as session:
            return _with_allocations(session, tenant_id, _find_redemption(session, tenant_id, redemption_id))

    def redemptions(self, tenant_id: str, program_id: str, participant_id: str, state: str | None,
                    before: tuple[dt.datetime, str] | None, limit: int) -> list[RedemptionRecord]:
        """A participant's redemptions, newest first, older than (created_at, id) ``before``."""
        t = storage.redemptions
        query = sa.select(t).where(t.c.tenant_id == tenant_id, t.c.program_id == program_id,
                                   t.c.participant_id == participant_id)
        if state:
            query = query.where(t.c.state == state)
        with self.db.transaction() as session:
            rows = [_redemption(r) for r in session.execute(newest_first(query, t.c.created_at, t.c.id,
                                                                         before, limit))]
            taken = bank.allocations_of(session, tenant_id, [r.hold_entry_id for r in rows])
        return [_allocated(r, taken) for r in rows]

    def held(self, tenant_id: str, program_id: str, participant_id: str) -> decimal.Decimal:
        """The points of the participant's open holds."""
        t = storage.redemptions
        with self.db.transaction() as session:
            value = session.execute(sa.select(sa.func.coalesce(sa.func.sum(t.c.points), 0)).where(
                t.c.tenant_id == tenant_id, t.c.program_id == program_id, t.c.participant_id == participant_id,
                t.c.state == "HELD")).scalar_one()
        return decimal.Decimal(str(value))

    def due_holds(self, now: dt.datetime, limit: int) -> list[tuple[str, str]]:
        """(tenant, redemption id) of up to ``limit`` holds past their time to live."""
        t = storage.redemptions
        with self.db.transaction() as session:
            return [(r.tenant_id, r.id) for r in session.execute(sa.select(t.c.tenant_id, t.c.id).where(
                t.c.state == "HELD", t.c.hold_expires_at <= now).order_by(t.c.hold_expires_at, t.c.id)
                .limit(limit))]

    @contextmanager
    def transaction(self) -> Iterator[RedemptionTransaction]:
        with self.db.transaction() as session:
            yield RedemptionTransaction(session, self.db.dialect)


def _find_reward(session: Session, tenant_id: str, program_id: str, reward_id: str) -> RewardRecord | None:
    t = storage.rewards
    row = session.execute(sa.select(t).where(t.c.tenant_id == tenant_id, t.c.program_id == program_id,
                                             t.c.id == reward_id)).first()
    return None if row is None else _reward(row)


def _find_redemption(session: Session, tenant_id: str, redemption_id: str) -> RedemptionRecord | None:
    t = storage.redemptions
    row = session.execute(sa.select(t).where(t.c.tenant_id == tenant_id, t.c.id == redemption_id)).first()
    return None if row is None else _redemption(row)


def _count(session: Session, tenant_id: str, participant_id: str, reward_id: str, start: dt.datetime | None) -> int:
    t = storage.redemptions
    query = sa.select(sa.func.count()).select_from(t).where(
        t.c.reward_id == reward_id, t.c.participant_id == participant_id, t.c.tenant_id == tenant_id,
        t.c.state.in_(COUNTED_STATES))
    if start is not None:
        query = query.where(t.c.created_at >= start)
    return int(session.execute(query).scalar_one())


def _allocated(r: RedemptionRecord, taken: dict[str, list[AllocationRecord]]) -> RedemptionRecord:
    return replace(r, allocations=tuple(taken.get(r.hold_entry_id, ())))


def _with_allocations(session: Session, tenant_id: str, r: RedemptionRecord | None) -> RedemptionRecord | None:
    if r is None:
        return None
    return _allocated(r, bank.allocations_of(session, tenant_id, [r.hold_entry_id]))


class RedemptionTransaction(LedgerTransaction):
    """One transaction over a participant's balance, lots, ledger, rewards and redemptions."""

    def redemption(self, tenant_id: str, redemption_id: str) -> RedemptionRecord | None:
        """A redemption with its hold's allocations (read after the balance lock: current)."""
        return _with_allocations(self.session, tenant_id, _find_redemption(self.session, tenant_id, redemption_id))

    def redemption_by_key(self, tenant_id: str, program_id: str, key: str) -> RedemptionRecord | None:
        t = storage.redemptions
        row = self.session.execute(sa.select(t).where(t.c.tenant_id == tenant_id, t.c.program_id == program_id,
                                                      t.c.idempotency_key == key)).first()
        return _with_allocations(self.session, tenant_id, None if row is None else _redemption(row))

    def insert_redemption(self, r: RedemptionRecord) -> None:
        self.session.execute(storage.redemptions.insert().values(
            {k: v for k, v in r.__dict__.items() if k != "allocations"}))

    def update_redemption(self, redemption_id: str, after: Redemption, now: dt.datetime) -> None:
        t = storage.redemptions
        self.session.execute(sa.update(t).where(t.c.id == redemption_id).values(
            state=after.state, captured_points=after.captured, refunded_points=after.refunded,
            released_points=after.released, updated_at=now))

    def reward(self, tenant_id: str, program_id: str, reward_id: str) -> RewardRecord | None:
        return _find_reward(self.session, tenant_id, program_id, reward_id)

    def redeemed(self, tenant_id: str, participant_id: str, reward_id: str, start: dt.datetime | None) -> int:
        """The participant's counted redemptions of the reward since ``start`` (hold the
        balance lock: concurrent holds of one participant queue on it)."""
        return _count(self.session, tenant_id, participant_id, reward_id, start)

    def take_stock(self, reward_id: str) -> bool:
        """Take one unit of a reward's stock; False when none is left (unlimited: True). The
        row stays locked until the transaction ends, so concurrent takers queue."""
        t = storage.rewards
        row = self.session.execute(sa.update(t).where(
            t.c.id == reward_id, sa.or_(t.c.stock.is_(None), t.c.stock > 0),
        ).values(stock=sa.case((t.c.stock.is_(None), None), else_=t.c.stock - 1)).returning(t.c.id)).first()
        return row is not None

    def give_stock(self, reward_id: str) -> None:
        """Return one unit of a reward's stock (unlimited stays unlimited)."""
        t = storage.rewards
        self.session.execute(sa.update(t).where(t.c.id == reward_id, t.c.stock.isnot(None))
                             .values(stock=t.c.stock + 1))

    def returned(self, tenant_id: str, r: RedemptionRecord) -> list[Allocation]:
        """What the redemption's releases and refunds put back into lots (negative amounts)."""
        e = storage.ledger
        ids = [i for i in self.session.execute(sa.select(e.c.id).where(
            e.c.tenant_id == tenant_id, e.c.program_id == r.program_id, e.c.participant_id == r.participant_id,
            e.c.source.like(f"redemption:{r.id}:%"), e.c.id != r.hold_entry_id)).scalars()]
        given = self.allocations(tenant_id, ids)
        return [Allocation(a.lot_id, a.amount) for entry_id in ids for a in given.get(entry_id, ())
                if a.amount < 0]
