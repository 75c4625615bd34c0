"""Ingest use cases: accept, deduplicate, read, retry, claim and record outcomes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import queue as queue_mod
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import structlog
from accrual.messages.v1 import messages_pb2
from accrual_platform import contract, errors, facts, pages, structs
from accrual_platform.contract import outbox_row
from accrual_platform.db import Database, decimal_str, in_values, update_rows, utcnow

from accrual_ingest import engagement, storage
from accrual_ingest.domain.cdp import (
    CdpInput,
    EventTypeSpec,
    spec_from_storage,
    validate_cdp_event,
    validate_event_type,
)
from accrual_ingest.domain.engagement import Increments, ProcessedEvent
from accrual_ingest.domain.validation import MAX_BATCH, EventInput, ValidEvent, Violation, validate_event

log = structlog.get_logger("accrual.ingest")

#: Event ids per rules message (the relay merges announcements up to it). Each message costs
#: the pipeline a fixed share of CPU whatever its size (RPCs, statements, commits, messages
#: in every service), so larger messages cost less per event, up to what a batch holds in
#: the ingest worker's memory (bench/README.md, "Rules message size"). Under light load
#: messages stay small (the relay sends what has arrived), so this costs no latency.
CLAIM_CHUNK = 500
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
EVENT_PAGES = pages.Codec("events", pages.timestamp, pages.uuid_key)


@dataclass(frozen=True)
class Accepted:
    row: sa.Row[Any]
    deduplicated: bool


@dataclass(frozen=True)
class ItemResult:
    status: str  # accepted | duplicate | error
    event_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    error_field: str | None = None


@dataclass(frozen=True)
class CdpResult:
    """Outcome of one CDP event, in seed 003's terms."""

    status: str  # accepted | duplicate | error
    event_id: str | None = None
    original_event_id: str | None = None
    error_code: str | None = None
    message: str | None = None
    violations: tuple[Violation, ...] = ()


class GroupCommitter:
    """Concurrent single-event accepts share transactions (group commit).

    A request thread hands its validated event over and waits; flusher threads take
    everything waiting (up to ``max_batch``) and store it in one transaction, so under load
    one INSERT, one outbox row and one COMMIT serve many events, and when idle an event is
    stored at once (nobody waits for a timer). Nothing is answered before its commit, and a
    failed transaction fails every request of its group (each gets the error, e.g. 503).
    """

    def __init__(self, store: Callable[[Sequence[tuple[str, ValidEvent, dt.datetime]]],
                                       list[tuple[bool, sa.Row[Any]]]],
                 *, flushers: int = 2, max_batch: int = 256) -> None:
        self._store = store
        self._max = max_batch
        self._queue: queue_mod.SimpleQueue[
            tuple[str, ValidEvent, dt.datetime, Future[tuple[bool, sa.Row[Any]]]] | None] = queue_mod.SimpleQueue()
        self._threads = [threading.Thread(target=self._run, name=f"ingest-group-commit-{i}", daemon=True)
                         for i in range(flushers)]
        for t in self._threads:
            t.start()

    def submit(self, tenant_id: str, event: ValidEvent, received_at: dt.datetime) -> tuple[bool, sa.Row[Any]]:
        future: Future[tuple[bool, sa.Row[Any]]] = Future()
        self._queue.put((tenant_id, event, received_at, future))
        return future.result()

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            group = [item]
            while len(group) < self._max:
                try:
                    more = self._queue.get_nowait()
                except queue_mod.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                group.append(more)
            try:
                results = self._store([(t, e, at) for t, e, at, _ in group])
            except BaseException as exc:
                for *_, f in group:
                    f.set_exception(exc)
            else:
                for (*_, f), result in zip(group, results, strict=True):
                    f.set_result(result)


#: Built once: a statement built per call costs more CPU than its execution.
_OUTBOX_INSERT = storage.outbox.insert()


def _announce(session: Any, tenant_id: str, event_ids: Sequence[str]) -> None:
    """Outbox records telling the rules queue about events, CLAIM_CHUNK ids per message."""
    for start in range(0, len(event_ids), CLAIM_CHUNK):
        msg = messages_pb2.EventsAccepted(tenant_id=tenant_id, event_ids=event_ids[start:start + CLAIM_CHUNK])
        session.execute(_OUTBOX_INSERT, outbox_row(contract.EVALUATE_EVENTS, msg))


