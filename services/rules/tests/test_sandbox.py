"""Hostile rule expressions: the sandbox's budgets, the save-time limits, simulate and the worker
(on both databases), and another tenant's latency while a hostile rule runs."""

from __future__ import annotations

import datetime as dt
import decimal
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from accrual.messages.v1 import messages_pb2
from accrual.rules.v1 import rules_pb2
from accrual_platform.facts import data_of
from accrual_rules import storage
from accrual_rules.domain.evaluation import Breach, EventFacts, ProgramPolicy, RuleSpec, evaluate
from accrual_rules.sandbox import CRASHED, EXHAUSTED, TIMEOUT, Job, Sandbox
from grpc import StatusCode as Code

if TYPE_CHECKING:
    from conftest import Stack

COMPLETED = messages_pb2.OUTCOME_STATUS_COMPLETED
FAILED = messages_pb2.OUTCOME_STATUS_FAILED

QUADRATIC = "sum(map([1..10000], sum(map([1..10000], #))))"
DEEP = "[" * 20000 + "1" + "]" * 20000
#: passes every save-time check (a sample has n = 1), then loops for seconds on a large n
DATA_QUADRATIC = "sum(map([1..properties.n], sum(map([1..properties.n], #))))"


def spec(i: int, formula: str, condition: str = "", **kw: Any) -> RuleSpec:
    return RuleSpec(f"r{i}", 1, f"rule {i}", "", condition, formula, False, i, False, None, None, **kw)


def facts(n: int, **props: Any) -> EventFacts:
    return EventFacts(f"e{n}", "purchase", dt.datetime(2026, 1, 1, tzinfo=dt.UTC), {"n": n, **props})


PROGRAM = ProgramPolicy("p", "P")


@pytest.fixture(scope="module")
def sandbox() -> Any:
    box = Sandbox(deadline_ms=50, memory_mb=128, processes=2, suspend_after=100)
    yield box
    box.close()


# -- the sandbox itself ----------------------------------------------------------------------

def test_answers_equal_the_in_process_evaluation(sandbox: Sandbox) -> None:
    rules = [spec(0, "properties.n * 2"), spec(1, "properties.n + 1", "properties.n > 2"),
             spec(2, "properties.missing.x"), spec(3, "'text'"), spec(4, "1.5", status="SUSPENDED")]
    jobs = [Job(PROGRAM, rules, facts(n), decimal.Decimal(0)) for n in range(5)]
    asked = sandbox.answers(jobs)
    assert asked.breaches == {}
    for job, answers in zip(jobs, asked.answers, strict=True):
        assert answers is not None
        assert evaluate(PROGRAM, rules, job.facts, decimal.Decimal(0), answers=answers) == \
            evaluate(PROGRAM, rules, job.facts, decimal.Decimal(0))


def test_a_runaway_rule_is_stopped_and_the_others_still_run(sandbox: Sandbox) -> None:
    rules = [spec(0, "properties.n * 2"), spec(1, QUADRATIC, "properties.n == 1"), spec(2, "properties.n + 1")]
    started = time.monotonic()
    asked = sandbox.answers([Job(PROGRAM, rules, facts(n), decimal.Decimal(0)) for n in range(3)])
    assert time.monotonic() - started < 5  # the quadratic alone runs for seconds
    assert asked.answers[0] == [decimal.Decimal(0), False, decimal.Decimal(1)]
    assert asked.answers[2] == [decimal.Decimal(4), False, decimal.Decimal(3)]
    answers = asked.answers[1]
    assert answers is not None and answers[0] == decimal.Decimal(2) and answers[2] == decimal.Decimal(2)
    assert type(answers[1]) is Breach and answers[1].reason == TIMEOUT
    assert asked.breaches == {"r1": [TIMEOUT]}
    verdicts = evaluate(PROGRAM, rules, facts(1), decimal.Decimal(0), answers=answers)
    assert [(v.matched, v.skip_reason) for v in verdicts] == [(True, ""), (False, TIMEOUT), (True, "")]


