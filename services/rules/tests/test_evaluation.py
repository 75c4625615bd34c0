import datetime as dt
import decimal

import pytest
from accrual_rules.domain.evaluation import EventFacts, ProgramPolicy, RuleSpec, Tier, evaluate
from accrual_rules.domain.expressions import ExpressionError, compile_expression

D = decimal.Decimal
TS = dt.datetime(2026, 5, 20, 12, tzinfo=dt.UTC)


def rule(formula: str, condition: str = "", **kw: object) -> RuleSpec:
    base: dict[str, object] = dict(rule_id=kw.pop("rule_id", "r1"), version=1, name="r", event_type="",
                                   condition=condition, formula=formula, apply_tier_multiplier=False,
                                   order=0, stop_after_match=False, active_from=None, active_to=None)
    base.update(kw)
    return RuleSpec(**base)  # type: ignore[arg-type]


def points(rules: list[RuleSpec], props: dict[str, object], program: ProgramPolicy | None = None,
           lifetime: D = D(0)) -> list[D]:
    program = program or ProgramPolicy("p", "P")
    facts = EventFacts("e1", "purchase", TS, props)
    return [e.points for e in evaluate(program, rules, facts, lifetime) if e.matched]


def test_seed_examples() -> None:
    assert points([rule("properties.amount * 1")], {"amount": 125}) == [D(125)]
    tiered = rule("properties.amount * 1 + (properties.amount > 100 ? 50 : 0)")
    assert points([tiered], {"amount": 50}) == [D(50)]
    assert points([tiered], {"amount": 150}) == [D(200)]
    electronics = rule("properties.amount * 2", 'properties.category == "electronics"')
    assert points([electronics], {"amount": 10, "category": "electronics"}) == [D(20)]
    assert points([electronics], {"amount": 10, "category": "food"}) == []


def test_tier_multiplier_floors() -> None:
    program = ProgramPolicy("p", "P", tiers=(Tier("gold", D(0), D("1.5")),))
    r = rule("properties.amount * 1", apply_tier_multiplier=True)
    assert points([r], {"amount": 125}, program) == [D(187)]


def test_error_is_isolated_and_stop_after_match() -> None:
    bad = rule("properties.missing * 2", rule_id="a", order=0)
    good = rule("10", rule_id="b", order=1, stop_after_match=True)
    later = rule("5", rule_id="c", order=2)
    facts = EventFacts("e1", "purchase", TS, {})
    result = evaluate(ProgramPolicy("p", "P"), [later, good, bad], facts, D(0))
    assert [(e.rule_id, e.matched, e.skip_reason) for e in result] == [
        ("a", False, "evaluation_error"), ("b", True, ""), ("c", False, "stopped_by_earlier_rule")]


def test_time_window_uses_event_timestamp() -> None:
    r = rule("1", active_from=TS + dt.timedelta(days=1))
    assert points([r], {}) == []


def test_syntax_error_has_position() -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression("properties.amount * ")
    assert info.value.position is not None
