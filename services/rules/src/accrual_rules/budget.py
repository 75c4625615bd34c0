"""Rules that go over the expression sandbox's budget: counted, and suspended when repeated.

A suspension is a new version of the rule (status SUSPENDED), like one an operator makes, and
a ``rule.suspended`` webhook naming the reason goes out through the outbox in the same
transaction, so it is sent exactly when the suspension is committed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import structlog
from accrual.messages.v1 import messages_pb2
from accrual_platform import facts

from accrual_rules.store import LedgerTransaction

log = structlog.get_logger("accrual.rules.budget")


def record_breaches(tx: LedgerTransaction, tenant_id: str, breaches: Mapping[str, Sequence[str]],
                    suspend_after: int, now: dt.datetime) -> list[str]:
    """Add this batch's breaches to each rule's count; suspend the ACTIVE rules whose count
    reached ``suspend_after``. Rules are updated in id order (the worker's lock order).
    Returns the ids of the rules suspended."""
    suspended: list[str] = []
    notes: list[messages_pb2.Notification] = []
    for rule_id in sorted(breaches):
        reasons = breaches[rule_id]
        if not reasons:
            continue
        rule = tx.lock_rule(tenant_id, rule_id)
        if rule is None:
            continue  # a draft rule of a simulation has no row
        count = rule.budget_breaches + len(reasons)
        if rule.fields.status != "ACTIVE" or count < suspend_after:
            tx.count_breaches(rule_id, count)
            continue
        version = tx.suspend_rule(rule, count, now)
        reason = reasons[-1]
        log.warning("rule_suspended", rule_id=rule_id, program_id=rule.program_id, reason=reason,
                    breaches=count)
        notes.append(facts.notification(tenant_id, "rule.suspended", f"rule.suspended:{rule_id}:{version}", now, {
            "rule_id": rule_id, "program_id": rule.program_id, "rule_version": version,
            "rule_name": rule.fields.name, "reason": reason, "breaches": count,
            "message": _MESSAGES.get(reason, reason)}))
        suspended.append(rule_id)
    tx.announce(notifications=notes)
    return suspended


_MESSAGES: dict[str, str] = {
    "evaluation_timeout": "the rule's expressions repeatedly ran past the CPU deadline",
    "evaluation_resource_exhausted": "the rule's expressions repeatedly asked for more memory than allowed",
    "evaluation_crashed": "the rule's expressions repeatedly crashed the expression engine",
}
