"""The ingest schema and every query against it: :class:`IngestStore`.

Tables: ``events`` (payload, status, outcome, evaluations), ``cdp_event_types`` (the CDP
registry), ``outbox``, and the analytics aggregates (``analytics_*``, ``segment_configs``),
written in the transaction that records an event's outcome and read by the analytics and
segment routes (never the event history). Each method of :class:`IngestStore` is one
transaction, and what it returns are typed records, never SQLAlchemy rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar, cast

import sqlalchemy as sa
from accrual.messages.v1 import messages_pb2
from accrual_platform import contract, listen, structs
from accrual_platform.db import (
    Database,
    ExactDecimal,
    ExactJson,
    JsonType,
    UtcDateTime,
    in_values,
    insert_rows,
    update_rows,
)
from accrual_platform.ids import new_id
from accrual_platform.outbox import outbox_table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from accrual_ingest import waiting
from accrual_ingest.domain.accept import Candidate, dedup_key
from accrual_ingest.domain.cdp import EventTypeSpec, PropertySpec
from accrual_ingest.domain.engagement import BUCKETS, Increments, SegmentConfig
from accrual_ingest.domain.validation import JsonObject

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


#: Per-day aggregates of COMPLETED events (domain/engagement.py says what counts). Days are
#: UTC calendar days of the event timestamp.
daily_stats = sa.Table(
    "analytics_daily", metadata,
    sa.Column("tenant_id", sa.String(36), primary_key=True),
    sa.Column("program_id", sa.String(36), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("event_type", sa.String(255), primary_key=True),
    sa.Column("events", sa.BigInteger, nullable=False),
    sa.Column("points_micros", sa.BigInteger, nullable=False),
)

rule_stats = sa.Table(
    "analytics_rules", metadata,
    sa.Column("tenant_id", sa.String(36), primary_key=True),
    sa.Column("program_id", sa.String(36), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("rule_id", sa.String(36), primary_key=True),
    sa.Column("rule_name", sa.String(255), nullable=False),
    sa.Column("matches", sa.BigInteger, nullable=False),
    sa.Column("points_micros", sa.BigInteger, nullable=False),
)

participant_day_stats = sa.Table(
    "analytics_participant_days", metadata,
    sa.Column("tenant_id", sa.String(36), primary_key=True),
    sa.Column("program_id", sa.String(36), primary_key=True),
    sa.Column("participant_id", sa.String(36), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("event_type", sa.String(255), primary_key=True),
    sa.Column("events", sa.BigInteger, nullable=False),
    sa.Column("points_micros", sa.BigInteger, nullable=False),
    sa.Index("ix_analytics_participant_days_day", "tenant_id", "program_id", "day"),
    # Updated in place per event without touching an indexed column: room for HOT updates.
    postgresql_with={"fillfactor": 70},
)

participant_stats = sa.Table(
    "analytics_participants", metadata,
    sa.Column("tenant_id", sa.String(36), primary_key=True),
    sa.Column("program_id", sa.String(36), primary_key=True),
    sa.Column("participant_id", sa.String(36), primary_key=True),
    sa.Column("events", sa.BigInteger, nullable=False),
    sa.Column("points_micros", sa.BigInteger, nullable=False),
    sa.Column("first_event_at", UtcDateTime()),
    sa.Column("last_event_at", UtcDateTime()),
    sa.Index("ix_analytics_participants_last", "tenant_id", "program_id", "last_event_at"),
)

segment_configs = sa.Table(
    "segment_configs", metadata,
    sa.Column("tenant_id", sa.String(36), primary_key=True),
    sa.Column("program_id", sa.String(36), primary_key=True),
    sa.Column("config", JsonType, nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

#: Event ids per rules message (the relay merges announcements up to it). Each message costs
#: the pipeline a fixed share of CPU whatever its size (RPCs, statements, commits, messages
#: in every service), so larger messages cost less per event, up to what a batch holds in
#: the ingest worker's memory (bench/README.md, "Rules message size"). Under light load
#: messages stay small (the relay sends what has arrived), so this costs no latency.
CLAIM_CHUNK = 500


# -- records --------------------------------------------------------------------------------
class EventRecord(NamedTuple):
    """A stored event, every column.

    A NamedTuple rather than a frozen dataclass: claims and single accepts make one per
    event, and ``_make`` of a row costs a tenth of a 25-field frozen dataclass."""

    id: str
    tenant_id: str
    program_id: str
    idempotency_key: str
    payload_digest: str
    event_type: str
    external_id: str | None
    participant_id: str | None
    recipient_external_id: str | None
    recipient_id: str | None
    event_data: JsonObject
    event_timestamp: dt.datetime
    received_at: dt.datetime
    status: str
    attempt: int
    rule_evaluations: list[JsonObject] | None
    points_awarded: decimal.Decimal | None
    error_code: str | None
    error_message: str | None
    processed_at: dt.datetime | None
    origin: str
    cdp_source: str | None
    cdp_identities: list[dict[str, str]] | None
    announced_at: dt.datetime | None
    completed_at: dt.datetime | None


class EventKey(NamedTuple):
    """What a batch answer needs of a stored event: its id, its dedup key and its payload
    digest (PostgreSQL then prints no event data back)."""

    id: str
    program_id: str
    cdp_source: str | None
    idempotency_key: str
    payload_digest: str


EVENT_COLUMNS = [events.c[name] for name in EventRecord._fields]
KEY_COLUMNS = [events.c[name] for name in EventKey._fields]
assert [c.name for c in events.c] == list(EventRecord._fields), "EventRecord names every column in order"

#: The record an accept answers with: the whole event (single accepts) or its key (batches).
R = TypeVar("R", EventRecord, EventKey)


class StoredEvents(NamedTuple, Generic[R]):
    """An accept's stored events by (tenant, dedup key), and the keys inserted just now."""

    events: dict[tuple[str, str], R]
    inserted: set[tuple[str, str]]


