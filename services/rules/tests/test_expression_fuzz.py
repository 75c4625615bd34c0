"""A fuzzer over the grammar of rule expressions: whatever a tenant writes is either refused on
save with a 400, or evaluates to a bounded answer (a number, false, an error message or a
budget breach). Nothing kills this process, and the sandbox keeps answering."""

from __future__ import annotations

import datetime as dt
import decimal
import os
from collections.abc import Iterator

import pytest
from accrual_platform import errors
from accrual_rules.domain.evaluation import Breach, EventFacts, ProgramPolicy, RuleSpec
from accrual_rules.sandbox import Job, Sandbox
from accrual_rules.service import check_expressions
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("EXPRESSION_FUZZ_EXAMPLES", "150"))

NUMBER = st.one_of(st.integers(-10**30, 10**30).map(str), st.sampled_from(["0", "1.5", "-0.0", "1e308", "9e999"]))
STRING = st.text(alphabet="ab\"'\\`[]()?:{}$ ", max_size=8).map(
    lambda s: '"' + s.replace("\\", "").replace('"', "") + '"')
NAME = st.sampled_from(["properties.amount", "properties.n", "properties.missing", "properties",
                        "participant.tier", "participant.lifetime_points", "event.type", "now", "#", "$"])
ATOM = st.one_of(NUMBER, STRING, NAME, st.sampled_from(["true", "false", "null", "[]", "{}"]))
BOUND = st.one_of(st.integers(0, 10_000), st.integers(-10**9, 10**9))
RANGE = st.one_of(st.tuples(BOUND, BOUND).map(lambda r: f"[{r[0]}..{r[1]}]"),
                  st.sampled_from(["[1..10000]", "[1..properties.n]", "[0..properties.amount]"]))


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.tuples(children, st.sampled_from(["+", "-", "*", "/", "%", "^", "==", "!=", "<", ">=", "and",
                                                  "or", "??", "in"]), children)
    func = st.tuples(st.sampled_from(["sum", "len", "max", "min", "abs", "floor", "string", "number", "upper",
                                      "keys", "flatten", "avg", "round"]), children)
    closure = st.tuples(st.sampled_from(["map", "filter", "some", "all", "count"]), st.one_of(RANGE, children),
                        children)
    return st.one_of(
        binary.map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        st.tuples(children, children, children).map(lambda t: f"{t[0]} ? {t[1]} : {t[2]}"),
        func.map(lambda t: f"{t[0]}({t[1]})"),
        closure.map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
        st.lists(children, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
        children.map(lambda c: f"({c})"),
        st.tuples(children, st.integers(1, 60)).map(lambda t: "[" * t[1] + t[0] + "]" * t[1]),
        st.tuples(children, children).map(lambda t: f"{t[0]}[{t[1]}]"),
        RANGE,
    )


EXPRESSION = st.recursive(ATOM, _combine, max_leaves=12)

PROGRAM = ProgramPolicy("p", "P")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(deadline_ms=50, memory_mb=128, processes=1)
    yield box
    box.close()


def _event(n: int) -> EventFacts:
    return EventFacts(f"e{n}", "purchase", dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                      {"amount": n * 10.5, "n": n, "category": "x"})


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(formula=EXPRESSION, condition=st.one_of(st.just(""), EXPRESSION))
def test_any_expression_is_refused_on_save_or_evaluates_to_a_bounded_answer(
        sandbox: Sandbox, formula: str, condition: str) -> None:
    try:
        check_expressions({"condition": condition, "formula": formula, "event_type": "purchase"}, None, sandbox)
    except errors.InvalidArgument as exc:
        assert exc.violations and {v.field for v in exc.violations} <= {"condition", "formula"}
        event(f"refused on save: {exc.reason}")
        return
    rule = RuleSpec("fuzz", 1, "fuzz", "", condition, formula, False, 0, False, None, None)
    asked = sandbox.answers([Job(PROGRAM, [rule], _event(n), decimal.Decimal(n)) for n in (0, 1, 7)])
    for answers in asked.answers:
        if answers is None:  # crashed twice: the event fails, the process lives
            continue
        [answer] = answers
        event(f"answer: {type(answer).__name__}")
        assert answer is False or type(answer) in (decimal.Decimal, str, Breach), answer
    # The sandbox still answers after whatever happened.
    probe = RuleSpec("probe", 1, "probe", "", "", "properties.n + 1", False, 0, False, None, None)
    assert sandbox.answers([Job(PROGRAM, [probe], _event(2), decimal.Decimal(0))]).answers == [[decimal.Decimal(3)]]
