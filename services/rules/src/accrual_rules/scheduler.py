"""The scheduler of birthday, anniversary and inactivity events (issue 7), and of pending
points whose activation time came (issue 22).

It lives with the rules service because rules owns the programs and their
``scheduled_triggers``; it keeps its watermarks in the rules schema and reaches identity
(birthday and anniversary candidates) and ingest (inactive participants, and the SYSTEM events
it fires) only through their internal gRPC methods.

- One leader: on PostgreSQL the process holding a session-level advisory lock on a dedicated
  connection; the others stay idle and try again on every tick (so a leader that dies is
  replaced within one interval). On SQLite (embedded) the single process is the leader.
- Each fire is a SYSTEM event submitted to ingest with a deterministic idempotency key
  (``<trigger>:<participant>:<date>``; for inactivity the date of the last event), and a
  payload that depends only on that key, so two runs, a restart in the middle of a day or two
  machines at once are answered ``duplicate`` and fire nothing twice.
- Catch-up: per (program, trigger) a watermark records the last day fully fired; a tick fires
  every day after it up to today (at most MAX_CATCH_UP_DAYS), advancing the watermark after
  each day. A trigger seen for the first time starts with today.
- "Today" comes from an injectable clock (UTC), so tests drive days without waiting.
- APScheduler runs the tick every ``interval`` seconds in a background thread, one at a time.
- Each tick of the leader also runs the points bank's jobs first (:mod:`accrual_rules.expiry`):
  expiring due lots and the day's points.expiring notices.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import sqlalchemy as sa
import structlog
from accrual.identity.v1 import identity_pb2
from accrual.ingest.v1 import ingest_pb2
from accrual_platform.db import Database, utcnow
from accrual_platform.grpc_server import internal_metadata
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from accrual_rules.domain import Json
from accrual_rules.domain.triggers import idempotency_key, normalise_triggers
from accrual_rules.event_points import EventPoints
from accrual_rules.expiry import BankJobs, BankReport
from accrual_rules.store import RulesStore

log = structlog.get_logger("accrual.scheduler")

LOCK_KEY = 0x4163637275616C  # "Accrual": the advisory lock of the scheduler leader
MAX_CATCH_UP_DAYS = 366
SUBMIT_CHUNK = 500
PAGE = 500

Clock = Callable[[], dt.datetime]


@dataclass
class RunReport:
    """What one tick did: days fired per (program, trigger) and the events submitted."""

    leader: bool
    days: dict[tuple[str, str], list[dt.date]] = field(default_factory=dict)
    accepted: int = 0
    duplicates: int = 0
    errors: int = 0
    #: pending lots whose activation time came, activated by this tick
    activated: int = 0
    #: per program: {"accepted": n, "duplicate": n, "error": n}
    by_program: dict[str, dict[str, int]] = field(default_factory=dict)
    bank: BankReport = field(default_factory=BankReport)
    #: redemption holds released because their time to live passed
    holds_released: int = 0

    def count(self, program_id: str, status: str) -> int:
        return self.by_program.get(program_id, {}).get(status, 0)


class LeaderLock:
    """The scheduler's single-leader lock (PostgreSQL advisory lock; SQLite: always held)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._conn: sa.Connection | None = None

    def acquire(self) -> bool:
        if self.db.dialect != "postgresql":
            return True
        if self._conn is not None:
            try:
                self._conn.exec_driver_sql("SELECT 1")
                self._conn.commit()
                return True
            except sa.exc.DBAPIError:
                self.release()
        conn = self.db.engine.connect()
        try:
            got = bool(conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar_one())
            conn.commit()
        except sa.exc.DBAPIError:
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn = conn
        log.info("scheduler_leader_acquired")
        return True

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
            conn.commit()
        except sa.exc.DBAPIError:
            pass  # the connection is gone, and its lock with it
        finally:
            conn.close()


