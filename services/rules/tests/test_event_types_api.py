"""A program's event types through a real gRPC server on SQLite and PostgreSQL: get one,
update (validated as on create), delete (refused while rules use it) and tenant isolation."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import grpc
from accrual.messages.v1 import messages_pb2
from accrual.rules.v1 import rules_pb2

if TYPE_CHECKING:
    from conftest import Stack

Code = grpc.StatusCode
NUMBER, STRING = rules_pb2.PROPERTY_TYPE_NUMBER, rules_pb2.PROPERTY_TYPE_STRING


def prop(name: str, kind: rules_pb2.PropertyType.ValueType = NUMBER,
         required: bool = False) -> rules_pb2.EventTypeProperty:
    return rules_pb2.EventTypeProperty(name=name, type=kind, required=required)


def program_with_purchase(stack: Stack, md: list[tuple[str, str]],
                          policy: rules_pb2.EventTypePolicy.ValueType = rules_pb2.EVENT_TYPE_POLICY_OPEN) -> str:
    pid: str = stack.stub.CreateProgram(rules_pb2.CreateProgramRequest(
        name="Demo", event_type_policy=policy), metadata=md).program_id
    stack.stub.CreateEventType(rules_pb2.CreateEventTypeRequest(
        program_id=pid, name="purchase", description="order completed",
        properties=[prop("amount", required=True), prop("category", STRING)]), metadata=md)
    return pid


def test_get_update_delete(stack: Stack) -> None:
    _, md = stack.tenant()
    pid = program_with_purchase(stack, md)
    got = stack.stub.GetEventType(rules_pb2.GetEventTypeRequest(program_id=pid, name="purchase"), metadata=md)
    assert (got.name, got.description, [p.name for p in got.properties]) == (
        "purchase", "order completed", ["amount", "category"])

    described = stack.stub.UpdateEventType(rules_pb2.UpdateEventTypeRequest(
        program_id=pid, name="purchase", description="paid order"), metadata=md)
    assert described.description == "paid order"
    assert [p.name for p in described.properties] == ["amount", "category"]  # absent: kept
    replaced = stack.stub.UpdateEventType(rules_pb2.UpdateEventTypeRequest(
        program_id=pid, name="purchase", properties=[prop("total", required=True)]), metadata=md)
    assert ([p.name for p in replaced.properties], replaced.description) == (["total"], "paid order")
    assert replaced.created_at == got.created_at
    cleared = stack.stub.UpdateEventType(rules_pb2.UpdateEventTypeRequest(
        program_id=pid, name="purchase", clear_properties=True), metadata=md)
    assert list(cleared.properties) == []

    deleted = stack.stub.DeleteEventType(rules_pb2.DeleteEventTypeRequest(program_id=pid, name="purchase"),
                                         metadata=md)
    assert deleted.name == "purchase"
    listed = stack.stub.ListEventTypes(rules_pb2.ListEventTypesRequest(program_id=pid), metadata=md)
    assert list(listed.event_types) == []
    for call in (lambda: stack.stub.DeleteEventType(rules_pb2.DeleteEventTypeRequest(
                     program_id=pid, name="purchase"), metadata=md),
                 lambda: stack.stub.GetEventType(rules_pb2.GetEventTypeRequest(
                     program_id=pid, name="purchase"), metadata=md),
                 lambda: stack.stub.UpdateEventType(rules_pb2.UpdateEventTypeRequest(
                     program_id=pid, name="purchase", description="x"), metadata=md)):
        gone = stack.failure(call)
        assert (gone.code, gone.reason) == (Code.NOT_FOUND, "event_type_not_found")
        assert "purchase" in gone.message
    # The name is free again.
    stack.stub.CreateEventType(rules_pb2.CreateEventTypeRequest(program_id=pid, name="purchase"), metadata=md)


def test_update_validates_like_create(stack: Stack) -> None:
    _, md = stack.tenant()
    pid = program_with_purchase(stack, md)
    for request, field in [
        (rules_pb2.UpdateEventTypeRequest(properties=[prop("a"), prop("a")]), "properties[1].name"),
        (rules_pb2.UpdateEventTypeRequest(properties=[rules_pb2.EventTypeProperty(name="a")]),
         "properties[0].type"),
        (rules_pb2.UpdateEventTypeRequest(description="x" * 2001), "description"),
        (rules_pb2.UpdateEventTypeRequest(properties=[prop("a")], clear_properties=True), "clear_properties"),
    ]:
        request.program_id, request.name = pid, "purchase"
        bad = stack.failure(functools.partial(stack.stub.UpdateEventType, request, metadata=md))
        assert (bad.code, bad.fields) == (Code.INVALID_ARGUMENT, [field])
    kept = stack.stub.GetEventType(rules_pb2.GetEventTypeRequest(program_id=pid, name="purchase"), metadata=md)
    assert [p.name for p in kept.properties] == ["amount", "category"]


def test_other_tenant_and_program_see_404(stack: Stack) -> None:
    _, md = stack.tenant()
    _, other = stack.tenant()
    pid = program_with_purchase(stack, md)
    for call in (lambda: stack.stub.GetEventType(rules_pb2.GetEventTypeRequest(
                     program_id=pid, name="purchase"), metadata=other),
                 lambda: stack.stub.DeleteEventType(rules_pb2.DeleteEventTypeRequest(
                     program_id=pid, name="purchase"), metadata=other)):
        assert stack.failure(call).code == Code.NOT_FOUND
    second = stack.stub.CreateProgram(rules_pb2.CreateProgramRequest(name="Other"), metadata=md).program_id
    missing = stack.failure(lambda: stack.stub.GetEventType(rules_pb2.GetEventTypeRequest(
        program_id=second, name="purchase"), metadata=md))
    assert (missing.code, missing.reason) == (Code.NOT_FOUND, "event_type_not_found")
    assert stack.stub.GetEventType(rules_pb2.GetEventTypeRequest(program_id=pid, name="purchase"),
                                   metadata=md).name == "purchase"


def test_delete_is_refused_while_rules_use_it(stack: Stack) -> None:
    tenant, md = stack.tenant()
    pid = program_with_purchase(stack, md, rules_pb2.EVENT_TYPE_POLICY_REGISTERED)
    rule = stack.stub.CreateRule(rules_pb2.CreateRuleRequest(
        program_id=pid, name="per dollar", formula="properties.amount * 1", event_type="purchase"), metadata=md)
    refused = stack.failure(lambda: stack.stub.DeleteEventType(rules_pb2.DeleteEventTypeRequest(
        program_id=pid, name="purchase"), metadata=md))
    assert (refused.code, refused.reason) == (Code.FAILED_PRECONDITION, "event_type_in_use")
    assert rule.rule_id in refused.message
    stack.stub.DeleteRule(rules_pb2.DeleteRuleRequest(program_id=pid, rule_id=rule.rule_id), metadata=md)
    stack.stub.DeleteEventType(rules_pb2.DeleteEventTypeRequest(program_id=pid, name="purchase"), metadata=md)
    # The archived rule is unchanged, and the REGISTERED program now refuses the type.
    kept = stack.stub.GetRule(rules_pb2.GetRuleRequest(program_id=pid, rule_id=rule.rule_id), metadata=md)
    assert (kept.event_type, kept.status) == ("purchase", rules_pb2.RULE_STATUS_ARCHIVED)
    [outcome] = stack.process(tenant, stack.event(pid, data={"amount": 10}))
    assert (outcome.status, outcome.error_code) == (messages_pb2.OUTCOME_STATUS_FAILED,
                                                    "event_type_not_registered")
