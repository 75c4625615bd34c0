"""Rule evaluation: pure, deterministic, no I/O.

Given a program (tiers, rounding), its active rules in order and one event with its
participant, decide for every rule whether it matched (or why not) and how many points it
awards. ``now`` is the event timestamp, so reprocessing gives the same answer.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from accrual_rules.domain.expressions import Compiled, ExpressionError, compile_expression, to_decimal

ZERO = decimal.Decimal(0)

ROUNDINGS = {
    "FLOOR": decimal.ROUND_FLOOR,
    "CEILING": decimal.ROUND_CEILING,
    "HALF_UP": decimal.ROUND_HALF_UP,
    "HALF_EVEN": decimal.ROUND_HALF_EVEN,
}


@dataclass(frozen=True)
class Tier:
    name: str
    min_lifetime_points: decimal.Decimal
    multiplier: decimal.Decimal


@dataclass(frozen=True)
class ProgramPolicy:
    program_id: str
    name: str
    tiers: tuple[Tier, ...] = ()
    rounding_mode: str = "FLOOR"
    rounding_precision: int = 0

    def tier_for(self, lifetime: decimal.Decimal) -> Tier | None:
        reached = [t for t in self.tiers if lifetime >= t.min_lifetime_points]
        return max(reached, key=lambda t: t.min_lifetime_points) if reached else None

    def round(self, points: decimal.Decimal) -> decimal.Decimal:
        quantum = decimal.Decimal(1).scaleb(-self.rounding_precision)
        return points.quantize(quantum, rounding=ROUNDINGS[self.rounding_mode])


CAP_FIELDS = ("max_points_per_event", "per_participant_daily", "per_participant_weekly",
              "per_participant_monthly", "per_participant_lifetime", "total_budget")
# Cap -> the usage window it counts (None: not counted from the ledger).
CAP_WINDOWS = {"per_participant_daily": "day", "per_participant_weekly": "week",
               "per_participant_monthly": "month", "per_participant_lifetime": "lifetime",
               "total_budget": "budget"}


@dataclass(frozen=True)
class Caps:
    """Limits of one rule; None = no limit."""

    max_points_per_event: decimal.Decimal | None = None
    per_participant_daily: decimal.Decimal | None = None
    per_participant_weekly: decimal.Decimal | None = None
    per_participant_monthly: decimal.Decimal | None = None
    per_participant_lifetime: decimal.Decimal | None = None
    total_budget: decimal.Decimal | None = None

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None) -> Caps:
        raw = raw or {}
        return cls(**{k: decimal.Decimal(str(raw[k])) for k in CAP_FIELDS if raw.get(k) is not None})

    def to_json(self) -> dict[str, str]:
        return {k: str(getattr(self, k)) for k in CAP_FIELDS if getattr(self, k) is not None}

    def counted(self) -> list[str]:
        """The caps that need usage from the ledger."""
        return [k for k in CAP_WINDOWS if getattr(self, k) is not None]


@dataclass(frozen=True)
class CapUsage:
    """Points a rule already awarded: to this participant in the event's day, ISO week, month,
    ever, and to everybody (budget)."""

    day: decimal.Decimal = ZERO
    week: decimal.Decimal = ZERO
    month: decimal.Decimal = ZERO
    lifetime: decimal.Decimal = ZERO
    budget: decimal.Decimal = ZERO


def window_starts(at: dt.datetime) -> dict[str, dt.datetime]:
    """Start of the UTC day, ISO week (Monday) and month of ``at``: the cap windows."""
    at = at.astimezone(dt.UTC)
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    return {"day": day, "week": day - dt.timedelta(days=day.weekday()), "month": day.replace(day=1)}


@dataclass(frozen=True)
class RuleSpec:
    rule_id: str
    version: int
    name: str
    event_type: str
    condition: str
    formula: str
    apply_tier_multiplier: bool
    order: int
    stop_after_match: bool
    active_from: dt.datetime | None
    active_to: dt.datetime | None
    status: str = "ACTIVE"
    caps: Caps = Caps()


@dataclass(frozen=True)
class EventFacts:
    event_id: str
    event_type: str
    timestamp: dt.datetime
    properties: dict[str, Any]
    participant: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluation:
    rule_id: str
    version: int
    name: str
    matched: bool
    skip_reason: str = ""
    message: str = ""
    points: decimal.Decimal = decimal.Decimal(0)


@lru_cache(maxsize=8192)
def compiled_rule(rule_id: str, version: int, condition: str, formula: str
                  ) -> tuple[Compiled | None, Compiled]:
    """Compiled condition and formula of one rule version (sources are part of the key so a
    draft rule without an id never picks up another rule's expressions)."""
    return (compile_expression(condition) if condition.strip() else None,
            compile_expression(formula))


def context_for(program: ProgramPolicy, event: EventFacts, tier: Tier | None,
                lifetime_points: decimal.Decimal) -> dict[str, Any]:
    """What expressions see. ``now`` is the event timestamp, so reprocessing is deterministic."""
    return {
        "properties": event.properties,
        "event_type": event.event_type,
        "event": {"id": event.event_id, "type": event.event_type,
                  "timestamp": event.timestamp.isoformat()},
        "participant": {"attributes": {}, **event.participant, "tier": tier.name if tier else None,
                        "lifetime_points": float(lifetime_points)},
        "program": {"id": program.program_id, "name": program.name},
        "now": event.timestamp.isoformat(),
    }


def apply_caps(rule: RuleSpec, points: decimal.Decimal, usage: CapUsage) -> tuple[decimal.Decimal, str]:
    """Points left after the rule's caps, and the name of the cap that limited them ("" if none).

    A rule that would go over a cap awards what is left under it."""
    limited_by = ""
    caps = rule.caps
    if caps.max_points_per_event is not None and points > caps.max_points_per_event:
        points, limited_by = caps.max_points_per_event, "max_points_per_event"
    for cap in caps.counted():
        left = max(getattr(caps, cap) - getattr(usage, CAP_WINDOWS[cap]), ZERO)
        if points > left:
            points, limited_by = left, cap
    return points, limited_by


def evaluate(program: ProgramPolicy, rules: Sequence[RuleSpec], event: EventFacts,
             lifetime_points: decimal.Decimal,
             usage: Mapping[str, CapUsage] | None = None) -> list[Evaluation]:
    """Evaluate ``rules`` in order. ``usage`` gives, per rule id, what capped rules already
    awarded (rules missing from it count as unused)."""
    tier = program.tier_for(lifetime_points)
    context = context_for(program, event, tier, lifetime_points)
    usage = usage or {}
    narrowed_contexts: dict[frozenset[str], dict[str, Any]] = {}

    def narrowed(expression: Compiled) -> dict[str, Any]:
        """The context cut to what an expression names, built once per event per word set."""
        found = narrowed_contexts.get(expression.words)
        if found is None:
            found = narrowed_contexts[expression.words] = expression.narrow(context)
        return found

    results: list[Evaluation] = []
    stopped = False
    for rule in sorted(rules, key=lambda r: (r.order, r.rule_id)):
        def skip(reason: str, message: str = "", rule: RuleSpec = rule) -> None:
            results.append(Evaluation(rule.rule_id, rule.version, rule.name, False, reason, message))

        if rule.status != "ACTIVE":
            skip(rule.status.lower())
            continue
        if stopped:
            skip("stopped_by_earlier_rule")
            continue
        if rule.event_type and rule.event_type != event.event_type:
            skip("event_type_mismatch")
            continue
        if (rule.active_from and event.timestamp < rule.active_from) or (
                rule.active_to and event.timestamp >= rule.active_to):
            skip("outside_time_window")
            continue
        try:
            condition, formula = compiled_rule(rule.rule_id, rule.version, rule.condition, rule.formula)
            if condition is not None:
                outcome = condition.evaluate(narrowed(condition), narrowed=True)
                if not isinstance(outcome, bool):
                    raise ExpressionError(f"condition must give true or false, got {outcome!r}")
                if not outcome:
                    skip("condition_false")
                    continue
            raw = to_decimal(formula.evaluate(narrowed(formula), narrowed=True))
            if raw < 0:
                raise ExpressionError(f"formula gave a negative number ({raw}); debit with an adjustment")
        except ExpressionError as exc:
            skip("evaluation_error", exc.message)
            continue
        if rule.apply_tier_multiplier and tier is not None:
            raw *= tier.multiplier
        points, limited_by = apply_caps(rule, program.round(raw), usage.get(rule.rule_id, CapUsage()))
        if limited_by and points <= 0:
            skip("cap_reached", f"{limited_by} reached")
            continue
        results.append(Evaluation(rule.rule_id, rule.version, rule.name, True,
                                  message=f"capped by {limited_by}" if limited_by else "",
                                  points=points))
        if rule.stop_after_match:
            stopped = True
    return results


# -- event types ------------------------------------------------------------------------------

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "STRING": (str,), "NUMBER": (int, float), "BOOLEAN": (bool,), "OBJECT": (dict,), "ARRAY": (list,)}


def check_event_type(policy: str, registered: Mapping[str, Sequence[Mapping[str, Any]]],
                     event_type: str, properties: Mapping[str, Any]) -> tuple[str, str] | None:
    """Why an event fails the program's event-type policy (error code, message), or None.

    OPEN accepts every event. REGISTERED needs the type registered and, for every declared
    property, a value of the declared type (required ones present)."""
    if policy != "REGISTERED":
        return None
    if event_type not in registered:
        return "event_type_not_registered", f"event type {event_type!r} is not registered on the program"
    problems = []
    for prop in registered[event_type]:
        name, kind = prop["name"], prop["type"]
        if name not in properties:
            if prop.get("required"):
                problems.append(f"{name} is required")
            continue
        value = properties[name]
        ok = isinstance(value, _JSON_TYPES[kind]) and not (kind == "NUMBER" and isinstance(value, bool))
        if not ok:
            problems.append(f"{name} must be a {kind.lower()}")
    if problems:
        return "event_data_invalid", "; ".join(problems)
    return None
