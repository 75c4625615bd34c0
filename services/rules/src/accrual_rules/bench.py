"""Micro-benchmark of rule evaluation (SPEC 9: <= 10 us per compiled rule, <= 1 ms per event
with 100 active rules), beside plain Python doing the same arithmetic as a baseline.

``measure()`` returns microseconds; ``make bench`` prints them as ratios to the baseline.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import time
from collections.abc import Callable
from typing import Any

from accrual_rules.domain.evaluation import (
    EventFacts,
    ProgramPolicy,
    RuleSpec,
    Tier,
    compiled_rule,
    evaluate,
    json_context,
)
from accrual_rules.sandbox import Job, Sandbox

CONDITION = 'properties.category == "electronics" or properties.amount > 100'
FORMULA = "properties.amount * 1 + (properties.amount > 100 ? 50 : 0)"


def _per_call_us(fn: Callable[[], Any], *, min_seconds: float = 0.2) -> float:
    """Best of 3 runs of as many calls as fit in ``min_seconds``, in microseconds per call."""
    fn()
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < min_seconds / 4:
        fn()
        calls += 1
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - started) / calls)
    return best * 1e6


def _plain(properties: dict[str, Any]) -> decimal.Decimal:
    amount = properties["amount"]
    if not (properties["category"] == "electronics" or amount > 100):
        return decimal.Decimal(0)
    return decimal.Decimal(repr(float(amount * 1 + (50 if amount > 100 else 0)))).quantize(
        decimal.Decimal(1), rounding=decimal.ROUND_FLOOR)


def measure(n_rules: int = 100) -> dict[str, float]:
    """Microseconds per compiled rule evaluation and per event with ``n_rules`` active rules."""
    properties = {"amount": 125.5, "category": "electronics", "sku": "A-1"}
    rules = [RuleSpec(rule_id=f"rule-{i:04d}", version=1, name=f"rule {i}", event_type="purchase",
                      condition=CONDITION, formula=FORMULA, apply_tier_multiplier=True, order=i,
                      stop_after_match=False, active_from=None, active_to=None) for i in range(n_rules)]
    program = ProgramPolicy("bench", "Bench", tiers=(Tier("silver", decimal.Decimal(0), decimal.Decimal("1.5")),))
    facts = EventFacts("bench-event", "purchase", dt.datetime(2026, 5, 20, tzinfo=dt.UTC), properties,
                       participant={"id": "p", "attributes": {}})
    condition, _formula, both = compiled_rule("bench", 1, CONDITION, FORMULA)
    assert condition is not None and both is not None
    # as evaluate() asks it: condition and formula in one expression, given JSON text of what
    # they name (made once per event)
    context = json_context(both.narrow({"properties": properties, "event_type": "purchase"}))

    def one_rule() -> None:
        both.evaluate(context, narrowed=True)

    def one_event() -> None:
        evaluate(program, rules, facts, decimal.Decimal(10))

    def plain_rule() -> None:
        _plain(properties)

    def plain_event() -> None:
        for _ in range(n_rules):
            _plain(properties)

    return {
        "rules": float(n_rules),
        "us_per_rule": _per_call_us(one_rule),
        "us_per_rule_plain_python": _per_call_us(plain_rule),
        "us_per_event": _per_call_us(one_event),
        "us_per_event_plain_python": _per_call_us(plain_event),
        **measure_sandboxed(program, rules, facts),
    }


def measure_sandboxed(program: ProgramPolicy, rules: list[RuleSpec], facts: EventFacts,
                      events: int = 500, rounds: int = 3) -> dict[str, float]:
    """What the worker pays per event: a batch of ``events`` through the sandbox (one child,
    in chunks), then the verdicts from its answers; best of ``rounds``, wall time, in which
    the parent and the child take turns."""
    box = Sandbox(processes=1)
    try:
        jobs = [Job(program, rules, dataclasses.replace(facts, event_id=f"e{i}"), decimal.Decimal(10))
                for i in range(events)]
        box.answers(jobs[:5])  # the child's start is not part of it
        best = float("inf")
        for _ in range(rounds):
            started = time.perf_counter()
            asked = box.answers(jobs)
            for job, answers in zip(jobs, asked.answers, strict=True):
                evaluate(program, rules, job.facts, job.lifetime_points, answers=answers)
            best = min(best, time.perf_counter() - started)
    finally:
        box.close()
    per_event = best / events * 1e6
    return {"us_per_event_sandboxed": per_event, "us_per_rule_sandboxed": per_event / len(rules)}


if __name__ == "__main__":
    for key, value in measure().items():
        print(f"{key:28} {value:10.2f}")
