"""rules:validate, the rule builder's check as the operator types: what CreateRule would
refuse, each expression error with its position, nothing written; on SQLite and PostgreSQL,
over gRPC and through the gateway (whose body is CreateRule's)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from accrual.rules.v1 import rules_pb2
from accrual_gateway.app import create_app
from starlette.testclient import TestClient

if TYPE_CHECKING:
    from conftest import Stack

Code = grpc.StatusCode


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[TestClient]:
    app = create_app({"accrual.rules.v1.RulesService": stack.address}, files=[rules_pb2.DESCRIPTOR])
    with TestClient(app) as test_client:
        yield test_client


def program(stack: Stack, md: list[tuple[str, str]]) -> str:
    return str(stack.stub.CreateProgram(rules_pb2.CreateProgramRequest(name="Demo"), metadata=md).program_id)


def validate(stack: Stack, md: list[tuple[str, str]], pid: str, **rule: Any) -> rules_pb2.ValidateRuleResponse:
    rule.setdefault("name", "r")
    return stack.stub.ValidateRule(rules_pb2.ValidateRuleRequest(
        program_id=pid, rule=rules_pb2.CreateRuleRequest(**rule)), metadata=md)


def test_a_good_draft_is_valid_and_nothing_is_written(stack: Stack) -> None:
    _, md = stack.tenant()
    pid = program(stack, md)
    answer = validate(stack, md, pid, event_type="purchase", condition="properties.amount > 0",
                      formula="properties.amount \N{MULTIPLICATION SIGN} 2")
    assert answer.valid and list(answer.violations) == []
    assert list(stack.stub.ListRules(rules_pb2.ListRulesRequest(program_id=pid), metadata=md).rules) == []


def test_syntax_errors_have_their_line_column_and_offsets(stack: Stack) -> None:
    _, md = stack.tenant()
    pid = program(stack, md)
    answer = validate(stack, md, pid, condition='"\u00e9t\u00e9" == properties.season and\n  properties.amount > > 1',
                      formula="properties.amount * 2)")
    assert not answer.valid
    by_field = {v.field: v for v in answer.violations}
    assert set(by_field) == {"condition", "formula"}
    condition = by_field["condition"]
    # the second ">" of line 2; offsets count characters, not the UTF-8 bytes of "été"
    assert (condition.position.line, condition.position.column) == (2, 23)
    assert (condition.position.start, condition.position.end) == (53, 54)
    assert condition.description.endswith("(line 2, column 23)")
    formula = by_field["formula"]
    assert (formula.position.start, formula.position.line, formula.position.column) == (21, 1, 22)
    assert formula.description == "')' closes no open bracket (line 1, column 22)"


def test_field_and_expression_violations_come_together(stack: Stack) -> None:
    _, md = stack.tenant()
    pid = program(stack, md)
    answer = validate(stack, md, pid, name=" ", formula='"ten"', condition="properties.amount * 2",
                      caps=rules_pb2.RuleCaps(total_budget="-5"))
    fields = [v.field for v in answer.violations]
    assert fields == ["name", "caps.total_budget", "condition", "formula"]
    assert not any(v.HasField("position") for v in answer.violations)  # typed wrong, not misspelt
    blank = validate(stack, md, pid, formula="")
    assert [v.field for v in blank.violations] == ["formula"]
    archived = validate(stack, md, pid, formula="1", status=rules_pb2.RULE_STATUS_ARCHIVED)
    assert [v.field for v in archived.violations] == ["status"]
    bad_type = validate(stack, md, pid, formula="1", event_type="bad\u0000type")
    assert [v.field for v in bad_type.violations] == ["event_type"]


def test_create_names_the_same_position(stack: Stack, client: TestClient) -> None:
    tenant, md = stack.tenant()
    pid = program(stack, md)
    refused = client.post(f"/v1/programs/{pid}/rules", headers={"X-API-Key": f"key-{tenant}"},
                          json={"name": "r", "formula": "properties.amount * * 2"})
    assert refused.status_code == 400
    error = refused.json()["error"]
    checked = validate(stack, md, pid, formula="properties.amount * * 2").violations[0]
    assert {"field": "formula", "description": checked.description} in error["details"]
    assert {"reason": "invalid_expression", "domain": "accrual.dev",
            "metadata": {"field": "formula", "position": "20:21", "line": "1", "column": "21"}} in error["details"]
    assert list(stack.stub.ListRules(rules_pb2.ListRulesRequest(program_id=pid), metadata=md).rules) == []


def test_unknown_programs_and_bad_ids_are_refused(stack: Stack) -> None:
    _, md = stack.tenant()
    missing = stack.failure(lambda: validate(stack, md, str(uuid.uuid4()), formula="1"))
    assert missing.code == Code.NOT_FOUND
    malformed = stack.failure(lambda: validate(stack, md, "nope", formula="1"))
    assert (malformed.code, malformed.fields) == (Code.INVALID_ARGUMENT, ["program_id"])
    _, stranger = stack.tenant()
    foreign = stack.failure(lambda: validate(stack, stranger, program(stack, md), formula="1"))
    assert foreign.code == Code.NOT_FOUND


def test_rest_takes_create_rules_body_and_answers_positions(stack: Stack, client: TestClient) -> None:
    tenant, md = stack.tenant()
    pid = program(stack, md)
    headers = {"X-API-Key": f"key-{tenant}"}
    url = f"/v1/programs/{pid}/rules:validate"

    bad = client.post(url, headers=headers, json={"name": "1 point per dollar", "event_type": "purchase",
                                                  "condition": "properties.amount >", "formula": "1"})
    good = client.post(url, headers=headers, json={"name": "r", "formula": "properties.amount * 1"})

    assert bad.status_code == 200, bad.text
    assert bad.json() == {"valid": False, "violations": [{
        "field": "condition", "description": "Unexpected end of unary expression (line 1, column 20)",
        "position": {"start": 19, "end": 19, "line": 1, "column": 20}}]}
    assert good.status_code == 200 and good.json() == {"valid": True, "violations": []}
    refused = client.post(url, headers=headers, json={"name": "r", "formula": "1", "order": "first"})
    # the gateway's own JSON errors name the request field, under the body's field "rule"
    assert refused.status_code == 400 and refused.json()["error"]["details"][0]["field"] == "rule.order"
    assert client.post(url, json={"name": "r", "formula": "1"}).status_code == 401
