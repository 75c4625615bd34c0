"""Analytics and segment tables of the ingest schema, their upserts and their queries.

The tables hold per-day aggregates written in the transaction that records an event's
outcome (see domain/engagement.py for what counts). Queries read only these aggregates,
never the event history. Days are UTC calendar days of the event timestamp; segment windows
are whole days ending on the day of ``as_of`` (the event-time clock), so a backfill of the same
events gives the same answers as live traffic.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from accrual_platform import pages
from accrual_platform.db import JsonType, UtcDateTime, insert_rows
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from accrual_ingest.domain.engagement import BUCKETS, Increments, SegmentConfig
from accrual_ingest.storage import metadata

MEMBER_PAGES = pages.Codec("segment_members", pages.uuid_key)
INACTIVE_PAGES = pages.Codec("inactive_participants", pages.uuid_key)

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


def _insert(session: Session) -> Any:
    return (postgresql.insert if session.bind and session.bind.dialect.name == "postgresql"
            else sqlite.insert)


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


def apply(session: Session, tenant_id: str, inc: Increments) -> None:
    """Add ``inc`` to the aggregates, one executemany per table. Rows go in key order (and
    the tables in one order), so concurrent outcome batches touching the same rows wait for
    each other instead of deadlocking.

    The per-participant tables come first and the program-wide ones (one row per day and
    event type or rule, which every concurrent batch updates) last: the caller commits right
    after, so a batch holds those hot row locks only for its commit, not while it waits
    for other batches' participant rows."""
    pg = session.bind is not None and session.bind.dialect.name == "postgresql"
    if inc.participants:
        t = participant_stats
        insert_rows(session, t, [
            {"tenant_id": tenant_id, "program_id": program, "participant_id": participant,
             "events": events, "points_micros": micros, "first_event_at": first_at, "last_event_at": last_at}
            for (program, participant), (events, micros, first_at, last_at) in sorted(inc.participants.items())],
            conflict=_participants_conflict_pg if pg else _participants_conflict)
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


# -- analytics ------------------------------------------------------------------------------
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


def latest_day(session: Session, tenant_id: str, program_id: str) -> dt.date | None:
    t = daily_stats
    value = session.execute(sa.select(sa.func.max(t.c.day)).where(
        t.c.tenant_id == tenant_id, t.c.program_id == program_id)).scalar_one()
    if isinstance(value, str):  # SQLite aggregates lose the column type
        return dt.date.fromisoformat(value)
    return value  # type: ignore[no-any-return]


def analytics(session: Session, tenant_id: str, program_id: str, start: dt.date, end: dt.date,
              top: int) -> Analytics:
    d, r, p = daily_stats, rule_stats, participant_day_stats

    def where(t: sa.Table) -> list[Any]:
        return [t.c.tenant_id == tenant_id, t.c.program_id == program_id, t.c.day >= start, t.c.day <= end]

    daily_rows = session.execute(
        sa.select(d.c.day, sa.func.sum(d.c.events), sa.func.sum(d.c.points_micros))
        .where(*where(d)).group_by(d.c.day).order_by(d.c.day)).all()
    daily = [(v if isinstance(v, dt.date) else dt.date.fromisoformat(v), int(e), int(m))
             for v, e, m in daily_rows]
    by_type = [(t, int(e), int(m)) for t, e, m in session.execute(
        sa.select(d.c.event_type, sa.func.sum(d.c.events), sa.func.sum(d.c.points_micros))
        .where(*where(d)).group_by(d.c.event_type).order_by(d.c.event_type)).all()]
    by_rule = [(rid, name, int(n), int(m)) for rid, name, n, m in session.execute(
        sa.select(r.c.rule_id, sa.func.max(r.c.rule_name), sa.func.sum(r.c.matches),
                  sa.func.sum(r.c.points_micros))
        .where(*where(r)).group_by(r.c.rule_id)
        .order_by(sa.func.sum(r.c.points_micros).desc(), r.c.rule_id)).all()]
    per = (sa.select(p.c.participant_id.label("pid"), sa.func.sum(p.c.events).label("events"),
                     sa.func.sum(p.c.points_micros).label("micros"))
           .where(*where(p)).group_by(p.c.participant_id).subquery())
    bucket = sa.case(*[((per.c.events >= low) if high == 0 else per.c.events.between(low, high), label)
                       for label, low, high in BUCKETS], else_="0")
    counts = {label: int(n) for label, n in session.execute(
        sa.select(bucket, sa.func.count()).where(per.c.events > 0).group_by(bucket)).all()}
    active, participant_events = session.execute(
        sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(per.c.events), 0))
        .where(per.c.events > 0)).one()
    top_rows = [(pid, int(e), int(m)) for pid, e, m in session.execute(
        sa.select(per.c.pid, per.c.events, per.c.micros)
        .order_by(per.c.micros.desc(), per.c.events.desc(), per.c.pid).limit(top)).all()]
    return Analytics(
        from_date=start, to_date=end,
        total_events=sum(e for _, e, _ in daily), total_micros=sum(m for _, _, m in daily),
        active_participants=int(active), participant_events=int(participant_events),
        buckets=[(label, low, high, counts.get(label, 0)) for label, low, high in BUCKETS],
        by_type=by_type, by_rule=by_rule, daily=daily, top=top_rows)