def _key(e: ValidEvent) -> str:
    return storage.dedup_key(storage.scope_of(e), e.idempotency_key)


def _validated(raw: EventInput, now: dt.datetime) -> ValidEvent:
    """The valid event, or InvalidArgument naming every bad field."""
    event, violations = validate_event(raw, now)
    errors.collect([errors.FieldViolation(v.field, v.description) for v in violations])
    assert event is not None
    return event


def _answer(event: ValidEvent, fresh: bool, row: sa.Row[Any]) -> Accepted:
    """A single submission's answer once stored: the new event, the original one for a
    retry with the same payload, or 409 for the same key with another payload."""
    if fresh:
        return Accepted(row, False)
    if row.payload_digest != event.digest:
        raise errors.Conflict(
            "idempotency_key was already used with a different payload in this program",
            reason="idempotency_conflict",
            metadata={"event_id": row.id, "idempotency_key": event.idempotency_key})
    return Accepted(row, True)


def _violations_message(violations: Sequence[Violation]) -> str:
    return "; ".join(f"{v.field}: {v.description}" for v in violations)


class IngestService:
    def __init__(self, db: Database, wake_relay: Callable[[], None]) -> None:
        self.db = db
        self._wake = wake_relay
        self._committer = GroupCommitter(self._store_group)

    def close(self) -> None:
        self._committer.close()

    # -- accept -------------------------------------------------------------------------
    def _store(self, tenant_id: str, items: Sequence[ValidEvent], now: dt.datetime,
               columns: Sequence[Any] | None = None) -> tuple[dict[str, str], dict[str, sa.Row[Any]]]:
        """Insert new events (+ outbox) in one transaction; return the inserted ids and the
        row of every key (inserted or already there), both by dedup key.

        Concurrent identical inserts meet at the unique index: ON CONFLICT DO NOTHING waits
        for the first to commit, then the read below sees its row, so every caller answers
        with the one canonical event and nobody gets an error.
        """
        if not items:
            return {}, {}
        with self.db.transaction() as session:
            inserted, rows = self._store_in(session, tenant_id, items, now, columns)
        if inserted:
            self._wake()
        return {k: r.id for k, r in inserted.items()}, rows

    @staticmethod
    def _store_in(session: Any, tenant_id: str, items: Sequence[ValidEvent],
                  now: dt.datetime | Sequence[dt.datetime], columns: Sequence[Any] | None = None
                  ) -> tuple[dict[str, sa.Row[Any]], dict[str, sa.Row[Any]]]:
        inserted = storage.insert_new(session, tenant_id, items, now, columns)
        _announce(session, tenant_id, [r.id for r in inserted.values()])
        rows = dict(inserted)
        missing = [e for e in items if _key(e) not in rows]
        if missing:
            rows.update(storage.find_by_keys(session, tenant_id, missing, columns))
        return inserted, rows

    def _store_group(self, group: Sequence[tuple[str, ValidEvent, dt.datetime]]) -> list[tuple[bool, sa.Row[Any]]]:
        """Group commit: the single-event accepts waiting at this moment share one
        transaction, each keeping its own receipt time. Answers, in order, (inserted by this
        item, the canonical row)."""
        by_tenant: dict[str, list[tuple[ValidEvent, dt.datetime]]] = {}
        first: dict[tuple[str, str], int] = {}
        for i, (tenant_id, event, now) in enumerate(group):
            if first.setdefault((tenant_id, _key(event)), i) == i:
                by_tenant.setdefault(tenant_id, []).append((event, now))
        found: dict[tuple[str, str], tuple[bool, sa.Row[Any]]] = {}
        with self.db.transaction() as session:
            for tenant_id in sorted(by_tenant):
                pairs = by_tenant[tenant_id]
                inserted, rows = self._store_in(session, tenant_id, [e for e, _ in pairs], [t for _, t in pairs])
                for key, row in rows.items():
                    found[(tenant_id, key)] = (key in inserted, row)
        if any(fresh for fresh, _ in found.values()):
            self._wake()
        out = []
        for i, (tenant_id, event, _) in enumerate(group):
            fresh, row = found[(tenant_id, _key(event))]
            out.append((fresh and first[(tenant_id, _key(event))] == i, row))
        return out

    def submit(self, tenant_id: str, raw: EventInput) -> Accepted:
        now = utcnow()
        event = _validated(raw, now)
        fresh, row = self._committer.submit(tenant_id, event, now)
        return _answer(event, fresh, row)

    def submit_many(self, calls: Sequence[tuple[str, EventInput]]) -> list[Accepted | errors.AppError]:
        """Single-event submissions of several callers at once (the REST shim's coalesced
        calls), each validated and answered exactly as :meth:`submit` would answer it, the
        valid ones stored in one transaction (each with its own receipt time). A failed
        transaction fails them all (the exception propagates: nothing was stored)."""
        answers: list[Accepted | errors.AppError | None] = []
        group: list[tuple[str, ValidEvent, dt.datetime]] = []
        slots: list[int] = []
        for tenant_id, raw in calls:
            now = utcnow()
            try:
                event = _validated(raw, now)
            except errors.AppError as exc:
                answers.append(exc)
                continue
            slots.append(len(answers))
            answers.append(None)
            group.append((tenant_id, event, now))
        if group:
            for i, (_, event, _), (fresh, row) in zip(slots, group, self._store_group(group), strict=True):
                try:
                    answers[i] = _answer(event, fresh, row)
                except errors.AppError as exc:
                    answers[i] = exc
        return [a for a in answers if a is not None]

    @staticmethod
    def _check_batch_size(count: int, field: str) -> None:
        if count == 0:
            raise errors.InvalidArgument.field(field, f"must contain 1 to {MAX_BATCH} items")
        if count > MAX_BATCH:
            raise errors.InvalidArgument.field(field, f"must contain at most {MAX_BATCH} items (got {count})")

    def _accept_many(self, tenant_id: str, valid: Sequence[tuple[int, ValidEvent]], now: dt.datetime
                     ) -> dict[int, tuple[str, sa.Row[Any]]]:
        """Store the valid items of a batch; {index: (accepted|duplicate|conflict, row)}.

        A key repeated inside one batch is stored once; its later items are answered like
        retries of the first.
        """
        first_by_key: dict[str, tuple[int, ValidEvent]] = {}
        for i, event in valid:
            first_by_key.setdefault(_key(event), (i, event))
        inserted, rows = self._store(tenant_id, [e for _, e in first_by_key.values()], now, storage.KEY_COLUMNS)
        out: dict[int, tuple[str, sa.Row[Any]]] = {}
        for i, event in valid:
            key = _key(event)
            row = rows[key]
            if key in inserted and first_by_key[key][0] == i:
                out[i] = ("accepted", row)
            elif row.payload_digest != event.digest:
                out[i] = ("conflict", row)
            else:
                out[i] = ("duplicate", row)
        return out

    def submit_batch(self, tenant_id: str, raws: Sequence[EventInput]) -> list[ItemResult]:
        self._check_batch_size(len(raws), "events")
        now = utcnow()
        results: dict[int, ItemResult] = {}
        valid: list[tuple[int, ValidEvent]] = []
        for i, raw in enumerate(raws):
            event, violations = validate_event(raw, now, prefix=f"events[{i}].")
            if event is None:
                results[i] = ItemResult("error", error_code="invalid_argument",
                                        error_message=_violations_message(violations),
                                        error_field=violations[0].field)
            else:
                valid.append((i, event))
        for i, (outcome, row) in self._accept_many(tenant_id, valid, now).items():
            if outcome == "conflict":
                results[i] = ItemResult("error", event_id=row.id, error_code="idempotency_conflict",
                                        error_message="idempotency_key was already used with a different payload",
                                        error_field=f"events[{i}].idempotency_key")
            else:
                results[i] = ItemResult(outcome, event_id=row.id)
        return [results[i] for i in range(len(raws))]

    # -- CDP (seed 003) -----------------------------------------------------------------
    def _cdp_specs(self, tenant_id: str, names: Sequence[str]) -> dict[str, EventTypeSpec]:
        with self.db.transaction() as session:
            rows = storage.event_types_by_name(session, tenant_id, [n for n in names if n])
        return {name: spec_from_storage(r.name, r.properties, r.allow_unknown_properties)
                for name, r in rows.items()}

    def submit_cdp(self, tenant_id: str, raw: CdpInput) -> CdpResult:
        spec = self._cdp_specs(tenant_id, [raw.event_type]).get(raw.event_type)
        now = utcnow()
        event, violations = validate_cdp_event(raw, spec, now)
        errors.collect([errors.FieldViolation(v.field, v.description) for v in violations],
                       reason="validation_failed")
        assert event is not None
        inserted, rows = self._store(tenant_id, [event], now, storage.KEY_COLUMNS)
        key = _key(event)
        row = rows[key]
        if key in inserted:
            return CdpResult("accepted", event_id=row.id)
        if row.payload_digest != event.digest:
            raise errors.Conflict(
                "externalEventId was already used by this source with a different payload",
                reason="idempotency_conflict",
                metadata={"original_event_id": row.id, "externalEventId": event.idempotency_key})
        return CdpResult("duplicate", original_event_id=row.id)

    def submit_cdp_batch(self, tenant_id: str, raws: Sequence[CdpInput]) -> list[CdpResult]:
        self._check_batch_size(len(raws), "items")
        specs = self._cdp_specs(tenant_id, [r.event_type for r in raws])
        now = utcnow()
        results: dict[int, CdpResult] = {}
        valid: list[tuple[int, ValidEvent]] = []
        for i, raw in enumerate(raws):
            event, violations = validate_cdp_event(raw, specs.get(raw.event_type), now, prefix=f"items[{i}].")
            if event is None:
                results[i] = CdpResult("error", error_code="validation_failed",
                                       message=_violations_message(violations), violations=tuple(violations))
            else:
                valid.append((i, event))
        for i, (outcome, row) in self._accept_many(tenant_id, valid, now).items():
            if outcome == "accepted":
                results[i] = CdpResult("accepted", event_id=row.id)
            elif outcome == "duplicate":
                results[i] = CdpResult("duplicate", original_event_id=row.id)
            else:
                results[i] = CdpResult(
                    "error", original_event_id=row.id, error_code="idempotency_conflict",
                    message="externalEventId was already used by this source with a different payload",
                    violations=(Violation(f"items[{i}].externalEventId", "already used with a different payload"),))
        return [results[i] for i in range(len(raws))]

    def register_event_type(self, tenant_id: str, spec: EventTypeSpec) -> sa.Row[Any]:
        violations = validate_event_type(spec)
        errors.collect([errors.FieldViolation(v.field, v.description) for v in violations],
                       reason="validation_failed")
        properties = [{"name": p.name, "type": p.type, "required": p.required} for p in spec.properties]
        with self.db.transaction() as session:
            return storage.upsert_event_type(session, tenant_id, spec.name, properties,
                                             spec.allow_unknown_properties, utcnow())

    def event_types(self, tenant_id: str) -> list[sa.Row[Any]]:
        with self.db.transaction() as session:
            return storage.list_event_types(session, tenant_id)

    def event_type(self, tenant_id: str, name: str) -> sa.Row[Any]:
        with self.db.transaction() as session:
            row = storage.get_event_type(session, tenant_id, name)
        if row is None:
            raise errors.NotFound(f"CDP event type {errors.excerpt(name)} is not registered",
                                  reason="event_type_not_found")
        return row

    # -- read ---------------------------------------------------------------------------
    def get(self, tenant_id: str, event_id: str) -> sa.Row[Any]:
        try:
            event_id = str(uuid.UUID(event_id))
        except ValueError:
            raise errors.InvalidArgument.field("event_id", "must be a UUID") from None
        with self.db.transaction() as session:
            row = storage.get(session, tenant_id, event_id)
        if row is None:
            raise errors.NotFound(f"event {event_id} not found", reason="event_not_found")
        return row

    def list_events(self, tenant_id: str, *, filters: dict[str, Any], page_size: int,
             page_token: str) -> tuple[list[sa.Row[Any]], str]:
        if page_size < 0:
            raise errors.InvalidArgument.field("page_size", f"must be between 1 and {MAX_PAGE_SIZE}")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        violations: list[errors.FieldViolation] = []
        for name in ("program_id", "participant_id"):
            if filters.get(name):
                try:
                    filters[name] = str(uuid.UUID(filters[name]))
                except ValueError:
                    violations.append(errors.FieldViolation(name, "must be a UUID"))
        errors.collect(violations)
        e = storage.events
        query = sa.select(e).where(e.c.tenant_id == tenant_id)
        for name in ("program_id", "participant_id", "external_id", "status", "origin", "cdp_source"):
            if filters.get(name):
                query = query.where(e.c[name] == filters[name])
        if filters.get("received_after"):
            query = query.where(e.c.received_at >= filters["received_after"])
        if filters.get("received_before"):
            query = query.where(e.c.received_at < filters["received_before"])
        if filters.get("occurred_after"):
            query = query.where(e.c.event_timestamp >= filters["occurred_after"])
        if filters.get("occurred_before"):
            query = query.where(e.c.event_timestamp < filters["occurred_before"])
        if page_token:
            at, last_id = EVENT_PAGES.decode(page_token)
            query = query.where(sa.or_(e.c.received_at < at,
                                       sa.and_(e.c.received_at == at, e.c.id < last_id)))
        query = query.order_by(e.c.received_at.desc(), e.c.id.desc()).limit(size + 1)
        with self.db.transaction() as session:
            rows = list(session.execute(query).all())
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            last = rows[-1]
            token = EVENT_PAGES.encode(last.received_at, last.id)
        return rows, token

    # -- retry, claim, outcome ----------------------------------------------------------
    def retry(self, tenant_id: str, event_id: str) -> sa.Row[Any]:
        row = self.get(tenant_id, event_id)
        e = storage.events
        with self.db.transaction() as session:
            result = session.execute(sa.update(e).where(
                e.c.id == row.id, e.c.status == storage.FAILED).values(
                status=storage.PENDING, attempt=e.c.attempt + 1, error_code=None, error_message=None,
                processed_at=None, completed_at=None, rule_evaluations=None, points_awarded=None,
                announced_at=utcnow()))
            if result.rowcount != 1:
                raise errors.Conflict(f"only FAILED events can be retried; this one is {row.status}",
                                      reason="event_not_retryable")
            _announce(session, tenant_id, [row.id])
            fresh = storage.get(session, tenant_id, row.id)
        self._wake()
        assert fresh is not None
        return fresh

    def claim(self, tenant_id: str, event_ids: Sequence[str]) -> list[sa.Row[Any]]:
        """Move PENDING events to PROCESSING; return every event not finished yet."""
        e = storage.events
        with self.db.transaction() as session:
            rows = list(session.execute(sa.update(e).where(
                e.c.tenant_id == tenant_id, in_values(session, [e.c.id], event_ids),
                e.c.status == storage.PENDING).values(status=storage.PROCESSING).returning(*e.c)).all())
            # Events claimed before (a redelivery, or a worker that died mid-batch) are
            # PROCESSING already: read them too. Usually there are none and no second query.
            claimed = {r.id for r in rows}
            again = sorted(set(event_ids) - claimed)
            if again:
                rows += session.execute(sa.select(e).where(
                    e.c.tenant_id == tenant_id, in_values(session, [e.c.id], again),
                    e.c.status == storage.PROCESSING)).all()
        return rows

    def record_outcomes(self, outcomes: Sequence[messages_pb2.EventOutcome]) -> int:
        """Store outcomes of unfinished events and announce them; redeliveries change nothing.

        The analytics aggregates are updated in the same transaction, only for events this
        call moves to COMPLETED, so a redelivered outcome adds nothing to them either.
        """
        e = storage.events
        analytics: dict[str, Increments] = {}
        now = utcnow()
        latest: dict[str, messages_pb2.EventOutcome] = {}
        for o in outcomes:
            latest[o.event_id] = o  # one row per event; a repeat inside a batch is a redelivery
        updates = [{
            "id": o.event_id,
            "tenant_id": o.tenant_id,
            "status": storage.COMPLETED if o.status == messages_pb2.OUTCOME_STATUS_COMPLETED else storage.FAILED,
            "rule_evaluations": [structs.scalars_to_dict(r) for r in o.rule_evaluations],
            "points_awarded": decimal.Decimal(o.points_awarded) if o.points_awarded else None,
            "error_code": o.error_code or None,
            "error_message": o.error_message or None,
            "processed_at": structs.timestamp_datetime(o.processed_at) if o.HasField("processed_at") else now,
            "participant_id": o.participant_id or None,
            "recipient_id": o.recipient_id or None,
            "completed_at": now,
        } for o in latest.values()]
        evaluations = {u["id"]: u["rule_evaluations"] for u in updates}
        with self.db.transaction() as session:
            # The summary columns only: the event's data and the evaluations just written
            # would come back as JSON for PostgreSQL to print and Python to parse again.
            changed = update_rows(session, e, ("id", "tenant_id"), updates,
                                  where=[storage.IN_PROGRESS],
                                  keep=("participant_id", "recipient_id"), returning=SUMMARY_COLUMNS)
            # positional: SUMMARY_COLUMNS are Summary's fields in order, the evaluations last
            rows = [_summary(*r, evaluations[r.id]) for r in changed]
            notes = messages_pb2.Notifications()
            for row in sorted(rows, key=lambda r: r.id):
                completed = row.status == storage.COMPLETED
                if completed:
                    analytics.setdefault(row.tenant_id, Increments()).add(processed_event(row))
                kind = "event.completed" if completed else "event.failed"
                notes.notifications.append(facts.notification(
                    row.tenant_id, kind, f"{kind}:{row.id}:{row.attempt}", row.processed_at, event_summary(row)))
            if notes.notifications:
                session.execute(_OUTBOX_INSERT, outbox_row(contract.PUBLISH_NOTIFICATIONS, notes))
            for tenant_id, increments in sorted(analytics.items()):
                engagement.apply(session, tenant_id, increments)
        recorded = len(rows)
        if recorded:
            self._wake()
        return recorded

    # -- scheduled (SYSTEM) events ------------------------------------------------------
    def submit_system(self, tenant_id: str, items: Sequence[SystemEventInput]) -> list[ItemResult]:
        """Accept the scheduler's events (origin SYSTEM) like a partner batch: each is
        deduplicated by its deterministic idempotency key, so a fire repeated by a second
        scheduler run, a restart or a second machine is answered ``duplicate``."""
        if not tenant_id:
            raise errors.InvalidArgument.field("tenant_id", "is required")
        self._check_batch_size(len(items), "events")
        now = utcnow()
        results: dict[int, ItemResult] = {}
        valid: list[tuple[int, ValidEvent]] = []
        for i, item in enumerate(items):
            prefix = f"events[{i}]."
            raw = EventInput(program_id=item.program_id, idempotency_key=item.idempotency_key,
                             event_type=item.event_type, event_timestamp=item.event_timestamp,
                             external_id=None, participant_id=item.participant_id or None,
                             recipient_external_id=None, recipient_id=None, event_data=item.event_data)
            violations = [Violation(prefix + name, "is required") for name, value in
                          (("participant_id", item.participant_id), ("event_timestamp", item.event_timestamp))
                          if not value]
            event, problems = validate_event(raw, now, prefix=prefix)
            violations += problems
            if event is None or violations:
                results[i] = ItemResult("error", error_code="invalid_argument",
                                        error_message=_violations_message(violations),
                                        error_field=violations[0].field)
            else:
                valid.append((i, event._replace(origin=storage.SYSTEM)))
        for i, (outcome, row) in self._accept_many(tenant_id, valid, now).items():
            if outcome == "conflict":
                results[i] = ItemResult("error", event_id=row.id, error_code="idempotency_conflict",
                                        error_message="idempotency_key was already used with a different payload",
                                        error_field=f"events[{i}].idempotency_key")
            else:
                results[i] = ItemResult(outcome, event_id=row.id)
        return [results[i] for i in range(len(items))]

    def sweep_stale(self, older_than: dt.timedelta, limit: int = 1000, *,
                    announced_before: dt.datetime | None = None) -> int:
        """Announce again the unfinished events last announced more than ``older_than`` ago
        (or, given ``announced_before``, before that moment).

        Every consumer is idempotent, so a second announcement of an event that is merely
        slow costs a replay; an event whose message was lost (dead-lettered after its
        retries, a purged queue) gets processed instead of staying PENDING forever.
        Several ingest processes may sweep at once: on PostgreSQL each takes other rows
        (SKIP LOCKED).
        """
        e = storage.events
        now = utcnow()
        cutoff = announced_before if announced_before is not None else now - older_than
        with self.db.transaction() as session:
            query = sa.select(e.c.id, e.c.tenant_id).where(
                e.c.completed_at.is_(None), e.c.announced_at < cutoff).order_by(e.c.announced_at).limit(limit)
            if self.db.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = session.execute(query).all()
            if not rows:
                return 0
            by_tenant: dict[str, list[str]] = {}
            for r in rows:
                by_tenant.setdefault(r.tenant_id, []).append(r.id)
            session.execute(sa.update(e).where(e.c.id.in_([r.id for r in rows])).values(announced_at=now))
            for tenant_id, ids in by_tenant.items():
                _announce(session, tenant_id, ids)
        log.warning("stale_events_announced_again", count=len(rows), older_than_s=older_than.total_seconds())
        self._wake()
        return len(rows)


