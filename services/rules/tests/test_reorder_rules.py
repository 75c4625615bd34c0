"""rules:reorder, the rule builder's drag and drop: a program's rules put in a new evaluation
order in one transaction, a version only for the rules that move; on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import grpc
import pytest
from accrual.rules.v1 import rules_pb2
from accrual_gateway.app import create_app
from starlette.testclient import TestClient

if TYPE_CHECKING:
    from conftest import Stack

Code = grpc.StatusCode
Metadata = list[tuple[str, str]]


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[TestClient]:
    app = create_app({"accrual.rules.v1.RulesService": stack.address}, files=[rules_pb2.DESCRIPTOR])
    with TestClient(app) as test_client:
        yield test_client


def program_with_rules(stack: Stack, md: Metadata, count: int) -> tuple[str, list[str]]:
    pid = stack.stub.CreateProgram(rules_pb2.CreateProgramRequest(name="Demo"), metadata=md).program_id
    ids = [stack.stub.CreateRule(rules_pb2.CreateRuleRequest(
        program_id=pid, name=f"rule {i}", formula=str(i + 1)), metadata=md).rule_id for i in range(count)]
    return pid, ids


def listed(stack: Stack, md: Metadata, pid: str) -> list[tuple[str, int, int]]:
    rules = stack.stub.ListRules(rules_pb2.ListRulesRequest(program_id=pid), metadata=md).rules
    return [(r.rule_id, r.order, r.version) for r in rules]


def reorder(stack: Stack, md: Metadata, pid: str, ids: list[str]) -> rules_pb2.ReorderRulesResponse:
    return stack.stub.ReorderRules(rules_pb2.ReorderRulesRequest(program_id=pid, rule_ids=ids), metadata=md)


def test_reorder_sets_orders_and_versions_only_the_rules_that_move(stack: Stack) -> None:
    _, md = stack.tenant()
    pid, (a, b, c) = program_with_rules(stack, md, 3)

    answer = reorder(stack, md, pid, [c, a, b])

    assert [(r.rule_id, r.order, r.version) for r in answer.rules] == [(c, 10, 2), (a, 20, 2), (b, 30, 2)]
    assert listed(stack, md, pid) == [(c, 10, 2), (a, 20, 2), (b, 30, 2)]
    swapped = reorder(stack, md, pid, [c, b, a])
    assert [(r.rule_id, r.order, r.version) for r in swapped.rules] == [(c, 10, 2), (b, 20, 3), (a, 30, 3)]
    assert [(r.rule_id, r.version) for r in reorder(stack, md, pid, [c, b, a]).rules] == [(c, 2), (b, 3), (a, 3)]
    versions = stack.stub.ListRuleVersions(rules_pb2.ListRuleVersionsRequest(program_id=pid, rule_id=a),
                                           metadata=md).versions
    assert [(v.version, v.order, v.formula) for v in versions] == [(1, 0, "1"), (2, 20, "1"), (3, 30, "1")]


def test_suspended_rules_are_listed_archived_ones_not(stack: Stack) -> None:
    _, md = stack.tenant()
    pid, (a, b, c) = program_with_rules(stack, md, 3)
    stack.stub.UpdateRule(rules_pb2.UpdateRuleRequest(program_id=pid, rule_id=b,
                                                      status=rules_pb2.RULE_STATUS_SUSPENDED), metadata=md)
    stack.stub.DeleteRule(rules_pb2.DeleteRuleRequest(program_id=pid, rule_id=c), metadata=md)
    assert [r.rule_id for r in reorder(stack, md, pid, [b, a]).rules] == [b, a]
    with_archived = stack.failure(lambda: reorder(stack, md, pid, [b, a, c]))
    assert (with_archived.code, with_archived.fields) == (Code.INVALID_ARGUMENT, ["rule_ids[2]"])


def test_bad_lists_are_refused_naming_the_item_and_change_nothing(stack: Stack) -> None:
    _, md = stack.tenant()
    pid, (a, b, c) = program_with_rules(stack, md, 3)
    before = listed(stack, md, pid)
    for ids, fields in [([a, b], ["rule_ids"]), ([a, b, c, a], ["rule_ids[3]"]),
                        ([a, "nope", c], ["rule_ids[1]"]), ([a, b, str(uuid.uuid4())], ["rule_ids[2]", "rule_ids"]),
                        ([a.upper(), b, a], ["rule_ids[2]"])]:
        refused = stack.failure(lambda ids=ids: reorder(stack, md, pid, ids))
        assert (refused.code, refused.fields) == (Code.INVALID_ARGUMENT, fields), ids
    assert listed(stack, md, pid) == before
    _, stranger = stack.tenant()
    assert stack.failure(lambda: reorder(stack, stranger, pid, [a, b, c])).code == Code.NOT_FOUND
    assert [r.rule_id for r in reorder(stack, md, pid, [c.upper(), b, a]).rules] == [c, b, a]
    empty_pid, _ = program_with_rules(stack, md, 0)
    assert list(reorder(stack, md, empty_pid, []).rules) == []


def test_reorder_over_rest(stack: Stack, client: TestClient) -> None:
    tenant, md = stack.tenant()
    pid, (a, b) = program_with_rules(stack, md, 2)
    headers = {"X-API-Key": f"key-{tenant}"}
    moved = client.post(f"/v1/programs/{pid}/rules:reorder", headers=headers, json={"rule_ids": [b, a]})
    assert moved.status_code == 200, moved.text
    assert [(r["rule_id"], r["order"]) for r in moved.json()["rules"]] == [(b, 10), (a, 20)]
    missing = client.post(f"/v1/programs/{pid}/rules:reorder", headers=headers, json={"rule_ids": [b]})
    assert missing.status_code == 400
    assert [d["field"] for d in missing.json()["error"]["details"] if "field" in d] == ["rule_ids"]
    assert a in missing.json()["error"]["details"][-1]["description"]