def test_a_huge_allocation_is_stopped_as_resource_exhausted() -> None:
    # A long deadline, so the memory limit is what stops it.
    box = Sandbox(deadline_ms=5000, memory_mb=64, processes=1)
    try:
        rules = [spec(0, "len(map([1..10000], map([1..10000], #)))"), spec(1, "7")]
        asked = box.answers([Job(PROGRAM, rules, facts(1), decimal.Decimal(0))])
        answers = asked.answers[0]
        assert answers is not None and answers[1] == decimal.Decimal(7)
        assert type(answers[0]) is Breach and answers[0].reason == EXHAUSTED
        assert box.deaths[EXHAUSTED] == 1
    finally:
        box.close()


def test_an_event_that_crashes_the_evaluator_twice_is_given_up() -> None:
    # A deadline long enough that the engine reaches its crash (compiling DEEP takes tens of ms).
    box = Sandbox(deadline_ms=5000, processes=1)
    try:
        rules = [spec(0, "1"), spec(1, DEEP, "properties.n == 1")]
        asked = box.answers([Job(PROGRAM, rules, facts(n), decimal.Decimal(0)) for n in range(3)])
        assert asked.answers[1] is None
        assert asked.answers[0] == [decimal.Decimal(1), False] == asked.answers[2]
        assert box.deaths[CRASHED] == 2
        assert asked.breaches == {"r1": [CRASHED]}
    finally:
        box.close()


def test_a_rule_over_budget_again_and_again_is_not_run_for_the_rest_of_the_batch() -> None:
    box = Sandbox(deadline_ms=50, processes=1, suspend_after=3)
    try:
        rules = [spec(0, DATA_QUADRATIC, budget_breaches=1), spec(1, "1")]
        asked = box.answers([Job(PROGRAM, rules, facts(5000), decimal.Decimal(0)) for _ in range(6)])
        assert asked.breaches == {"r0": [TIMEOUT, TIMEOUT]}  # 1 stored + 2 = 3: suspended
        assert box.deaths[TIMEOUT] == 2
        for answers in asked.answers:
            assert answers is not None and answers[1] == decimal.Decimal(1)
            assert type(answers[0]) is Breach and answers[0].reason == TIMEOUT
    finally:
        box.close()


# -- save and simulate -------------------------------------------------------------------------

def _create(stack: Stack, md: list[tuple[str, str]], pid: str, **kw: Any) -> Any:
    kw.setdefault("name", "r")
    kw.setdefault("formula", "1")
    return stack.failure(lambda: stack.stub.CreateRule(rules_pb2.CreateRuleRequest(program_id=pid, **kw),
                                                       metadata=md))


def _program(stack: Stack, md: list[tuple[str, str]]) -> str:
    return str(stack.stub.CreateProgram(rules_pb2.CreateProgramRequest(name="Hostile"), metadata=md).program_id)


@pytest.mark.parametrize(("field", "source", "limit"), [
    ("formula", DEEP, "is 40001 bytes long"),
    ("formula", "[" * 40 + "1" + "]" * 40, "nests 40 levels deep"),
    ("condition", "len([1..20000]) > 1", "spans 20000 values"),
    ("formula", "1 + " * 1100 + "1", "an expression may be at most 4096 bytes"),
    ("formula", "properties.amount > 0 ? 1 : " + "[" * 200 + "1" + "]" * 200, "nests 200 levels deep"),
])
def test_static_limits_are_refused_on_save_naming_the_limit(stack: Stack, field: str, source: str,
                                                            limit: str) -> None:
    _, md = stack.tenant()
    pid = _program(stack, md)
    failure = _create(stack, md, pid, **{field: source})
    assert (failure.code, failure.reason, failure.fields) == (Code.INVALID_ARGUMENT, "expression_limit", [field])
    assert limit in failure.message


