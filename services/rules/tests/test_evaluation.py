import datetime as dt
import decimal
import math
from typing import Any

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
    compiled_rule,
    evaluate,
    json_context,
    window_starts,
)
from accrual_rules.domain.expressions import OUT_OF_RANGE, ExpressionError, Position, compile_expression
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
    assert info.value.position == Position(start=19, end=19, line=1, column=20)
    assert "(" not in info.value.message  # the engine's byte span is taken out of the message


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


# What event properties hold after the protobuf Struct: numbers are doubles.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.text(max_size=8) | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(2**53), 2**53),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8)


def _outcome(expression: Any, context: dict[str, Any] | bytes) -> object:
    try:
        return expression.evaluate(context, narrowed=True)
    except ExpressionError as exc:  # the dict's message adds the engine's words
        return OUT_OF_RANGE if exc.message.startswith(OUT_OF_RANGE) else exc.message


def _same(a: object, b: object) -> bool:
    """Equal, numbers to the engine's precision (28 digits, then a double back: the last
    digits of a tiny or huge number differ by the path it came in)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-13, abs_tol=1e-300)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


@given(amount=st.floats(min_value=-1e12, max_value=1e12, allow_nan=False), extra=JSON_VALUES)
def test_the_json_context_gives_the_engine_what_the_dict_gives(amount: float, extra: object) -> None:
    """evaluate() hands expressions JSON text instead of dicts (faster). Values, comparisons and
    errors are the same either way; arithmetic is at least as exact (the engine reads the
    number as written instead of converting the double)."""
    context = {"properties": {"amount": amount, "extra": extra}}
    as_json = json_context(context)
    assert isinstance(as_json, bytes)
    for source in ("properties.amount > 100", "properties.extra", "properties.extra * 2",
                   'properties.amount == 0 ? "zero" : "other"', "properties.missing.field"):
        expression = compile_expression(source)
        assert _same(_outcome(expression, as_json), _outcome(expression, context)), source
    arithmetic = compile_expression("properties.amount * 3 + 0.1")
    from_json, from_dict = _outcome(arithmetic, as_json), _outcome(arithmetic, context)
    if isinstance(from_dict, float):
        exact = D(repr(amount)) * 3 + D("0.1")
        assert isinstance(from_json, float)
        # within a few ulps of the exact result (the engine's decimal is turned into a double)
        # or closer to it than the dict's
        error = abs(D(repr(from_json)) - exact)
        assert error <= D(4 * math.ulp(float(exact))) or error <= abs(D(repr(from_dict)) - exact)
    else:
        assert from_json == from_dict


def test_a_number_beyond_the_engines_range_fails_the_rules_that_read_it_not_the_event() -> None:
    """1e29 is valid JSON, so such an event is accepted; the engine cannot read it. Before, the
    engine's plain Exception escaped evaluate() and failed the worker's whole batch, again on
    every redelivery."""
    reads = rule("properties.amount", rule_id="a", order=0)
    flat = rule("5", rule_id="b", order=1)
    facts = EventFacts("e1", "purchase", TS, {"amount": 1e29})
    first, second = evaluate(ProgramPolicy("p", "P"), [reads, flat], facts, D(0))
    assert (first.matched, first.skip_reason, first.message) == (False, "evaluation_error", OUT_OF_RANGE)
    assert (second.matched, second.points) == (True, D(5))
    with pytest.raises(ExpressionError, match="beyond what expressions compute with"):
        compile_expression("properties.amount").evaluate({"properties": {"amount": 1e29}})


@pytest.mark.parametrize("text", ["NaN", "-Infinity", "sNaN", "inf"])
def test_a_formula_giving_a_non_finite_number_as_text_fails_that_rule(text: str) -> None:
    """Decimal parses these, then raises on the comparison and the rounding after: before, the
    worker's whole batch failed, as for a number out of range."""
    [verdict] = evaluate(ProgramPolicy("p", "P"), [rule("properties.code")],
                         EventFacts("e1", "purchase", TS, {"code": text}), D(0))
    assert (verdict.matched, verdict.skip_reason) == (False, "evaluation_error")
    assert "non-finite" in verdict.message
    assert points([rule("properties.code")], {"code": "12.5"}) == [D(12)]


