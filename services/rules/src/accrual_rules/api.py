"""RulesService servicer, gRPC only: request message in, one use case of
:class:`accrual_rules.service.RulesService`, response message out."""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable, Iterable
from typing import Any

import grpc
from accrual.identity.v1 import identity_pb2
from accrual.messages.v1 import messages_pb2
from accrual.rules.v1 import rules_pb2
from accrual_platform import auth, dates, errors, text
from accrual_platform.db import decimal_str
from accrual_platform.ids import require_uuid
from google.protobuf import json_format
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from google.protobuf.message import Message

from accrual_rules.bank import LotRecord
from accrual_rules.domain import Json
from accrual_rules.domain.bank import ExpiryPolicy, expiry_from_json
from accrual_rules.domain.evaluation import CAP_FIELDS
from accrual_rules.domain.reversals import check_reversal, fraction_text, parse_fraction, shown
from accrual_rules.domain.triggers import normalise_triggers
from accrual_rules.domain.validation import ExpressionViolation, ProgramChanges, RuleFields
from accrual_rules.event_points import EventPoints, EventPointsResult, ReversalResult
from accrual_rules.ledger import Account
from accrual_rules.service import Expiring, RulesService
from accrual_rules.store import EntryRecord, EventTypeRecord, ProgramRecord, RuleRecord


def _enum_name(enum: EnumTypeWrapper, value: int, prefix: str, default: str) -> str:
    return enum.Name(value).removeprefix(prefix) if value else default


def _known(enum: EnumTypeWrapper, value: int, field: str) -> None:
    """Unknown numbers reach us from gRPC clients (the REST shim refuses unknown names)."""
    if value not in enum.values():
        raise errors.InvalidArgument.field(field, "is not a known value")


def _properties(properties: Iterable[rules_pb2.EventTypeProperty]) -> list[dict[str, Json]]:
    props: list[dict[str, Json]] = []
    for i, p in enumerate(properties):
        if not p.type or p.type not in rules_pb2.PropertyType.values():
            raise errors.InvalidArgument.field(f"properties[{i}].type",
                                               "must be STRING, NUMBER, BOOLEAN, OBJECT or ARRAY")
        props.append({"name": p.name, "type": _enum_name(rules_pb2.PropertyType, p.type, "PROPERTY_TYPE_", ""),
                      "required": p.required})
    return props


def program_message(row: ProgramRecord) -> rules_pb2.Program:
    msg = rules_pb2.Program(
        program_id=row.id, name=row.name,
        on_unknown_participant=identity_pb2.UnknownParticipantPolicy.Value(
            f"UNKNOWN_PARTICIPANT_POLICY_{row.on_unknown_participant}"),
        tiers=[rules_pb2.Tier(name=t["name"], min_lifetime_points=t["min_lifetime_points"],
                              multiplier=t["multiplier"]) for t in row.tiers],
        rounding_mode=rules_pb2.RoundingMode.Value(f"ROUNDING_MODE_{row.rounding_mode}"),
        rounding_precision=row.rounding_precision,
        event_type_policy=rules_pb2.EventTypePolicy.Value(f"EVENT_TYPE_POLICY_{row.event_type_policy}"))
    json_format.ParseDict(normalise_triggers(row.scheduled_triggers)[0], msg.scheduled_triggers)
    bank = row.bank()
    msg.expiry.CopyFrom(expiry_message(bank.expiry))
    msg.timezone = bank.timezone
    msg.negative_balance = rules_pb2.NegativeBalancePolicy.Value(f"NEGATIVE_BALANCE_POLICY_{bank.negative_balance}")
    msg.expiring_lead_days.extend(bank.expiring_lead_days)
    pending = row.pending()
    msg.pending.CopyFrom(rules_pb2.PendingPolicy(type=rules_pb2.PendingType.Value(f"PENDING_TYPE_{pending.type}"),
                                                 duration=pending.duration, event_types=pending.event_types))
    msg.monetary_field = row.monetary_field or ""
    msg.created_at.FromDatetime(row.created_at)
    msg.updated_at.FromDatetime(row.updated_at)
    return msg


