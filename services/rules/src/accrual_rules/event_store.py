"""Statements of an event's points after it was evaluated (issue 22): its credits and lots,
its reversals and cancellation, pending activation (by the clock, an activating event or a
call), and the typed records they return.

They run inside a :class:`accrual_rules.store.LedgerTransaction` (``tx.events``), after the
balance locks of the accounts they change; the lots' own statements are in
:mod:`accrual_rules.bank`.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import sqlalchemy as sa
from accrual_platform.db import in_values, insert_rows, update_rows
from sqlalchemy.orm import Session

from accrual_rules import storage
from accrual_rules.bank import LotRecord
from accrual_rules.domain import Json
from accrual_rules.domain.reversals import parse_fraction


@dataclass(frozen=True)
class Credit:
    """One EARN entry of an event: what a reversal takes back in proportion."""

    entry_id: str
    program_id: str
    participant_id: str
    amount: decimal.Decimal
    rule_id: str | None
    rule_version: int | None


@dataclass(frozen=True)
class ReversalRecord:
    """A reversal (or the cancellation, kind CANCEL) of an event's points as stored."""

    id: str
    tenant_id: str
    event_id: str
    idempotency_key: str
    kind: str
    request_hash: str
    #: program id -> the exact share of the event it took, "n/d"
    shares: dict[str, str]
    points: decimal.Decimal
    unrecovered: decimal.Decimal
    debt: decimal.Decimal
    reason: str
    created_at: dt.datetime

    def share(self, program_id: str) -> Fraction:
        return parse_fraction(self.shares.get(program_id, "0"))


@dataclass(frozen=True)
class DueLot:
    """A PENDING lot whose activation time has come (picked without locks)."""

    id: str
    tenant_id: str
    program_id: str
    participant_id: str
    event_id: str | None


def _reversal(row: Any) -> ReversalRecord:
    return ReversalRecord(**row._mapping)


