"""Ingest use cases: accept, deduplicate, read, retry, claim and record outcomes."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import structlog
from accrual.messages.v1 import messages_pb2
from accrual_platform import errors, queue
from accrual_platform.db import Database, decimal_str, utcnow
from accrual_platform.outbox import outbox_row

from accrual_ingest import storage
from accrual_ingest.domain.validation import MAX_BATCH, EventInput, ValidEvent, validate_event

log = structlog.get_logger("accrual.ingest")

EVALUATE_ACTOR = "evaluate_events"
PUBLISH_ACTOR = "publish_notifications"
CLAIM_CHUNK = 200


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


def _key(program_id: str, idempotency_key: str) -> str:
    return f"{program_id}\x00{idempotency_key}"


class IngestService:
    def __init__(self, db: Database, wake_relay: Callable[[], None]) -> None:
        self.db = db
        self._wake = wake_relay

    # -- accept -------------------------------------------------------------------------
    def _store(self, tenant_id: str, items: Sequence[ValidEvent]
               ) -> tuple[dict[str, str], dict[str, sa.Row[Any]]]:
        """Insert new events (+ outbox) in one transaction; return inserted ids and the rows
        that already existed for the other keys."""
        now = utcnow()
        with self.db.transaction() as session:
            inserted = storage.insert_new(session, tenant_id, items, now)
            if inserted:
                ids = list(inserted.values())
                for start in range(0, len(ids), CLAIM_CHUNK):
                    msg = messages_pb2.EventsAccepted(tenant_id=tenant_id,
                                                      event_ids=ids[start:start + CLAIM_CHUNK])
                    session.execute(storage.outbox.insert().values(
                        outbox_row(queue.RULES_QUEUE, EVALUATE_ACTOR, msg)))
            missing = [(e.program_id, e.idempotency_key) for e in items
                       if _key(e.program_id, e.idempotency_key) not in inserted]
            existing = storage.find_by_keys(session, tenant_id, missing)
            fresh = storage.find_by_keys(
                session, tenant_id, [(e.program_id, e.idempotency_key) for e in items
                                     if _key(e.program_id, e.idempotency_key) in inserted])
        if inserted:
            self._wake()
        existing.update({k: v for k, v in fresh.items()})
        return inserted, existing

    def submit(self, tenant_id: str, raw: EventInput) -> Accepted:
        event, violations = validate_event(raw, utcnow())
        errors.collect([errors.FieldViolation(v.field, v.description) for v in violations])
        assert event is not None
        inserted, rows = self._store(tenant_id, [event])
        key = _key(event.program_id, event.idempotency_key)
        row = rows[key]
        if key in inserted:
            return Accepted(row, False)
        if row.payload_digest != event.digest:
            raise errors.Conflict(
                "idempotency_key was already used with a different payload in this program",
                reason="idempotency_conflict",
                metadata={"event_id": row.id, "idempotency_key": event.idempotency_key})
        return Accepted(row, True)

    def submit_batch(self, tenant_id: str, raws: Sequence[EventInput]) -> list[ItemResult]:
        if not raws:
            raise errors.InvalidArgument.field("events", "must contain 1 to 1000 events")
        if len(raws) > MAX_BATCH:
            raise errors.InvalidArgument.field("events", f"must contain at most {MAX_BATCH} events (got {len(raws)})")
        now = utcnow()
        results: list[ItemResult | None] = [None] * len(raws)
        first_by_key: dict[str, tuple[int, ValidEvent]] = {}
        later: list[tuple[int, ValidEvent]] = []
        for i, raw in enumerate(raws):
            event, violations = validate_event(raw, now, prefix=f"events[{i}].")
            if event is None:
                first = violations[0]
                results[i] = ItemResult("error", error_code="invalid_argument",
                                        error_message="; ".join(f"{v.field}: {v.description}" for v in violations),
                                        error_field=first.field)
                continue
            key = _key(event.program_id, event.idempotency_key)
            if key in first_by_key:
                later.append((i, event))
            else:
                first_by_key[key] = (i, event)
        inserted, rows = self._store(tenant_id, [e for _, e in first_by_key.values()])
        for key, (i, event) in first_by_key.items():
            row = rows[key]
            if key in inserted:
                results[i] = ItemResult("accepted", event_id=row.id)
            else:
                results[i] = self._dedup_result(row, event)
        for i, event in later:
            results[i] = self._dedup_result(rows[_key(event.program_id, event.idempotency_key)], event)
        return [r for r in results if r is not None]

    @staticmethod
    def _dedup_result(row: sa.Row[Any], event: ValidEvent) -> ItemResult:
        if row.payload_digest != event.digest:
            return ItemResult("error", event_id=row.id, error_code="idempotency_conflict",
                              error_message="idempotency_key was already used with a different payload",
                              error_field="idempotency_key")
        return ItemResult("duplicate", event_id=row.id)

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

    def list(self, tenant_id: str, *, filters: dict[str, Any], page_size: int,
             page_token: str) -> tuple[list[sa.Row[Any]], str]:
        if page_size < 0 or page_size > 200:
            raise errors.InvalidArgument.field("page_size", "must be between 1 and 200")
        size = page_size or 50
        e = storage.events
        query = sa.select(e).where(e.c.tenant_id == tenant_id)
        for name in ("program_id", "participant_id", "external_id", "status"):
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
            try:
                at_raw, _, last_id = base64.urlsafe_b64decode(page_token.encode()).decode().partition("|")
                at = dt.datetime.fromisoformat(at_raw)
            except (ValueError, UnicodeDecodeError):
                raise errors.InvalidArgument.field("page_token", "is not a token from a previous page") from None
            query = query.where(sa.or_(e.c.received_at < at,
                                       sa.and_(e.c.received_at == at, e.c.id < last_id)))
        query = query.order_by(e.c.received_at.desc(), e.c.id.desc()).limit(size + 1)
        with self.db.transaction() as session:
            rows = list(session.execute(query).all())
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            last = rows[-1]
            token = base64.urlsafe_b64encode(f"{last.received_at.isoformat()}|{last.id}".encode()).decode()
        return rows, token

    # -- retry, claim, outcome ----------------------------------------------------------
    def retry(self, tenant_id: str, event_id: str) -> sa.Row[Any]:
        row = self.get(tenant_id, event_id)
        e = storage.events
        with self.db.transaction() as session:
            result = session.execute(sa.update(e).where(
                e.c.id == row.id, e.c.status == storage.FAILED).values(
                status=storage.PENDING, attempt=e.c.attempt + 1, error_code=None,
                error_message=None, processed_at=None, rule_evaluations=None, points_awarded=None))
            if result.rowcount != 1:
                raise errors.Conflict(f"only FAILED events can be retried; this one is {row.status}",
                                      reason="event_not_retryable")
            msg = messages_pb2.EventsAccepted(tenant_id=tenant_id, event_ids=[row.id])
            session.execute(storage.outbox.insert().values(
                outbox_row(queue.RULES_QUEUE, EVALUATE_ACTOR, msg)))
            fresh = storage.get(session, tenant_id, row.id)
        self._wake()
        assert fresh is not None
        return fresh

    def claim(self, tenant_id: str, event_ids: Sequence[str]) -> list[sa.Row[Any]]:
        """Move PENDING events to PROCESSING; return every event not finished yet."""
        e = storage.events
        with self.db.transaction() as session:
            session.execute(sa.update(e).where(
                e.c.tenant_id == tenant_id, e.c.id.in_(list(event_ids)),
                e.c.status == storage.PENDING).values(status=storage.PROCESSING))
            rows = session.execute(sa.select(e).where(
                e.c.tenant_id == tenant_id, e.c.id.in_(list(event_ids)),
                e.c.status == storage.PROCESSING)).all()
        return list(rows)

    def record_outcomes(self, outcomes: Sequence[messages_pb2.EventOutcome]) -> int:
        """Store outcomes of unfinished events and announce them; redeliveries change nothing."""
        e = storage.events
        recorded = 0
        with self.db.transaction() as session:
            notes = messages_pb2.Notifications()
            for o in outcomes:
                completed = o.status == messages_pb2.OUTCOME_STATUS_COMPLETED
                evaluations = [queue.to_payload(r) for r in o.rule_evaluations]
                values: dict[str, Any] = {
                    "status": storage.COMPLETED if completed else storage.FAILED,
                    "rule_evaluations": evaluations,
                    "points_awarded": decimal.Decimal(o.points_awarded) if o.points_awarded else None,
                    "error_code": o.error_code or None,
                    "error_message": o.error_message or None,
                    "processed_at": o.processed_at.ToDatetime(dt.UTC) if o.HasField("processed_at") else utcnow(),
                }
                if o.participant_id:
                    values["participant_id"] = o.participant_id
                if o.recipient_id:
                    values["recipient_id"] = o.recipient_id
                result = session.execute(sa.update(e).where(
                    e.c.id == o.event_id, e.c.tenant_id == o.tenant_id,
                    e.c.status.in_([storage.PENDING, storage.PROCESSING])).values(**values))
                if result.rowcount != 1:
                    continue
                recorded += 1
                row = storage.get(session, o.tenant_id, o.event_id)
                assert row is not None
                kind = "event.completed" if completed else "event.failed"
                note = notes.notifications.add(
                    tenant_id=o.tenant_id, type=kind, fact_id=f"{kind}:{row.id}:{row.attempt}")
                note.created_at.FromDatetime(values["processed_at"])
                note.data.update(event_summary(row))
            if notes.notifications:
                session.execute(storage.outbox.insert().values(
                    outbox_row(queue.NOTIFY_QUEUE, PUBLISH_ACTOR, notes)))
        if recorded:
            self._wake()
        return recorded


def event_summary(row: sa.Row[Any]) -> dict[str, Any]:
    """Webhook data of an event: ids partners correlate on, status and outcome."""
    return {
        "event_id": row.id, "idempotency_key": row.idempotency_key, "program_id": row.program_id,
        "event_type": row.event_type, "external_id": row.external_id,
        "participant_id": row.participant_id, "recipient_id": row.recipient_id,
        "status": row.status,
        "points_awarded": decimal_str(row.points_awarded) if row.points_awarded is not None else None,
        "error_code": row.error_code, "error_message": row.error_message,
        "rule_evaluations": row.rule_evaluations or [],
    }