def expiry_message(policy: ExpiryPolicy) -> rules_pb2.ExpiryPolicy:
    return rules_pb2.ExpiryPolicy(
        type=rules_pb2.ExpiryType.Value(f"EXPIRY_TYPE_{policy.type}"),
        period=str(policy.period) if policy.period else "",
        rounding=rules_pb2.ExpiryRounding.Value(f"EXPIRY_ROUNDING_{policy.rounding}"),
        month_day=policy.month_day, activity=list(policy.activity))


def expiry_dict(msg: rules_pb2.ExpiryPolicy) -> dict[str, Json]:
    """An expiry policy as :func:`accrual_rules.domain.bank.check_expiry` reads it."""
    _known(rules_pb2.ExpiryType, msg.type, "expiry.type")
    _known(rules_pb2.ExpiryRounding, msg.rounding, "expiry.rounding")
    return {"type": _enum_name(rules_pb2.ExpiryType, msg.type, "EXPIRY_TYPE_", "NONE"), "period": msg.period,
            "rounding": _enum_name(rules_pb2.ExpiryRounding, msg.rounding, "EXPIRY_ROUNDING_", "NONE"),
            "month_day": msg.month_day, "activity": list(msg.activity)}


def _bank_fields(request: rules_pb2.CreateProgramRequest | rules_pb2.UpdateProgramRequest,
                 present: Callable[[str], bool]) -> dict[str, Json]:
    """The bank policy fields a request names (``present(field)``)."""
    out: dict[str, Json] = {}
    if present("expiry"):
        out["expiry"] = expiry_dict(request.expiry)
    if present("timezone"):
        out["timezone"] = request.timezone
    if present("negative_balance"):
        _known(rules_pb2.NegativeBalancePolicy, request.negative_balance, "negative_balance")
        out["negative_balance"] = _enum_name(rules_pb2.NegativeBalancePolicy, request.negative_balance,
                                             "NEGATIVE_BALANCE_POLICY_", "FORBID")
    if request.expiring_lead_days:
        out["expiring_lead_days"] = list(request.expiring_lead_days)
    return out


def triggers_dict(msg: rules_pb2.ScheduledTriggers) -> dict[str, Json]:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def pending_dict(msg: rules_pb2.PendingPolicy) -> dict[str, Json]:
    _known(rules_pb2.PendingType, msg.type, "pending.type")
    return {"type": _enum_name(rules_pb2.PendingType, msg.type, "PENDING_TYPE_", "IMMEDIATE"),
            "duration": msg.duration, "event_types": list(msg.event_types)}


def rule_message(row: RuleRecord) -> rules_pb2.Rule:
    f = row.fields
    msg = rules_pb2.Rule(
        rule_id=row.id, program_id=row.program_id, version=row.version, name=f.name,
        event_type=f.event_type, condition=f.condition, formula=f.formula,
        apply_tier_multiplier=f.apply_tier_multiplier, order=f.order,
        stop_after_match=f.stop_after_match,
        status=rules_pb2.RuleStatus.Value(f"RULE_STATUS_{f.status}"),
        caps=rules_pb2.RuleCaps(**f.caps))
    if f.expiry is not None:
        msg.expiry.CopyFrom(expiry_message(expiry_from_json(f.expiry)))
    if f.active_from:
        msg.active_from.FromDatetime(f.active_from)
    if f.active_to:
        msg.active_to.FromDatetime(f.active_to)
    msg.created_at.FromDatetime(row.created_at)
    msg.updated_at.FromDatetime(row.updated_at)
    return msg


def event_type_message(row: EventTypeRecord) -> rules_pb2.EventType:
    msg = rules_pb2.EventType(program_id=row.program_id, name=row.name, description=row.description,
                              properties=[rules_pb2.EventTypeProperty(
                                  name=p["name"], type=rules_pb2.PropertyType.Value(f"PROPERTY_TYPE_{p['type']}"),
                                  required=p["required"]) for p in row.properties])
    msg.created_at.FromDatetime(row.created_at)
    return msg