# -- segments -------------------------------------------------------------------------------
def get_config(session: Session, tenant_id: str, program_id: str) -> tuple[SegmentConfig, dt.datetime | None]:
    t = segment_configs
    row = session.execute(sa.select(t).where(t.c.tenant_id == tenant_id, t.c.program_id == program_id)).first()
    if row is None:
        return SegmentConfig(), None
    return SegmentConfig.from_json(row.config), row.updated_at


def put_config(session: Session, tenant_id: str, program_id: str, config: dict[str, Any],
               now: dt.datetime) -> None:
    stmt = _insert(session)(segment_configs).values(tenant_id=tenant_id, program_id=program_id,
                                                    config=config, updated_at=now)
    session.execute(stmt.on_conflict_do_update(
        index_elements=["tenant_id", "program_id"],
        set_={"config": stmt.excluded.config, "updated_at": stmt.excluded.updated_at}))


def latest_event_at(session: Session, tenant_id: str, program_id: str) -> dt.datetime | None:
    t = participant_stats
    row = session.execute(sa.select(t.c.last_event_at).where(
        t.c.tenant_id == tenant_id, t.c.program_id == program_id, t.c.last_event_at.isnot(None))
        .order_by(t.c.last_event_at.desc()).limit(1)).first()
    return row.last_event_at if row else None


def segment_query(tenant_id: str, program_id: str, segment: str, config: SegmentConfig,
                  as_of: dt.datetime) -> sa.Select[Any]:
    """Members of ``segment`` as (participant_id, events, micros) rows, grouped by participant."""
    p = participant_day_stats
    day = as_of.astimezone(dt.UTC).date()
    base = [p.c.tenant_id == tenant_id, p.c.program_id == program_id, p.c.day <= day]
    events = sa.func.sum(p.c.events)
    cols = (p.c.participant_id.label("participant_id"), events.label("events"),
            sa.func.sum(p.c.points_micros).label("micros"))
    if segment == "high_engagers":
        since = day - dt.timedelta(days=config.high_engagers_window_days)
        return (sa.select(*cols).where(*base, p.c.day > since).group_by(p.c.participant_id)
                .having(events >= config.high_engagers_min_events))
    if segment in ("purchasers", "advocates"):
        types = config.purchasers_event_types if segment == "purchasers" else config.advocates_event_types
        least = config.purchasers_min_events if segment == "purchasers" else config.advocates_min_events
        return (sa.select(*cols).where(*base, p.c.event_type.in_(types)).group_by(p.c.participant_id)
                .having(events >= least))
    if segment == "at_risk":
        cutoff = day - dt.timedelta(days=config.at_risk_inactive_days)
        return (sa.select(*cols).where(*base, p.c.events > 0).group_by(p.c.participant_id)
                .having(sa.func.max(p.c.day) <= cutoff))
    raise ValueError(f"unknown segment {segment!r}")


def segment_count(session: Session, query: sa.Select[Any]) -> int:
    sub = query.subquery()
    return int(session.execute(sa.select(sa.func.count()).select_from(sub)).scalar_one())


def segment_page(session: Session, query: sa.Select[Any], after: str, size: int
                 ) -> tuple[list[sa.Row[Any]], str]:
    sub = query.subquery()
    stmt = sa.select(sub).order_by(sub.c.participant_id).limit(size + 1)
    if after:
        stmt = stmt.where(sub.c.participant_id > after)
    rows = list(session.execute(stmt).all())
    token = ""
    if len(rows) > size:
        rows = rows[:size]
        token = MEMBER_PAGES.encode(rows[-1].participant_id)
    return rows, token


def inactive_page(session: Session, tenant_id: str, program_id: str, last_day: dt.date, after: str,
                  size: int) -> tuple[list[tuple[str, dt.datetime]], str]:
    """Participants whose last (non-SYSTEM) event's UTC day is ``last_day`` or earlier."""
    t = participant_stats
    limit = dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    stmt = (sa.select(t.c.participant_id, t.c.last_event_at).where(
        t.c.tenant_id == tenant_id, t.c.program_id == program_id, t.c.last_event_at.isnot(None),
        t.c.last_event_at < limit).order_by(t.c.participant_id).limit(size + 1))
    if after:
        stmt = stmt.where(t.c.participant_id > after)
    rows = [(r.participant_id, r.last_event_at) for r in session.execute(stmt).all()]
    token = ""
    if len(rows) > size:
        rows = rows[:size]
        token = INACTIVE_PAGES.encode(rows[-1][0])
    return rows, token
