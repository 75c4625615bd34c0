"""The rules worker reads a claimed event's exact JSON text (issue 18, finding 9): integers
beyond a double's 53 bits reach expressions as themselves, 125 as an integer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from accrual.messages.v1 import messages_pb2
from accrual.rules.v1 import rules_pb2

if TYPE_CHECKING:
    from conftest import Stack

COMPLETED = messages_pb2.OUTCOME_STATUS_COMPLETED


def test_expressions_see_the_numbers_that_were_sent(stack: Stack) -> None:
    tenant, md = stack.tenant()
    pid = stack.stub.CreateProgram(rules_pb2.CreateProgramRequest(name="Demo"), metadata=md).program_id
    for order, (formula, condition) in enumerate([
            ("properties.amount * 1", ""),
            ("7", "properties.sku == 9007199254740993"),
            ("properties.price * 10", "properties.price > 1.09")], start=1):
        stack.stub.CreateRule(rules_pb2.CreateRuleRequest(
            program_id=pid, name=formula + condition, formula=formula, condition=condition, order=order),
            metadata=md)
    # What ingest sends: the Struct (doubles: the sku reads 9007199254740992) and the text.
    exact = stack.event(pid, data={"amount": 125, "sku": 9007199254740993, "price": 1.1},
                        event_data_json='{"amount":125,"price":1.1,"sku":9007199254740993}')
    struct_only = stack.event(pid, data={"amount": 125, "sku": 9007199254740993, "price": 1.1})
    outcomes = {o.event_id: o for o in stack.process(tenant, exact, struct_only)}
    assert outcomes[exact].status == COMPLETED
    assert [r.matched for r in outcomes[exact].rule_evaluations] == [True, True, True]
    assert outcomes[exact].points_awarded == "143"  # 125 + 7 + 11
    # Without the text (an older ingest) the Struct's doubles are read as before.
    assert [r.matched for r in outcomes[struct_only].rule_evaluations] == [True, False, True]
