"""The rules service's store: every statement of the service layer, and the typed records it
returns (never ``sa.Row``).

:class:`RulesStore` owns the catalog (programs, event types, rules and their versions, stored
evaluations) and opens ledger transactions: a :class:`LedgerTransaction` is one database
transaction over balances, ledger entries and the outbox, whose steps the worker and the API
call in the order their locking needs (the ledger's SQL itself is in :mod:`accrual_rules.ledger`).
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import sqlalchemy as sa
from accrual.messages.v1 import messages_pb2
from accrual_platform import contract
from accrual_platform.db import Database, in_values, insert_rows, newest_first
from sqlalchemy.orm import Session

from accrual_rules import bank, ledger, storage
from accrual_rules.bank import AllocationRecord, Credit, Expired, LotRecord
from accrual_rules.domain import Json
from accrual_rules.domain.bank import (
    Allocation,
    BankPolicy,
    Debit,
    ExpiryPolicy,
    Lot,
    expiry_from_json,
    policy_from_json,
)
from accrual_rules.domain.evaluation import CapUsage, ProgramPolicy, RuleSpec, Tier
from accrual_rules.domain.pending import PendingPolicy
from accrual_rules.domain.validation import RuleFields
from accrual_rules.event_store import EventSteps


@dataclass(frozen=True)
class ProgramRecord:
    id: str
    tenant_id: str
    name: str
    on_unknown_participant: str
    tiers: list[dict[str, str]]
    rounding_mode: str
    rounding_precision: int
    created_at: dt.datetime
    updated_at: dt.datetime
    event_type_policy: str
    scheduled_triggers: dict[str, Json] | None
    bank_policy: dict[str, Json] | None = None
    pending_policy: dict[str, Json] | None = None
    monetary_field: str | None = None

    def bank(self) -> BankPolicy:
        """The program's points bank policy (expiry, timezone, negative balance, lead times)."""
        return policy_from_json(self.bank_policy)

    def pending(self) -> PendingPolicy:
        return PendingPolicy.from_json(self.pending_policy)

    def policy(self) -> ProgramPolicy:
        return ProgramPolicy(
            program_id=self.id, name=self.name,
            tiers=tuple(Tier(t["name"], decimal.Decimal(t["min_lifetime_points"]),
                             decimal.Decimal(t["multiplier"])) for t in self.tiers),
            rounding_mode=self.rounding_mode, rounding_precision=self.rounding_precision)


@dataclass(frozen=True)
class RuleRecord:
    """A rule as stored, or one of its versions (``updated_at``: when that version was made)."""

    id: str
    tenant_id: str
    program_id: str
    version: int
    fields: RuleFields
    created_at: dt.datetime
    updated_at: dt.datetime
    budget_breaches: int = 0

    def spec(self) -> RuleSpec:
        return self.fields.spec(self.id, self.version, self.budget_breaches)


@dataclass(frozen=True)
class EventTypeRecord:
    tenant_id: str
    program_id: str
    name: str
    description: str
    properties: list[dict[str, Json]]
    created_at: dt.datetime


@dataclass(frozen=True)
class EntryRecord:
    """One ledger entry."""

    id: str
    tenant_id: str
    program_id: str
    participant_id: str
    amount: decimal.Decimal
    kind: str
    source: str
    event_id: str | None
    rule_id: str | None
    rule_version: int | None
    reason: str
    created_at: dt.datetime
    occurred_at: dt.datetime | None
    payload_hash: str | None
    unrecovered: decimal.Decimal | None = None
    #: what a debit took from which lot (a credit: the debt it paid off), when asked for
    allocations: tuple[AllocationRecord, ...] = ()


@dataclass
class Catalog:
    """Programs of the tenant touched by a worker batch, with their rules and registered types."""

    programs: dict[str, ProgramRecord] = field(default_factory=dict)
    policies: dict[str, ProgramPolicy] = field(default_factory=dict)
    rules: dict[str, list[RuleSpec]] = field(default_factory=dict)
    event_types: dict[str, dict[str, list[dict[str, Json]]]] = field(default_factory=dict)
    #: the bank policy of each program, and the rules with their own expiry policy
    banks: dict[str, BankPolicy] = field(default_factory=dict)
    #: the pending policy of each program
    pending: dict[str, PendingPolicy] = field(default_factory=dict)
    rule_expiry: dict[str, ExpiryPolicy] = field(default_factory=dict)


