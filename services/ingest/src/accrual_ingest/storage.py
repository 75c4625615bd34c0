"""Tables of the ingest schema and the queries on them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from accrual_platform.db import ExactDecimal, ExactJson, JsonType, UtcDateTime, insert_rows
from accrual_platform.ids import new_id
from accrual_platform.outbox import outbox_table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from accrual_ingest.domain.validation import ValidEvent

SCHEMA = "ingest"
metadata = sa.MetaData(schema=SCHEMA)

PENDING, PROCESSING, COMPLETED, FAILED = "PENDING", "PROCESSING", "COMPLETED", "FAILED"

EXTERNAL, SYSTEM = "EXTERNAL", "SYSTEM"

#: Loyalty events are unique per (tenant, program, key), CDP events per (tenant, source,
#: externalEventId). CDP rows have an empty program_id, so each index covers only its own
#: kind of row and neither kind can collide with the other.
LOYALTY_ROWS = sa.text("cdp_source IS NULL")
CDP_ROWS = sa.text("cdp_source IS NOT NULL")

#: Unfinished events (PENDING or PROCESSING) are those without an outcome yet. The index says
#: so by completed_at rather than by status: an index that mentions ``status`` would make every
#: claim (PENDING -> PROCESSING) a non-HOT update writing into all seven indexes.
UNFINISHED = sa.text("completed_at IS NULL")
#: Free room on each page for the claimed version of its rows (HOT updates need it).
FILLFACTOR = 50

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
    # Canonical JSON with exact numbers (see accrual_platform.exactjson), read back exactly.
    sa.Column("event_data", ExactJson(), nullable=False),
    sa.Column("event_timestamp", UtcDateTime(), nullable=False),
    sa.Column("received_at", UtcDateTime(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
    sa.Column("rule_evaluations", JsonType),
    sa.Column("points_awarded", ExactDecimal()),
    sa.Column("error_code", sa.String(64)),
    sa.Column("error_message", sa.Text),
    sa.Column("processed_at", UtcDateTime()),
    sa.Column("origin", sa.String(16), nullable=False, server_default=EXTERNAL),
    sa.Column("cdp_source", sa.String(255)),
    sa.Column("cdp_identities", JsonType),
    # When the event was last announced to the rules queue (the stale-event sweep re-announces).
    sa.Column("announced_at", UtcDateTime()),
    # When ingest recorded its outcome (COMPLETED or FAILED).
    sa.Column("completed_at", UtcDateTime()),
    sa.Index("uq_events_idempotency", "tenant_id", "program_id", "idempotency_key", unique=True,
             postgresql_where=LOYALTY_ROWS, sqlite_where=LOYALTY_ROWS),
    sa.Index("uq_events_cdp", "tenant_id", "cdp_source", "idempotency_key", unique=True,
             postgresql_where=CDP_ROWS, sqlite_where=CDP_ROWS),
    sa.Index("ix_events_tenant_received", "tenant_id", "received_at", "id"),
    sa.Index("ix_events_tenant_participant", "tenant_id", "participant_id"),
    sa.Index("ix_events_tenant_external", "tenant_id", "external_id"),
    sa.Index("ix_events_unfinished", "announced_at", postgresql_where=UNFINISHED, sqlite_where=UNFINISHED),
    postgresql_with={"fillfactor": FILLFACTOR},
)

#: The tenant's CDP event-type registry (seed 003): declared properties and their types.
cdp_event_types = sa.Table(
    "cdp_event_types", metadata,
    sa.Column("tenant_id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("properties", JsonType, nullable=False),
    sa.Column("allow_unknown_properties", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

outbox = outbox_table(metadata)


def _insert(session: Session) -> Any:
    return (postgresql.insert if session.bind and session.bind.dialect.name == "postgresql"
            else sqlite.insert)


#: The condition "status PENDING or PROCESSING", one object for every call (a statement
#: using it is built once: see accrual_platform.db.StatementCache).
IN_PROGRESS = events.c.status.in_([PENDING, PROCESSING])

def scope_of(e: ValidEvent) -> str:
    """What an idempotency key is unique within: the program, or the CDP source."""
    return f"cdp:{e.cdp_source}" if e.cdp_source is not None else e.program_id


def dedup_key(scope: str, idempotency_key: str) -> str:
    return f"{scope}\x00{idempotency_key}"


def _row_key(r: sa.Row[Any]) -> str:
    scope = f"cdp:{r.cdp_source}" if r.cdp_source is not None else r.program_id
    return dedup_key(scope, r.idempotency_key)


#: What a batch answer needs of each event: its id, its dedup key and the payload digest.
KEY_COLUMNS = [events.c.id, events.c.program_id, events.c.cdp_source, events.c.idempotency_key,
               events.c.payload_digest]


def _loyalty_conflict(stmt: Any) -> Any:
    return stmt.on_conflict_do_nothing(index_elements=["tenant_id", "program_id", "idempotency_key"],
                                       index_where=events.c.cdp_source.is_(None))


def _cdp_conflict(stmt: Any) -> Any:
    return stmt.on_conflict_do_nothing(index_elements=["tenant_id", "cdp_source", "idempotency_key"],
                                       index_where=events.c.cdp_source.isnot(None))


def insert_new(session: Session, tenant_id: str, items: Sequence[ValidEvent],
               received_at: dt.datetime | Sequence[dt.datetime],
               columns: Sequence[Any] | None = None) -> dict[str, Any]:
    """Insert events whose key is new; returns {dedup_key: row} of those inserted (the row,
    or its ``columns``, comes back through RETURNING, so answering a new event costs no
    second query; a batch asks for KEY_COLUMNS and PostgreSQL prints no event data back).

    ``items`` are all loyalty events or all CDP events (one conflict target per statement).
    Rows go in sorted by key: concurrent batches with overlapping keys then wait for each
    other's keys in the same order, so they queue instead of deadlocking.
    """
    if not items:
        return {}
    times = [received_at] * len(items) if isinstance(received_at, dt.datetime) else list(received_at)
    pairs = sorted(zip(items, times, strict=True), key=lambda p: (scope_of(p[0]), p[0].idempotency_key))
    items = [e for e, _ in pairs]
    cdp = items[0].cdp_source is not None
    if any((e.cdp_source is not None) != cdp for e in items):
        raise ValueError("a statement inserts loyalty events or CDP events, not both")
    rows = [{
        "id": new_id(), "tenant_id": tenant_id, "program_id": e.program_id,
        "idempotency_key": e.idempotency_key, "payload_digest": e.digest,
        "event_type": e.event_type, "external_id": e.external_id,
        "participant_id": e.participant_id, "recipient_external_id": e.recipient_external_id,
        "recipient_id": e.recipient_id, "event_data": e.event_data,
        "event_timestamp": e.event_timestamp, "received_at": at, "announced_at": at, "status": PENDING,
        "attempt": 1, "origin": e.origin, "cdp_source": e.cdp_source,
        "cdp_identities": e.cdp_identities,
    } for e, at in pairs]
    inserted = insert_rows(session, events, rows, conflict=_cdp_conflict if cdp else _loyalty_conflict,
                           returning=list(columns or events.c), expect_new=True)
    return {_row_key(r): r for r in inserted}


def find_by_keys(session: Session, tenant_id: str, items: Sequence[ValidEvent],
                 columns: Sequence[Any] | None = None) -> dict[str, sa.Row[Any]]:
    """Existing events (or their ``columns``) with the dedup keys of ``items``, by dedup_key."""
    selected = list(columns or events.c)
    loyalty = list({(e.program_id, e.idempotency_key) for e in items if e.cdp_source is None})
    cdp = list({(e.cdp_source, e.idempotency_key) for e in items if e.cdp_source is not None})
    found: dict[str, sa.Row[Any]] = {}
    for start in range(0, len(loyalty), 500):
        cond = sa.tuple_(events.c.program_id, events.c.idempotency_key).in_(loyalty[start:start + 500])
        for r in session.execute(sa.select(*selected).where(
                events.c.tenant_id == tenant_id, events.c.cdp_source.is_(None), cond)):
            found[_row_key(r)] = r
    for start in range(0, len(cdp), 500):
        cond = sa.tuple_(events.c.cdp_source, events.c.idempotency_key).in_(cdp[start:start + 500])
        for r in session.execute(sa.select(*selected).where(
                events.c.tenant_id == tenant_id, events.c.cdp_source.isnot(None), cond)):
            found[_row_key(r)] = r
    return found


def get(session: Session, tenant_id: str, event_id: str) -> sa.Row[Any] | None:
    return session.execute(sa.select(events).where(
        events.c.tenant_id == tenant_id, events.c.id == event_id)).first()


def get_event_type(session: Session, tenant_id: str, name: str) -> sa.Row[Any] | None:
    t = cdp_event_types
    return session.execute(sa.select(t).where(t.c.tenant_id == tenant_id, t.c.name == name)).first()


def event_types_by_name(session: Session, tenant_id: str, names: Sequence[str]) -> dict[str, sa.Row[Any]]:
    t = cdp_event_types
    if not names:
        return {}
    rows = session.execute(sa.select(t).where(t.c.tenant_id == tenant_id, t.c.name.in_(sorted(set(names)))))
    return {r.name: r for r in rows}


def list_event_types(session: Session, tenant_id: str) -> list[sa.Row[Any]]:
    t = cdp_event_types
    return list(session.execute(sa.select(t).where(t.c.tenant_id == tenant_id).order_by(t.c.name)).all())


def upsert_event_type(session: Session, tenant_id: str, name: str, properties: list[dict[str, Any]],
                      allow_unknown: bool, now: dt.datetime) -> sa.Row[Any]:
    """Register ``name`` or replace its definition; concurrent writers leave one row."""
    t = cdp_event_types
    stmt = _insert(session)(t).values(
        tenant_id=tenant_id, name=name, properties=properties, allow_unknown_properties=allow_unknown,
        created_at=now, updated_at=now)
    stmt = stmt.on_conflict_do_update(
        index_elements=["tenant_id", "name"],
        set_={"properties": stmt.excluded.properties,
              "allow_unknown_properties": stmt.excluded.allow_unknown_properties,
              "updated_at": stmt.excluded.updated_at})
    session.execute(stmt)
    row = get_event_type(session, tenant_id, name)
    assert row is not None
    return row


# The engagement tables live in this schema's metadata too (migrations compare against it).
from accrual_ingest import engagement as _engagement  # noqa: E402,F401
