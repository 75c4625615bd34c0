import datetime as dt
import decimal

import pytest
from accrual_rules.domain.evaluation import (
    Caps,
    CapUsage,
    EventFacts,
    ProgramPolicy,
    RuleSpec,
    Tier,
    apply_caps,
    check_event_type,
    evaluate,
    window_starts,
)
from accrual_rules.domain.expressions import ExpressionError, compile_expression
from hypothesis import given
from hypothesis import strategies as st

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


# -- rounding, caps, windows, event types (pure) ----------------------------------------------



@pytest.mark.parametrize(("mode", "precision", "expected"), [
    ("FLOOR", 0, D(187)), ("CEILING", 0, D(188)), ("HALF_UP", 0, D(188)), ("HALF_EVEN", 0, D(188)),
    ("FLOOR", 1, D("187.5")), ("HALF_EVEN", 2, D("187.50"))])
def test_rounding_modes(mode: str, precision: int, expected: D) -> None:
    program = ProgramPolicy("p", "P", tiers=(Tier("gold", D(0), D("1.5")),), rounding_mode=mode,
                            rounding_precision=precision)
    r = rule("properties.amount * 1", apply_tier_multiplier=True)
    assert points([r], {"amount": 125}, program) == [expected]


def test_half_even_rounds_ties_to_even() -> None:
    program = ProgramPolicy("p", "P", rounding_mode="HALF_EVEN")
    assert points([rule("properties.amount")], {"amount": 2.5}, program) == [D(2)]
    assert points([rule("properties.amount")], {"amount": 3.5}, program) == [D(4)]


def test_tier_follows_lifetime_points() -> None:
    program = ProgramPolicy("p", "P", tiers=(Tier("silver", D(100), D(2)), Tier("gold", D(1000), D(3))))
    r = rule("10", apply_tier_multiplier=True)
    assert points([r], {}, program, lifetime=D(99)) == [D(10)]
    assert points([r], {}, program, lifetime=D(100)) == [D(20)]
    assert points([r], {}, program, lifetime=D(5000)) == [D(30)]
    plain = rule("10")
    assert points([plain], {}, program, lifetime=D(5000)) == [D(10)]


def test_context_exposes_participant_program_and_event_time() -> None:
    r = rule('participant.tier == "silver" and participant.attributes.vip ? 7 : 1')
    program = ProgramPolicy("p", "P", tiers=(Tier("silver", D(0), D(1)),))
    facts = EventFacts("e1", "purchase", TS, {}, participant={"id": "x", "attributes": {"vip": True}})
    [ev] = evaluate(program, [r], facts, D(0))
    assert ev.points == D(7)
    when = rule('now == "2026-05-20T12:00:00+00:00" and event_type == "purchase" ? 3 : 0')
    assert points([when], {}) == [D(3)]


def test_caps_limit_and_skip() -> None:
    capped = rule("properties.amount", caps=Caps(max_points_per_event=D(50), per_participant_daily=D(80),
                                                  total_budget=D(1000)))
    facts = EventFacts("e1", "purchase", TS, {"amount": 70})
    [ev] = evaluate(ProgramPolicy("p", "P"), [capped], facts, D(0), {"r1": CapUsage(day=D(40))})
    assert (ev.matched, ev.points, ev.message) == (True, D(40), "capped by per_participant_daily")
    [ev] = evaluate(ProgramPolicy("p", "P"), [capped], facts, D(0), {"r1": CapUsage(budget=D(1000))})
    assert (ev.matched, ev.skip_reason, ev.message) == (False, "cap_reached", "total_budget reached")
    [ev] = evaluate(ProgramPolicy("p", "P"), [capped], facts, D(0))
    assert (ev.points, ev.message) == (D(50), "capped by max_points_per_event")


def test_a_capped_out_rule_does_not_stop_later_rules() -> None:
    first = rule("10", rule_id="a", order=0, stop_after_match=True, caps=Caps(per_participant_lifetime=D(10)))
    second = rule("1", rule_id="b", order=1)
    facts = EventFacts("e1", "purchase", TS, {})
    result = evaluate(ProgramPolicy("p", "P"), [first, second], facts, D(0), {"a": CapUsage(lifetime=D(10))})
    assert [(e.rule_id, e.matched, e.skip_reason) for e in result] == [
        ("a", False, "cap_reached"), ("b", True, "")]


@given(amount=st.decimals(min_value=0, max_value=10**6, places=2),
       cap=st.decimals(min_value=D("0.01"), max_value=10**5, places=2),
       used=st.decimals(min_value=0, max_value=10**5, places=2))
def test_caps_never_award_past_the_cap(amount: D, cap: D, used: D) -> None:
    r = rule("1", caps=Caps(per_participant_weekly=cap))
    got, limited_by = apply_caps(r, amount, CapUsage(week=used))
    assert D(0) <= got <= amount
    assert used + got <= max(cap, used)
    assert (got < amount) == bool(limited_by)


def test_windows_are_utc_calendar_periods_of_the_event() -> None:
    at = dt.datetime(2026, 5, 20, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-2)))  # 21 May UTC
    starts = window_starts(at)
    assert starts["day"] == dt.datetime(2026, 5, 21, tzinfo=dt.UTC)
    assert starts["week"] == dt.datetime(2026, 5, 18, tzinfo=dt.UTC)  # Monday
    assert starts["month"] == dt.datetime(2026, 5, 1, tzinfo=dt.UTC)


def test_window_bounds_are_inclusive_from_exclusive_to() -> None:
    r = rule("1", active_from=TS, active_to=TS + dt.timedelta(hours=1))
    facts = lambda at: EventFacts("e", "purchase", at, {})  # noqa: E731
    program = ProgramPolicy("p", "P")
    assert evaluate(program, [r], facts(TS), D(0))[0].matched
    assert evaluate(program, [r], facts(TS + dt.timedelta(hours=1)), D(0))[0].skip_reason == "outside_time_window"
    assert evaluate(program, [r], facts(TS - dt.timedelta(seconds=1)), D(0))[0].skip_reason == "outside_time_window"


def test_suspended_type_filtered_and_negative_formulas() -> None:
    facts = EventFacts("e1", "purchase", TS, {"amount": 5})
    result = evaluate(ProgramPolicy("p", "P"), [
        rule("1", rule_id="a", status="SUSPENDED"), rule("1", rule_id="b", event_type="review"),
        rule("0 - properties.amount", rule_id="c")], facts, D(0))
    assert [(e.rule_id, e.skip_reason) for e in result] == [
        ("a", "suspended"), ("b", "event_type_mismatch"), ("c", "evaluation_error")]


def test_event_type_policy() -> None:
    registered = {"purchase": [{"name": "amount", "type": "NUMBER", "required": True},
                               {"name": "category", "type": "STRING", "required": False}]}
    assert check_event_type("OPEN", {}, "anything", {}) is None
    assert check_event_type("REGISTERED", registered, "review", {})[0] == "event_type_not_registered"  # type: ignore[index]
    assert check_event_type("REGISTERED", registered, "purchase", {"amount": 3}) is None
    assert check_event_type("REGISTERED", registered, "purchase", {"amount": True}) == (
        "event_data_invalid", "amount must be a number")
    assert check_event_type("REGISTERED", registered, "purchase", {"category": 1}) == (
        "event_data_invalid", "amount is required; category must be a string")