@dataclass(frozen=True)
class EventTypeRecord:
    """A CDP event type of the registry."""

    name: str
    properties: tuple[PropertySpec, ...]
    allow_unknown_properties: bool
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def spec(self) -> EventTypeSpec:
        return EventTypeSpec(self.name, self.properties, self.allow_unknown_properties)


def _event_type(row: sa.Row[Any]) -> EventTypeRecord:
    return EventTypeRecord(
        name=row.name, allow_unknown_properties=row.allow_unknown_properties,
        properties=tuple(PropertySpec(p["name"], p["type"], bool(p.get("required"))) for p in row.properties),
        created_at=row.created_at, updated_at=row.updated_at)


def _property_rows(spec: EventTypeSpec) -> list[dict[str, Any]]:
    return [{"name": p.name, "type": p.type, "required": p.required} for p in spec.properties]


@dataclass(frozen=True)
class EventFilters:
    """ListEvents' filters; empty strings and None filter nothing."""

    program_id: str = ""
    participant_id: str = ""
    external_id: str = ""
    status: str = ""
    origin: str = ""
    cdp_source: str = ""
    event_type: str = ""
    received_after: dt.datetime | None = None
    received_before: dt.datetime | None = None
    occurred_after: dt.datetime | None = None
    occurred_before: dt.datetime | None = None


@dataclass(frozen=True)
class EventSummary:
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
    rule_evaluations: list[JsonObject]


SUMMARY_COLUMNS = [events.c[f.name] for f in dataclasses.fields(EventSummary) if f.name != "rule_evaluations"]
# record_outcomes builds an EventSummary from a row of SUMMARY_COLUMNS and the evaluations,
# by position (through an alias typed for it: a type checker cannot count a row's fields)
assert dataclasses.fields(EventSummary)[-1].name == "rule_evaluations"
_summary: Callable[..., EventSummary] = EventSummary


class Consequences(NamedTuple):
    """What recording outcomes writes besides the events: webhook facts and analytics."""

    notifications: messages_pb2.Notifications
    analytics: Mapping[str, Increments]  # by tenant


@dataclass(frozen=True)
class Analytics:
    from_date: dt.date
    to_date: dt.date
    total_events: int
    total_micros: int
    active_participants: int
    participant_events: int
    buckets: list[tuple[str, int, int, int]]  # label, min, max, participants
    by_type: list[tuple[str, int, int]]  # event_type, events, micros
    by_rule: list[tuple[str, str, int, int]]  # rule_id, name, matches, micros
    daily: list[tuple[dt.date, int, int]]
    top: list[tuple[str, int, int]]  # participant, events, micros


@dataclass(frozen=True)
class SegmentMember:
    participant_id: str
    events: int
    micros: int


@dataclass(frozen=True)
class SegmentCounts:
    config: SegmentConfig
    as_of: dt.datetime | None  # None: the program has no events yet
    counts: dict[str, int]


# -- statements -----------------------------------------------------------------------------
def _insert(session: Session) -> Any:
    return (postgresql.insert if session.bind and session.bind.dialect.name == "postgresql"
            else sqlite.insert)


def _is_pg(session: Session) -> bool:
    return session.bind is not None and session.bind.dialect.name == "postgresql"


#: The condition "status PENDING or PROCESSING", one object for every call (a statement
#: using it is built once: see accrual_platform.db.StatementCache).
IN_PROGRESS = events.c.status.in_([PENDING, PROCESSING])
#: Built once: a statement built per call costs more CPU than its execution.
_OUTBOX_INSERT = outbox.insert()


