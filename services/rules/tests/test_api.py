"""RulesService through a real gRPC server on SQLite and PostgreSQL: programs and their
validation, event types, rule versions and archive, simulation and direct adjustments."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Any

import dramatiq
import grpc
from accrual.messages.v1 import messages_pb2
from accrual.rules.v1 import rules_pb2
from accrual_platform import queue

if TYPE_CHECKING:
    from conftest import Stack

Code = grpc.StatusCode


def tier(name: str, minimum: str, multiplier: str = "1") -> rules_pb2.Tier:
    return rules_pb2.Tier(name=name, min_lifetime_points=minimum, multiplier=multiplier)


def new_program(stack: Stack, md: list[tuple[str, str]], **kw: Any) -> rules_pb2.Program:
    return stack.stub.CreateProgram(rules_pb2.CreateProgramRequest(name="Demo", **kw), metadata=md)


# -- programs ---------------------------------------------------------------------------------

def test_program_defaults_and_patch(stack: Stack) -> None:
    _, md = stack.tenant()
    program = new_program(stack, md, tiers=[tier("silver", "500", "1.5")])
    assert program.rounding_mode == rules_pb2.ROUNDING_MODE_FLOOR and program.rounding_precision == 0
    assert program.event_type_policy == rules_pb2.EVENT_TYPE_POLICY_OPEN
    patched = stack.stub.UpdateProgram(rules_pb2.UpdateProgramRequest(
        program_id=program.program_id, name="Renamed", rounding_mode=rules_pb2.ROUNDING_MODE_HALF_UP,
        rounding_precision=2, event_type_policy=rules_pb2.EVENT_TYPE_POLICY_REGISTERED), metadata=md)
    assert (patched.name, patched.rounding_precision) == ("Renamed", 2)
    assert patched.event_type_policy == rules_pb2.EVENT_TYPE_POLICY_REGISTERED
    assert [t.name for t in patched.tiers] == ["silver"]  # absent fields keep their value
    tiers = stack.stub.UpdateProgram(rules_pb2.UpdateProgramRequest(
        program_id=program.program_id, tiers=[tier("bronze", "0"), tier("gold", "1000", "2")]), metadata=md)
    assert [(t.name, t.multiplier) for t in tiers.tiers] == [("bronze", "1"), ("gold", "2")]
    assert tiers.name == "Renamed"
    cleared = stack.stub.UpdateProgram(rules_pb2.UpdateProgramRequest(
        program_id=program.program_id, clear_tiers=True), metadata=md)
    assert list(cleared.tiers) == []


def test_bad_tiers_name_the_field(stack: Stack) -> None:
    _, md = stack.tenant()
    overlap = stack.failure(lambda: new_program(stack, md, tiers=[tier("a", "0"), tier("b", "0")]))
    assert overlap.code == Code.INVALID_ARGUMENT and overlap.fields == ["tiers[1].min_lifetime_points"]
    bad = stack.failure(lambda: new_program(stack, md, tiers=[
        tier("a", "0", "-1"), tier("a", "10"), tier("c", "x")]))
    assert bad.fields == ["tiers[0].multiplier", "tiers[1].name", "tiers[2].min_lifetime_points"]
    zero = stack.failure(lambda: new_program(stack, md, tiers=[tier("a", "0", "0")]))
    assert zero.fields == ["tiers[0].multiplier"]
    program = new_program(stack, md)
    patch = stack.failure(lambda: stack.stub.UpdateProgram(rules_pb2.UpdateProgramRequest(
        program_id=program.program_id, rounding_precision=9, name=" "), metadata=md))
    assert sorted(patch.fields) == ["name", "rounding_precision"]
    unknown = stack.failure(lambda: stack.stub.CreateProgram(rules_pb2.CreateProgramRequest(
        name="x", rounding_mode=42), metadata=md))  # type: ignore[arg-type]
    assert unknown.fields == ["rounding_mode"]


def test_event_types(stack: Stack) -> None:
    _, md = stack.tenant()
    pid = new_program(stack, md).program_id
    created = stack.stub.CreateEventType(rules_pb2.CreateEventTypeRequest(
        program_id=pid, name="purchase", description="order completed", properties=[
            rules_pb2.EventTypeProperty(name="amount", type=rules_pb2.PROPERTY_TYPE_NUMBER, required=True),
            rules_pb2.EventTypeProperty(name="category", type=rules_pb2.PROPERTY_TYPE_STRING)]), metadata=md)
    assert [p.name for p in created.properties] == ["amount", "category"]
    listed = stack.stub.ListEventTypes(rules_pb2.ListEventTypesRequest(program_id=pid), metadata=md)
    assert [t.name for t in listed.event_types] == ["purchase"]
    again = stack.failure(lambda: stack.stub.CreateEventType(rules_pb2.CreateEventTypeRequest(
        program_id=pid, name="purchase"), metadata=md))
    assert (again.code, again.reason) == (Code.ALREADY_EXISTS, "event_type_exists")
    bad = stack.failure(lambda: stack.stub.CreateEventType(rules_pb2.CreateEventTypeRequest(
        program_id=pid, name="signup", properties=[rules_pb2.EventTypeProperty(name="a")]), metadata=md))
    assert bad.fields == ["properties[0].type"]


# -- rules ------------------------------------------------------------------------------------

def test_rule_versions_and_archive(stack: Stack) -> None:
    _, md = stack.tenant()
    pid = new_program(stack, md).program_id
    created = stack.stub.CreateRule(rules_pb2.CreateRuleRequest(
        program_id=pid, name="per dollar", formula="properties.amount * 1", event_type="purchase"), metadata=md)
    assert created.version == 1 and created.status == rules_pb2.RULE_STATUS_ACTIVE
    updated = stack.stub.UpdateRule(rules_pb2.UpdateRuleRequest(
        program_id=pid, rule_id=created.rule_id, formula="properties.amount * 2",
        caps=rules_pb2.RuleCaps(per_participant_daily="100")), metadata=md)
    assert (updated.version, updated.formula, updated.name) == (2, "properties.amount * 2", "per dollar")
    assert updated.caps.per_participant_daily == "100"
    archived = stack.stub.DeleteRule(rules_pb2.DeleteRuleRequest(program_id=pid, rule_id=created.rule_id),
                                     metadata=md)
    assert (archived.version, archived.status) == (3, rules_pb2.RULE_STATUS_ARCHIVED)
    again = stack.stub.DeleteRule(rules_pb2.DeleteRuleRequest(program_id=pid, rule_id=created.rule_id),
                                  metadata=md)
    assert again.version == 3
    listed = stack.stub.ListRules(rules_pb2.ListRulesRequest(program_id=pid), metadata=md)
    assert list(listed.rules) == []
    versions = stack.stub.ListRuleVersions(rules_pb2.ListRuleVersionsRequest(
        program_id=pid, rule_id=created.rule_id), metadata=md).versions
    assert [(v.version, v.formula, v.status) for v in versions] == [
        (1, "properties.amount * 1", rules_pb2.RULE_STATUS_ACTIVE),
        (2, "properties.amount * 2", rules_pb2.RULE_STATUS_ACTIVE),
        (3, "properties.amount * 2", rules_pb2.RULE_STATUS_ARCHIVED)]
    first = stack.stub.GetRuleVersion(rules_pb2.GetRuleVersionRequest(
        program_id=pid, rule_id=created.rule_id, version=1), metadata=md)
    assert first.formula == "properties.amount * 1" and not first.HasField("active_from")
    missing = stack.failure(lambda: stack.stub.GetRuleVersion(rules_pb2.GetRuleVersionRequest(
        program_id=pid, rule_id=created.rule_id, version=9), metadata=md))
    assert missing.code == Code.NOT_FOUND
    frozen = stack.failure(lambda: stack.stub.UpdateRule(rules_pb2.UpdateRuleRequest(
        program_id=pid, rule_id=created.rule_id, name="again"), metadata=md))
    assert frozen.reason == "rule_archived"


def test_bad_rules_are_refused_with_the_field(stack: Stack) -> None:
    _, md = stack.tenant()
    pid = new_program(stack, md).program_id

    def create(**kw: Any) -> Any:
        kw.setdefault("name", "r")
        kw.setdefault("formula", "1")
        return stack.failure(lambda: stack.stub.CreateRule(rules_pb2.CreateRuleRequest(program_id=pid, **kw),
                                                           metadata=md))

    syntax = create(formula="properties.amount * ")
    assert (syntax.code, syntax.reason, syntax.fields) == (Code.INVALID_ARGUMENT, "invalid_expression", ["formula"])
    assert "(line 1, column 20)" in syntax.message
    text = create(formula='"ten"')
    assert text.fields == ["formula"] and "must give a number" in text.message
    compare = create(formula="properties.amount > 100")
    assert compare.fields == ["formula"]
    condition = create(condition="properties.amount * 2")
    assert condition.fields == ["condition"] and "true or false" in condition.message
    caps = create(caps=rules_pb2.RuleCaps(total_budget="-5", per_participant_weekly="lots"))
    assert caps.fields == ["caps.per_participant_weekly", "caps.total_budget"]
    window = rules_pb2.CreateRuleRequest(program_id=pid, name="w", formula="1")
    window.active_from.FromDatetime(dt.datetime(2026, 2, 1, tzinfo=dt.UTC))
    window.active_to.FromDatetime(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    bad_window = stack.failure(lambda: stack.stub.CreateRule(window, metadata=md))
    assert bad_window.fields == ["active_to"]
    archived = create(status=rules_pb2.RULE_STATUS_ARCHIVED)
    assert archived.fields == ["status"]
    assert list(stack.stub.ListRules(rules_pb2.ListRulesRequest(program_id=pid), metadata=md).rules) == []


# -- simulation -------------------------------------------------------------------------------

def test_simulate_uses_current_or_draft_rules_and_writes_nothing(stack: Stack) -> None:
    tenant, md = stack.tenant()
    pid = new_program(stack, md, tiers=[tier("silver", "100", "1.5")]).program_id
    stack.stub.CreateRule(rules_pb2.CreateRuleRequest(
        program_id=pid, name="per dollar", formula="properties.amount * 1", apply_tier_multiplier=True),
        metadata=md)
    request = rules_pb2.SimulateRulesRequest(program_id=pid, event_type="purchase")
    request.event_data.update({"amount": 125})
    result = stack.stub.SimulateRules(request, metadata=md)
    assert (result.points_awarded, result.tier) == ("125", "")
    participant = str(uuid.uuid4())
    stack.stub.CreateAdjustment(rules_pb2.CreateAdjustmentRequest(
        program_id=pid, participant_id=participant, amount="100", reason="welcome", idempotency_key="w1"),
        metadata=md)
    request.participant_id = participant
    as_silver = stack.stub.SimulateRules(request, metadata=md)
    assert (as_silver.points_awarded, as_silver.tier) == ("187", "silver")
    request.draft_rules.add(name="bonus", formula="properties.amount > 100 ? 50 : 0")
    request.draft_rules.add(name="electronics", formula="properties.amount * 2",
                            condition='properties.category == "electronics"')
    drafts = stack.stub.SimulateRules(request, metadata=md)
    # a rule applies the tier multiplier unless it opts out (seed 001): 50 x 1.5 as silver
    assert [(e.rule_name, e.matched, e.points) for e in drafts.rule_evaluations] == [
        ("bonus", True, "75"), ("electronics", False, "0")]
    broken = rules_pb2.SimulateRulesRequest(program_id=pid)
    broken.draft_rules.add(name="x", formula="1 +")
    failure = stack.failure(lambda: stack.stub.SimulateRules(broken, metadata=md))
    assert failure.fields == ["draft_rules[0].formula"]
    assert stack.balance(md, pid, participant).available == "100"
    txs = stack.stub.ListTransactions(rules_pb2.ListTransactionsRequest(
        program_id=pid, participant_id=participant), metadata=md).transactions
    assert len(txs) == 1 and tenant


# -- adjustments ------------------------------------------------------------------------------

def published(stack: Stack) -> list[messages_pb2.Notification]:
    stack.runtime.relay.relay_once()
    out = []
    q = stack.broker.queues.get(queue.NOTIFY_QUEUE)
    while q is not None and not q.empty():
        message = dramatiq.Message.decode(q.get_nowait())
        out.extend(queue.decode(message.args[0], messages_pb2.Notifications).notifications)
    return out


def test_adjustments_are_idempotent_and_guard_the_balance(stack: Stack) -> None:
    tenant, md = stack.tenant()
    pid = new_program(stack, md, tiers=[tier("gold", "50", "2")]).program_id
    participant = str(uuid.uuid4())
    published(stack)

    def adjust(amount: str, key: str, reason: str = "goodwill", **kw: Any) -> rules_pb2.Adjustment:
        return stack.stub.CreateAdjustment(rules_pb2.CreateAdjustmentRequest(
            program_id=pid, participant_id=participant, amount=amount, reason=reason,
            idempotency_key=key, **kw), metadata=md)

    credit = adjust("+60", "k1")
    assert (credit.transaction.amount, credit.transaction.kind) == ("60", rules_pb2.ENTRY_KIND_ADJUSTMENT)
    assert (credit.balance.available, credit.balance.tier, credit.deduplicated) == ("60", "gold", False)
    facts = published(stack)
    assert [(n.type, n.tenant_id) for n in facts] == [("points.adjusted", tenant), ("tier.changed", tenant)]
    retry = adjust("60.0", "k1")
    assert retry.deduplicated and retry.transaction.transaction_id == credit.transaction.transaction_id
    assert published(stack) == []
    conflict = stack.failure(lambda: adjust("61", "k1"))
    assert (conflict.code, conflict.reason) == (Code.ABORTED, "idempotency_conflict")
    too_much = stack.failure(lambda: adjust("-61", "k2"))
    assert (too_much.code, too_much.reason, too_much.fields) == (Code.ABORTED, "insufficient_points", ["amount"])
    debit = adjust("-61", "k3", allow_negative=True)
    assert (debit.balance.available, debit.balance.lifetime_earned, debit.balance.tier) == ("-1", "60", "gold")
    bad = stack.failure(lambda: adjust("0", "", reason=""))
    assert bad.fields == ["amount", "reason", "idempotency_key"]
    bad_id = stack.failure(lambda: stack.stub.CreateAdjustment(rules_pb2.CreateAdjustmentRequest(
        program_id=pid, participant_id="nope", amount="1", reason="r", idempotency_key="k"), metadata=md))
    assert bad_id.fields == ["participant_id"]
    stranger = str(uuid.uuid4())
    stack.identity.missing.add(stranger)
    unknown = stack.failure(lambda: stack.stub.CreateAdjustment(rules_pb2.CreateAdjustmentRequest(
        program_id=pid, participant_id=stranger, amount="1", reason="r", idempotency_key="k"), metadata=md))
    assert (unknown.code, unknown.reason) == (Code.NOT_FOUND, "participant_not_found")