def test_costly_expressions_are_refused_on_save_also_in_a_branch_no_sample_takes(stack: Stack) -> None:
    _, md = stack.tenant()
    pid = _program(stack, md)
    started = time.monotonic()
    direct = _create(stack, md, pid, formula=QUADRATIC)
    assert (direct.code, direct.reason, direct.fields) == (Code.INVALID_ARGUMENT, TIMEOUT, ["formula"])
    assert "CPU deadline" in direct.message
    hidden = _create(stack, md, pid, formula=f"properties.amount > 0 ? properties.amount : {QUADRATIC}")
    assert (hidden.code, hidden.reason, hidden.fields) == (Code.INVALID_ARGUMENT, TIMEOUT, ["formula"])
    in_condition = _create(stack, md, pid, condition=f"properties.amount > 0 || {QUADRATIC} > 0")
    assert (in_condition.code, in_condition.fields) == (Code.INVALID_ARGUMENT, ["condition"])
    assert time.monotonic() - started < 10
    fine = stack.stub.CreateRule(rules_pb2.CreateRuleRequest(
        program_id=pid, name="ok", formula="properties.amount > 100 ? 50 : 0"), metadata=md)
    assert fine.rule_id


def test_simulate_with_hostile_drafts_answers_400_and_the_suite_lives_on(stack: Stack) -> None:
    _, md = stack.tenant()
    pid = _program(stack, md)
    for formula, reason in ((DEEP, "expression_limit"), (QUADRATIC, TIMEOUT)):
        request = rules_pb2.SimulateRulesRequest(program_id=pid, event_type="purchase")
        request.draft_rules.add(name="x", formula=formula)
        failure = stack.failure(lambda r=request: stack.stub.SimulateRules(r, metadata=md))
        assert (failure.code, failure.reason) == (Code.INVALID_ARGUMENT, reason)
    # A rule that is costly only on some data passes the save-time check; the simulation of
    # such an event reports the timeout for that rule and still runs the others.
    request = rules_pb2.SimulateRulesRequest(program_id=pid, event_type="purchase")
    request.event_data.update({"n": 5000})
    request.draft_rules.add(name="costly", formula=DATA_QUADRATIC, order=1)
    request.draft_rules.add(name="fine", formula="2", order=2)
    result = stack.stub.SimulateRules(request, metadata=md)
    assert [(e.rule_name, e.matched, e.skip_reason) for e in result.rule_evaluations] == [
        ("costly", False, TIMEOUT), ("fine", True, "")]
    assert result.points_awarded == "2"


# -- the worker ----------------------------------------------------------------------------

def _rule_row(stack: Stack, rule_id: str) -> Any:
    r = storage.rules
    with stack.runtime.db.transaction() as session:
        return session.execute(sa.select(r).where(r.c.id == rule_id)).one()


def test_worker_skips_a_rule_over_budget_and_suspends_it_when_repeated(stack: Stack) -> None:
    tenant, md = stack.tenant()
    pid = _program(stack, md)
    costly = stack.stub.CreateRule(rules_pb2.CreateRuleRequest(
        program_id=pid, name="costly", formula=DATA_QUADRATIC, order=1), metadata=md)
    fine = stack.stub.CreateRule(rules_pb2.CreateRuleRequest(
        program_id=pid, name="fine", formula="properties.n", order=2), metadata=md)
    stack.drain_notifications()
    [first] = stack.process(tenant, stack.event(pid, data={"n": 5000}))
    assert first.status == COMPLETED and first.points_awarded == "5000"
    got = {e.rule_id: (e.matched, e.skip_reason) for e in first.rule_evaluations}
    assert got == {costly.rule_id: (False, TIMEOUT), fine.rule_id: (True, "")}
    assert _rule_row(stack, costly.rule_id).budget_breaches == 1
    cheap = stack.event(pid, data={"n": 3})
    [small] = stack.process(tenant, cheap)
    assert small.points_awarded == "21"  # 1+2+3 squared-sum: 6 * 3 = 18, plus 3
    outcomes = stack.process(tenant, *[stack.event(pid, data={"n": 5000}) for _ in range(3)])
    assert [o.status for o in outcomes] == [COMPLETED] * 3
    assert all(o.points_awarded == "5000" for o in outcomes)
    row = _rule_row(stack, costly.rule_id)
    assert (row.status, row.version, row.budget_breaches) == ("SUSPENDED", 2, 3)
    assert stack.runtime.relay.relay_once() >= 1
    [note] = [n for n in stack.drain_notifications() if n.type == "rule.suspended"]
    assert data_of(note) | {"message": ""} == {
        "rule_id": costly.rule_id, "program_id": pid, "rule_version": 2, "rule_name": "costly",
        "reason": TIMEOUT, "breaches": 3, "message": ""}
    [after] = stack.process(tenant, stack.event(pid, data={"n": 5000}))
    assert {e.rule_id: e.skip_reason for e in after.rule_evaluations}[costly.rule_id] == "suspended"
    # Saving the rule again (an operator fixed it) starts its count again.
    stack.stub.UpdateRule(rules_pb2.UpdateRuleRequest(
        program_id=pid, rule_id=costly.rule_id, formula="1", status=rules_pb2.RULE_STATUS_ACTIVE),
        metadata=md)
    assert (_rule_row(stack, costly.rule_id).status, _rule_row(stack, costly.rule_id).budget_breaches) == ("ACTIVE", 0)


