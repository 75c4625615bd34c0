"""Tables of the ingest schema and the queries on them."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from accrual_platform.db import ExactDecimal, JsonType, UtcDateTime
from accrual_platform.outbox import outbox_table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from accrual_ingest.domain.validation import ValidEvent

SCHEMA = "ingest"
metadata = sa.MetaData(schema=SCHEMA)

PENDING, PROCESSING, COMPLETED, FAILED = "PENDING", "PROCESSING", "COMPLETED", "FAILED"

events = sa.Table(
    "events", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(36), nullable=False),
    sa.Column("program_id", sa.String(36), nullable=False),
    sa.Column("idempotency_key", sa.String(255), nullable=False),
    sa.Column("payload_digest", sa.String(64), nullable=False),
    sa.Column("event_type", sa.String(255), nullable=False),
    sa.Column("external_id", sa.String(255)),
    sa.Column("participant_id", sa.String(36)),
    sa.Column("recipient_external_id", sa.String(255)),
    sa.Column("recipient_id", sa.String(36)),
    sa.Column("event_data", JsonType, nullable=False),
    sa.Column("event_timestamp", UtcDateTime(), nullable=False),
    sa.Column("received_at", UtcDateTime(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
    sa.Column("rule_evaluations", JsonType),
    sa.Column("points_awarded", ExactDecimal()),
    sa.Column("error_code", sa.String(64)),
    sa.Column("error_message", sa.Text),
    sa.Column("processed_at", UtcDateTime()),
    sa.UniqueConstraint("tenant_id", "program_id", "idempotency_key", name="uq_events_idempotency"),
    sa.Index("ix_events_tenant_received", "tenant_id", "received_at", "id"),
    sa.Index("ix_events_tenant_participant", "tenant_id", "participant_id"),
    sa.Index("ix_events_tenant_external", "tenant_id", "external_id"),
)

outbox = outbox_table(metadata)


def _insert(session: Session) -> Any:
    return (postgresql.insert if session.bind and session.bind.dialect.name == "postgresql"
            else sqlite.insert)


def insert_new(session: Session, tenant_id: str, items: Sequence[ValidEvent],
               received_at: dt.datetime) -> dict[str, str]:
    """Insert events whose key is new; returns {idempotency_key: event_id} of those inserted."""
    if not items:
        return {}
    rows = [{
        "id": str(uuid.uuid4()), "tenant_id": tenant_id, "program_id": e.program_id,
        "idempotency_key": e.idempotency_key, "payload_digest": e.digest,
        "event_type": e.event_type, "external_id": e.external_id,
        "participant_id": e.participant_id, "recipient_external_id": e.recipient_external_id,
        "recipient_id": e.recipient_id, "event_data": e.event_data,
        "event_timestamp": e.event_timestamp, "received_at": received_at, "status": PENDING,
        "attempt": 1,
    } for e in items]
    stmt = _insert(session)(events).on_conflict_do_nothing(
        index_elements=["tenant_id", "program_id", "idempotency_key"]
    ).returning(events.c.id, events.c.program_id, events.c.idempotency_key)
    inserted = session.execute(stmt, rows).all()
    return {f"{r.program_id}\x00{r.idempotency_key}": r.id for r in inserted}


def find_by_keys(session: Session, tenant_id: str,
                 keys: Sequence[tuple[str, str]]) -> dict[str, sa.Row[Any]]:
    """Existing events by (program_id, idempotency_key)."""
    if not keys:
        return {}
    cond = sa.tuple_(events.c.program_id, events.c.idempotency_key).in_(list(keys))
    rows = session.execute(sa.select(events).where(events.c.tenant_id == tenant_id, cond)).all()
    return {f"{r.program_id}\x00{r.idempotency_key}": r for r in rows}


def get(session: Session, tenant_id: str, event_id: str) -> sa.Row[Any] | None:
    return session.execute(sa.select(events).where(
        events.c.tenant_id == tenant_id, events.c.id == event_id)).first()


def get_many(session: Session, ids: Sequence[str]) -> list[sa.Row[Any]]:
    return list(session.execute(sa.select(events).where(events.c.id.in_(list(ids)))).all())
