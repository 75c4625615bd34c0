"""Rules that go over the expression sandbox's budget: counted, and suspended when repeated.

A suspension is a new version of the rule (status SUSPENDED), like one an operator makes, and
a ``rule.suspended`` webhook naming the reason goes out through the outbox in the same
transaction, so it is sent exactly when the suspension is committed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import sqlalchemy as sa
import structlog
from accrual.messages.v1 import messages_pb2
from accrual_platform import contract, facts
from accrual_platform.contract import outbox_row
from sqlalchemy.orm import Session

from accrual_rules import storage

log = structlog.get_logger("accrual.rules.budget")


def record_breaches(session: Session, dialect: str, tenant_id: str, breaches: Mapping[str, Sequence[str]],
                    suspend_after: int, now: dt.datetime) -> list[str]:
    """Add this batch's breaches to each rule's count; suspend the ACTIVE rules whose count
    reached ``suspend_after``. Rules are updated in id order (the worker's lock order).
    Returns the ids of the rules suspended."""
    r = storage.rules
    suspended: list[str] = []
    notes: list[messages_pb2.Notification] = []
    for rule_id in sorted(breaches):
        reasons = breaches[rule_id]
        if not reasons:
            continue
        query = sa.select(r).where(r.c.tenant_id == tenant_id, r.c.id == rule_id)
        if dialect == "postgresql":
            query = query.with_for_update()
        row = session.execute(query).first()
        if row is None:
            continue  # a draft rule of a simulation has no row
        count = row.budget_breaches + len(reasons)
        if row.status != "ACTIVE" or count < suspend_after:
            session.execute(sa.update(r).where(r.c.id == rule_id).values(budget_breaches=count))
            continue
        version = row.version + 1
        values = {k: getattr(row, k) for k in storage.RULE_FIELDS}
        values["status"] = "SUSPENDED"
        session.execute(sa.update(r).where(r.c.id == rule_id).values(
            status="SUSPENDED", version=version, updated_at=now, budget_breaches=count))
        session.execute(storage.rule_versions.insert().values(
            rule_id=rule_id, version=version, created_at=now,
            snapshot={k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in values.items()}))
        reason = reasons[-1]
        log.warning("rule_suspended", rule_id=rule_id, program_id=row.program_id, reason=reason,
                    breaches=count)
        notes.append(facts.notification(tenant_id, "rule.suspended", f"rule.suspended:{rule_id}:{version}", now, {
            "rule_id": rule_id, "program_id": row.program_id, "rule_version": version,
            "rule_name": row.name, "reason": reason, "breaches": count,
            "message": _MESSAGES.get(reason, reason)}))
        suspended.append(rule_id)
    if notes:
        session.execute(storage.outbox.insert(), [outbox_row(
            contract.PUBLISH_NOTIFICATIONS, messages_pb2.Notifications(notifications=notes))])
    return suspended


_MESSAGES: dict[str, str] = {
    "evaluation_timeout": "the rule's expressions repeatedly ran past the CPU deadline",
    "evaluation_resource_exhausted": "the rule's expressions repeatedly asked for more memory than allowed",
    "evaluation_crashed": "the rule's expressions repeatedly crashed the expression engine",
}