def transaction_message(r: EntryRecord) -> rules_pb2.Transaction:
    t = rules_pb2.Transaction(
        transaction_id=r.id, program_id=r.program_id, participant_id=r.participant_id,
        amount=decimal_str(r.amount), kind=rules_pb2.EntryKind.Value(f"ENTRY_KIND_{r.kind}"),
        source=r.source, event_id=r.event_id or "", rule_id=r.rule_id or "",
        rule_version=r.rule_version or 0, reason=r.reason,
        allocations=[rules_pb2.LotAllocation(lot_id=a.lot_id, amount=decimal_str(a.amount)) for a in r.allocations],
        unrecovered=decimal_str(r.unrecovered) if r.unrecovered else "")
    t.created_at.FromDatetime(r.created_at)
    return t


def balance_message(b: Account, expiring: Iterable[Expiring] = (), held: decimal.Decimal | None = None
                    ) -> rules_pb2.Balance:
    msg = rules_pb2.Balance(program_id=b.program_id, participant_id=b.participant_id,
                            available=decimal_str(b.available),
                            lifetime_earned=decimal_str(b.lifetime_earned), tier=b.tier or "",
                            pending=decimal_str(b.pending), held=decimal_str(held or decimal.Decimal(0)),
                            debt=decimal_str(b.debt))
    for e in expiring:
        item = msg.expiring.add(expires_on=e.last_day.isoformat(), points=decimal_str(e.points))
        item.expires_at.FromDatetime(e.expires_at)
    return msg


def lot_message(r: LotRecord) -> rules_pb2.Lot:
    msg = rules_pb2.Lot(lot_id=r.id, program_id=r.program_id, participant_id=r.participant_id,
                        transaction_id=r.entry_id, event_id=r.event_id or "", original=decimal_str(r.original),
                        remaining=decimal_str(r.remaining), status=rules_pb2.LotStatus.Value(f"LOT_STATUS_{r.status}"))
    for name in ("earned_at", "activates_at", "expires_at", "created_at", "updated_at"):
        at = getattr(r, name)
        if at is not None:
            getattr(msg, name).FromDatetime(at)
    return msg


def reversal_message(r: ReversalResult) -> rules_pb2.Reversal:
    rec = r.record
    msg = rules_pb2.Reversal(
        reversal_id=rec.id, event_id=rec.event_id, idempotency_key=rec.idempotency_key,
        ratio=_one_share(rec.shares.values()), reversed_ratio=_one_share(fraction_text(f) for f in r.reversed.values()),
        points=decimal_str(rec.points),
        unrecovered=decimal_str(rec.unrecovered), debt=decimal_str(rec.debt), reason=rec.reason,
        transactions=[transaction_message(e) for e in r.entries], deduplicated=r.deduplicated)
    msg.created_at.FromDatetime(rec.created_at)
    return msg


def _one_share(shares: Iterable[str]) -> str:
    """A share as shown, when every program of the event has the same ("" otherwise; "0": none)."""
    distinct = set(shares)
    if len(distinct) > 1:
        return ""
    return shown(parse_fraction(distinct.pop())) if distinct else "0"


def event_points_message(r: EventPointsResult) -> rules_pb2.EventPoints:
    return rules_pb2.EventPoints(event_id=r.event_id, points=decimal_str(r.points),
                                 transactions=[transaction_message(e) for e in r.entries],
                                 balances=[balance_message(b) for b in r.balances])


def _caps(caps: rules_pb2.RuleCaps) -> dict[str, str]:
    return {k: getattr(caps, k) for k in CAP_FIELDS if caps.HasField(k)}


def _ts(msg: Message, field: str) -> dt.datetime | None:
    at: dt.datetime | None = dates.timestamp_field(msg, field)
    return at


def _set_or_cleared(request: rules_pb2.UpdateRuleRequest, name: str) -> tuple[bool, dt.datetime | None]:
    """Whether an update names the timestamp ``name`` (sets it, or clears it), and its value."""
    clear = bool(getattr(request, f"clear_{name}"))
    if request.HasField(name) and clear:
        raise errors.InvalidArgument.field(f"clear_{name}", f"cannot be combined with {name}")
    return request.HasField(name) or clear, _ts(request, name)


