"""Rule evaluation: pure, deterministic, no I/O.

Given a program (tiers, rounding), its active rules in order and one event with its
participant, decide for every rule whether it matched (or why not) and how many points it
awards. ``now`` is the event timestamp, so reprocessing gives the same answer.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from accrual_rules.domain.expressions import ExpressionError, compile_expression, to_decimal

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


def evaluate(program: ProgramPolicy, rules: Sequence[RuleSpec], event: EventFacts,
             lifetime_points: decimal.Decimal) -> list[Evaluation]:
    tier = program.tier_for(lifetime_points)
    context = {
        "properties": event.properties,
        "event_type": event.event_type,
        "event": {"id": event.event_id, "type": event.event_type,
                  "timestamp": event.timestamp.isoformat()},
        "participant": {**event.participant, "tier": tier.name if tier else None,
                        "lifetime_points": float(lifetime_points)},
        "program": {"id": program.program_id, "name": program.name},
        "now": event.timestamp.isoformat(),
    }
    results: list[Evaluation] = []
    stopped = False
    for rule in sorted(rules, key=lambda r: (r.order, r.rule_id)):
        def skip(reason: str, message: str = "", rule: RuleSpec = rule) -> None:
            results.append(Evaluation(rule.rule_id, rule.version, rule.name, False, reason, message))

        if rule.status != "ACTIVE":
            skip("suspended")
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
            if rule.condition.strip():
                outcome = compile_expression(rule.condition).evaluate(context)
                if not isinstance(outcome, bool):
                    raise ExpressionError(f"condition must give true or false, got {outcome!r}")
                if not outcome:
                    skip("condition_false")
                    continue
            raw = to_decimal(compile_expression(rule.formula).evaluate(context))
        except ExpressionError as exc:
            skip("evaluation_error", exc.message)
            continue
        if rule.apply_tier_multiplier and tier is not None:
            raw *= tier.multiplier
        points = program.round(raw)
        results.append(Evaluation(rule.rule_id, rule.version, rule.name, True, points=points))
        if rule.stop_after_match:
            stopped = True
    return results