def test_worker_fails_an_event_that_crashes_the_evaluator_and_lives_on(stack: Stack) -> None:
    # A deadline long enough that the engine reaches its crash (compiling DEEP takes tens of ms).
    patient = Sandbox(deadline_ms=5000, processes=1)
    usual, stack.processor.sandbox = stack.processor.sandbox, patient
    try:
        _crash_twice(stack)
    finally:
        stack.processor.sandbox = usual
        patient.close()


def _crash_twice(stack: Stack) -> None:
    tenant, md = stack.tenant()
    pid = _program(stack, md)
    bomb = stack.stub.CreateRule(rules_pb2.CreateRuleRequest(
        program_id=pid, name="bomb", formula="1", condition="properties.boom == true"), metadata=md)
    stack.stub.CreateRule(rules_pb2.CreateRuleRequest(program_id=pid, name="fine", formula="2"), metadata=md)
    # A rule saved before the limits existed: written straight to the table.
    r = storage.rules
    with stack.runtime.db.transaction() as session:
        session.execute(sa.update(r).where(r.c.id == bomb.rule_id).values(formula=DEEP))
    boom, calm = stack.event(pid, data={"boom": True}), stack.event(pid, data={"boom": False})
    outcomes = {o.event_id: o for o in stack.process(tenant, boom, calm)}
    assert (outcomes[boom].status, outcomes[boom].error_code) == (FAILED, CRASHED)
    assert (outcomes[calm].status, outcomes[calm].points_awarded) == (COMPLETED, "2")
    assert _rule_row(stack, bomb.rule_id).budget_breaches == 1
    # Delivered again (the stale sweep does that), it fails again: no crash loop, no award.
    [again] = stack.process(tenant, boom)
    assert (again.status, again.error_code) == (FAILED, CRASHED)


def test_another_tenants_requests_are_not_held_up_by_a_hostile_rule(stack: Stack) -> None:
    hostile, hostile_md = stack.tenant()
    _, md = stack.tenant()
    pid = _program(stack, hostile_md)
    mine = _program(stack, md)
    stack.stub.CreateRule(rules_pb2.CreateRuleRequest(program_id=pid, name="costly", formula=DATA_QUADRATIC),
                          metadata=hostile_md)
    done = threading.Event()

    def attack() -> None:
        try:
            for _ in range(3):
                stack.failure(lambda: stack.stub.CreateRule(rules_pb2.CreateRuleRequest(
                    program_id=pid, name="q", formula=QUADRATIC), metadata=hostile_md))
                request = rules_pb2.SimulateRulesRequest(program_id=pid, event_type="purchase")
                request.event_data.update({"n": 12000})
                stack.stub.SimulateRules(request, metadata=hostile_md)
                stack.process(hostile, *[stack.event(pid, data={"n": 12000}) for _ in range(2)])
        finally:
            done.set()

    thread = threading.Thread(target=attack)
    started = time.monotonic()
    thread.start()
    latencies = []
    while not done.is_set():
        t = time.monotonic()
        stack.stub.GetProgram(rules_pb2.GetProgramRequest(program_id=mine), metadata=md)
        latencies.append(time.monotonic() - t)
        time.sleep(0.01)
    thread.join()
    assert time.monotonic() - started > 0.3 and len(latencies) > 10
    # In process, each of these evaluations held the GIL for seconds (12,000² steps).
    assert max(latencies) < 1.0, sorted(latencies)[-5:]