def _row_key(r: EventRecord | EventKey) -> str:
    return dedup_key(f"cdp:{r.cdp_source}" if r.cdp_source is not None else r.program_id, r.idempotency_key)


def _key_of(c: Candidate) -> str:
    return c.key


def _loyalty_conflict(stmt: Any) -> Any:
    return stmt.on_conflict_do_nothing(index_elements=["tenant_id", "program_id", "idempotency_key"],
                                       index_where=events.c.cdp_source.is_(None))


def _cdp_conflict(stmt: Any) -> Any:
    return stmt.on_conflict_do_nothing(index_elements=["tenant_id", "cdp_source", "idempotency_key"],
                                       index_where=events.c.cdp_source.isnot(None))


def _announce(session: Session, tenant_id: str, event_ids: Sequence[str]) -> None:
    """Outbox records telling the rules queue about events, CLAIM_CHUNK ids per message."""
    for start in range(0, len(event_ids), CLAIM_CHUNK):
        msg = messages_pb2.EventsAccepted(tenant_id=tenant_id, event_ids=event_ids[start:start + CLAIM_CHUNK])
        session.execute(_OUTBOX_INSERT, contract.outbox_row(contract.EVALUATE_EVENTS, msg))


def _insert_new(session: Session, tenant_id: str, items: Sequence[Candidate], record: type[R]) -> dict[str, R]:
    """Insert the events whose key is new; {dedup_key: record} of those inserted (the record
    comes back through RETURNING, so answering a new event costs no second query).

    ``items`` are all loyalty events or all CDP events (one conflict target per statement).
    Rows go in sorted by key: concurrent batches with overlapping keys then wait for each
    other's keys in the same order, so they queue instead of deadlocking.
    """
    ordered = sorted(items, key=_key_of)
    rows = []
    for c in ordered:
        e = c.event
        assert e is not None
        rows.append({
            "id": new_id(), "tenant_id": tenant_id, "program_id": e.program_id,
            "idempotency_key": e.idempotency_key, "payload_digest": e.digest,
            "event_type": e.event_type, "external_id": e.external_id,
            "participant_id": e.participant_id, "recipient_external_id": e.recipient_external_id,
            "recipient_id": e.recipient_id, "event_data": e.event_data,
            "event_timestamp": e.event_timestamp, "received_at": c.received_at, "announced_at": c.received_at,
            "status": PENDING, "attempt": 1, "origin": e.origin, "cdp_source": e.cdp_source,
            "cdp_identities": e.cdp_identities,
        })
    cdp = rows[0]["cdp_source"] is not None
    if any((r["cdp_source"] is not None) != cdp for r in rows):
        raise ValueError("a statement inserts loyalty events or CDP events, not both")
    inserted = insert_rows(session, events, rows, conflict=_cdp_conflict if cdp else _loyalty_conflict,
                           returning=EVENT_COLUMNS if record is EventRecord else KEY_COLUMNS, expect_new=True)
    made = record._make
    return {_row_key(r): r for r in map(made, inserted)}


def _find_by_keys(session: Session, tenant_id: str, items: Sequence[Candidate], record: type[R]) -> dict[str, R]:
    """Stored events with the dedup keys of ``items``, by dedup_key."""
    selected = EVENT_COLUMNS if record is EventRecord else KEY_COLUMNS
    loyalty: list[tuple[str, str]] = []
    cdp: list[tuple[str, str]] = []
    for c in items:
        e = c.event
        assert e is not None
        if e.cdp_source is None:
            loyalty.append((e.program_id, e.idempotency_key))
        else:
            cdp.append((e.cdp_source, e.idempotency_key))
    found: dict[str, R] = {}
    for scope, pairs, kind in ((events.c.program_id, list(set(loyalty)), events.c.cdp_source.is_(None)),
                               (events.c.cdp_source, list(set(cdp)), events.c.cdp_source.isnot(None))):
        for start in range(0, len(pairs), 500):
            cond = sa.tuple_(scope, events.c.idempotency_key).in_(pairs[start:start + 500])
            for r in session.execute(sa.select(*selected).where(events.c.tenant_id == tenant_id, kind, cond)):
                rec = record._make(r)
                found[_row_key(rec)] = rec
    return found


def _add(stmt: Any, table: sa.Table, names: Sequence[str]) -> dict[str, Any]:
    return {n: table.c[n] + stmt.excluded[n] for n in names}


