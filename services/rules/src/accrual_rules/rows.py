"""Stored rows turned into the pure domain's values."""

from __future__ import annotations

import decimal
from typing import Any

from accrual_rules.domain.evaluation import Caps, ProgramPolicy, RuleSpec, Tier


def program_policy(row: Any) -> ProgramPolicy:
    return ProgramPolicy(
        program_id=row.id, name=row.name,
        tiers=tuple(Tier(t["name"], decimal.Decimal(t["min_lifetime_points"]),
                         decimal.Decimal(t["multiplier"])) for t in row.tiers),
        rounding_mode=row.rounding_mode, rounding_precision=row.rounding_precision)


def rule_spec(row: Any) -> RuleSpec:
    return RuleSpec(rule_id=row.id, version=row.version, name=row.name,
                    event_type=row.event_type, condition=row.condition, formula=row.formula,
                    apply_tier_multiplier=row.apply_tier_multiplier, order=row.order,
                    stop_after_match=row.stop_after_match, active_from=row.active_from,
                    active_to=row.active_to, status=row.status, caps=Caps.from_json(row.caps),
                    budget_breaches=row.budget_breaches)