@dataclass(frozen=True)
class SystemEventInput:
    program_id: str
    idempotency_key: str
    event_type: str
    participant_id: str
    event_timestamp: dt.datetime | None
    event_data: dict[str, Any]


@dataclass(frozen=True)
class Summary:
    """What an outcome's webhook and the analytics need of an event (see SUMMARY_COLUMNS)."""

    id: str
    tenant_id: str
    program_id: str
    idempotency_key: str
    event_type: str
    external_id: str | None
    participant_id: str | None
    recipient_id: str | None
    status: str
    attempt: int
    points_awarded: decimal.Decimal | None
    error_code: str | None
    error_message: str | None
    event_timestamp: dt.datetime
    processed_at: dt.datetime
    origin: str
    cdp_source: str | None
    rule_evaluations: list[dict[str, Any]]


SUMMARY_COLUMNS = [storage.events.c[f.name] for f in dataclasses.fields(Summary) if f.name != "rule_evaluations"]
# record_outcomes builds a Summary from a row of SUMMARY_COLUMNS and the evaluations, by
# position (through an alias typed for it: a type checker cannot count a row's fields)
assert dataclasses.fields(Summary)[-1].name == "rule_evaluations"
_summary: Callable[..., Summary] = Summary


def processed_event(row: Summary) -> ProcessedEvent:
    return ProcessedEvent(program_id=row.program_id, event_type=row.event_type,
                          event_timestamp=row.event_timestamp, origin=row.origin,
                          participant_id=row.participant_id,
                          rule_evaluations=list(row.rule_evaluations or []))