def _participants_upsert(stmt: Any, first: Any, last: Any) -> Any:
    t, ex = participant_stats, stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=["tenant_id", "program_id", "participant_id"],
        set_={**_add(stmt, t, ["events", "points_micros"]),
              "first_event_at": first(sa.func.coalesce(t.c.first_event_at, ex.first_event_at),
                                      sa.func.coalesce(ex.first_event_at, t.c.first_event_at)),
              "last_event_at": last(sa.func.coalesce(t.c.last_event_at, ex.last_event_at),
                                    sa.func.coalesce(ex.last_event_at, t.c.last_event_at))})


def _participants_conflict_pg(stmt: Any) -> Any:
    return _participants_upsert(stmt, sa.func.least, sa.func.greatest)


def _participants_conflict(stmt: Any) -> Any:  # SQLite: min/max of several arguments
    return _participants_upsert(stmt, sa.func.min, sa.func.max)


def _apply(session: Session, tenant_id: str, inc: Increments) -> None:
    """Add ``inc`` to the aggregates, one executemany per table. Rows go in key order (and
    the tables in one order), so concurrent outcome batches touching the same rows wait for
    each other instead of deadlocking.

    The per-participant tables come first and the program-wide ones (one row per day and
    event type or rule, which every concurrent batch updates) last: the caller commits right
    after, so a batch holds those hot row locks only for its commit, not while it waits
    for other batches' participant rows."""
    if inc.participants:
        insert_rows(session, participant_stats, [
            {"tenant_id": tenant_id, "program_id": program, "participant_id": participant,
             "events": events, "points_micros": micros, "first_event_at": first_at, "last_event_at": last_at}
            for (program, participant), (events, micros, first_at, last_at) in sorted(inc.participants.items())],
            conflict=_participants_conflict_pg if _is_pg(session) else _participants_conflict)
    if inc.participant_days:
        insert_rows(session, participant_day_stats, [
            {"tenant_id": tenant_id, "program_id": program, "participant_id": participant, "day": day,
             "event_type": etype, "events": events, "points_micros": micros}
            for (program, participant, day, etype), (events, micros) in sorted(inc.participant_days.items())],
            conflict=lambda stmt: stmt.on_conflict_do_update(
                index_elements=["tenant_id", "program_id", "participant_id", "day", "event_type"],
                set_=_add(stmt, participant_day_stats, ["events", "points_micros"])))
    if inc.daily:
        insert_rows(session, daily_stats, [
            {"tenant_id": tenant_id, "program_id": program, "day": day, "event_type": etype,
             "events": events, "points_micros": micros}
            for (program, day, etype), (events, micros) in sorted(inc.daily.items())],
            conflict=lambda stmt: stmt.on_conflict_do_update(
                index_elements=["tenant_id", "program_id", "day", "event_type"],
                set_=_add(stmt, daily_stats, ["events", "points_micros"])))
    if inc.rules:
        insert_rows(session, rule_stats, [
            {"tenant_id": tenant_id, "program_id": program, "day": day, "rule_id": rule_id,
             "rule_name": name[:255], "matches": matches, "points_micros": micros}
            for (program, day, rule_id), (matches, micros, name) in sorted(inc.rules.items())],
            conflict=lambda stmt: stmt.on_conflict_do_update(
                index_elements=["tenant_id", "program_id", "day", "rule_id"],
                set_={**_add(stmt, rule_stats, ["matches", "points_micros"]),
                      "rule_name": stmt.excluded.rule_name}))


def _day(value: dt.date | str) -> dt.date:
    """A day an aggregate returned (SQLite aggregates lose the column type: text)."""
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


def _segment_query(tenant_id: str, program_id: str, segment: str, config: SegmentConfig,
                   as_of: dt.datetime) -> sa.Select[Any]:
    """Members of ``segment`` as (participant_id, events, micros) rows, grouped by participant.
    Windows are whole UTC days ending on the day of ``as_of``."""
    p = participant_day_stats
    day = as_of.astimezone(dt.UTC).date()
    base = [p.c.tenant_id == tenant_id, p.c.program_id == program_id, p.c.day <= day]
    count = sa.func.sum(p.c.events)
    cols = (p.c.participant_id.label("participant_id"), count.label("events"),
            sa.func.sum(p.c.points_micros).label("micros"))
    if segment == "high_engagers":
        since = day - dt.timedelta(days=config.high_engagers_window_days)
        return (sa.select(*cols).where(*base, p.c.day > since).group_by(p.c.participant_id)
                .having(count >= config.high_engagers_min_events))
    if segment in ("purchasers", "advocates"):
        types = config.purchasers_event_types if segment == "purchasers" else config.advocates_event_types
        least = config.purchasers_min_events if segment == "purchasers" else config.advocates_min_events
        return (sa.select(*cols).where(*base, p.c.event_type.in_(types)).group_by(p.c.participant_id)
                .having(count >= least))
    if segment == "at_risk":
        cutoff = day - dt.timedelta(days=config.at_risk_inactive_days)
        return (sa.select(*cols).where(*base, p.c.events > 0).group_by(p.c.participant_id)
                .having(sa.func.max(p.c.day) <= cutoff))
    raise ValueError(f"unknown segment {segment!r}")