class EventSteps:
    """The statements of one ledger transaction about an event's points."""

    def __init__(self, session: Session, dialect: str) -> None:
        self.session = session
        self.dialect = dialect

    # -- reading an event -----------------------------------------------------------------
    def evaluated(self, tenant_id: str, event_id: str) -> bool:
        """Whether the worker completed the event (its evaluation is stored)."""
        t = storage.event_evaluations
        return self.session.execute(sa.select(t.c.event_id).where(
            t.c.tenant_id == tenant_id, t.c.event_id == event_id)).first() is not None

    def credits(self, tenant_id: str, event_id: str) -> list[Credit]:
        """The EARN entries of the event, in a fixed order (program, participant, rule, id)."""
        e = storage.ledger
        rows = self.session.execute(sa.select(e.c.id, e.c.program_id, e.c.participant_id, e.c.amount, e.c.rule_id,
                                              e.c.rule_version).where(
            e.c.tenant_id == tenant_id, e.c.event_id == event_id, e.c.kind == "EARN").order_by(
            e.c.program_id, e.c.participant_id, e.c.rule_id, e.c.id))
        return [Credit(r.id, r.program_id, r.participant_id, r.amount, r.rule_id, r.rule_version) for r in rows]

    def lots(self, tenant_id: str, event_id: str, *, lock: bool = True) -> list[LotRecord]:
        """Every lot of the event, whatever its status, by id (locked unless ``lock`` is false)."""
        t = storage.lots
        query = sa.select(t).where(t.c.tenant_id == tenant_id, t.c.event_id == event_id).order_by(t.c.id)
        if lock and self.dialect == "postgresql":
            query = query.with_for_update()
        return [LotRecord(**r._mapping) for r in self.session.execute(query)]

    # -- reversals ------------------------------------------------------------------------
    def reversal(self, tenant_id: str, event_id: str, idempotency_key: str) -> ReversalRecord | None:
        t = storage.reversals
        row = self.session.execute(sa.select(t).where(
            t.c.tenant_id == tenant_id, t.c.event_id == event_id, t.c.idempotency_key == idempotency_key)).first()
        return None if row is None else _reversal(row)

    def reversed_shares(self, tenant_id: str, event_id: str) -> dict[str, Fraction]:
        """By program, the share of the event its reversals and cancellation took so far."""
        t = storage.reversals
        out: dict[str, Fraction] = {}
        for row in self.session.execute(sa.select(t.c.shares).where(t.c.tenant_id == tenant_id,
                                                                    t.c.event_id == event_id)):
            for program_id, share in row.shares.items():
                out[program_id] = out.get(program_id, Fraction(0)) + parse_fraction(share)
        return out

    def insert_reversal(self, record: ReversalRecord) -> bool:
        """Store a reversal; False when its key was stored first (by a concurrent request)."""
        rows = insert_rows(self.session, storage.reversals, [{
            "id": record.id, "tenant_id": record.tenant_id, "event_id": record.event_id,
            "idempotency_key": record.idempotency_key, "kind": record.kind, "request_hash": record.request_hash,
            "shares": record.shares, "points": record.points, "unrecovered": record.unrecovered,
            "debt": record.debt, "reason": record.reason, "created_at": record.created_at}],
            conflict=lambda s: s.on_conflict_do_nothing(index_elements=["tenant_id", "event_id", "idempotency_key"]),
            returning=[storage.reversals.c.id])
        return bool(rows)

    def entries_of(self, tenant_id: str, prefix: str) -> list[str]:
        """Ids of the ledger entries whose source starts with ``prefix`` (a reversal's)."""
        e = storage.ledger
        return list(self.session.execute(sa.select(e.c.id).where(
            e.c.tenant_id == tenant_id, e.c.source.startswith(prefix, autoescape=True)).order_by(e.c.id)).scalars())

    # -- pending --------------------------------------------------------------------------
    def set_lots(self, lots: Iterable[LotRecord], now: dt.datetime) -> None:
        """Store lots' status, remaining, activation and expiry (an activation or cancellation)."""
        update_rows(self.session, storage.lots, ("id",), [
            {"id": lot.id, "status": lot.status, "remaining": lot.remaining, "activates_at": lot.activates_at,
             "expires_at": lot.expires_at, "updated_at": now} for lot in lots])

    def rule_expiry(self, tenant_id: str, entry_ids: Sequence[str]) -> dict[str, dict[str, Json]]:
        """By credit entry id, the expiry override of the rule that awarded it (those that have one)."""
        e, r = storage.ledger, storage.rules
        if not entry_ids:
            return {}
        rows = self.session.execute(sa.select(e.c.id, r.c.expiry).join(r, r.c.id == e.c.rule_id).where(
            e.c.tenant_id == tenant_id, in_values(self.session, [e.c.id], list(entry_ids)),
            r.c.expiry.isnot(None)))
        return {row.id: row.expiry for row in rows}

    def due(self, now: dt.datetime, limit: int) -> list[DueLot]:
        """PENDING lots whose activation time has passed, oldest first (no lock: re-read locked)."""
        t = storage.lots
        rows = self.session.execute(sa.select(t.c.id, t.c.tenant_id, t.c.program_id, t.c.participant_id,
                                              t.c.event_id).where(
            t.c.status == "PENDING", t.c.activates_at <= now).order_by(t.c.activates_at, t.c.id).limit(limit))
        return [DueLot(r.id, r.tenant_id, r.program_id, r.participant_id, r.event_id) for r in rows]

    def remember_keys(self, rows: Sequence[tuple[str, str, str, str]]) -> None:
        """(tenant, program, idempotency key, event id) of events whose points wait for an event."""
        if rows:
            insert_rows(self.session, storage.pending_event_keys, [
                {"tenant_id": t, "program_id": p, "idempotency_key": k, "event_id": e} for t, p, k, e in rows],
                conflict=lambda s: s.on_conflict_do_nothing(
                    index_elements=["tenant_id", "program_id", "idempotency_key"]))

    def events_by_key(self, tenant_id: str, program_id: str, keys: Sequence[str]) -> dict[str, str]:
        """Event ids of pending events of the program by their idempotency key."""
        t = storage.pending_event_keys
        if not keys:
            return {}
        return {r.idempotency_key: r.event_id for r in self.session.execute(sa.select(
            t.c.idempotency_key, t.c.event_id).where(t.c.tenant_id == tenant_id, t.c.program_id == program_id,
                                                    t.c.idempotency_key.in_(list(keys))))}

    def lot_accounts(self, tenant_id: str, event_ids: Sequence[str]) -> dict[str, set[tuple[str, str]]]:
        """By event, the (program, participant) accounts of its lots (no lock: for lock planning)."""
        t = storage.lots
        out: dict[str, set[tuple[str, str]]] = {}
        if not event_ids:
            return out
        for r in self.session.execute(sa.select(t.c.event_id, t.c.program_id, t.c.participant_id).where(
                t.c.tenant_id == tenant_id, t.c.event_id.in_(sorted(set(event_ids)))).distinct()):
            out.setdefault(r.event_id, set()).add((r.program_id, r.participant_id))
        return out

    def record_early(self, tenant_id: str, program_id: str, reference: str, activating_event_id: str,
                     now: dt.datetime) -> None:
        """An activating event that came before the event it names (``event_id:<id>`` or
        ``idempotency_key:<key>``)."""
        insert_rows(self.session, storage.early_activations, [
            {"tenant_id": tenant_id, "program_id": program_id, "reference": reference,
             "activating_event_id": activating_event_id, "created_at": now}],
            conflict=lambda s: s.on_conflict_do_nothing(index_elements=["tenant_id", "program_id", "reference"]))

    def early(self, tenant_id: str, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Of (program, reference) pairs, those an activating event already named."""
        t = storage.early_activations
        if not pairs:
            return set()
        return {(r.program_id, r.reference) for r in self.session.execute(sa.select(
            t.c.program_id, t.c.reference).where(t.c.tenant_id == tenant_id,
                                                in_values(self.session, [t.c.program_id, t.c.reference],
                                                          sorted(set(pairs)))))}
