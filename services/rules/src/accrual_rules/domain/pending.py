"""Pending points (issue 22): a program's pending policy, checked, and when the points an
event earns become spendable. Pure: no database, no clock of its own.

- ``IMMEDIATE``: active at once.
- ``DURATION``: active ``duration`` after the event time, so a backdated event whose window
  has passed is active at once.
- ``ON_EVENT``: pending until a later event of one of ``event_types`` names the earning event
  in its event_data (``original_event_id`` or ``original_idempotency_key``), or until
  ActivatePoints; never by the clock.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from accrual_platform import errors

from accrual_rules.domain import Json

PENDING_TYPES = ("IMMEDIATE", "DURATION", "ON_EVENT")
#: The event_data fields by which an activating event names the earning event.
ORIGINAL_EVENT_ID = "original_event_id"
ORIGINAL_IDEMPOTENCY_KEY = "original_idempotency_key"
MAX_EVENT_TYPES = 20
_DURATION = re.compile(r"^P(?!$)(?:(\d{1,4})Y)?(?:(\d{1,4})M)?(?:(\d{1,4})W)?(?:(\d{1,5})D)?"
                       r"(?:T(?=\d)(?:(\d{1,6})H)?(?:(\d{1,7})M)?(?:(\d{1,9})S)?)?$")
_SHORTEST = dt.timedelta(minutes=1)
_LONGEST = dt.timedelta(days=3653)


@dataclass(frozen=True)
class Duration:
    """An ISO 8601 duration: calendar months (years count 12) and an exact time span."""

    months: int = 0
    span: dt.timedelta = dt.timedelta(0)

    def after(self, at: dt.datetime) -> dt.datetime:
        """``at`` plus the duration; a month step keeps the day, or the month's last day
        when the target month is shorter (Jan 31 + P1M = Feb 28/29)."""
        if self.months:
            index = at.month - 1 + self.months
            year, month = at.year + index // 12, index % 12 + 1
            at = at.replace(year=year, month=month, day=min(at.day, calendar.monthrange(year, month)[1]))
        return at + self.span


def parse_duration(text: str) -> Duration | None:
    """The duration of ``text`` (None when it is not ISO 8601 of the supported form)."""
    match = _DURATION.match(text)
    if match is None:
        return None
    years, months, weeks, days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return Duration(months=years * 12 + months,
                    span=dt.timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds))


@dataclass(frozen=True)
class LotTerms:
    """How a new lot starts: PENDING or ACTIVE, when it activates, when it expires."""

    status: str
    activates_at: dt.datetime | None
    expires_at: dt.datetime | None


@dataclass(frozen=True)
class PendingPolicy:
    type: str = "IMMEDIATE"
    duration: str = ""
    event_types: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Json]:
        return {"type": self.type, "duration": self.duration, "event_types": list(self.event_types)}

    @classmethod
    def from_json(cls, raw: Mapping[str, Json] | None) -> PendingPolicy:
        if not raw:
            return cls()
        return cls(str(raw.get("type") or "IMMEDIATE"), str(raw.get("duration") or ""),
                   tuple(raw.get("event_types") or ()))

    def activates_at(self, earned_at: dt.datetime) -> dt.datetime | None:
        """When points earned at ``earned_at`` become active; None: only by an event or a call."""
        if self.type == "ON_EVENT":
            return None
        if self.type == "DURATION":
            duration = parse_duration(self.duration)
            assert duration is not None, "a stored DURATION policy was checked"
            return duration.after(earned_at)
        return earned_at

    def pending(self, earned_at: dt.datetime, now: dt.datetime) -> tuple[bool, dt.datetime | None]:
        """(whether points earned at ``earned_at`` start pending, their activation time)."""
        at = self.activates_at(earned_at)
        if self.type == "IMMEDIATE":
            return False, at  # also for an event stamped in the future
        return (at is None or at > now), at

    def lot_terms(self, earned_at: dt.datetime, now: dt.datetime,
                  expires: Callable[[dt.datetime], dt.datetime | None], *, named: bool = False) -> LotTerms:
        """The status, activation and expiry of a lot earned at ``earned_at``. ``expires``
        gives the expiry of points active from an instant (the clock starts at activation);
        ``named``: an activating event already named the earning event (ON_EVENT)."""
        pending, at = self.pending(earned_at, now)
        if pending and named and self.type == "ON_EVENT":
            return LotTerms("ACTIVE", now, expires(now))
        if pending:
            return LotTerms("PENDING", at, expires(at) if at is not None else None)
        start = at or earned_at
        return LotTerms("ACTIVE", start, expires(start))

    def activates_on(self, event_type: str) -> bool:
        return self.type == "ON_EVENT" and event_type in self.event_types


def check_pending(raw: Mapping[str, Json] | None, v: list[errors.FieldViolation]) -> PendingPolicy:
    """A pending policy as the API gives it (``type``, ``duration``, ``event_types``); the clean
    policy, with every problem added to ``v`` under ``pending.<field>``."""
    if not raw:
        return PendingPolicy()
    kind = str(raw.get("type") or "IMMEDIATE")
    duration = str(raw.get("duration") or "")
    types: Sequence[str] = list(raw.get("event_types") or [])
    if kind not in PENDING_TYPES:
        v.append(errors.FieldViolation("pending.type", f"must be one of {', '.join(PENDING_TYPES)}"))
        return PendingPolicy()
    if kind == "DURATION":
        parsed = parse_duration(duration)
        if parsed is None:
            v.append(errors.FieldViolation("pending.duration", "must be an ISO 8601 duration such as P30D"))
        else:
            base = dt.datetime(2001, 1, 31, tzinfo=dt.UTC)  # the shortest month step from a long month
            if not _SHORTEST <= parsed.after(base) - base <= _LONGEST:
                v.append(errors.FieldViolation("pending.duration", "must be between 1 minute and 10 years"))
    elif duration:
        v.append(errors.FieldViolation("pending.duration", "is only for type DURATION"))
    if kind == "ON_EVENT":
        if not 1 <= len(types) <= MAX_EVENT_TYPES:
            v.append(errors.FieldViolation("pending.event_types",
                                           f"must name 1 to {MAX_EVENT_TYPES} event types for ON_EVENT"))
        for i, name in enumerate(types):
            if not name.strip() or len(name) > 255 or name != name.strip():
                v.append(errors.FieldViolation(f"pending.event_types[{i}]",
                                               "must be 1 to 255 characters without surrounding spaces"))
    elif types:
        v.append(errors.FieldViolation("pending.event_types", "is only for type ON_EVENT"))
    return PendingPolicy(kind, duration if kind == "DURATION" else "",
                         tuple(dict.fromkeys(types)) if kind == "ON_EVENT" else ())


def original_reference(data: Mapping[str, Json]) -> tuple[str, str] | None:
    """How an activating event names the earning event: ("event_id", id) or
    ("idempotency_key", key); None when it names none (or not as a non-empty string)."""
    for field, kind in ((ORIGINAL_EVENT_ID, "event_id"), (ORIGINAL_IDEMPOTENCY_KEY, "idempotency_key")):
        value = data.get(field)
        if isinstance(value, str) and 0 < len(value) <= 255:
            return kind, value
    return None
