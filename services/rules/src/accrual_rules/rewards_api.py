"""RewardsService servicer, gRPC only: request message in, one use case of
:class:`accrual_rules.rewards_service.RewardsService`, response message out."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import grpc
from accrual.rules.v1 import rewards_pb2
from accrual_platform import auth, dates, errors
from accrual_platform.db import decimal_str

from accrual_rules.domain.rewards import RewardFields, RewardLimit, Unavailable, parse_cost
from accrual_rules.rewards_service import RewardsService
from accrual_rules.rewards_store import RedemptionRecord, RewardRecord


def _status(value: int, field: str = "status") -> str:
    if value not in rewards_pb2.RewardStatus.values():
        raise errors.InvalidArgument.field(field, "is not a known value")
    return rewards_pb2.RewardStatus.Name(value).removeprefix("REWARD_STATUS_") if value else "DRAFT"


def _state(value: int) -> str | None:
    if value not in rewards_pb2.RedemptionState.values():
        raise errors.InvalidArgument.field("state", "is not a known value")
    return rewards_pb2.RedemptionState.Name(value).removeprefix("REDEMPTION_STATE_") if value else None


def _limit(msg: rewards_pb2.RewardLimit) -> RewardLimit:
    return RewardLimit(msg.count, msg.period)


def reward_message(row: RewardRecord) -> rewards_pb2.Reward:
    f = row.fields
    msg = rewards_pb2.Reward(
        reward_id=row.id, program_id=row.program_id, name=f.name, description=f.description,
        cost_points=decimal_str(f.cost_points), eligible_tiers=list(f.eligible_tiers),
        status=rewards_pb2.RewardStatus.Value(f"REWARD_STATUS_{f.status}"))
    if f.stock is not None:
        msg.stock = f.stock
    if f.limit is not None:
        msg.per_participant_limit.CopyFrom(rewards_pb2.RewardLimit(count=f.limit.count, period=f.limit.period))
    if f.active_from:
        msg.active_from.FromDatetime(f.active_from)
    if f.active_to:
        msg.active_to.FromDatetime(f.active_to)
    msg.created_at.FromDatetime(row.created_at)
    msg.updated_at.FromDatetime(row.updated_at)
    return msg


def redemption_message(r: RedemptionRecord, *, deduplicated: bool = False,
                       dry_run: bool = False) -> rewards_pb2.Redemption:
    msg = rewards_pb2.Redemption(
        redemption_id=r.id, program_id=r.program_id, participant_id=r.participant_id,
        idempotency_key=r.idempotency_key, reward_id=r.reward_id or "",
        state=rewards_pb2.RedemptionState.Value(f"REDEMPTION_STATE_{r.state}"), points=decimal_str(r.points),
        captured_points=decimal_str(r.captured_points), refunded_points=decimal_str(r.refunded_points),
        external_ref=r.external_ref, deduplicated=deduplicated, dry_run=dry_run,
        allocations=[rewards_pb2.RedemptionAllocation(lot_id=a.lot_id, points=decimal_str(a.amount))
                     for a in r.allocations])
    msg.hold_expires_at.FromDatetime(r.hold_expires_at)
    msg.created_at.FromDatetime(r.created_at)
    msg.updated_at.FromDatetime(r.updated_at)
    return msg


def _reason(u: Unavailable) -> rewards_pb2.UnavailableReason:
    return rewards_pb2.UnavailableReason(code=u.code, message=u.message,
                                         shortfall=decimal_str(u.shortfall) if u.shortfall else "")


def _hold_ttl(request: rewards_pb2.CreateRedemptionRequest) -> dt.timedelta | None:
    if not request.HasField("hold_ttl"):
        return None
    ttl = request.hold_ttl
    if not 0 <= ttl.seconds <= 10**9 or not 0 <= ttl.nanos < 1_000_000_000:
        raise errors.InvalidArgument.field("hold_ttl", "must be between 1s and 7 days")
    return dt.timedelta(seconds=ttl.seconds, microseconds=ttl.nanos // 1000)


class RewardsServicer:
    """Every RPC of RewardsService."""

    def __init__(self, service: RewardsService) -> None:
        self._svc = service

    # -- the catalogue ------------------------------------------------------------------------
    def CreateReward(self, request: rewards_pb2.CreateRewardRequest,
                     context: grpc.ServicerContext) -> rewards_pb2.Reward:
        fields = RewardFields(
            name=request.name, cost_points=parse_cost(request.cost_points), description=request.description,
            stock=request.stock if request.HasField("stock") else None,
            limit=_limit(request.per_participant_limit) if request.HasField("per_participant_limit") else None,
            eligible_tiers=tuple(request.eligible_tiers),
            active_from=dates.timestamp_field(request, "active_from"),
            active_to=dates.timestamp_field(request, "active_to"), status=_status(request.status))
        return reward_message(self._svc.create_reward(auth.tenant_id(), request.program_id, fields))

    def GetReward(self, request: rewards_pb2.GetRewardRequest,
                  context: grpc.ServicerContext) -> rewards_pb2.Reward:
        return reward_message(self._svc.get_reward(auth.tenant_id(), request.program_id, request.reward_id))

    def ListRewards(self, request: rewards_pb2.ListRewardsRequest,
                    context: grpc.ServicerContext) -> rewards_pb2.ListRewardsResponse:
        rows, token = self._svc.list_rewards(auth.tenant_id(), request.program_id,
                                             _status(request.status) if request.status else None,
                                             request.page_size, request.page_token)
        return rewards_pb2.ListRewardsResponse(rewards=[reward_message(r) for r in rows], next_page_token=token)

    def UpdateReward(self, request: rewards_pb2.UpdateRewardRequest,
                     context: grpc.ServicerContext) -> rewards_pb2.Reward:
        for name in ("stock", "per_participant_limit", "active_from", "active_to"):
            if request.HasField(name) and getattr(request, f"clear_{name}"):
                raise errors.InvalidArgument.field(f"clear_{name}", f"cannot be combined with {name}")
        if request.eligible_tiers and request.clear_eligible_tiers:
            raise errors.InvalidArgument.field("clear_eligible_tiers", "cannot be combined with eligible_tiers")
        changes: dict[str, Any] = {}
        for name in ("name", "description"):
            if request.HasField(name):
                changes[name] = getattr(request, name)
        if request.HasField("cost_points"):
            changes["cost_points"] = parse_cost(request.cost_points)
        if request.HasField("stock") or request.clear_stock:
            changes["stock"] = request.stock if request.HasField("stock") else None
        if request.HasField("per_participant_limit") or request.clear_per_participant_limit:
            changes["limit"] = (_limit(request.per_participant_limit)
                                if request.HasField("per_participant_limit") else None)
        if request.eligible_tiers or request.clear_eligible_tiers:
            changes["eligible_tiers"] = tuple(request.eligible_tiers)
        for name in ("active_from", "active_to"):
            if request.HasField(name) or getattr(request, f"clear_{name}"):
                changes[name] = dates.timestamp_field(request, name)
        if request.HasField("status"):
            if not request.status:
                raise errors.InvalidArgument.field("status", "must be DRAFT, ACTIVE or INACTIVE")
            changes["status"] = _status(request.status)
        return reward_message(self._svc.update_reward(auth.tenant_id(), request.program_id, request.reward_id,
                                                      lambda current: replace(current, **changes)))

    def ExamineRewards(self, request: rewards_pb2.ExamineRewardsRequest,
                       context: grpc.ServicerContext) -> rewards_pb2.ExamineRewardsResponse:
        rows, available = self._svc.examine(auth.tenant_id(), request.program_id, request.participant_id)
        return rewards_pb2.ExamineRewardsResponse(available=decimal_str(available), rewards=[
            rewards_pb2.ExaminedReward(
                reward=reward_message(reward),
                availability=(rewards_pb2.REWARD_AVAILABILITY_UNAVAILABLE if reasons
                              else rewards_pb2.REWARD_AVAILABILITY_AVAILABLE),
                reasons=[_reason(u) for u in reasons]) for reward, reasons in rows])

    # -- redemptions ----------------------------------------------------------------------------
    def CreateRedemption(self, request: rewards_pb2.CreateRedemptionRequest,
                         context: grpc.ServicerContext) -> rewards_pb2.Redemption:
        row, deduplicated = self._svc.redeem(
            auth.tenant_id(), request.program_id, request.participant_id,
            idempotency_key=request.idempotency_key, reward_id=request.reward_id, points=request.points,
            capture=request.capture, hold_ttl=_hold_ttl(request), external_ref=request.external_ref,
            dry_run=request.dry_run)
        return redemption_message(row, deduplicated=deduplicated, dry_run=request.dry_run)

    def GetRedemption(self, request: rewards_pb2.GetRedemptionRequest,
                      context: grpc.ServicerContext) -> rewards_pb2.Redemption:
        return redemption_message(self._svc.get_redemption(auth.tenant_id(), request.redemption_id))

    def ListRedemptions(self, request: rewards_pb2.ListRedemptionsRequest,
                        context: grpc.ServicerContext) -> rewards_pb2.ListRedemptionsResponse:
        rows, token = self._svc.list_redemptions(auth.tenant_id(), request.program_id, request.participant_id,
                                                 _state(request.state), request.page_size, request.page_token)
        return rewards_pb2.ListRedemptionsResponse(redemptions=[redemption_message(r) for r in rows],
                                                   next_page_token=token)

    def CaptureRedemption(self, request: rewards_pb2.CaptureRedemptionRequest,
                          context: grpc.ServicerContext) -> rewards_pb2.Redemption:
        points = request.points if request.HasField("points") else None
        return redemption_message(self._svc.capture(auth.tenant_id(), request.redemption_id, points))

    def CancelRedemption(self, request: rewards_pb2.CancelRedemptionRequest,
                         context: grpc.ServicerContext) -> rewards_pb2.Redemption:
        return redemption_message(self._svc.cancel(auth.tenant_id(), request.redemption_id))

    def RefundRedemption(self, request: rewards_pb2.RefundRedemptionRequest,
                         context: grpc.ServicerContext) -> rewards_pb2.Redemption:
        points = request.points if request.HasField("points") else None
        return redemption_message(self._svc.refund(auth.tenant_id(), request.redemption_id,
                                                   idempotency_key=request.idempotency_key, points=points,
                                                   reason=request.reason))
