"""What one processed event adds to a program's analytics, and the segment configuration.

Pure code: no SQLAlchemy, protobuf or Dramatiq. The storage layer turns the increments into
upserts in the transaction that records the event's outcome; that transition happens once
per event, so a redelivered outcome adds nothing.

Decisions:
- Only COMPLETED events count; a FAILED one never reached a program's rules.
- A loyalty event counts under its program. A CDP event (no program) counts under every
  program whose rules evaluated it (the program_id of its rule evaluations); a program in
  which the participant is enrolled but that has no rules does not see it.
- Points are those of matched rule evaluations, credited to their recipient.
- SYSTEM events (the scheduler's birthday, anniversary and inactivity events) count in the
  program's totals, by type, by rule and by day, and their points in the recipient's points,
  but they are not participant *activity*: they leave the participant's event counts, first
  and last event time, and thereby the segments and the inactivity trigger, unchanged.
- Points are kept as integer millionths (rounding precision is at most 6 decimals), so both
  PostgreSQL and SQLite add them exactly inside an upsert.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

MICROS = decimal.Decimal(1_000_000)
SYSTEM = "SYSTEM"
K = TypeVar("K")


def to_micros(points: str | decimal.Decimal) -> int:
    return int((decimal.Decimal(points) * MICROS).to_integral_value(rounding=decimal.ROUND_HALF_EVEN))


def from_micros(micros: int | None) -> decimal.Decimal:
    return (decimal.Decimal(micros or 0) / MICROS).normalize() if micros else decimal.Decimal(0)


@dataclass(frozen=True)
class ProcessedEvent:
    """The facts of a COMPLETED event that analytics needs."""

    program_id: str  # "" for CDP events
    event_type: str
    event_timestamp: dt.datetime
    origin: str
    participant_id: str | None
    rule_evaluations: Sequence[Mapping[str, Any]]


@dataclass
class Increments:
    """Additions keyed like the aggregate tables' primary keys (without the tenant)."""

    daily: dict[tuple[str, dt.date, str], list[int]] = field(default_factory=dict)  # events, points
    rules: dict[tuple[str, dt.date, str], list[Any]] = field(default_factory=dict)  # matches, points, name
    participant_days: dict[tuple[str, str, dt.date, str], list[int]] = field(default_factory=dict)
    participants: dict[tuple[str, str], list[Any]] = field(default_factory=dict)  # events, points, first, last

    def add(self, event: ProcessedEvent) -> None:
        day = event.event_timestamp.astimezone(dt.UTC).date()
        evaluations = [e for e in event.rule_evaluations if e.get("rule_id")]
        if event.program_id:
            programs = [event.program_id]
        else:
            programs = sorted({str(e["program_id"]) for e in evaluations if e.get("program_id")})
        activity = event.origin != SYSTEM and bool(event.participant_id)
        for program in programs:
            mine = [e for e in evaluations if (e.get("program_id") or event.program_id) == program]
            matched = [e for e in mine if e.get("matched")]
            points = sum(to_micros(e.get("points") or "0") for e in matched)
            _bump(self.daily, (program, day, event.event_type), [1, points])
            for e in matched:
                row = self.rules.setdefault((program, day, str(e["rule_id"])), [0, 0, ""])
                row[0] += 1
                row[1] += to_micros(e.get("points") or "0")
                row[2] = str(e.get("rule_name") or "")
            if activity:
                assert event.participant_id is not None
                self._participant(program, event.participant_id, day, event.event_type, 1, 0,
                                  event.event_timestamp)
            for e in matched:
                recipient = str(e.get("recipient_id") or "")
                micros = to_micros(e.get("points") or "0")
                if recipient and micros:
                    self._participant(program, recipient, day, event.event_type, 0, micros, None)

    def _participant(self, program: str, participant: str, day: dt.date, event_type: str,
                     events: int, micros: int, at: dt.datetime | None) -> None:
        _bump(self.participant_days, (program, participant, day, event_type), [events, micros])
        row = self.participants.setdefault((program, participant), [0, 0, None, None])
        row[0] += events
        row[1] += micros
        if at is not None:
            row[2] = at if row[2] is None else min(row[2], at)
            row[3] = at if row[3] is None else max(row[3], at)

    def __bool__(self) -> bool:
        return bool(self.daily)


def _bump(table: dict[K, list[int]], key: K, values: list[int]) -> None:
    row = table.setdefault(key, [0] * len(values))
    for i, v in enumerate(values):
        row[i] += v


def increments(events: Iterable[ProcessedEvent]) -> Increments:
    out = Increments()
    for event in events:
        out.add(event)
    return out