class TriggerScheduler:
    def __init__(self, db: Database, identity: Any, ingest: Any, internal_token: str,
                 clock: Clock = utcnow, on_commit: Callable[[], None] = lambda: None,
                 points: EventPoints | None = None,
                 expire_holds: Callable[[dt.datetime], int] | None = None) -> None:
        """``on_commit`` wakes the outbox relay after the bank jobs committed facts; ``points``
        activates pending points when due; ``expire_holds(now)`` releases redemption holds past
        their time to live (issue 23)."""
        self.db = db
        self._store = RulesStore(db)
        self.bank = BankJobs(self._store, on_commit)
        self._points = points or EventPoints(self._store, on_commit=on_commit)
        self._identity = identity
        self._ingest = ingest
        self._token = internal_token
        self._clock = clock
        self._expire_holds = expire_holds
        self._lock = LeaderLock(db)
        self._run_lock = threading.Lock()
        self._aps: BackgroundScheduler | None = None

    # -- one tick ---------------------------------------------------------------------------
    def run_once(self) -> RunReport:
        """Fire every due day of every enabled trigger if this process is the leader."""
        with self._run_lock:
            if not self._lock.acquire():
                return RunReport(leader=False)
            report = RunReport(leader=True)
            now = self._clock()
            # Activation first: a lot whose activation was late may already be due to expire.
            report.activated = self._points.activate_due(now)
            if self._expire_holds is not None:  # first: released points go back to lots the run may expire
                report.holds_released = self._expire_holds(now)
            self.bank.run(now, report.bank)
            today = now.astimezone(dt.UTC).date()
            for program in self._store.triggered_programs():
                triggers, _ = normalise_triggers(program.scheduled_triggers)
                for name, config in triggers.items():
                    if config["enabled"]:
                        self._catch_up(program.tenant_id, program.id, name, config, today, report)
            return report

    def _catch_up(self, tenant_id: str, program_id: str, trigger: str, config: dict[str, Json],
                  today: dt.date, report: RunReport) -> None:
        last = self._store.watermark(tenant_id, program_id, trigger)
        first = today if last is None else last + dt.timedelta(days=1)
        first = max(first, today - dt.timedelta(days=MAX_CATCH_UP_DAYS - 1))
        day = first
        while day <= today:
            events = list(self._due(tenant_id, program_id, trigger, config, day))
            self._submit(tenant_id, events, report)
            self._store.advance_watermark(tenant_id, program_id, trigger, day, utcnow())
            report.days.setdefault((program_id, trigger), []).append(day)
            log.info("scheduled_day_fired", tenant_id=tenant_id, program_id=program_id, trigger=trigger,
                     day=day.isoformat(), events=len(events))
            day += dt.timedelta(days=1)

    # -- candidates -------------------------------------------------------------------------
    def _due(self, tenant_id: str, program_id: str, trigger: str, config: dict[str, Json],
             day: dt.date) -> Iterator[ingest_pb2.SystemEvent]:
        md = internal_metadata(self._token, tenant_id)
        midnight = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        if trigger in ("birthday", "anniversary"):
            occasion = (identity_pb2.SCHEDULED_OCCASION_BIRTHDAY if trigger == "birthday"
                        else identity_pb2.SCHEDULED_OCCASION_ANNIVERSARY)
            token = ""
            while True:
                resp = self._identity.ListScheduledCandidates(identity_pb2.ListScheduledCandidatesRequest(
                    tenant_id=tenant_id, program_id=program_id, occasion=occasion, date=day.isoformat(),
                    page_size=PAGE, page_token=token), metadata=md, timeout=30)
                for c in resp.candidates:
                    data = {"trigger": trigger, "date": day.isoformat()}
                    if c.years > 0:
                        data["years"] = c.years
                    yield _event(program_id, trigger, c.participant_id, day, config["event_type"], midnight, data)
                token = resp.next_page_token
                if not token:
                    return
        days = int(config["days"])
        token = ""
        while True:
            resp = self._ingest.ListInactiveParticipants(ingest_pb2.ListInactiveParticipantsRequest(
                tenant_id=tenant_id, program_id=program_id,
                last_event_on_or_before=(day - dt.timedelta(days=days)).isoformat(),
                page_size=PAGE, page_token=token), metadata=md, timeout=30)
            for p in resp.participants:
                last = dt.date.fromisoformat(p.last_event_date)
                # The payload depends only on the key: the day inactivity was reached.
                reached = last + dt.timedelta(days=days)
                yield _event(program_id, trigger, p.participant_id, last, config["event_type"],
                             dt.datetime.combine(reached, dt.time(), tzinfo=dt.UTC),
                             {"trigger": trigger, "last_event_date": last.isoformat(), "days": days})
            token = resp.next_page_token
            if not token:
                return

    def _submit(self, tenant_id: str, events: list[ingest_pb2.SystemEvent], report: RunReport) -> None:
        md = internal_metadata(self._token, tenant_id)
        for start in range(0, len(events), SUBMIT_CHUNK):
            chunk = events[start:start + SUBMIT_CHUNK]
            resp = self._ingest.SubmitSystemEvents(ingest_pb2.SubmitSystemEventsRequest(
                tenant_id=tenant_id, events=chunk), metadata=md, timeout=60)
            for item, result in zip(chunk, resp.results, strict=True):
                counts = report.by_program.setdefault(item.program_id, {})
                status = result.status if result.status in ("accepted", "duplicate") else "error"
                counts[status] = counts.get(status, 0) + 1
                if result.status == "accepted":
                    report.accepted += 1
                elif result.status == "duplicate":
                    report.duplicates += 1
                else:
                    report.errors += 1
                    log.warning("scheduled_event_refused", tenant_id=tenant_id, key=item.idempotency_key,
                                code=result.error.code, message=result.error.message)

    # -- background -------------------------------------------------------------------------
    def tick(self) -> None:
        """One APScheduler job run; failures are logged and retried on the next tick (the
        watermark only advances past days fully fired)."""
        try:
            report = self.run_once()
        except (grpc.RpcError, sa.exc.DBAPIError) as exc:
            log.warning("scheduler_tick_failed", error=str(exc))
            return
        if report.leader and (report.accepted or report.errors or report.activated):
            log.info("scheduler_tick", accepted=report.accepted, duplicates=report.duplicates,
                     errors=report.errors, activated=report.activated)

    def start(self, interval_seconds: float = 60.0) -> None:
        logging.getLogger("apscheduler").setLevel(logging.WARNING)  # not a line per tick
        self._aps = BackgroundScheduler(timezone=dt.UTC)
        self._aps.add_job(self.tick, IntervalTrigger(seconds=interval_seconds), id="scheduled_triggers",
                          max_instances=1, coalesce=True, next_run_time=dt.datetime.now(dt.UTC))
        self._aps.start()
        log.info("scheduler_started", interval_seconds=interval_seconds)

    def stop(self) -> None:
        if self._aps is not None:
            self._aps.shutdown(wait=True)
            self._aps = None
        self._lock.release()


def _event(program_id: str, trigger: str, participant_id: str, key_day: dt.date, event_type: str,
           at: dt.datetime, data: dict[str, Json]) -> ingest_pb2.SystemEvent:
    event = ingest_pb2.SystemEvent(program_id=program_id, event_type=event_type, participant_id=participant_id,
                                   idempotency_key=idempotency_key(trigger, participant_id, key_day))
    event.event_timestamp.FromDatetime(at)
    event.event_data.update(data)
    return event