def _program(row: sa.Row[Any]) -> ProgramRecord:
    return ProgramRecord(**row._mapping)


def _fields(values: Mapping[Any, Any]) -> RuleFields:
    """A rule's fields from its row or a version's snapshot (caps: none stored reads as none set)."""
    return RuleFields(**{k: values[k] for k in storage.RULE_FIELDS if k not in ("caps", "expiry")},
                      caps=values.get("caps") or {}, expiry=values.get("expiry"))


def _rule(row: sa.Row[Any]) -> RuleRecord:
    return RuleRecord(id=row.id, tenant_id=row.tenant_id, program_id=row.program_id, version=row.version,
                      fields=_fields(row._mapping), created_at=row.created_at, updated_at=row.updated_at,
                      budget_breaches=row.budget_breaches)


def _columns(fields: RuleFields) -> dict[str, Json]:
    return {k: getattr(fields, k) for k in storage.RULE_FIELDS} | {
        "caps": dict(fields.caps), "expiry": dict(fields.expiry) if fields.expiry is not None else None}


def _snapshot(fields: RuleFields) -> dict[str, Json]:
    return {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in _columns(fields).items()}


class RulesStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- programs -----------------------------------------------------------------------
    def insert_program(self, program: ProgramRecord) -> None:
        with self.db.transaction() as session:
            session.execute(storage.programs.insert().values(asdict(program)))

    def update_program(self, program: ProgramRecord, *, tiers_changed: bool,
                       disabled_triggers: Sequence[str] | None) -> None:
        """Store a program's settings (its tiers only when ``tiers_changed``, its triggers only
        when ``disabled_triggers`` is given; those triggers forget their progress)."""
        p = storage.programs
        values: dict[str, Json] = {
            "name": program.name, "on_unknown_participant": program.on_unknown_participant,
            "rounding_mode": program.rounding_mode, "rounding_precision": program.rounding_precision,
            "event_type_policy": program.event_type_policy, "updated_at": program.updated_at,
            "bank_policy": program.bank_policy, "pending_policy": program.pending_policy,
            "monetary_field": program.monetary_field}
        if tiers_changed:
            values["tiers"] = program.tiers
        if disabled_triggers is not None:
            values["scheduled_triggers"] = program.scheduled_triggers
        with self.db.transaction() as session:
            session.execute(sa.update(p).where(p.c.tenant_id == program.tenant_id, p.c.id == program.id)
                            .values(values))
            if disabled_triggers is not None:
                w = storage.scheduler_watermarks
                session.execute(sa.delete(w).where(w.c.tenant_id == program.tenant_id,
                                                   w.c.program_id == program.id,
                                                   w.c.trigger.in_(list(disabled_triggers))))

    def program(self, tenant_id: str, program_id: str) -> ProgramRecord | None:
        p = storage.programs
        with self.db.transaction() as session:
            row = session.execute(sa.select(p).where(p.c.tenant_id == tenant_id,
                                                     p.c.id == program_id)).first()
        return None if row is None else _program(row)

    def programs(self, tenant_id: str, after: str | None, limit: int) -> list[ProgramRecord]:
        """Programs in id order, after the id ``after``."""
        p = storage.programs
        query = sa.select(p).where(p.c.tenant_id == tenant_id)
        if after is not None:
            query = query.where(p.c.id > after)
        with self.db.transaction() as session:
            return [_program(r) for r in session.execute(query.order_by(p.c.id).limit(limit))]

    def programs_with_balance(self, tenant_id: str, participant_id: str) -> list[ProgramRecord]:
        """The programs the participant has a balance row in, in id order."""
        b, p = storage.balances, storage.programs
        with self.db.transaction() as session:
            return [_program(r) for r in session.execute(sa.select(p).where(
                p.c.tenant_id == tenant_id, p.c.id.in_(sa.select(b.c.program_id).where(
                    b.c.tenant_id == tenant_id, b.c.participant_id == participant_id))).order_by(p.c.id))]

    # -- the scheduler ----------------------------------------------------------------------
    def triggered_programs(self) -> list[ProgramRecord]:
        """Every program with scheduled triggers, by tenant and id."""
        p = storage.programs
        with self.db.transaction() as session:
            return [_program(r) for r in session.execute(sa.select(p).where(
                p.c.scheduled_triggers.isnot(None)).order_by(p.c.tenant_id, p.c.id))]

    def bank_programs(self) -> list[ProgramRecord]:
        """Every program with a bank policy stored, by tenant and id (the expiry jobs filter them)."""
        p = storage.programs
        with self.db.transaction() as session:
            return [_program(r) for r in session.execute(sa.select(p).where(
                p.c.bank_policy.isnot(None)).order_by(p.c.tenant_id, p.c.id))]

    def expiring_between(self, tenant_id: str, program_id: str, start: dt.datetime,
                         end: dt.datetime) -> list[tuple[str, dt.datetime, decimal.Decimal]]:
        """Per participant, the points of active lots expiring in (start, end], and the last
        such expiry: (participant id, expires_at, points), participants in id order."""
        t = storage.lots
        with self.db.transaction() as session:
            return [(r.participant_id, r.expires_at, decimal.Decimal(r.points)) for r in session.execute(
                sa.select(t.c.participant_id, sa.func.max(t.c.expires_at).label("expires_at"),
                          sa.func.sum(t.c.remaining).label("points")).where(
                    t.c.tenant_id == tenant_id, t.c.program_id == program_id, t.c.status == "ACTIVE",
                    t.c.remaining > 0, t.c.expires_at > start, t.c.expires_at <= end,
                ).group_by(t.c.participant_id).order_by(t.c.participant_id))]

    def watermark(self, tenant_id: str, program_id: str, trigger: str) -> dt.date | None:
        """The last day a program's trigger was fully fired for."""
        w = storage.scheduler_watermarks
        with self.db.transaction() as session:
            day: dt.date | None = session.execute(sa.select(w.c.last_date).where(
                w.c.tenant_id == tenant_id, w.c.program_id == program_id, w.c.trigger == trigger)).scalar()
        return day

    def advance_watermark(self, tenant_id: str, program_id: str, trigger: str, day: dt.date,
                          now: dt.datetime) -> None:
        """Move the watermark to ``day`` (never back)."""
        w = storage.scheduler_watermarks
        stmt = ledger.insert_for(self.db.dialect)(w).values(
            tenant_id=tenant_id, program_id=program_id, trigger=trigger, last_date=day, updated_at=now)
        with self.db.transaction() as session:
            session.execute(stmt.on_conflict_do_update(
                index_elements=["tenant_id", "program_id", "trigger"],
                set_={"last_date": stmt.excluded.last_date, "updated_at": stmt.excluded.updated_at},
                where=w.c.last_date < stmt.excluded.last_date))

    # -- event types ----------------------------------------------------------------------
    def insert_event_type(self, tenant_id: str, program_id: str, name: str, description: str,
                          properties: list[dict[str, Json]], now: dt.datetime) -> bool:
        """False when the program already has an event type of that name."""
        t = storage.program_event_types
        insert = ledger.insert_for(self.db.dialect)
        with self.db.transaction() as session:
            done = session.execute(insert(t).values(
                tenant_id=tenant_id, program_id=program_id, name=name, description=description,
                properties=properties, created_at=now,
            ).on_conflict_do_nothing(index_elements=["tenant_id", "program_id", "name"])
                .returning(t.c.name)).first()
        return done is not None

    def event_types(self, tenant_id: str, program_id: str) -> list[EventTypeRecord]:
        t = storage.program_event_types
        with self.db.transaction() as session:
            return [EventTypeRecord(**r._mapping) for r in session.execute(sa.select(t).where(
                t.c.tenant_id == tenant_id, t.c.program_id == program_id).order_by(t.c.name))]

    def event_type(self, tenant_id: str, program_id: str, name: str) -> EventTypeRecord | None:
        t = storage.program_event_types
        with self.db.transaction() as session:
            row = session.execute(sa.select(t).where(
                t.c.tenant_id == tenant_id, t.c.program_id == program_id, t.c.name == name)).first()
        return EventTypeRecord(**row._mapping) if row is not None else None

    def update_event_type(self, tenant_id: str, program_id: str, name: str, description: str,
                          properties: list[dict[str, Json]]) -> EventTypeRecord | None:
        """The changed event type (None: not registered)."""
        t = storage.program_event_types
        with self.db.transaction() as session:
            row = session.execute(sa.update(t).where(
                t.c.tenant_id == tenant_id, t.c.program_id == program_id, t.c.name == name,
            ).values(description=description, properties=properties).returning(*t.c)).first()
        return EventTypeRecord(**row._mapping) if row is not None else None

    def delete_event_type(self, tenant_id: str, program_id: str,
                          name: str) -> tuple[EventTypeRecord | None, list[str]]:
        """Delete the event type unless unarchived rules refer to it: (the deleted record or
        None when not registered, the ids of the rules that kept it)."""
        t, r = storage.program_event_types, storage.rules
        where = (t.c.tenant_id == tenant_id, t.c.program_id == program_id, t.c.name == name)
        with self.db.transaction() as session:
            # Locking the row makes a concurrent delete or update wait for this decision.
            query = sa.select(t).where(*where)
            if self.db.dialect == "postgresql":
                query = query.with_for_update()
            row = session.execute(query).first()
            if row is None:
                return None, []
            users = list(session.execute(sa.select(r.c.id).where(
                r.c.tenant_id == tenant_id, r.c.program_id == program_id, r.c.event_type == name,
                r.c.status != "ARCHIVED").order_by(r.c.id)).scalars())
            if not users:
                session.execute(sa.delete(t).where(*where))
        return EventTypeRecord(**row._mapping), users

    def declared(self, tenant_id: str, program_id: str, event_type: str) -> list[dict[str, Json]] | None:
        """Properties of a registered event type (None: not registered)."""
        with self.db.transaction() as session:
            return _declared(session, tenant_id, program_id, event_type)

    # -- rules ----------------------------------------------------------------------------
    def insert_rule(self, tenant_id: str, program_id: str, rule_id: str, fields: RuleFields,
                    now: dt.datetime) -> None:
        """A new rule and its version 1."""
        with self.db.transaction() as session:
            session.execute(storage.rules.insert().values(
                id=rule_id, tenant_id=tenant_id, program_id=program_id, version=1, created_at=now,
                updated_at=now, **_columns(fields)))
            session.execute(storage.rule_versions.insert().values(
                rule_id=rule_id, version=1, snapshot=_snapshot(fields), created_at=now))

    def change_rule(self, tenant_id: str, rule_id: str, now: dt.datetime,
                    change: Callable[[RuleRecord, Callable[[str], list[dict[str, Json]] | None]],
                                     RuleFields | None]) -> None:
        """Lock the rule, let ``change`` give its new fields (None: nothing to do; it may look up
        an event type's declared properties with its second argument), and store them as the
        next version."""
        r = storage.rules
        with self.db.transaction() as session:
            query = sa.select(r).where(r.c.tenant_id == tenant_id, r.c.id == rule_id)
            if self.db.dialect == "postgresql":
                query = query.with_for_update()
            locked = _rule(session.execute(query).one())
            fields = change(locked, lambda event_type: _declared(session, tenant_id, locked.program_id,
                                                                  event_type))
            if fields is None:
                return
            _next_version(session, locked, fields, now)

    def reorder_rules(self, tenant_id: str, program_id: str, now: dt.datetime,
                      plan: Callable[[list[RuleRecord]], dict[str, int]]) -> None:
        """Lock the program's unarchived rules, let ``plan`` give the new order of those whose
        order changes (by rule id), and store each as its next version, all in one transaction."""
        r = storage.rules
        with self.db.transaction() as session:
            query = sa.select(r).where(r.c.tenant_id == tenant_id, r.c.program_id == program_id,
                                       r.c.status != "ARCHIVED").order_by(r.c.id)
            if self.db.dialect == "postgresql":
                query = query.with_for_update()
            locked = [_rule(row) for row in session.execute(query)]
            orders = plan(locked)
            for rule in locked:
                if rule.id in orders:
                    _next_version(session, rule, rule.fields.changed({"order": orders[rule.id]}), now)

    def rule(self, tenant_id: str, program_id: str, rule_id: str) -> RuleRecord | None:
        r = storage.rules
        with self.db.transaction() as session:
            row = session.execute(sa.select(r).where(
                r.c.tenant_id == tenant_id, r.c.program_id == program_id, r.c.id == rule_id)).first()
        return None if row is None else _rule(row)

    def rules(self, tenant_id: str, program_id: str) -> list[RuleRecord]:
        """The program's rules in evaluation order; archived rules are left out."""
        r = storage.rules
        with self.db.transaction() as session:
            return [_rule(row) for row in session.execute(sa.select(r).where(
                r.c.tenant_id == tenant_id, r.c.program_id == program_id, r.c.status != "ARCHIVED",
            ).order_by(r.c.order, r.c.id))]

    def rule_versions(self, rule: RuleRecord, version: int | None = None) -> list[RuleRecord]:
        rv = storage.rule_versions
        query = sa.select(rv).where(rv.c.rule_id == rule.id)
        if version is not None:
            query = query.where(rv.c.version == version)
        with self.db.transaction() as session:
            rows = list(session.execute(query.order_by(rv.c.version)))
        out = []
        for row in rows:
            snap = dict(row.snapshot)
            for k in ("active_from", "active_to"):
                snap[k] = dt.datetime.fromisoformat(snap[k]) if snap.get(k) else None
            out.append(RuleRecord(id=rule.id, tenant_id=rule.tenant_id, program_id=rule.program_id,
                                  version=row.version, fields=_fields(snap), created_at=rule.created_at,
                                  updated_at=row.created_at))
        return out

    # -- the worker's reads ---------------------------------------------------------------
    @contextmanager
    def reading(self) -> Iterator[BatchRead]:
        """One read transaction for the worker's reads that share it (stored outcomes, catalog)."""
        with self.db.transaction() as session:
            yield BatchRead(session)

    # -- ledger ---------------------------------------------------------------------------
    @contextmanager
    def ledger_transaction(self) -> Iterator[LedgerTransaction]:
        """One transaction over balances, ledger entries, evaluations and the outbox."""
        with self.db.transaction() as session:
            yield LedgerTransaction(session, self.db.dialect)

    def accounts(self, tenant_id: str, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], ledger.Account]:
        """Balances as they are, without locks (a missing one reads as zero)."""
        with self.db.transaction() as session:
            return ledger.read_accounts(session, tenant_id, keys)

    def entries(self, tenant_id: str, program_id: str, participant_id: str,
                before: tuple[dt.datetime, str] | None, limit: int) -> list[EntryRecord]:
        """A participant's entries with their allocations, newest first, older than
        (created_at, id) ``before``."""
        entry = storage.ledger
        query = newest_first(sa.select(entry).where(entry.c.tenant_id == tenant_id,
                                                    entry.c.program_id == program_id,
                                                    entry.c.participant_id == participant_id),
                             entry.c.created_at, entry.c.id, before, limit)
        with self.db.transaction() as session:
            rows = [EntryRecord(**r._mapping) for r in session.execute(query)]
            taken = bank.allocations_of(session, tenant_id, [r.id for r in rows])
        return [replace(r, allocations=tuple(taken.get(r.id, ()))) for r in rows]

    def lots(self, tenant_id: str, program_id: str, participant_id: str, statuses: Sequence[str],
             after: tuple[dt.datetime, str] | None, limit: int) -> list[LotRecord]:
        """A participant's lots (of ``statuses``; all when empty), oldest first by
        (earned_at, id), after ``after``."""
        t = storage.lots
        query = sa.select(t).where(t.c.tenant_id == tenant_id, t.c.program_id == program_id,
                                   t.c.participant_id == participant_id)
        if statuses:
            query = query.where(t.c.status.in_(list(statuses)))
        if after is not None:
            at, last_id = after
            query = query.where(sa.or_(t.c.earned_at > at, sa.and_(t.c.earned_at == at, t.c.id > last_id)))
        with self.db.transaction() as session:
            return [LotRecord(**r._mapping) for r in session.execute(
                query.order_by(t.c.earned_at, t.c.id).limit(limit))]

    def expiring(self, tenant_id: str, program_id: str, participant_id: str,
                 limit: int) -> list[tuple[dt.datetime, decimal.Decimal]]:
        """The next expiry instants of the participant's active lots, with the points each takes."""
        t = storage.lots
        with self.db.transaction() as session:
            return [(r.expires_at, decimal.Decimal(r.points)) for r in session.execute(
                sa.select(t.c.expires_at, sa.func.sum(t.c.remaining).label("points")).where(
                    t.c.tenant_id == tenant_id, t.c.program_id == program_id, t.c.participant_id == participant_id,
                    t.c.status == "ACTIVE", t.c.expires_at.isnot(None), t.c.remaining > 0,
                ).group_by(t.c.expires_at).order_by(t.c.expires_at).limit(limit))]


