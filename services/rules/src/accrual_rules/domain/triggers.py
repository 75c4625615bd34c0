"""Scheduled triggers of a program (birthday, anniversary, inactivity): validation, defaults,
and the deterministic idempotency keys of their events. Pure code."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from accrual_rules.domain import Json

TRIGGERS = ("birthday", "anniversary", "inactivity")
DEFAULT_INACTIVITY_DAYS = 30
MAX_DAYS = 3650


def normalise_triggers(raw: Mapping[str, Json] | None, field: str = "scheduled_triggers"
                       ) -> tuple[dict[str, dict[str, Json]], list[tuple[str, str]]]:
    """Every trigger with its defaults filled in, and the (field, problem) violations."""
    raw = raw or {}
    out: dict[str, dict[str, Json]] = {}
    problems: list[tuple[str, str]] = []
    for name in TRIGGERS:
        item = raw.get(name) or {}
        event_type = item.get("event_type") or name
        if (not isinstance(event_type, str) or len(event_type) > 255 or event_type != event_type.strip()
                or not event_type.isprintable()):
            problems.append((f"{field}.{name}.event_type",
                             "must be 1 to 255 printable characters without surrounding spaces"))
        days = item.get("days") or 0
        if name == "inactivity":
            if not isinstance(days, int) or days < 0 or days > MAX_DAYS:
                problems.append((f"{field}.{name}.days", f"must be between 1 and {MAX_DAYS}"))
            days = days or DEFAULT_INACTIVITY_DAYS
        elif days:
            problems.append((f"{field}.{name}.days", "applies to the inactivity trigger only"))
        out[name] = {"enabled": bool(item.get("enabled")), "event_type": event_type}
        if name == "inactivity":
            out[name]["days"] = days
    return out, problems


def enabled(triggers: Mapping[str, Json] | None) -> list[str]:
    normalised, _ = normalise_triggers(triggers)
    return [name for name in TRIGGERS if normalised[name]["enabled"]]


def idempotency_key(trigger: str, participant_id: str, day: dt.date) -> str:
    """Birthday and anniversary fire once per participant and day; inactivity once per gap,
    keyed by the day of the last event before it."""
    return f"{trigger}:{participant_id}:{day.isoformat()}"