class StaleEventSweeper:
    """Runs :meth:`IngestService.sweep_stale` every ``interval`` seconds in a thread.

    ``at_start``: first announce again every event left unfinished when the thread starts,
    however recent. An in-process broker's messages died with the process that held them,
    so after a restart of the embedded suite nothing else would carry those events before
    they are stale (``older_than``, two minutes by default)."""

    def __init__(self, service: IngestService, *, interval: float, older_than: float,
                 at_start: bool = False) -> None:
        self._service = service
        self._interval = interval
        self._older_than = dt.timedelta(seconds=older_than)
        self._at_start = at_start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stale-event-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        if self._at_start:
            self._sweep_unfinished(utcnow())
        while not self._stop.wait(self._interval):
            try:
                while self._service.sweep_stale(self._older_than) and not self._stop.is_set():
                    pass
            except Exception as exc:  # the database may be down; try again next round
                log.warning("stale_event_sweep_failed", error=str(exc).splitlines()[0] if str(exc) else repr(exc))

    def _sweep_unfinished(self, started: dt.datetime) -> None:
        # A fixed cutoff: events announced again here are not taken a second time.
        try:
            while (self._service.sweep_stale(self._older_than, announced_before=started)
                   and not self._stop.is_set()):
                pass
        except Exception as exc:  # the regular sweep takes them later
            log.warning("unfinished_event_sweep_failed", error=str(exc).splitlines()[0] if str(exc) else repr(exc))


def event_summary(row: Summary) -> dict[str, Any]:
    """Webhook data of an event: ids partners correlate on, status and outcome."""
    return {
        "event_id": row.id, "idempotency_key": row.idempotency_key, "program_id": row.program_id,
        "event_type": row.event_type, "external_id": row.external_id,
        "participant_id": row.participant_id, "recipient_id": row.recipient_id,
        "status": row.status,
        "points_awarded": decimal_str(row.points_awarded) if row.points_awarded is not None else None,
        "error_code": row.error_code, "error_message": row.error_message,
        "rule_evaluations": row.rule_evaluations or [],
        "origin": row.origin, "cdp_source": row.cdp_source,
    }