def _rule_status(value: int) -> str:
    _known(rules_pb2.RuleStatus, value, "status")
    if value == rules_pb2.RULE_STATUS_ARCHIVED:
        raise errors.InvalidArgument.field("status", "must be ACTIVE or SUSPENDED (archive with DELETE)")
    return _enum_name(rules_pb2.RuleStatus, value, "RULE_STATUS_", "ACTIVE")


#: The fields of an UpdateRuleRequest that are stored as they come.
_PLAIN_RULE_FIELDS = ("name", "event_type", "condition", "formula", "apply_tier_multiplier", "order",
                      "stop_after_match")


def rule_fields(request: rules_pb2.CreateRuleRequest) -> RuleFields:
    return RuleFields(
        name=request.name, event_type=request.event_type,
        condition=request.condition, formula=request.formula,
        apply_tier_multiplier=(request.apply_tier_multiplier
                               if request.HasField("apply_tier_multiplier") else True),
        order=request.order, stop_after_match=request.stop_after_match,
        active_from=_ts(request, "active_from"), active_to=_ts(request, "active_to"),
        status=_rule_status(request.status), caps=_caps(request.caps),
        expiry=expiry_dict(request.expiry) if request.HasField("expiry") else None)


class RulesServicer:
    """Every RPC of RulesService (``add_RulesServiceServicer_to_server`` takes any object that
    has them; the generated base class only adds UNIMPLEMENTED stubs, and is untyped)."""

    def __init__(self, service: RulesService, points: EventPoints) -> None:
        self._svc = service
        self._points = points

    # -- programs -----------------------------------------------------------------------
    def CreateProgram(self, request: rules_pb2.CreateProgramRequest,
                      context: grpc.ServicerContext) -> rules_pb2.Program:
        _known(identity_pb2.UnknownParticipantPolicy, request.on_unknown_participant, "on_unknown_participant")
        _known(rules_pb2.RoundingMode, request.rounding_mode, "rounding_mode")
        _known(rules_pb2.EventTypePolicy, request.event_type_policy, "event_type_policy")
        row = self._svc.create_program(
            auth.tenant_id(), name=request.name,
            on_unknown=_enum_name(identity_pb2.UnknownParticipantPolicy,
                                  request.on_unknown_participant,
                                  "UNKNOWN_PARTICIPANT_POLICY_", "CREATE"),
            tiers=[{"name": t.name, "min_lifetime_points": t.min_lifetime_points,
                    "multiplier": t.multiplier} for t in request.tiers],
            rounding_mode=_enum_name(rules_pb2.RoundingMode, request.rounding_mode,
                                     "ROUNDING_MODE_", "FLOOR"),
            rounding_precision=request.rounding_precision,
            event_type_policy=_enum_name(rules_pb2.EventTypePolicy, request.event_type_policy,
                                         "EVENT_TYPE_POLICY_", "OPEN"),
            scheduled_triggers=triggers_dict(request.scheduled_triggers),
            bank=_bank_fields(request, lambda name: name != "timezone" or bool(request.timezone)),
            pending=pending_dict(request.pending) if request.HasField("pending") else None,
            monetary_field=request.monetary_field)
        return program_message(row)

    def UpdateProgram(self, request: rules_pb2.UpdateProgramRequest,
                      context: grpc.ServicerContext) -> rules_pb2.Program:
        changes: ProgramChanges = {}
        if request.HasField("name"):
            changes["name"] = request.name
        if request.HasField("on_unknown_participant"):
            _known(identity_pb2.UnknownParticipantPolicy, request.on_unknown_participant, "on_unknown_participant")
            changes["on_unknown_participant"] = _enum_name(
                identity_pb2.UnknownParticipantPolicy, request.on_unknown_participant,
                "UNKNOWN_PARTICIPANT_POLICY_", "CREATE")
        if request.HasField("rounding_mode"):
            _known(rules_pb2.RoundingMode, request.rounding_mode, "rounding_mode")
            changes["rounding_mode"] = _enum_name(rules_pb2.RoundingMode, request.rounding_mode,
                                                  "ROUNDING_MODE_", "FLOOR")
        if request.HasField("rounding_precision"):
            changes["rounding_precision"] = request.rounding_precision
        if request.HasField("event_type_policy"):
            _known(rules_pb2.EventTypePolicy, request.event_type_policy, "event_type_policy")
            changes["event_type_policy"] = _enum_name(rules_pb2.EventTypePolicy, request.event_type_policy,
                                                      "EVENT_TYPE_POLICY_", "OPEN")
        if request.HasField("scheduled_triggers"):
            changes["scheduled_triggers"] = triggers_dict(request.scheduled_triggers)
        bank = _bank_fields(request, request.HasField)
        if bank:
            changes["bank"] = bank
        if request.HasField("pending"):
            changes["pending"] = pending_dict(request.pending)
        if request.HasField("monetary_field"):
            changes["monetary_field"] = request.monetary_field
        if request.tiers and request.clear_tiers:
            raise errors.InvalidArgument.field("clear_tiers", "cannot be combined with tiers")
        if request.tiers or request.clear_tiers:
            changes["tiers"] = [{"name": t.name, "min_lifetime_points": t.min_lifetime_points,
                                 "multiplier": t.multiplier} for t in request.tiers]
        return program_message(self._svc.update_program(auth.tenant_id(), request.program_id, changes))

    def GetProgram(self, request: rules_pb2.GetProgramRequest,
                   context: grpc.ServicerContext) -> rules_pb2.Program:
        return program_message(self._svc.get_program(auth.tenant_id(), request.program_id))

    def ListPrograms(self, request: rules_pb2.ListProgramsRequest,
                     context: grpc.ServicerContext) -> rules_pb2.ListProgramsResponse:
        rows, token = self._svc.list_programs(auth.tenant_id(), request.page_size, request.page_token)
        return rules_pb2.ListProgramsResponse(programs=[program_message(r) for r in rows],
                                              next_page_token=token)

    # -- event types ----------------------------------------------------------------------
    def CreateEventType(self, request: rules_pb2.CreateEventTypeRequest,
                        context: grpc.ServicerContext) -> rules_pb2.EventType:
        row = self._svc.create_event_type(auth.tenant_id(), request.program_id, request.name,
                                          request.description, _properties(request.properties))
        return event_type_message(row)

    def GetEventType(self, request: rules_pb2.GetEventTypeRequest,
                     context: grpc.ServicerContext) -> rules_pb2.EventType:
        return event_type_message(self._svc.get_event_type(auth.tenant_id(), request.program_id, request.name))

    def UpdateEventType(self, request: rules_pb2.UpdateEventTypeRequest,
                        context: grpc.ServicerContext) -> rules_pb2.EventType:
        if request.properties and request.clear_properties:
            raise errors.InvalidArgument.field("clear_properties", "cannot be combined with properties")
        props = _properties(request.properties) if request.properties or request.clear_properties else None
        return event_type_message(self._svc.update_event_type(
            auth.tenant_id(), request.program_id, request.name,
            description=request.description if request.HasField("description") else None, properties=props))

    def DeleteEventType(self, request: rules_pb2.DeleteEventTypeRequest,
                        context: grpc.ServicerContext) -> rules_pb2.EventType:
        return event_type_message(self._svc.delete_event_type(auth.tenant_id(), request.program_id, request.name))

    def ListEventTypes(self, request: rules_pb2.ListEventTypesRequest,
                       context: grpc.ServicerContext) -> rules_pb2.ListEventTypesResponse:
        rows = self._svc.list_event_types(auth.tenant_id(), request.program_id)
        return rules_pb2.ListEventTypesResponse(event_types=[event_type_message(r) for r in rows])

    # -- rules --------------------------------------------------------------------------
    def CreateRule(self, request: rules_pb2.CreateRuleRequest,
                   context: grpc.ServicerContext) -> rules_pb2.Rule:
        return rule_message(self._svc.create_rule(auth.tenant_id(), request.program_id,
                                                  rule_fields(request)))

    def UpdateRule(self, request: rules_pb2.UpdateRuleRequest,
                   context: grpc.ServicerContext) -> rules_pb2.Rule:
        changes: dict[str, Any] = {name: getattr(request, name) for name in _PLAIN_RULE_FIELDS
                                   if request.HasField(name)}
        for name in ("active_from", "active_to"):
            named, at = _set_or_cleared(request, name)
            if named:
                changes[name] = at
        if request.HasField("status"):
            changes["status"] = _rule_status(request.status)
        if request.HasField("caps"):
            changes["caps"] = _caps(request.caps)
        if request.HasField("expiry") and request.clear_expiry:
            raise errors.InvalidArgument.field("clear_expiry", "cannot be combined with expiry")
        if request.HasField("expiry") or request.clear_expiry:
            changes["expiry"] = expiry_dict(request.expiry) if request.HasField("expiry") else None
        return rule_message(self._svc.update_rule(auth.tenant_id(), request.program_id,
                                                  request.rule_id, changes))

    def ReorderRules(self, request: rules_pb2.ReorderRulesRequest,
                     context: grpc.ServicerContext) -> rules_pb2.ReorderRulesResponse:
        rows = self._svc.reorder_rules(auth.tenant_id(), request.program_id, list(request.rule_ids))
        return rules_pb2.ReorderRulesResponse(rules=[rule_message(r) for r in rows])

    def DeleteRule(self, request: rules_pb2.DeleteRuleRequest,
                   context: grpc.ServicerContext) -> rules_pb2.Rule:
        return rule_message(self._svc.delete_rule(auth.tenant_id(), request.program_id, request.rule_id))

    def GetRule(self, request: rules_pb2.GetRuleRequest,
                context: grpc.ServicerContext) -> rules_pb2.Rule:
        return rule_message(self._svc.get_rule(auth.tenant_id(), request.program_id, request.rule_id))

    def ListRules(self, request: rules_pb2.ListRulesRequest,
                  context: grpc.ServicerContext) -> rules_pb2.ListRulesResponse:
        rows = self._svc.list_rules(auth.tenant_id(), request.program_id)
        return rules_pb2.ListRulesResponse(rules=[rule_message(r) for r in rows])

    def ListRuleVersions(self, request: rules_pb2.ListRuleVersionsRequest,
                         context: grpc.ServicerContext) -> rules_pb2.ListRuleVersionsResponse:
        rows = self._svc.rule_versions(auth.tenant_id(), request.program_id, request.rule_id)
        return rules_pb2.ListRuleVersionsResponse(versions=[rule_message(r) for r in rows])

    def GetRuleVersion(self, request: rules_pb2.GetRuleVersionRequest,
                       context: grpc.ServicerContext) -> rules_pb2.Rule:
        if request.version < 1:
            raise errors.InvalidArgument.field("version", "must be 1 or more")
        rows = self._svc.rule_versions(auth.tenant_id(), request.program_id, request.rule_id,
                                       request.version)
        return rule_message(rows[0])

    def SimulateRules(self, request: rules_pb2.SimulateRulesRequest,
                      context: grpc.ServicerContext) -> rules_pb2.SimulateRulesResponse:
        evaluations, total, tier = self._svc.simulate(
            auth.tenant_id(), request.program_id, event_type=request.event_type,
            event_data=json_format.MessageToDict(request.event_data),
            event_timestamp=_ts(request, "event_timestamp"), participant_id=request.participant_id,
            attributes=json_format.MessageToDict(request.participant_attributes),
            drafts=[rule_fields(d) for d in request.draft_rules])
        return rules_pb2.SimulateRulesResponse(
            rule_evaluations=[messages_pb2.RuleEvaluation(
                rule_id=e.rule_id, rule_version=e.version, rule_name=e.name, matched=e.matched,
                skip_reason=e.skip_reason, message=e.message, points=decimal_str(e.points),
                recipient_id=request.participant_id if e.matched else "") for e in evaluations],
            points_awarded=decimal_str(total), tier=tier)

    def ValidateRule(self, request: rules_pb2.ValidateRuleRequest,
                     context: grpc.ServicerContext) -> rules_pb2.ValidateRuleResponse:
        found = self._svc.rule_violations(auth.tenant_id(), request.program_id,
                                          lambda: rule_fields(request.rule))
        return rules_pb2.ValidateRuleResponse(valid=not found, violations=[
            rules_pb2.RuleViolation(field=v.field, description=v.description, position=(
                rules_pb2.ExpressionPosition(start=v.position.start, end=v.position.end,
                                             line=v.position.line, column=v.position.column)
                if isinstance(v, ExpressionViolation) and v.position is not None else None))
            for v in found])

    # -- ledger -------------------------------------------------------------------------
    def GetBalance(self, request: rules_pb2.GetBalanceRequest,
                   context: grpc.ServicerContext) -> rules_pb2.Balance:
        balance = self._svc.balance(auth.tenant_id(), request.program_id, request.participant_id)
        return balance_message(balance.account, balance.expiring, balance.held)

    def ListLots(self, request: rules_pb2.ListLotsRequest, context: grpc.ServicerContext) -> rules_pb2.ListLotsResponse:
        _known(rules_pb2.LotStatus, request.status, "status")
        rows, token = self._svc.lots(auth.tenant_id(), request.program_id, request.participant_id,
                                     _enum_name(rules_pb2.LotStatus, request.status, "LOT_STATUS_", ""),
                                     request.page_size, request.page_token)
        return rules_pb2.ListLotsResponse(lots=[lot_message(r) for r in rows], next_page_token=token)

    def ListTransactions(self, request: rules_pb2.ListTransactionsRequest,
                         context: grpc.ServicerContext) -> rules_pb2.ListTransactionsResponse:
        rows, token = self._svc.transactions(auth.tenant_id(), request.program_id,
                                             request.participant_id, request.page_size,
                                             request.page_token)
        return rules_pb2.ListTransactionsResponse(transactions=[transaction_message(r) for r in rows],
                                                  next_page_token=token)

    def CreateAdjustment(self, request: rules_pb2.CreateAdjustmentRequest,
                         context: grpc.ServicerContext) -> rules_pb2.Adjustment:
        row, balance, deduplicated = self._svc.adjust(
            auth.tenant_id(), request.program_id, request.participant_id, amount=request.amount,
            reason=request.reason, idempotency_key=request.idempotency_key,
            allow_negative=request.allow_negative)
        return rules_pb2.Adjustment(transaction=transaction_message(row), balance=balance_message(balance),
                                    deduplicated=deduplicated)

    # -- an event's points ----------------------------------------------------------------
    def CreateReversal(self, request: rules_pb2.CreateReversalRequest,
                       context: grpc.ServicerContext) -> rules_pb2.Reversal:
        v: list[errors.FieldViolation] = []
        event_id = _uuid_or_violation(request.event_id, "event_id", v)
        checked = check_reversal(event_id, request.idempotency_key,
                                 request.ratio if request.HasField("ratio") else None,
                                 request.amount if request.HasField("amount") else None, request.reason, v)
        return reversal_message(self._points.reverse(auth.tenant_id(), checked))

    def CancelPoints(self, request: rules_pb2.CancelPointsRequest,
                     context: grpc.ServicerContext) -> rules_pb2.EventPoints:
        event_id = require_uuid(request.event_id, "event_id")
        reason = request.reason.strip() or "cancelled"
        v: list[errors.FieldViolation] = []
        if len(reason) > 500:
            v.append(errors.FieldViolation("reason", "must be at most 500 characters"))
        text.check_name(v, "reason", reason)
        errors.collect(v)
        return event_points_message(self._points.cancel(auth.tenant_id(), event_id, reason))

    def ActivatePoints(self, request: rules_pb2.ActivatePointsRequest,
                       context: grpc.ServicerContext) -> rules_pb2.EventPoints:
        event_id = require_uuid(request.event_id, "event_id")
        return event_points_message(self._points.activate(auth.tenant_id(), event_id))


def _uuid_or_violation(value: str, field: str, v: list[errors.FieldViolation]) -> str:
    try:
        return require_uuid(value, field)
    except errors.InvalidArgument as exc:
        v.extend(exc.violations)
        return value