class BatchRead:
    """The worker's reads of one transaction: earlier evaluations and the programs of a batch."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def stored_outcomes(self, event_ids: Sequence[str]) -> dict[str, dict[str, Json]]:
        """The stored evaluations of the events that have one, by event id."""
        t = storage.event_evaluations
        rows = self.session.execute(sa.select(t.c.event_id, t.c.outcome).where(
            in_values(self.session, [t.c.event_id], event_ids)))
        return {r.event_id: r.outcome for r in rows}

    def load_catalog(self, tenant_id: str, missing: set[str], catalog: Catalog) -> None:
        """The programs of ``missing`` (none in ``catalog`` yet), with their rules and event types."""
        if not missing:
            return
        p, r, t = storage.programs, storage.rules, storage.program_event_types
        for row in self.session.execute(sa.select(p).where(p.c.tenant_id == tenant_id, p.c.id.in_(missing))):
            program = _program(row)
            catalog.programs[program.id] = program
            catalog.policies[program.id] = program.policy()
            catalog.banks[program.id] = program.bank()
            catalog.pending[program.id] = program.pending()
            catalog.rules.setdefault(program.id, [])
            catalog.event_types.setdefault(program.id, {})
        for row in self.session.execute(sa.select(r).where(
                r.c.tenant_id == tenant_id, r.c.program_id.in_(missing), r.c.status != "ARCHIVED")):
            catalog.rules[row.program_id].append(_fields(row._mapping).spec(row.id, row.version,
                                                                            row.budget_breaches))
            if row.expiry:
                catalog.rule_expiry[row.id] = expiry_from_json(row.expiry)
        for row in self.session.execute(sa.select(t).where(t.c.tenant_id == tenant_id,
                                                           t.c.program_id.in_(missing))):
            catalog.event_types[row.program_id][row.name] = list(row.properties)


def _next_version(session: Session, locked: RuleRecord, fields: RuleFields, now: dt.datetime) -> None:
    """Store ``fields`` as the next version of the locked rule."""
    r = storage.rules
    version = locked.version + 1
    # A saved rule starts its budget count again (the operator fixed it, or means it).
    session.execute(sa.update(r).where(r.c.id == locked.id).values(
        **_columns(fields), version=version, updated_at=now, budget_breaches=0))
    session.execute(storage.rule_versions.insert().values(
        rule_id=locked.id, version=version, snapshot=_snapshot(fields), created_at=now))


def _declared(session: Session, tenant_id: str, program_id: str,
              event_type: str) -> list[dict[str, Json]] | None:
    if not event_type:
        return None
    t = storage.program_event_types
    row = session.execute(sa.select(t.c.properties).where(
        t.c.tenant_id == tenant_id, t.c.program_id == program_id, t.c.name == event_type)).first()
    return list(row.properties) if row else None


class LedgerTransaction:
    """The steps of one ledger transaction (see :mod:`accrual_rules.ledger` for the locking)."""

    def __init__(self, session: Session, dialect: str) -> None:
        self.session = session
        self.dialect = dialect
        #: an event's points after its evaluation: reversals, cancellation, activation
        self.events = EventSteps(session, dialect)

    def entry(self, tenant_id: str, source: str) -> EntryRecord | None:
        """The entry of a source, with its allocations."""
        e = storage.ledger
        row = self.session.execute(sa.select(e).where(e.c.tenant_id == tenant_id, e.c.source == source)).first()
        if row is None:
            return None
        entry = EntryRecord(**row._mapping)
        return replace(entry, allocations=tuple(bank.allocations_of(self.session, tenant_id, [entry.id]).get(
            entry.id, ())))

    def read_account(self, tenant_id: str, program_id: str, participant_id: str) -> ledger.Account:
        return ledger.read_account(self.session, tenant_id, program_id, participant_id)

    def entries_by_id(self, tenant_id: str, ids: Sequence[str]) -> list[EntryRecord]:
        """Entries by id, in the order of ``ids``."""
        e = storage.ledger
        if not ids:
            return []
        found = {r.id: EntryRecord(**r._mapping) for r in self.session.execute(sa.select(e).where(
            e.c.tenant_id == tenant_id, in_values(self.session, [e.c.id], list(ids))))}
        return [found[i] for i in ids if i in found]

    def programs(self, tenant_id: str, ids: Iterable[str]) -> dict[str, ProgramRecord]:
        p = storage.programs
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        return {r.id: _program(r) for r in self.session.execute(sa.select(p).where(
            p.c.tenant_id == tenant_id, p.c.id.in_(wanted)))}

    def lock_account(self, tenant_id: str, program_id: str, participant_id: str) -> ledger.Account:
        return ledger.lock_account(self.session, self.dialect, tenant_id, program_id, participant_id)

    def lock_accounts(self, tenant_id: str, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], ledger.Account]:
        return ledger.lock_accounts(self.session, self.dialect, tenant_id, keys)

    def lock_budget_rules(self, tenant_id: str, rules: Iterable[RuleSpec]) -> None:
        ledger.lock_budget_rules(self.session, self.dialect, tenant_id, rules)

    def cap_usage(self, tenant_id: str, rules: Iterable[RuleSpec], participant_id: str,
                  at: dt.datetime) -> dict[str, CapUsage]:
        return ledger.cap_usage(self.session, tenant_id, rules, participant_id, at)

    def post(self, **entry: Any) -> str | None:
        """Append one entry (:func:`ledger.post`); None when its source is already there."""
        return ledger.post(self.session, self.dialect, **entry)

    def insert_entries(self, rows: list[dict[str, Json]], *, last: bool = False) -> None:
        ledger.insert_entries(self.session, rows, last=last)

    def settle(self, tenant_id: str, program: ProgramPolicy, account: ledger.Account,
               available_delta: decimal.Decimal, lifetime_delta: decimal.Decimal,
               now: dt.datetime) -> tuple[str | None, str | None]:
        return ledger.settle(self.session, tenant_id, program, account, available_delta, lifetime_delta, now)

    def write_accounts(self, tenant_id: str, accounts: Iterable[ledger.Account], now: dt.datetime) -> None:
        ledger.write_accounts(self.session, tenant_id, accounts, now)

    # -- the points bank (lots; see accrual_rules.bank) ------------------------------------
    def credit(self, account: ledger.Account, tenant_id: str, entry_id: str, amount: decimal.Decimal, *,
               earned_at: dt.datetime, now: dt.datetime, event_id: str | None = None, status: str = "ACTIVE",
               activates_at: dt.datetime | None = None, expires_at: dt.datetime | None = None) -> Credit:
        """A credit's lot (and debt payoff), queued: store it with :meth:`insert_lots` and
        :meth:`insert_allocations` in this transaction. Changes ``account`` in memory."""
        return bank.credit(account, tenant_id, entry_id, amount, earned_at=earned_at, now=now, event_id=event_id,
                           status=status, activates_at=activates_at, expires_at=expires_at)

    def insert_lots(self, rows: Sequence[dict[str, Json]]) -> None:
        bank.insert_lots(self.session, rows)

    def insert_allocations(self, rows: Sequence[dict[str, Json]]) -> None:
        bank.insert_allocations(self.session, rows)

    def store_credits(self, credits: Sequence[Credit]) -> None:
        """Insert queued credits' lots and payoffs (a few statements for a whole batch)."""
        self.insert_lots([c.lot for c in credits])
        self.insert_allocations([c.payoff for c in credits if c.payoff is not None])

    def slide_lots(self, tenant_id: str, until: dict[tuple[str, str], dt.datetime], now: dt.datetime) -> None:
        """Extend accounts' active lots to a later expiry (SLIDING); see :func:`bank.slide`."""
        if until:
            bank.slide(self.session, tenant_id, until, now)

    def move_lots(self, tenant_id: str, program_id: str, source: str, target: str, now: dt.datetime) -> None:
        bank.move_lots(self.session, tenant_id, program_id, source, target, now)

    def lock_lots(self, tenant_id: str, program_id: str, participant_id: str,
                  statuses: Sequence[str] = ("ACTIVE",), event_id: str | None = None) -> list[LotRecord]:
        """An account's lots with points left, locked, in spend order (hold its balance lock first)."""
        return bank.lock_lots(self.session, self.dialect, tenant_id, program_id, participant_id, statuses, event_id)

    def lock_lot_ids(self, tenant_id: str, ids: Sequence[str]) -> dict[str, LotRecord]:
        return bank.lock_lot_ids(self.session, self.dialect, tenant_id, ids)

    def debit(self, tenant_id: str, account: ledger.Account, lots: Sequence[LotRecord], amount: decimal.Decimal,
              policy: str, entry_id: str, now: dt.datetime) -> Debit:
        """Allocate a debit over ``lots`` (in the order given) and per ``policy``; see :func:`bank.debit`."""
        return bank.debit(self.session, tenant_id, account, lots, amount, policy, entry_id, now)

    def apply_debit(self, tenant_id: str, account: ledger.Account, lots: Sequence[LotRecord], decided: Debit,
                    entry_id: str, now: dt.datetime) -> None:
        """Write a debit decided beforehand over ``lots``; see :func:`bank.apply_debit`."""
        bank.apply_debit(self.session, tenant_id, account, lots, decided, entry_id, now)

    def restore(self, tenant_id: str, account: ledger.Account, entry_id: str, taken: Sequence[Allocation],
                amount: decimal.Decimal, now: dt.datetime) -> tuple[list[Allocation], decimal.Decimal]:
        """Give points back into the lots a debit took them from; see :func:`bank.restore`."""
        return bank.restore(self.session, self.dialect, tenant_id, account, entry_id, taken, amount, now)

    def allocations(self, tenant_id: str, entry_ids: Sequence[str]) -> dict[str, list[AllocationRecord]]:
        return bank.allocations_of(self.session, tenant_id, entry_ids)

    def write_lots(self, lots: Iterable[Lot], now: dt.datetime) -> None:
        bank.write_lots(self.session, lots, now)

    def expire_due(self, now: dt.datetime, limit: int) -> tuple[list[Expired], int]:
        """Expire up to ``limit`` lots past their expiry; (what expired, lots picked); see
        :func:`bank.expire_due`."""
        return bank.expire_due(self.session, self.dialect, now, limit)

    def lock_rule(self, tenant_id: str, rule_id: str) -> RuleRecord | None:
        r = storage.rules
        query = sa.select(r).where(r.c.tenant_id == tenant_id, r.c.id == rule_id)
        if self.dialect == "postgresql":
            query = query.with_for_update()
        row = self.session.execute(query).first()
        return None if row is None else _rule(row)

    def count_breaches(self, rule_id: str, count: int) -> None:
        r = storage.rules
        self.session.execute(sa.update(r).where(r.c.id == rule_id).values(budget_breaches=count))

    def suspend_rule(self, rule: RuleRecord, breaches: int, now: dt.datetime) -> int:
        """Store a SUSPENDED version of a locked rule; returns the version."""
        r = storage.rules
        version = rule.version + 1
        fields = rule.fields.changed({"status": "SUSPENDED"})
        self.session.execute(sa.update(r).where(r.c.id == rule.id).values(
            status="SUSPENDED", version=version, updated_at=now, budget_breaches=breaches))
        self.session.execute(storage.rule_versions.insert().values(
            rule_id=rule.id, version=version, created_at=now, snapshot=_snapshot(fields)))
        return version

    def claim(self, tenant_id: str, evaluations: Sequence[tuple[str, dict[str, Json]]],
              now: dt.datetime) -> set[str]:
        """Store the events' (event id, outcome) evaluations in one statement; the ids this
        transaction won (a concurrent delivery stored the others first)."""
        if not evaluations:
            return set()
        t = storage.event_evaluations
        ordered = sorted(evaluations, key=lambda e: e[0])
        rows = insert_rows(self.session, t, [{"event_id": event_id, "tenant_id": tenant_id, "outcome": outcome,
                                              "created_at": now} for event_id, outcome in ordered],
                           conflict=lambda s: s.on_conflict_do_nothing(index_elements=["event_id"]),
                           returning=[t.c.event_id], expect_new=True)
        return {r.event_id for r in rows}

    def announce(self, outcomes: Sequence[messages_pb2.EventOutcome] = (),
                 notifications: Sequence[messages_pb2.Notification] = ()) -> None:
        """Outbox rows that send ``outcomes`` to ingest and ``notifications`` to notify once committed."""
        rows = []
        if outcomes:
            rows.append(contract.outbox_row(contract.RECORD_OUTCOMES,
                                            messages_pb2.EventOutcomes(outcomes=outcomes)))
        if notifications:
            rows.append(contract.outbox_row(contract.PUBLISH_NOTIFICATIONS,
                                            messages_pb2.Notifications(notifications=notifications)))
        if rows:
            self.session.execute(storage.outbox.insert(), rows)