def _segment_config(session: Session, tenant_id: str, program_id: str) -> tuple[SegmentConfig, dt.datetime | None]:
    t = segment_configs
    row = session.execute(sa.select(t).where(t.c.tenant_id == tenant_id, t.c.program_id == program_id)).first()
    if row is None:
        return SegmentConfig(), None
    return SegmentConfig.from_json(row.config), row.updated_at


def _latest_event_at(session: Session, tenant_id: str, program_id: str) -> dt.datetime | None:
    t = participant_stats
    row = session.execute(sa.select(t.c.last_event_at).where(
        t.c.tenant_id == tenant_id, t.c.program_id == program_id, t.c.last_event_at.isnot(None))
        .order_by(t.c.last_event_at.desc()).limit(1)).first()
    return row.last_event_at if row else None


def _outcome_row(o: messages_pb2.EventOutcome, now: dt.datetime) -> dict[str, Any]:
    return {
        "id": o.event_id,
        "tenant_id": o.tenant_id,
        "status": COMPLETED if o.status == messages_pb2.OUTCOME_STATUS_COMPLETED else FAILED,
        "rule_evaluations": [structs.scalars_to_dict(r) for r in o.rule_evaluations],
        "points_awarded": decimal.Decimal(o.points_awarded) if o.points_awarded else None,
        "error_code": o.error_code or None,
        "error_message": o.error_message or None,
        "processed_at": structs.timestamp_datetime(o.processed_at) if o.HasField("processed_at") else now,
        "participant_id": o.participant_id or None,
        "recipient_id": o.recipient_id or None,
        "completed_at": now,
    }