@pytest.mark.parametrize("amount", [1e18, 5e27, 5e28])
def test_an_award_past_what_the_ledger_holds_fails_that_rule(amount: float) -> None:
    """Before: 5e28 raised InvalidOperation in the rounding, 1e20 overflowed the ledger's
    NUMERIC(30, 10) in the insert; either failed the worker's whole batch."""
    program = ProgramPolicy("p", "P", tiers=(Tier("gold", D(0), D("1.5")),))
    big = rule("properties.amount", rule_id="a", order=0, apply_tier_multiplier=True)
    small = rule("properties.amount / 1e12", rule_id="b", order=1)
    first, second = evaluate(program, [big, small], EventFacts("e1", "purchase", TS, {"amount": amount}), D(0))
    assert (first.matched, first.skip_reason) == (False, "evaluation_error")
    assert "one award may be at most 1e18" in first.message
    assert second.matched and second.points == (D(repr(amount)) / D("1e12")).quantize(D(1), decimal.ROUND_FLOOR)
    assert points([rule("properties.amount")], {"amount": 999_999_999_999_999_000}) == [D("999999999999999000")]


def test_a_context_json_cannot_hold_is_handed_over_as_it_is() -> None:
    context = {"properties": {"amount": 2**70}}
    assert json_context(context) is context


def test_evaluations_are_the_same_for_a_hundred_rules_in_any_order() -> None:
    rules = [rule(f"properties.amount * {i % 3}", 'properties.category == "a"' if i % 2 else "",
                  rule_id=f"r{i:03d}", order=100 - i, caps=Caps(max_points_per_event=D(20)) if i % 5 == 0 else Caps())
             for i in range(100)]
    facts = EventFacts("e1", "purchase", TS, {"amount": 12.5, "category": "a"})
    got = evaluate(ProgramPolicy("p", "P"), rules, facts, D(0))
    assert [e.rule_id for e in got] == [f"r{i:03d}" for i in range(99, -1, -1)]
    assert all(e.matched for e in got)
    assert {e.points for e in got} == {D(0), D(12), D(20), D(25)}
    by_id = {e.rule_id: e for e in got}
    assert (by_id["r005"].points, by_id["r005"].message) == (D(20), "capped by max_points_per_event")
    assert (by_id["r010"].points, by_id["r010"].message) == (D(12), "")
    assert (by_id["r011"].points, by_id["r011"].message) == (D(25), "")


CONDITIONS = ['properties.amount > 100', 'properties.category == "electronics"', "properties.amount",
              "properties.missing > 1", 'properties.category', "true", "properties.amount > 1 and properties.vip",
              "properties.tags", ""]
FORMULAS = ["properties.amount * 2", "properties.missing * 2", "properties.amount - 1000", "properties.category",
            '"12.5"', "properties.vip", "properties.amount > 100 ? 50 : 0",
            "10000000000000000000000000000 * properties.amount"]


@given(condition=st.sampled_from(CONDITIONS), formula=st.sampled_from(FORMULAS),
       amount=st.one_of(st.floats(-1e6, 1e6), st.integers(-1000, 1000), st.none(), st.text(max_size=3)),
       category=st.sampled_from(["electronics", "food", None]), vip=st.one_of(st.booleans(), st.none()))
def test_condition_and_formula_asked_at_once_give_the_verdicts_of_each_on_its_own(
        condition: str, formula: str, amount: object, category: object, vip: object) -> None:
    properties = {k: v for k, v in {"amount": amount, "category": category, "vip": vip, "tags": ["a"]}.items()
                  if v is not None}
    r = rule(formula, condition)
    facts = EventFacts("e1", "purchase", TS, properties)
    combined = evaluate(ProgramPolicy("p", "P"), [r], facts, D(0))
    condition_c, formula_c, both = compiled_rule(r.rule_id, r.version, r.condition, r.formula)
    assert (both is not None) == bool(condition)
    with pytest.MonkeyPatch.context() as patch:  # the same rule, each expression asked on its own
        patch.setattr("accrual_rules.domain.evaluation.compiled_rule",
                      lambda *args: (condition_c, formula_c, None))
        separate = evaluate(ProgramPolicy("p", "P"), [r], facts, D(0))
    assert combined == separate
