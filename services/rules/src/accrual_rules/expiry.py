"""The points bank's scheduled jobs (issue 22), run by the scheduler's leader on each tick.

- Expiry: every ACTIVE lot whose ``expires_at`` has passed loses its remainder to an EXPIRE
  entry, in chunks of one transaction each (:meth:`LedgerTransaction.expire_due`). The
  entry's source is ``expire:<lot id>`` and the lot is read again under its account's lock,
  so two runs, two machines or a debit racing the run expire each point once. A
  ``points.expired`` fact per participant and chunk goes to the outbox with the entries.
- Expiring notices: once per local day of the program (a watermark, like the triggers'), for
  each lead time d, one ``points.expiring`` per participant whose active lots end on the day
  d days ahead, with the points still left; none when nothing is left. Fact ids are derived
  from (program, participant, day, lead), so a replayed day sends nothing twice.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from accrual.messages.v1 import messages_pb2
from accrual_platform.db import decimal_str, utcnow
from accrual_platform.facts import notification

from accrual_rules.bank import Expired
from accrual_rules.domain.bank import end_of_day, local_date
from accrual_rules.store import ProgramRecord, RulesStore

log = structlog.get_logger("accrual.rules.expiry")

#: Lots per expiry transaction: large enough for COPY, small enough to hold locks briefly.
EXPIRY_CHUNK = 2000
MAX_CATCH_UP_DAYS = 31
WATERMARK = "points_expiring"


@dataclass
class BankReport:
    expired_lots: int = 0
    expired_points: decimal.Decimal = decimal.Decimal(0)
    expiring_notices: int = 0


class BankJobs:
    def __init__(self, store: RulesStore, on_commit: Callable[[], None] = lambda: None,
                 chunk: int = EXPIRY_CHUNK) -> None:
        self.store = store
        self._on_commit = on_commit
        self.chunk = chunk

    def run(self, now: dt.datetime, report: BankReport | None = None) -> BankReport:
        """Expire what is due at ``now``, then send the day's expiring notices."""
        report = report or BankReport()
        self.expire(now, report)
        self.notify_expiring(now, report)
        return report

    def expire(self, now: dt.datetime, report: BankReport) -> None:
        while True:
            with self.store.ledger_transaction() as tx:
                expired, picked = tx.expire_due(now, self.chunk)
                tx.announce(notifications=expired_facts(expired, utcnow()))
            if expired:
                self._on_commit()
                report.expired_lots += len(expired)
                report.expired_points += sum((e.amount for e in expired), decimal.Decimal(0))
            # a concurrent run may have taken some picked lots: only a short pick means done
            if picked < self.chunk:
                if report.expired_lots:
                    log.info("points_expired", lots=report.expired_lots, points=decimal_str(report.expired_points))
                return

    def notify_expiring(self, now: dt.datetime, report: BankReport) -> None:
        for program in self.store.bank_programs():
            policy = program.bank()
            if policy.expiry.type == "NONE":
                continue
            today = local_date(now, policy.timezone)
            last = self.store.watermark(program.tenant_id, program.id, WATERMARK)
            day = today if last is None else max(last + dt.timedelta(days=1),
                                                 today - dt.timedelta(days=MAX_CATCH_UP_DAYS - 1))
            while day <= today:
                notes = self._notices(program, day, policy.expiring_lead_days, policy.timezone)
                with self.store.ledger_transaction() as tx:
                    tx.announce(notifications=notes)
                if notes:
                    self._on_commit()
                report.expiring_notices += len(notes)
                self.store.advance_watermark(program.tenant_id, program.id, WATERMARK, day, utcnow())
                day += dt.timedelta(days=1)

    def _notices(self, program: ProgramRecord, day: dt.date, leads: tuple[int, ...],
                 timezone: str) -> list[messages_pb2.Notification]:
        notes = []
        for lead in leads:
            last_day = day + dt.timedelta(days=lead)
            start, end = end_of_day(last_day - dt.timedelta(days=1), timezone), end_of_day(last_day, timezone)
            for participant, expires_at, points in self.store.expiring_between(program.tenant_id, program.id,
                                                                               start, end):
                notes.append(notification(
                    program.tenant_id, "points.expiring",
                    f"points.expiring:{program.id}:{participant}:{last_day.isoformat()}:{lead}", utcnow(), {
                        "program_id": program.id, "participant_id": participant, "points": decimal_str(points),
                        "expires_on": last_day.isoformat(), "expires_at": expires_at.isoformat(),
                        "lead_days": lead}))
        return notes


def expired_facts(expired: list[Expired], now: dt.datetime) -> list[messages_pb2.Notification]:
    """One points.expired per (program, participant) of a chunk; its id comes from its first
    lot, which expires once, so a replay of the same chunk is the same fact."""
    groups: dict[tuple[str, str, str], list[Expired]] = {}
    for e in expired:
        groups.setdefault((e.lot.tenant_id, e.lot.program_id, e.lot.participant_id), []).append(e)
    notes = []
    for (tenant_id, program_id, participant_id), items in groups.items():
        items.sort(key=lambda e: e.lot.id)
        notes.append(notification(tenant_id, "points.expired", f"points.expired:{items[0].lot.id}", now, {
            "program_id": program_id, "participant_id": participant_id,
            "points": decimal_str(sum((e.amount for e in items), decimal.Decimal(0))),
            "lots": [{"lot_id": e.lot.id, "points": decimal_str(e.amount), "transaction_id": e.entry_id,
                      "expires_at": e.lot.expires_at.isoformat() if e.lot.expires_at else None}
                     for e in items]}))
    return notes