# -- the store ------------------------------------------------------------------------------
class IngestStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- accept ---------------------------------------------------------------------------
    def store_events(self, candidates: Sequence[Candidate], record: type[R]) -> StoredEvents[R]:
        """Insert the new events of valid ``candidates`` (one per tenant and key) and, in the
        same transaction, the outbox rows announcing them; answer the stored event of every
        key (inserted or already there) as ``record``.

        Concurrent identical inserts meet at the unique index: ON CONFLICT DO NOTHING waits
        for the first to commit, then the read below sees its row, so every caller answers
        with the one canonical event and nobody gets an error.
        """
        found: dict[tuple[str, str], R] = {}
        inserted: set[tuple[str, str]] = set()
        if not candidates:
            return StoredEvents(found, inserted)
        by_tenant: dict[str, list[Candidate]] = {}
        for c in candidates:
            by_tenant.setdefault(c.tenant_id, []).append(c)
        with self._db.transaction() as session:
            for tenant_id in sorted(by_tenant):
                items = by_tenant[tenant_id]
                new = _insert_new(session, tenant_id, items, record)
                _announce(session, tenant_id, [r.id for r in new.values()])
                rows = dict(new)
                missing = [c for c in items if c.key not in rows]
                if missing:
                    rows.update(_find_by_keys(session, tenant_id, missing, record))
                inserted.update((tenant_id, k) for k in new)
                found.update(((tenant_id, k), r) for k, r in rows.items())
        return StoredEvents(found, inserted)

    # -- events ---------------------------------------------------------------------------
    def get_event(self, tenant_id: str, event_id: str) -> EventRecord | None:
        with self._db.transaction() as session:
            row = session.execute(sa.select(*EVENT_COLUMNS).where(
                events.c.tenant_id == tenant_id, events.c.id == event_id)).first()
        return EventRecord._make(row) if row is not None else None

    def list_events(self, tenant_id: str, filters: EventFilters, after: tuple[dt.datetime, str] | None,
                    limit: int) -> list[EventRecord]:
        """Newest first (received_at, then id), from after the ``after`` position."""
        e = events
        query = sa.select(*EVENT_COLUMNS).where(e.c.tenant_id == tenant_id)
        for name in ("program_id", "participant_id", "external_id", "status", "origin", "cdp_source",
                     "event_type"):
            value = getattr(filters, name)
            if value:
                query = query.where(e.c[name] == value)
        for column, low, high in ((e.c.received_at, filters.received_after, filters.received_before),
                                  (e.c.event_timestamp, filters.occurred_after, filters.occurred_before)):
            if low:
                query = query.where(column >= low)
            if high:
                query = query.where(column < high)
        if after is not None:
            at, last_id = after
            query = query.where(sa.or_(e.c.received_at < at, sa.and_(e.c.received_at == at, e.c.id < last_id)))
        query = query.order_by(e.c.received_at.desc(), e.c.id.desc()).limit(limit)
        with self._db.transaction() as session:
            return [EventRecord._make(r) for r in session.execute(query)]

    def retry(self, tenant_id: str, event_id: str, now: dt.datetime) -> EventRecord | None:
        """Put a FAILED event back to PENDING (attempt + 1) and announce it again; None (and
        nothing written) when the event is not FAILED."""
        e = events
        with self._db.transaction() as session:
            result = cast(sa.CursorResult[Any], session.execute(sa.update(e).where(
                e.c.tenant_id == tenant_id, e.c.id == event_id, e.c.status == FAILED).values(
                status=PENDING, attempt=e.c.attempt + 1, error_code=None, error_message=None,
                processed_at=None, completed_at=None, rule_evaluations=None, points_awarded=None,
                announced_at=now)))
            if result.rowcount != 1:
                return None
            _announce(session, tenant_id, [event_id])
            row = session.execute(sa.select(*EVENT_COLUMNS).where(
                e.c.tenant_id == tenant_id, e.c.id == event_id)).one()
        return EventRecord._make(row)

    def claim(self, tenant_id: str, event_ids: Sequence[str]) -> list[EventRecord]:
        """Move PENDING events to PROCESSING; return every event not finished yet."""
        e = events
        with self._db.transaction() as session:
            rows = list(session.execute(sa.update(e).where(
                e.c.tenant_id == tenant_id, in_values(session, [e.c.id], event_ids),
                e.c.status == PENDING).values(status=PROCESSING).returning(*EVENT_COLUMNS)).all())
            # Events claimed before (a redelivery, or a worker that died mid-batch) are
            # PROCESSING already: read them too. Usually there are none and no second query.
            claimed = {r.id for r in rows}
            again = sorted(set(event_ids) - claimed)
            if again:
                rows += session.execute(sa.select(*EVENT_COLUMNS).where(
                    e.c.tenant_id == tenant_id, in_values(session, [e.c.id], again),
                    e.c.status == PROCESSING)).all()
        return [EventRecord._make(r) for r in rows]

    def record_outcomes(self, outcomes: Iterable[messages_pb2.EventOutcome], now: dt.datetime,
                        consequences: Callable[[list[EventSummary]], Consequences]) -> list[str]:
        """Store the outcomes of unfinished events, and in the same transaction what
        ``consequences`` makes of the events this call moved (webhook facts to the outbox,
        analytics increments) and their announcement to waiting submissions (``pg_notify``
        on ``waiting.CHANNEL``); a redelivered outcome changes nothing. Returns the ids of
        the events recorded."""
        latest: dict[str, messages_pb2.EventOutcome] = {}
        for o in outcomes:
            latest[o.event_id] = o  # one row per event; a repeat inside a batch is a redelivery
        updates = [_outcome_row(o, now) for o in latest.values()]
        evaluations = {u["id"]: u["rule_evaluations"] for u in updates}
        with self._db.transaction() as session:
            # The summary columns only: the event's data and the evaluations just written
            # would come back as JSON for PostgreSQL to print and Python to parse again.
            changed = update_rows(session, events, ("id", "tenant_id"), updates, where=[IN_PROGRESS],
                                  keep=("participant_id", "recipient_id"), returning=SUMMARY_COLUMNS)
            # positional: SUMMARY_COLUMNS are EventSummary's fields in order, the evaluations last
            rows = [_summary(*r, evaluations[r.id]) for r in changed]
            then = consequences(rows)
            if then.notifications.notifications:
                session.execute(_OUTBOX_INSERT, contract.outbox_row(contract.PUBLISH_NOTIFICATIONS,
                                                                    then.notifications))
            for tenant_id, increments in sorted(then.analytics.items()):
                _apply(session, tenant_id, increments)
            for payload in listen.joined([r.id for r in rows]):
                listen.notify(session, waiting.CHANNEL, payload)
        return [r.id for r in rows]

    def announce_stale(self, cutoff: dt.datetime, now: dt.datetime, limit: int) -> int:
        """Announce again up to ``limit`` unfinished events last announced before ``cutoff``;
        how many. Several processes may do it at once: on PostgreSQL each takes other rows
        (SKIP LOCKED)."""
        e = events
        with self._db.transaction() as session:
            query = sa.select(e.c.id, e.c.tenant_id).where(
                e.c.completed_at.is_(None), e.c.announced_at < cutoff).order_by(e.c.announced_at).limit(limit)
            if self._db.dialect == "postgresql":
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
        return len(rows)

    # -- the CDP registry -----------------------------------------------------------------
    def event_types_by_name(self, tenant_id: str, names: Sequence[str]) -> dict[str, EventTypeRecord]:
        t = cdp_event_types
        if not names:
            return {}
        with self._db.transaction() as session:
            rows = session.execute(sa.select(t).where(t.c.tenant_id == tenant_id, t.c.name.in_(sorted(set(names)))))
            return {r.name: _event_type(r) for r in rows}

    def event_types(self, tenant_id: str) -> list[EventTypeRecord]:
        t = cdp_event_types
        with self._db.transaction() as session:
            return [_event_type(r) for r in session.execute(
                sa.select(t).where(t.c.tenant_id == tenant_id).order_by(t.c.name))]

    def event_type(self, tenant_id: str, name: str) -> EventTypeRecord | None:
        with self._db.transaction() as session:
            return self._event_type(session, tenant_id, name)

    @staticmethod
    def _event_type(session: Session, tenant_id: str, name: str) -> EventTypeRecord | None:
        t = cdp_event_types
        row = session.execute(sa.select(t).where(t.c.tenant_id == tenant_id, t.c.name == name)).first()
        return _event_type(row) if row is not None else None

    def put_event_type(self, tenant_id: str, spec: EventTypeSpec, now: dt.datetime) -> EventTypeRecord:
        """Register ``spec`` or replace its definition; concurrent writers leave one row."""
        t = cdp_event_types
        properties = _property_rows(spec)
        with self._db.transaction() as session:
            stmt = _insert(session)(t).values(
                tenant_id=tenant_id, name=spec.name, properties=properties,
                allow_unknown_properties=spec.allow_unknown_properties, created_at=now, updated_at=now)
            session.execute(stmt.on_conflict_do_update(
                index_elements=["tenant_id", "name"],
                set_={"properties": stmt.excluded.properties,
                      "allow_unknown_properties": stmt.excluded.allow_unknown_properties,
                      "updated_at": stmt.excluded.updated_at}))
            record = self._event_type(session, tenant_id, spec.name)
        assert record is not None
        return record

    def update_event_type(self, tenant_id: str, spec: EventTypeSpec, now: dt.datetime) -> EventTypeRecord | None:
        """Replace the definition of a registered event type (None: not registered)."""
        t = cdp_event_types
        with self._db.transaction() as session:
            row = session.execute(sa.update(t).where(t.c.tenant_id == tenant_id, t.c.name == spec.name).values(
                properties=_property_rows(spec), allow_unknown_properties=spec.allow_unknown_properties,
                updated_at=now).returning(*t.c)).first()
        return _event_type(row) if row is not None else None

    def delete_event_type(self, tenant_id: str, name: str) -> EventTypeRecord | None:
        """Remove an event type from the registry (None: not registered); stored events stay."""
        t = cdp_event_types
        with self._db.transaction() as session:
            row = session.execute(sa.delete(t).where(t.c.tenant_id == tenant_id, t.c.name == name)
                                  .returning(*t.c)).first()
        return _event_type(row) if row is not None else None

    # -- analytics and segments -----------------------------------------------------------
    def analytics(self, tenant_id: str, program_id: str, top: int, *, latest: bool,
                  window: Callable[[dt.date | None], tuple[dt.date, dt.date]]) -> Analytics:
        """A program's analytics over the days ``window`` chooses, given the day of the
        program's latest event (read only when ``latest``, else None)."""
        d, r, p = daily_stats, rule_stats, participant_day_stats
        with self._db.transaction() as session:
            latest_day: dt.date | None = None
            if latest:
                value = session.execute(sa.select(sa.func.max(d.c.day)).where(
                    d.c.tenant_id == tenant_id, d.c.program_id == program_id)).scalar_one()
                latest_day = None if value is None else _day(value)
            start, end = window(latest_day)

            def where(t: sa.Table) -> list[sa.ColumnElement[bool]]:
                return [t.c.tenant_id == tenant_id, t.c.program_id == program_id, t.c.day >= start, t.c.day <= end]

            daily = [(_day(v), int(e), int(m)) for v, e, m in session.execute(
                sa.select(d.c.day, sa.func.sum(d.c.events), sa.func.sum(d.c.points_micros))
                .where(*where(d)).group_by(d.c.day).order_by(d.c.day))]
            by_type = [(t, int(e), int(m)) for t, e, m in session.execute(
                sa.select(d.c.event_type, sa.func.sum(d.c.events), sa.func.sum(d.c.points_micros))
                .where(*where(d)).group_by(d.c.event_type).order_by(d.c.event_type))]
            by_rule = [(rid, name, int(n), int(m)) for rid, name, n, m in session.execute(
                sa.select(r.c.rule_id, sa.func.max(r.c.rule_name), sa.func.sum(r.c.matches),
                          sa.func.sum(r.c.points_micros))
                .where(*where(r)).group_by(r.c.rule_id)
                .order_by(sa.func.sum(r.c.points_micros).desc(), r.c.rule_id))]
            per = (sa.select(p.c.participant_id.label("pid"), sa.func.sum(p.c.events).label("events"),
                             sa.func.sum(p.c.points_micros).label("micros"))
                   .where(*where(p)).group_by(p.c.participant_id).subquery())
            bucket = sa.case(*[((per.c.events >= low) if high == 0 else per.c.events.between(low, high), label)
                               for label, low, high in BUCKETS], else_="0")
            counts = {label: int(n) for label, n in session.execute(
                sa.select(bucket, sa.func.count()).where(per.c.events > 0).group_by(bucket))}
            active, participant_events = session.execute(
                sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(per.c.events), 0))
                .where(per.c.events > 0)).one()
            top_rows = [(pid, int(e), int(m)) for pid, e, m in session.execute(
                sa.select(per.c.pid, per.c.events, per.c.micros)
                .order_by(per.c.micros.desc(), per.c.events.desc(), per.c.pid).limit(top))]
        return Analytics(
            from_date=start, to_date=end,
            total_events=sum(e for _, e, _ in daily), total_micros=sum(m for _, _, m in daily),
            active_participants=int(active), participant_events=int(participant_events),
            buckets=[(label, low, high, counts.get(label, 0)) for label, low, high in BUCKETS],
            by_type=by_type, by_rule=by_rule, daily=daily, top=top_rows)

    def segment_config(self, tenant_id: str, program_id: str) -> tuple[SegmentConfig, dt.datetime | None]:
        """A program's segment configuration and when it was last set (None: the defaults)."""
        with self._db.transaction() as session:
            return _segment_config(session, tenant_id, program_id)

    def put_segment_config(self, tenant_id: str, program_id: str, config: JsonObject,
                           now: dt.datetime) -> tuple[SegmentConfig, dt.datetime | None]:
        with self._db.transaction() as session:
            stmt = _insert(session)(segment_configs).values(tenant_id=tenant_id, program_id=program_id,
                                                            config=config, updated_at=now)
            session.execute(stmt.on_conflict_do_update(
                index_elements=["tenant_id", "program_id"],
                set_={"config": stmt.excluded.config, "updated_at": stmt.excluded.updated_at}))
            return _segment_config(session, tenant_id, program_id)

    def segment_counts(self, tenant_id: str, program_id: str, segments: Sequence[str],
                       as_of: dt.datetime | None) -> SegmentCounts:
        """Each segment's size at ``as_of`` (default: the program's latest event time)."""
        with self._db.transaction() as session:
            config, _ = _segment_config(session, tenant_id, program_id)
            at = as_of or _latest_event_at(session, tenant_id, program_id)
            counts: dict[str, int] = {}
            for name in segments:
                if at is None:
                    counts[name] = 0
                    continue
                sub = _segment_query(tenant_id, program_id, name, config, at).subquery()
                counts[name] = int(session.execute(sa.select(sa.func.count()).select_from(sub)).scalar_one())
        return SegmentCounts(config, at, counts)

    def segment_members(self, tenant_id: str, program_id: str, segment: str, as_of: dt.datetime | None,
                        after: str, limit: int) -> tuple[dt.datetime | None, list[SegmentMember]]:
        """Members of a segment after participant ``after``, by participant id, and the
        as_of used (None, and no members, when the program has no events yet)."""
        with self._db.transaction() as session:
            config, _ = _segment_config(session, tenant_id, program_id)
            at = as_of or _latest_event_at(session, tenant_id, program_id)
            if at is None:
                return None, []
            sub = _segment_query(tenant_id, program_id, segment, config, at).subquery()
            stmt = sa.select(sub).order_by(sub.c.participant_id).limit(limit)
            if after:
                stmt = stmt.where(sub.c.participant_id > after)
            rows = session.execute(stmt).all()
        return at, [SegmentMember(r.participant_id, int(r.events), int(r.micros or 0)) for r in rows]

    def inactive_participants(self, tenant_id: str, program_id: str, last_day: dt.date, after: str,
                              limit: int) -> list[tuple[str, dt.datetime]]:
        """Participants whose last (non-SYSTEM) event's UTC day is ``last_day`` or earlier,
        with that event's time, by participant id after ``after``."""
        t = participant_stats
        before = dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
        stmt = (sa.select(t.c.participant_id, t.c.last_event_at).where(
            t.c.tenant_id == tenant_id, t.c.program_id == program_id, t.c.last_event_at.isnot(None),
            t.c.last_event_at < before).order_by(t.c.participant_id).limit(limit))
        if after:
            stmt = stmt.where(t.c.participant_id > after)
        with self._db.transaction() as session:
            return [(r.participant_id, r.last_event_at) for r in session.execute(stmt)]
