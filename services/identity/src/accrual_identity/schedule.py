"""Candidates of the scheduler's birthday and anniversary events, among a program's ACTIVE
enrollments of live (not merged) participants."""

from __future__ import annotations

import calendar
import contextlib
import datetime as dt
import uuid

import sqlalchemy as sa
from accrual_platform import dates, errors, pages
from accrual_platform.db import Database

from accrual_identity import storage

BIRTHDAY, ANNIVERSARY = "BIRTHDAY", "ANNIVERSARY"
DEFAULT_PAGE, MAX_PAGE = 200, 1000


def month_days(day: dt.date) -> list[str]:
    """The "MM-DD" keys celebrated on ``day``: 29 February counts on 28 February in common years."""
    keys = [day.strftime("%m-%d")]
    if day.month == 2 and day.day == 28 and not calendar.isleap(day.year):
        keys.append("02-29")
    return keys


def years_between(start: dt.date, day: dt.date) -> int:
    return day.year - start.year


CANDIDATE_PAGES = pages.Codec("scheduled_candidates", pages.uuid_key)


class Schedule:
    def __init__(self, db: Database) -> None:
        self.db = db

    def candidates(self, tenant_id: str, program_id: str, occasion: str, date: str, page_size: int,
                   page_token: str) -> tuple[list[tuple[str, int]], str]:
        violations: list[errors.FieldViolation] = []
        if not tenant_id:
            violations.append(errors.FieldViolation("tenant_id", "is required"))
        try:
            program_id = str(uuid.UUID(program_id))
        except ValueError:
            violations.append(errors.FieldViolation("program_id", "must be a UUID"))
        day: dt.date | None = None
        with contextlib.suppress(ValueError):
            day = dt.date.fromisoformat(date) if len(date) == 10 else None
        if day is None:
            violations.append(errors.FieldViolation("date", "must be a date as YYYY-MM-DD"))
        elif not dates.in_range(day):
            violations.append(errors.FieldViolation("date", dates.RANGE_TEXT))
        if occasion not in (BIRTHDAY, ANNIVERSARY):
            violations.append(errors.FieldViolation("occasion", "must be BIRTHDAY or ANNIVERSARY"))
        if page_size < 0 or page_size > MAX_PAGE:
            violations.append(errors.FieldViolation("page_size", f"must be between 1 and {MAX_PAGE}"))
        after = ""
        if page_token:
            try:
                (after,) = CANDIDATE_PAGES.decode(page_token)
            except errors.InvalidArgument as exc:
                violations.extend(exc.violations)
        errors.collect(violations)
        assert day is not None
        size = page_size or DEFAULT_PAGE
        p, e = storage.participants, storage.enrollments
        keys = month_days(day)
        where = [e.c.tenant_id == tenant_id, e.c.program_id == program_id, e.c.status == "ACTIVE",
                 p.c.status == storage.ACTIVE]
        if after:
            where.append(p.c.id > after)
        joined = e.join(p, p.c.id == e.c.participant_id)
        with self.db.transaction() as session:
            if occasion == BIRTHDAY:
                query = sa.select(p.c.id, p.c.birth_date).select_from(joined).where(*where, p.c.birthday.in_(keys))
            else:
                if self.db.dialect == "postgresql":
                    month_day = sa.func.to_char(sa.func.timezone("UTC", e.c.created_at), "MM-DD")
                else:
                    month_day = sa.func.strftime("%m-%d", e.c.created_at)
                start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
                query = sa.select(p.c.id, e.c.created_at).select_from(joined).where(
                    *where, e.c.created_at < start, month_day.in_(keys))
            rows = session.execute(query.order_by(p.c.id).limit(size + 1)).all()
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            token = CANDIDATE_PAGES.encode(rows[-1][0])
        out = []
        for pid, since in rows:
            start_day = since.date() if isinstance(since, dt.datetime) else since
            out.append((pid, years_between(start_day, day) if start_day else 0))
        return out, token
