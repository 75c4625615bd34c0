"""RulesService servicer: proto in, use case, proto out."""

from __future__ import annotations

import datetime as dt
from typing import Any

import grpc
import sqlalchemy as sa
from accrual.identity.v1 import identity_pb2
from accrual.rules.v1 import rules_pb2, rules_pb2_grpc
from accrual_platform import auth
from accrual_platform.db import decimal_str

from accrual_rules.service import RulesService


def _enum_name(enum: Any, value: int, prefix: str, default: str) -> str:
    return enum.Name(value).removeprefix(prefix) if value else default


def program_message(row: sa.Row[Any]) -> rules_pb2.Program:
    msg = rules_pb2.Program(
        program_id=row.id, name=row.name,
        on_unknown_participant=identity_pb2.UnknownParticipantPolicy.Value(
            f"UNKNOWN_PARTICIPANT_POLICY_{row.on_unknown_participant}"),
        tiers=[rules_pb2.Tier(name=t["name"], min_lifetime_points=t["min_lifetime_points"],
                              multiplier=t["multiplier"]) for t in row.tiers],
        rounding_mode=rules_pb2.RoundingMode.Value(f"ROUNDING_MODE_{row.rounding_mode}"),
        rounding_precision=row.rounding_precision)
    msg.created_at.FromDatetime(row.created_at)
    msg.updated_at.FromDatetime(row.updated_at)
    return msg


def rule_message(row: sa.Row[Any]) -> rules_pb2.Rule:
    msg = rules_pb2.Rule(
        rule_id=row.id, program_id=row.program_id, version=row.version, name=row.name,
        event_type=row.event_type, condition=row.condition, formula=row.formula,
        apply_tier_multiplier=row.apply_tier_multiplier, order=row.order,
        stop_after_match=row.stop_after_match,
        status=rules_pb2.RuleStatus.Value(f"RULE_STATUS_{row.status}"))
    if row.active_from:
        msg.active_from.FromDatetime(row.active_from)
    if row.active_to:
        msg.active_to.FromDatetime(row.active_to)
    msg.created_at.FromDatetime(row.created_at)
    msg.updated_at.FromDatetime(row.updated_at)
    return msg


class RulesServicer(rules_pb2_grpc.RulesServiceServicer):
    def __init__(self, service: RulesService) -> None:
        self._svc = service

    def CreateProgram(self, request: rules_pb2.CreateProgramRequest,
                      context: grpc.ServicerContext) -> rules_pb2.Program:
        row = self._svc.create_program(
            auth.tenant_id(), name=request.name,
            on_unknown=_enum_name(identity_pb2.UnknownParticipantPolicy,
                                  request.on_unknown_participant,
                                  "UNKNOWN_PARTICIPANT_POLICY_", "CREATE"),
            tiers=[{"name": t.name, "min_lifetime_points": t.min_lifetime_points,
                    "multiplier": t.multiplier} for t in request.tiers],
            rounding_mode=_enum_name(rules_pb2.RoundingMode, request.rounding_mode,
                                     "ROUNDING_MODE_", "FLOOR"),
            rounding_precision=request.rounding_precision)
        return program_message(row)

    def GetProgram(self, request: rules_pb2.GetProgramRequest,
                   context: grpc.ServicerContext) -> rules_pb2.Program:
        return program_message(self._svc.get_program(auth.tenant_id(), request.program_id))

    def ListPrograms(self, request: rules_pb2.ListProgramsRequest,
                     context: grpc.ServicerContext) -> rules_pb2.ListProgramsResponse:
        rows, token = self._svc.list_programs(auth.tenant_id(), request.page_size, request.page_token)
        return rules_pb2.ListProgramsResponse(programs=[program_message(r) for r in rows],
                                              next_page_token=token)

    def CreateRule(self, request: rules_pb2.CreateRuleRequest,
                   context: grpc.ServicerContext) -> rules_pb2.Rule:
        fields = {
            "name": request.name, "event_type": request.event_type,
            "condition": request.condition, "formula": request.formula,
            "apply_tier_multiplier": request.apply_tier_multiplier, "order": request.order,
            "stop_after_match": request.stop_after_match,
            "active_from": request.active_from.ToDatetime(dt.UTC) if request.HasField("active_from") else None,
            "active_to": request.active_to.ToDatetime(dt.UTC) if request.HasField("active_to") else None,
            "status": _enum_name(rules_pb2.RuleStatus, request.status, "RULE_STATUS_", "ACTIVE"),
        }
        return rule_message(self._svc.create_rule(auth.tenant_id(), request.program_id, fields))

    def GetRule(self, request: rules_pb2.GetRuleRequest,
                context: grpc.ServicerContext) -> rules_pb2.Rule:
        return rule_message(self._svc.get_rule(auth.tenant_id(), request.program_id, request.rule_id))

    def ListRules(self, request: rules_pb2.ListRulesRequest,
                  context: grpc.ServicerContext) -> rules_pb2.ListRulesResponse:
        rows = self._svc.list_rules(auth.tenant_id(), request.program_id)
        return rules_pb2.ListRulesResponse(rules=[rule_message(r) for r in rows])

    def GetBalance(self, request: rules_pb2.GetBalanceRequest,
                   context: grpc.ServicerContext) -> rules_pb2.Balance:
        b = self._svc.balance(auth.tenant_id(), request.program_id, request.participant_id)
        return rules_pb2.Balance(program_id=b["program_id"], participant_id=b["participant_id"],
                                 available=decimal_str(b["available"]),
                                 lifetime_earned=decimal_str(b["lifetime_earned"]), tier=b["tier"])

    def ListTransactions(self, request: rules_pb2.ListTransactionsRequest,
                         context: grpc.ServicerContext) -> rules_pb2.ListTransactionsResponse:
        rows, token = self._svc.transactions(auth.tenant_id(), request.program_id,
                                             request.participant_id, request.page_size,
                                             request.page_token)
        resp = rules_pb2.ListTransactionsResponse(next_page_token=token)
        for r in rows:
            t = resp.transactions.add(
                transaction_id=r.id, program_id=r.program_id, participant_id=r.participant_id,
                amount=decimal_str(r.amount), kind=rules_pb2.EntryKind.Value(f"ENTRY_KIND_{r.kind}"),
                source=r.source, event_id=r.event_id or "", rule_id=r.rule_id or "",
                rule_version=r.rule_version or 0, reason=r.reason)
            t.created_at.FromDatetime(r.created_at)
        return resp