# -- distribution of events per participant ---------------------------------------------
#: (label, min, max) with max 0 = no upper bound.
BUCKETS: tuple[tuple[str, int, int], ...] = (
    ("1", 1, 1), ("2", 2, 2), ("3-5", 3, 5), ("6-10", 6, 10), ("11-20", 11, 20), ("21+", 21, 0))


def bucket_of(events: int) -> str:
    for label, low, high in BUCKETS:
        if events >= low and (high == 0 or events <= high):
            return label
    raise ValueError(f"no bucket for {events} events")


def average(total: int, count: int) -> str:
    if not count:
        return "0.00"
    return str((decimal.Decimal(total) / decimal.Decimal(count)).quantize(
        decimal.Decimal("0.01"), rounding=decimal.ROUND_HALF_EVEN))


# -- segments -----------------------------------------------------------------------------
SEGMENTS = ("high_engagers", "purchasers", "advocates", "at_risk")
MAX_DAYS = 3650
MAX_EVENTS = 1_000_000
MAX_TYPES = 50


@dataclass(frozen=True)
class SegmentConfig:
    high_engagers_min_events: int = 10
    high_engagers_window_days: int = 30
    purchasers_event_types: tuple[str, ...] = ("purchase",)
    purchasers_min_events: int = 1
    advocates_event_types: tuple[str, ...] = ("referral", "review")
    advocates_min_events: int = 1
    at_risk_inactive_days: int = 30

    def to_json(self) -> dict[str, Any]:
        return {
            "high_engagers": {"min_events": self.high_engagers_min_events,
                              "window_days": self.high_engagers_window_days},
            "purchasers": {"event_types": list(self.purchasers_event_types),
                           "min_events": self.purchasers_min_events},
            "advocates": {"event_types": list(self.advocates_event_types),
                          "min_events": self.advocates_min_events},
            "at_risk": {"inactive_days": self.at_risk_inactive_days},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> SegmentConfig:
        data = data or {}
        d = cls()
        he, pu, ad, ar = (data.get(k) or {} for k in SEGMENTS)
        return cls(
            high_engagers_min_events=int(he.get("min_events") or d.high_engagers_min_events),
            high_engagers_window_days=int(he.get("window_days") or d.high_engagers_window_days),
            purchasers_event_types=tuple(pu.get("event_types") or d.purchasers_event_types),
            purchasers_min_events=int(pu.get("min_events") or d.purchasers_min_events),
            advocates_event_types=tuple(ad.get("event_types") or d.advocates_event_types),
            advocates_min_events=int(ad.get("min_events") or d.advocates_min_events),
            at_risk_inactive_days=int(ar.get("inactive_days") or d.at_risk_inactive_days),
        )

    def describe(self, segment: str) -> str:
        if segment == "high_engagers":
            return (f"at least {self.high_engagers_min_events} events in the "
                    f"{self.high_engagers_window_days} days up to as_of")
        if segment == "purchasers":
            return (f"at least {self.purchasers_min_events} event(s) of type "
                    + " or ".join(self.purchasers_event_types))
        if segment == "advocates":
            return (f"at least {self.advocates_min_events} event(s) of type "
                    + " or ".join(self.advocates_event_types))
        return f"no event in the {self.at_risk_inactive_days} days up to as_of, after earlier activity"


def validate_segment_config(data: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Check a requested configuration ({section: {field: value}}); zero or absent values take
    the defaults. Returns the normalised JSON and the (field, problem) violations."""
    problems: list[tuple[str, str]] = []

    def count(section: str, name: str, high: int) -> None:
        value = (data.get(section) or {}).get(name) or 0
        if not isinstance(value, int) or value < 0 or value > high:
            problems.append((f"{section}.{name}", f"must be between 1 and {high}"))

    count("high_engagers", "min_events", MAX_EVENTS)
    count("high_engagers", "window_days", MAX_DAYS)
    count("purchasers", "min_events", MAX_EVENTS)
    count("advocates", "min_events", MAX_EVENTS)
    count("at_risk", "inactive_days", MAX_DAYS)
    for section in ("purchasers", "advocates"):
        types = list((data.get(section) or {}).get("event_types") or [])
        if len(types) > MAX_TYPES:
            problems.append((f"{section}.event_types", f"must list at most {MAX_TYPES} event types"))
        for i, t in enumerate(types):
            if not isinstance(t, str) or not t or len(t) > 255 or t != t.strip() or not t.isprintable():
                problems.append((f"{section}.event_types[{i}]",
                                 "must be 1 to 255 printable characters without surrounding spaces"))
        if len(set(types)) != len(types):
            problems.append((f"{section}.event_types", "must not repeat an event type"))
    if problems:
        return {}, problems
    return SegmentConfig.from_json(data).to_json(), []
