"""The rules worker: turn accepted events into ledger entries, exactly once in effect.

Per message (a batch of event ids): claim the events from ingest, resolve participants and
recipients through identity (one call per batch), evaluate, and write ledger entries,
balances and the stored evaluation in one transaction. Ledger sources and the stored
evaluation are unique, so a redelivered message re-announces the stored outcome instead
of awarding again. Outcomes go to the ingest queue, facts to the notify queue.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dramatiq
import grpc
import sqlalchemy as sa
import structlog
from accrual.identity.v1 import identity_pb2, identity_pb2_grpc
from accrual.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from accrual.messages.v1 import messages_pb2
from accrual_platform import queue
from accrual_platform.db import Database, decimal_str, utcnow
from accrual_platform.grpc_server import internal_metadata
from google.protobuf import json_format
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from accrual_rules import storage
from accrual_rules.domain.evaluation import (
    EventFacts,
    ProgramPolicy,
    RuleSpec,
    Tier,
    evaluate,
)

log = structlog.get_logger("accrual.rules.worker")
ZERO = decimal.Decimal(0)

_POLICY = {"CREATE": identity_pb2.UNKNOWN_PARTICIPANT_POLICY_CREATE,
           "REJECT": identity_pb2.UNKNOWN_PARTICIPANT_POLICY_REJECT}


def program_policy(row: Any) -> ProgramPolicy:
    return ProgramPolicy(
        program_id=row.id, name=row.name,
        tiers=tuple(Tier(t["name"], decimal.Decimal(t["min_lifetime_points"]),
                         decimal.Decimal(t["multiplier"])) for t in row.tiers),
        rounding_mode=row.rounding_mode, rounding_precision=row.rounding_precision)


def rule_spec(row: Any) -> RuleSpec:
    return RuleSpec(rule_id=row.id, version=row.version, name=row.name,
                    event_type=row.event_type, condition=row.condition, formula=row.formula,
                    apply_tier_multiplier=row.apply_tier_multiplier, order=row.order,
                    stop_after_match=row.stop_after_match, active_from=row.active_from,
                    active_to=row.active_to, status=row.status)


@dataclass
class Pending:
    event: ingest_pb2.Event
    program: Any | None = None
    actor: identity_pb2.ResolveResult | None = None
    recipient: identity_pb2.ResolveResult | None = None


class Processor:
    def __init__(self, db: Database, broker: dramatiq.Broker, ingest: grpc.Channel,
                 identity: grpc.Channel, internal_token: str) -> None:
        self.db = db
        self.broker = broker
        self._ingest = ingest_pb2_grpc.IngestServiceStub(ingest)
        self._identity = identity_pb2_grpc.IdentityServiceStub(identity)
        self._token = internal_token

    def _insert(self) -> Any:
        return postgresql.insert if self.db.dialect == "postgresql" else sqlite.insert

    # -- entry point ----------------------------------------------------------------------
    def process(self, tenant_id: str, event_ids: Sequence[str]) -> None:
        md = internal_metadata(self._token, tenant_id)
        claimed = self._ingest.ClaimEvents(
            ingest_pb2.ClaimEventsRequest(tenant_id=tenant_id, event_ids=list(event_ids)),
            metadata=md, timeout=30).events
        if not claimed:
            return
        outcomes: list[messages_pb2.EventOutcome] = []
        notes = messages_pb2.Notifications()
        with self.db.transaction() as session:
            stored = self._stored(session, [e.event_id for e in claimed])
        todo = []
        for event in claimed:
            if event.event_id in stored:
                self._replay(stored[event.event_id], outcomes, notes)
            else:
                todo.append(Pending(event))
        if todo:
            self._evaluate_batch(tenant_id, todo, md, outcomes, notes)
        if notes.notifications:
            queue.enqueue(self.broker, queue.NOTIFY_QUEUE, "publish_notifications", notes)
        if outcomes:
            queue.enqueue(self.broker, queue.INGEST_QUEUE, "record_outcomes",
                          messages_pb2.EventOutcomes(outcomes=outcomes))

    # -- steps --------------------------------------------------------------------------
    def _stored(self, session: Session, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        t = storage.event_evaluations
        rows = session.execute(sa.select(t.c.event_id, t.c.outcome).where(t.c.event_id.in_(list(ids))))
        return {r.event_id: r.outcome for r in rows}

    @staticmethod
    def _replay(stored: dict[str, Any], outcomes: list[messages_pb2.EventOutcome],
                notes: messages_pb2.Notifications) -> None:
        outcomes.append(queue.from_payload(stored["outcome"], messages_pb2.EventOutcome))
        for n in stored.get("notifications", []):
            notes.notifications.append(queue.from_payload(n, messages_pb2.Notification))

    def _evaluate_batch(self, tenant_id: str, todo: list[Pending], md: list[tuple[str, str]],
                        outcomes: list[messages_pb2.EventOutcome],
                        notes: messages_pb2.Notifications) -> None:
        p = storage.programs
        program_ids = {t.event.program_id for t in todo}
        with self.db.transaction() as session:
            programs = {r.id: r for r in session.execute(sa.select(p).where(
                p.c.tenant_id == tenant_id, p.c.id.in_(program_ids)))}
            r = storage.rules
            rules_by_program: dict[str, list[RuleSpec]] = {}
            for row in session.execute(sa.select(r).where(
                    r.c.tenant_id == tenant_id, r.c.program_id.in_(list(programs)))):
                rules_by_program.setdefault(row.program_id, []).append(rule_spec(row))
        ready: list[Pending] = []
        for item in todo:
            item.program = programs.get(item.event.program_id)
            if item.program is None:
                outcomes.append(_failed(tenant_id, item.event, "program_not_found",
                                        f"program {item.event.program_id} does not exist"))
            else:
                ready.append(item)
        if not ready:
            return
        self._resolve(tenant_id, ready, md)
        with self.db.transaction() as session:
            for item in ready:
                assert item.actor is not None
                failure = item.actor.error_code or (item.recipient.error_code if item.recipient else "")
                if failure:
                    who = item.actor if item.actor.error_code else item.recipient
                    assert who is not None
                    outcomes.append(_failed(tenant_id, item.event, failure, who.error_message,
                                            participant_id=item.actor.participant_id))
                    continue
                self._apply(session, tenant_id, item, rules_by_program.get(item.program.id, []),
                            outcomes, notes)

    def _resolve(self, tenant_id: str, items: list[Pending], md: list[tuple[str, str]]) -> None:
        req = identity_pb2.ResolveParticipantsRequest(tenant_id=tenant_id)
        slots: list[tuple[Pending, str]] = []
        for item in items:
            e = item.event
            policy = _POLICY.get(item.program.on_unknown_participant,
                                 identity_pb2.UNKNOWN_PARTICIPANT_POLICY_CREATE)
            actor = req.items.add(program_id=e.program_id, on_unknown_participant=policy)
            if e.HasField("participant_id"):
                actor.participant_id = e.participant_id
            else:
                actor.identities.add(type=identity_pb2.IDENTITY_TYPE_EXTERNAL, value=e.external_id)
            slots.append((item, "actor"))
            if e.HasField("recipient_id") or e.HasField("recipient_external_id"):
                rec = req.items.add(program_id=e.program_id, on_unknown_participant=policy)
                if e.HasField("recipient_id"):
                    rec.participant_id = e.recipient_id
                else:
                    rec.identities.add(type=identity_pb2.IDENTITY_TYPE_EXTERNAL,
                                       value=e.recipient_external_id)
                slots.append((item, "recipient"))
        results = self._identity.ResolveParticipants(req, metadata=md, timeout=30).results
        for (item, role), result in zip(slots, results, strict=True):
            setattr(item, role, result)

    def _apply(self, session: Session, tenant_id: str, item: Pending, rules: list[RuleSpec],
               outcomes: list[messages_pb2.EventOutcome],
               notes: messages_pb2.Notifications) -> None:
        e = item.event
        assert item.actor is not None
        now = utcnow()
        claimed = session.execute(self._insert()(storage.event_evaluations).values(
            event_id=e.event_id, tenant_id=tenant_id, outcome={}, created_at=now
        ).on_conflict_do_nothing(index_elements=["event_id"]).returning(
            storage.event_evaluations.c.event_id)).first()
        if claimed is None:  # a concurrent delivery of the same event won; replay its result
            stored = self._stored(session, [e.event_id])
            if stored.get(e.event_id):
                self._replay(stored[e.event_id], outcomes, notes)
            return
        beneficiary = item.recipient.participant_id if item.recipient else item.actor.participant_id
        program = program_policy(item.program)
        balance = self._balance_for_update(session, tenant_id, program.program_id, beneficiary)
        facts = EventFacts(
            event_id=e.event_id, event_type=e.event_type,
            timestamp=e.event_timestamp.ToDatetime(dt.UTC),
            properties=json_format.MessageToDict(e.event_data),
            participant={"id": item.actor.participant_id,
                         "attributes": json_format.MessageToDict(item.actor.attributes)})
        evaluations = evaluate(program, rules, facts, balance["lifetime_earned"])
        outcome = messages_pb2.EventOutcome(
            tenant_id=tenant_id, event_id=e.event_id,
            status=messages_pb2.OUTCOME_STATUS_COMPLETED,
            participant_id=item.actor.participant_id,
            recipient_id=item.recipient.participant_id if item.recipient else "")
        outcome.processed_at.FromDatetime(now)
        event_notes: list[messages_pb2.Notification] = []
        total = ZERO
        for ev in evaluations:
            outcome.rule_evaluations.add(
                rule_id=ev.rule_id, rule_version=ev.version, rule_name=ev.name,
                matched=ev.matched, skip_reason=ev.skip_reason, message=ev.message,
                points=decimal_str(ev.points), recipient_id=beneficiary if ev.matched else "")
            if not ev.matched or ev.points == 0:
                continue
            source = f"event:{e.event_id}:rule:{ev.rule_id}"
            inserted = session.execute(self._insert()(storage.ledger).values(
                id=str(uuid.uuid4()), tenant_id=tenant_id, program_id=program.program_id,
                participant_id=beneficiary, amount=ev.points, kind="EARN", source=source,
                event_id=e.event_id, rule_id=ev.rule_id, rule_version=ev.version,
                reason=f"rule {ev.name} v{ev.version}", created_at=now,
            ).on_conflict_do_nothing(index_elements=["tenant_id", "source"]).returning(
                storage.ledger.c.id)).first()
            if inserted is None:
                continue
            total += ev.points
            event_notes.append(_note(tenant_id, "points.awarded", f"points.awarded:{source}", now, {
                "transaction_id": inserted.id, "program_id": program.program_id,
                "participant_id": beneficiary, "points": decimal_str(ev.points),
                "event_id": e.event_id, "rule_id": ev.rule_id, "rule_version": ev.version}))
        outcome.points_awarded = decimal_str(total)
        old_tier = balance["tier"]
        if total:
            lifetime = balance["lifetime_earned"] + (total if total > 0 else ZERO)
            tier = program.tier_for(lifetime)
            new_tier = tier.name if tier else None
            session.execute(sa.update(storage.balances).where(
                storage.balances.c.tenant_id == tenant_id,
                storage.balances.c.program_id == program.program_id,
                storage.balances.c.participant_id == beneficiary,
            ).values(available=balance["available"] + total, lifetime_earned=lifetime,
                     tier=new_tier, updated_at=now))
            if new_tier != old_tier:
                event_notes.append(_note(tenant_id, "tier.changed",
                                         f"tier.changed:{e.event_id}:{beneficiary}", now, {
                    "program_id": program.program_id, "participant_id": beneficiary,
                    "previous_tier": old_tier, "tier": new_tier, "event_id": e.event_id}))
        session.execute(sa.update(storage.event_evaluations).where(
            storage.event_evaluations.c.event_id == e.event_id).values(outcome={
                "outcome": queue.to_payload(outcome),
                "notifications": [queue.to_payload(n) for n in event_notes]}))
        outcomes.append(outcome)
        notes.notifications.extend(event_notes)

    def _balance_for_update(self, session: Session, tenant_id: str, program_id: str,
                            participant_id: str) -> dict[str, Any]:
        b = storage.balances
        session.execute(self._insert()(b).values(
            tenant_id=tenant_id, program_id=program_id, participant_id=participant_id,
            available=ZERO, lifetime_earned=ZERO, tier=None, updated_at=utcnow(),
        ).on_conflict_do_nothing(index_elements=["tenant_id", "program_id", "participant_id"]))
        query = sa.select(b).where(b.c.tenant_id == tenant_id, b.c.program_id == program_id,
                                   b.c.participant_id == participant_id)
        if self.db.dialect == "postgresql":
            query = query.with_for_update()
        row = session.execute(query).one()
        return {"available": row.available, "lifetime_earned": row.lifetime_earned,
                "tier": row.tier}


def _note(tenant_id: str, kind: str, fact_id: str, at: dt.datetime,
          data: dict[str, Any]) -> messages_pb2.Notification:
    note = messages_pb2.Notification(tenant_id=tenant_id, type=kind, fact_id=fact_id)
    note.created_at.FromDatetime(at)
    note.data.update(data)
    return note


def _failed(tenant_id: str, event: ingest_pb2.Event, code: str, message: str,
            participant_id: str = "") -> messages_pb2.EventOutcome:
    outcome = messages_pb2.EventOutcome(
        tenant_id=tenant_id, event_id=event.event_id, status=messages_pb2.OUTCOME_STATUS_FAILED,
        error_code=code, error_message=message, participant_id=participant_id)
    outcome.processed_at.FromDatetime(utcnow())
    return outcome
