"""Use cases over the engagement aggregates: analytics, segments, segment configuration and
the inactivity candidates of the scheduler."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from accrual_platform import dates, errors, pages
from accrual_platform.clients import ProgramExists, require_program
from accrual_platform.db import utcnow
from accrual_platform.ids import require_uuid

from accrual_ingest.domain.engagement import SEGMENTS, SegmentConfig, validate_segment_config
from accrual_ingest.domain.validation import JsonObject
from accrual_ingest.service import page_of
from accrual_ingest.storage import Analytics, IngestStore, SegmentMember

DEFAULT_RANGE_DAYS = 30
MAX_RANGE_DAYS = 3660
DEFAULT_TOP, MAX_TOP = 10, 100
DEFAULT_PAGE, MAX_PAGE = 50, 500
MEMBER_PAGES = pages.Codec("segment_members", pages.uuid_key)
INACTIVE_PAGES = pages.Codec("inactive_participants", pages.uuid_key)


def _check_day(value: str, field: str) -> dt.date | None:
    """A YYYY-MM-DD day, None when absent."""
    if not value:
        return None
    try:
        if len(value) == 10:
            day: dt.date | None = dates.check(dt.date.fromisoformat(value), field)
            return day
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
    def __init__(self, store: IngestStore, *, program_exists: ProgramExists) -> None:
        """``program_exists(tenant, program_id)`` asks the rules service, which owns programs:
        the public routes answer 404 for another tenant's or a made-up program, as rules does.
        The scheduler's ``inactive`` does not ask (it reads programs from rules itself)."""
        self.store = store
        self.program_exists = program_exists

    def analytics(self, tenant_id: str, program_id: str, from_date: str, to_date: str,
                  top: int) -> Analytics:
        program_id = require_uuid(program_id, "program_id")
        start, end = _check_day(from_date, "from_date"), _check_day(to_date, "to_date")
        if top < 0 or top > MAX_TOP:
            raise errors.InvalidArgument.field("top", f"must be between 1 and {MAX_TOP}")
        require_program(self.program_exists, tenant_id, program_id)

        def window(latest: dt.date | None) -> tuple[dt.date, dt.date]:
            first, last = start, end
            if last is None:
                # The event-time clock: the day of the program's latest event, not the server's.
                last = latest or (first or utcnow().date())
                if first is not None and last < first:
                    last = first
            if first is None:
                first = last - dt.timedelta(days=DEFAULT_RANGE_DAYS - 1)
            if last < first:
                raise errors.InvalidArgument.field("to_date", "must not be before from_date")
            if (last - first).days >= MAX_RANGE_DAYS:
                raise errors.InvalidArgument.field("to_date", f"the range must be at most {MAX_RANGE_DAYS} days")
            return first, last

        return self.store.analytics(tenant_id, program_id, top or DEFAULT_TOP, latest=end is None, window=window)

    def config(self, tenant_id: str, program_id: str) -> tuple[SegmentConfig, dt.datetime | None]:
        program_id = require_uuid(program_id, "program_id")
        require_program(self.program_exists, tenant_id, program_id)
        return self.store.segment_config(tenant_id, program_id)

    def put_config(self, tenant_id: str, program_id: str, requested: JsonObject
                   ) -> tuple[SegmentConfig, dt.datetime | None]:
        program_id = require_uuid(program_id, "program_id")
        normalised, problems = validate_segment_config(requested)
        errors.collect([errors.FieldViolation(f, d) for f, d in problems])
        require_program(self.program_exists, tenant_id, program_id)
        return self.store.put_segment_config(tenant_id, program_id, normalised, utcnow())

    def segments(self, tenant_id: str, program_id: str, as_of: dt.datetime | None
                 ) -> tuple[list[SegmentCount], dt.datetime | None]:
        program_id = require_uuid(program_id, "program_id")
        require_program(self.program_exists, tenant_id, program_id)
        found = self.store.segment_counts(tenant_id, program_id, SEGMENTS, as_of)
        counts = [SegmentCount(name, found.config.describe(name), found.counts[name]) for name in SEGMENTS]
        return counts, found.as_of

    def members(self, tenant_id: str, program_id: str, segment: str, as_of: dt.datetime | None,
                size: int, token: str) -> tuple[list[SegmentMember], str, dt.datetime | None]:
        program_id = require_uuid(program_id, "program_id")
        if segment not in SEGMENTS:
            raise errors.NotFound(f"segment {errors.excerpt(segment)} does not exist; segments are "
                                  + ", ".join(SEGMENTS),
                                  reason="segment_not_found")
        size = page_size(size)
        after = after_token(MEMBER_PAGES, token)
        require_program(self.program_exists, tenant_id, program_id)
        at, rows = self.store.segment_members(tenant_id, program_id, segment, as_of, after, size + 1)
        if at is None:
            return [], "", None
        page, next_token = page_of(rows, size, lambda r: MEMBER_PAGES.encode(r.participant_id))
        return page, next_token, at

    def inactive(self, tenant_id: str, program_id: str, last_day: str, size: int, token: str
                 ) -> tuple[list[tuple[str, dt.datetime]], str]:
        if not tenant_id:
            raise errors.InvalidArgument.field("tenant_id", "is required")
        program_id = require_uuid(program_id, "program_id")
        day = _check_day(last_day, "last_event_on_or_before")
        if day is None:
            raise errors.InvalidArgument.field("last_event_on_or_before", "is required")
        size = page_size(size)
        after = after_token(INACTIVE_PAGES, token)
        rows = self.store.inactive_participants(tenant_id, program_id, day, after, size + 1)
        return page_of(rows, size, lambda r: INACTIVE_PAGES.encode(r[0]))
