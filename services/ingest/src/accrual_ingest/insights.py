"""Use cases over the engagement aggregates: analytics, segments, segment configuration and
the inactivity candidates of the scheduler."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from accrual_platform import dates, errors, pages
from accrual_platform.clients import ProgramExists, require_program
from accrual_platform.db import Database, utcnow

from accrual_ingest import engagement
from accrual_ingest.domain.engagement import SEGMENTS, SegmentConfig, validate_segment_config

DEFAULT_RANGE_DAYS = 30
MAX_RANGE_DAYS = 3660
DEFAULT_TOP, MAX_TOP = 10, 100
DEFAULT_PAGE, MAX_PAGE = 50, 500


def program_uuid(value: str, field: str = "program_id") -> str:
    if not value:
        raise errors.InvalidArgument.field(field, "is required")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise errors.InvalidArgument.field(field, "must be a UUID") from None


def _check_day(value: str, field: str) -> dt.date | None:
    """A YYYY-MM-DD day, None when absent."""
    if not value:
        return None
    try:
        if len(value) == 10:
            return dates.check(dt.date.fromisoformat(value), field)
    except ValueError:
        pass
    raise errors.InvalidArgument.field(field, "must be a date as YYYY-MM-DD")


def page_size(value: int) -> int:
    if value < 0 or value > MAX_PAGE:
        raise errors.InvalidArgument.field("page_size", f"must be between 1 and {MAX_PAGE}")
    return value or DEFAULT_PAGE


def after_token(codec: pages.Codec, token: str) -> str:
    """The participant id after which a page starts, "" for the first page."""
    parts = codec.decode_optional(token)
    return parts[0] if parts else ""


@dataclass(frozen=True)
class SegmentCount:
    name: str
    description: str
    count: int


class EngagementQueries:
    def __init__(self, db: Database, *, program_exists: ProgramExists) -> None:
        """``program_exists(tenant, program_id)`` asks the rules service, which owns programs:
        the public routes answer 404 for another tenant's or a made-up program, as rules does.
        The scheduler's ``inactive`` does not ask (it reads programs from rules itself)."""
        self.db = db
        self.program_exists = program_exists

    def analytics(self, tenant_id: str, program_id: str, from_date: str, to_date: str,
                  top: int) -> engagement.Analytics:
        program_id = program_uuid(program_id)
        start, end = _check_day(from_date, "from_date"), _check_day(to_date, "to_date")
        if top < 0 or top > MAX_TOP:
            raise errors.InvalidArgument.field("top", f"must be between 1 and {MAX_TOP}")
        require_program(self.program_exists, tenant_id, program_id)
        with self.db.transaction() as session:
            if end is None:
                # The event-time clock: the day of the program's latest event, not the server's.
                latest = engagement.latest_day(session, tenant_id, program_id)
                end = latest or (start or utcnow().date())
                if start is not None and end < start:
                    end = start
            if start is None:
                start = end - dt.timedelta(days=DEFAULT_RANGE_DAYS - 1)
            if end < start:
                raise errors.InvalidArgument.field("to_date", "must not be before from_date")
            if (end - start).days >= MAX_RANGE_DAYS:
                raise errors.InvalidArgument.field("to_date", f"the range must be at most {MAX_RANGE_DAYS} days")
            return engagement.analytics(session, tenant_id, program_id, start, end, top or DEFAULT_TOP)

    def config(self, tenant_id: str, program_id: str) -> tuple[SegmentConfig, dt.datetime | None]:
        program_id = program_uuid(program_id)
        require_program(self.program_exists, tenant_id, program_id)
        with self.db.transaction() as session:
            return engagement.get_config(session, tenant_id, program_id)

    def put_config(self, tenant_id: str, program_id: str, requested: dict[str, Any]
                   ) -> tuple[SegmentConfig, dt.datetime | None]:
        program_id = program_uuid(program_id)
        normalised, problems = validate_segment_config(requested)
        errors.collect([errors.FieldViolation(f, d) for f, d in problems])
        require_program(self.program_exists, tenant_id, program_id)
        with self.db.transaction() as session:
            engagement.put_config(session, tenant_id, program_id, normalised, utcnow())
            return engagement.get_config(session, tenant_id, program_id)

    def _as_of(self, session: Any, tenant_id: str, program_id: str, as_of: dt.datetime | None
               ) -> dt.datetime | None:
        return as_of or engagement.latest_event_at(session, tenant_id, program_id)

    def segments(self, tenant_id: str, program_id: str, as_of: dt.datetime | None
                 ) -> tuple[list[SegmentCount], dt.datetime | None]:
        program_id = program_uuid(program_id)
        require_program(self.program_exists, tenant_id, program_id)
        with self.db.transaction() as session:
            config, _ = engagement.get_config(session, tenant_id, program_id)
            at = self._as_of(session, tenant_id, program_id, as_of)
            counts = []
            for name in SEGMENTS:
                n = 0 if at is None else engagement.segment_count(
                    session, engagement.segment_query(tenant_id, program_id, name, config, at))
                counts.append(SegmentCount(name, config.describe(name), n))
        return counts, at

    def members(self, tenant_id: str, program_id: str, segment: str, as_of: dt.datetime | None,
                size: int, token: str) -> tuple[list[sa.Row[Any]], str, dt.datetime | None]:
        program_id = program_uuid(program_id)
        if segment not in SEGMENTS:
            raise errors.NotFound(f"segment {errors.excerpt(segment)} does not exist; segments are "
                                  + ", ".join(SEGMENTS),
                                  reason="segment_not_found")
        size = page_size(size)
        after = after_token(engagement.MEMBER_PAGES, token)
        require_program(self.program_exists, tenant_id, program_id)
        with self.db.transaction() as session:
            config, _ = engagement.get_config(session, tenant_id, program_id)
            at = self._as_of(session, tenant_id, program_id, as_of)
            if at is None:
                return [], "", None
            rows, next_token = engagement.segment_page(
                session, engagement.segment_query(tenant_id, program_id, segment, config, at), after, size)
        return rows, next_token, at

    def inactive(self, tenant_id: str, program_id: str, last_day: str, size: int, token: str
                 ) -> tuple[list[tuple[str, dt.datetime]], str]:
        if not tenant_id:
            raise errors.InvalidArgument.field("tenant_id", "is required")
        program_id = program_uuid(program_id)
        day = _check_day(last_day, "last_event_on_or_before")
        if day is None:
            raise errors.InvalidArgument.field("last_event_on_or_before", "is required")
        size = page_size(size)
        after = after_token(engagement.INACTIVE_PAGES, token)
        with self.db.transaction() as session:
            return engagement.inactive_page(session, tenant_id, program_id, day, after, size)
