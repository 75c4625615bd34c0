import datetime

from accrual.options.v1 import options_pb2 as _options_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RewardStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REWARD_STATUS_UNSPECIFIED: _ClassVar[RewardStatus]
    REWARD_STATUS_DRAFT: _ClassVar[RewardStatus]
    REWARD_STATUS_ACTIVE: _ClassVar[RewardStatus]
    REWARD_STATUS_INACTIVE: _ClassVar[RewardStatus]

class RewardAvailability(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REWARD_AVAILABILITY_UNSPECIFIED: _ClassVar[RewardAvailability]
    REWARD_AVAILABILITY_AVAILABLE: _ClassVar[RewardAvailability]
    REWARD_AVAILABILITY_UNAVAILABLE: _ClassVar[RewardAvailability]

class RedemptionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REDEMPTION_STATE_UNSPECIFIED: _ClassVar[RedemptionState]
    REDEMPTION_STATE_HELD: _ClassVar[RedemptionState]
    REDEMPTION_STATE_CAPTURED: _ClassVar[RedemptionState]
    REDEMPTION_STATE_CANCELLED: _ClassVar[RedemptionState]
    REDEMPTION_STATE_EXPIRED: _ClassVar[RedemptionState]
    REDEMPTION_STATE_PARTIALLY_REFUNDED: _ClassVar[RedemptionState]
    REDEMPTION_STATE_REFUNDED: _ClassVar[RedemptionState]
REWARD_STATUS_UNSPECIFIED: RewardStatus
REWARD_STATUS_DRAFT: RewardStatus
REWARD_STATUS_ACTIVE: RewardStatus
REWARD_STATUS_INACTIVE: RewardStatus
REWARD_AVAILABILITY_UNSPECIFIED: RewardAvailability
REWARD_AVAILABILITY_AVAILABLE: RewardAvailability
REWARD_AVAILABILITY_UNAVAILABLE: RewardAvailability
REDEMPTION_STATE_UNSPECIFIED: RedemptionState
REDEMPTION_STATE_HELD: RedemptionState
REDEMPTION_STATE_CAPTURED: RedemptionState
REDEMPTION_STATE_CANCELLED: RedemptionState
REDEMPTION_STATE_EXPIRED: RedemptionState
REDEMPTION_STATE_PARTIALLY_REFUNDED: RedemptionState
REDEMPTION_STATE_REFUNDED: RedemptionState

class RewardLimit(_message.Message):
    __slots__ = ("count", "period")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    count: int
    period: str
    def __init__(self, count: _Optional[int] = ..., period: _Optional[str] = ...) -> None: ...

class Reward(_message.Message):
    __slots__ = ("reward_id", "program_id", "name", "description", "cost_points", "stock", "per_participant_limit", "eligible_tiers", "active_from", "active_to", "status", "created_at", "updated_at")
    REWARD_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    COST_POINTS_FIELD_NUMBER: _ClassVar[int]
    STOCK_FIELD_NUMBER: _ClassVar[int]
    PER_PARTICIPANT_LIMIT_FIELD_NUMBER: _ClassVar[int]
    ELIGIBLE_TIERS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FROM_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_TO_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    reward_id: str
    program_id: str
    name: str
    description: str
    cost_points: str
    stock: int
    per_participant_limit: RewardLimit
    eligible_tiers: _containers.RepeatedScalarFieldContainer[str]
    active_from: _timestamp_pb2.Timestamp
    active_to: _timestamp_pb2.Timestamp
    status: RewardStatus
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, reward_id: _Optional[str] = ..., program_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., cost_points: _Optional[str] = ..., stock: _Optional[int] = ..., per_participant_limit: _Optional[_Union[RewardLimit, _Mapping]] = ..., eligible_tiers: _Optional[_Iterable[str]] = ..., active_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active_to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[RewardStatus, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateRewardRequest(_message.Message):
    __slots__ = ("program_id", "name", "description", "cost_points", "stock", "per_participant_limit", "eligible_tiers", "active_from", "active_to", "status")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    COST_POINTS_FIELD_NUMBER: _ClassVar[int]
    STOCK_FIELD_NUMBER: _ClassVar[int]
    PER_PARTICIPANT_LIMIT_FIELD_NUMBER: _ClassVar[int]
    ELIGIBLE_TIERS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FROM_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_TO_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    name: str
    description: str
    cost_points: str
    stock: int
    per_participant_limit: RewardLimit
    eligible_tiers: _containers.RepeatedScalarFieldContainer[str]
    active_from: _timestamp_pb2.Timestamp
    active_to: _timestamp_pb2.Timestamp
    status: RewardStatus
    def __init__(self, program_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., cost_points: _Optional[str] = ..., stock: _Optional[int] = ..., per_participant_limit: _Optional[_Union[RewardLimit, _Mapping]] = ..., eligible_tiers: _Optional[_Iterable[str]] = ..., active_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active_to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[RewardStatus, str]] = ...) -> None: ...

class GetRewardRequest(_message.Message):
    __slots__ = ("program_id", "reward_id")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    REWARD_ID_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    reward_id: str
    def __init__(self, program_id: _Optional[str] = ..., reward_id: _Optional[str] = ...) -> None: ...

class ListRewardsRequest(_message.Message):
    __slots__ = ("program_id", "status", "page_size", "page_token")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    status: RewardStatus
    page_size: int
    page_token: str
    def __init__(self, program_id: _Optional[str] = ..., status: _Optional[_Union[RewardStatus, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListRewardsResponse(_message.Message):
    __slots__ = ("rewards", "next_page_token")
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    rewards: _containers.RepeatedCompositeFieldContainer[Reward]
    next_page_token: str
    def __init__(self, rewards: _Optional[_Iterable[_Union[Reward, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateRewardRequest(_message.Message):
    __slots__ = ("program_id", "reward_id", "name", "description", "cost_points", "stock", "clear_stock", "per_participant_limit", "clear_per_participant_limit", "eligible_tiers", "clear_eligible_tiers", "active_from", "active_to", "clear_active_from", "clear_active_to", "status")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    REWARD_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    COST_POINTS_FIELD_NUMBER: _ClassVar[int]
    STOCK_FIELD_NUMBER: _ClassVar[int]
    CLEAR_STOCK_FIELD_NUMBER: _ClassVar[int]
    PER_PARTICIPANT_LIMIT_FIELD_NUMBER: _ClassVar[int]
    CLEAR_PER_PARTICIPANT_LIMIT_FIELD_NUMBER: _ClassVar[int]
    ELIGIBLE_TIERS_FIELD_NUMBER: _ClassVar[int]
    CLEAR_ELIGIBLE_TIERS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FROM_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_TO_FIELD_NUMBER: _ClassVar[int]
    CLEAR_ACTIVE_FROM_FIELD_NUMBER: _ClassVar[int]
    CLEAR_ACTIVE_TO_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    reward_id: str
    name: str
    description: str
    cost_points: str
    stock: int
    clear_stock: bool
    per_participant_limit: RewardLimit
    clear_per_participant_limit: bool
    eligible_tiers: _containers.RepeatedScalarFieldContainer[str]
    clear_eligible_tiers: bool
    active_from: _timestamp_pb2.Timestamp
    active_to: _timestamp_pb2.Timestamp
    clear_active_from: bool
    clear_active_to: bool
    status: RewardStatus
    def __init__(self, program_id: _Optional[str] = ..., reward_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., cost_points: _Optional[str] = ..., stock: _Optional[int] = ..., clear_stock: _Optional[bool] = ..., per_participant_limit: _Optional[_Union[RewardLimit, _Mapping]] = ..., clear_per_participant_limit: _Optional[bool] = ..., eligible_tiers: _Optional[_Iterable[str]] = ..., clear_eligible_tiers: _Optional[bool] = ..., active_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active_to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., clear_active_from: _Optional[bool] = ..., clear_active_to: _Optional[bool] = ..., status: _Optional[_Union[RewardStatus, str]] = ...) -> None: ...

class UnavailableReason(_message.Message):
    __slots__ = ("code", "message", "shortfall")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SHORTFALL_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    shortfall: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., shortfall: _Optional[str] = ...) -> None: ...

class ExaminedReward(_message.Message):
    __slots__ = ("reward", "availability", "reasons")
    REWARD_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    reward: Reward
    availability: RewardAvailability
    reasons: _containers.RepeatedCompositeFieldContainer[UnavailableReason]
    def __init__(self, reward: _Optional[_Union[Reward, _Mapping]] = ..., availability: _Optional[_Union[RewardAvailability, str]] = ..., reasons: _Optional[_Iterable[_Union[UnavailableReason, _Mapping]]] = ...) -> None: ...

class ExamineRewardsRequest(_message.Message):
    __slots__ = ("program_id", "participant_id")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    participant_id: str
    def __init__(self, program_id: _Optional[str] = ..., participant_id: _Optional[str] = ...) -> None: ...

class ExamineRewardsResponse(_message.Message):
    __slots__ = ("rewards", "available")
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    rewards: _containers.RepeatedCompositeFieldContainer[ExaminedReward]
    available: str
    def __init__(self, rewards: _Optional[_Iterable[_Union[ExaminedReward, _Mapping]]] = ..., available: _Optional[str] = ...) -> None: ...

class RedemptionAllocation(_message.Message):
    __slots__ = ("lot_id", "points")
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    lot_id: str
    points: str
    def __init__(self, lot_id: _Optional[str] = ..., points: _Optional[str] = ...) -> None: ...

class Redemption(_message.Message):
    __slots__ = ("redemption_id", "program_id", "participant_id", "idempotency_key", "reward_id", "state", "points", "captured_points", "refunded_points", "external_ref", "hold_expires_at", "allocations", "created_at", "updated_at", "deduplicated", "dry_run")
    REDEMPTION_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    REWARD_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    CAPTURED_POINTS_FIELD_NUMBER: _ClassVar[int]
    REFUNDED_POINTS_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_REF_FIELD_NUMBER: _ClassVar[int]
    HOLD_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    DEDUPLICATED_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    redemption_id: str
    program_id: str
    participant_id: str
    idempotency_key: str
    reward_id: str
    state: RedemptionState
    points: str
    captured_points: str
    refunded_points: str
    external_ref: str
    hold_expires_at: _timestamp_pb2.Timestamp
    allocations: _containers.RepeatedCompositeFieldContainer[RedemptionAllocation]
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    deduplicated: bool
    dry_run: bool
    def __init__(self, redemption_id: _Optional[str] = ..., program_id: _Optional[str] = ..., participant_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., reward_id: _Optional[str] = ..., state: _Optional[_Union[RedemptionState, str]] = ..., points: _Optional[str] = ..., captured_points: _Optional[str] = ..., refunded_points: _Optional[str] = ..., external_ref: _Optional[str] = ..., hold_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., allocations: _Optional[_Iterable[_Union[RedemptionAllocation, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deduplicated: _Optional[bool] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class CreateRedemptionRequest(_message.Message):
    __slots__ = ("program_id", "participant_id", "idempotency_key", "reward_id", "points", "capture", "hold_ttl", "external_ref", "dry_run")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    REWARD_ID_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_FIELD_NUMBER: _ClassVar[int]
    HOLD_TTL_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_REF_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    participant_id: str
    idempotency_key: str
    reward_id: str
    points: str
    capture: bool
    hold_ttl: _duration_pb2.Duration
    external_ref: str
    dry_run: bool
    def __init__(self, program_id: _Optional[str] = ..., participant_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., reward_id: _Optional[str] = ..., points: _Optional[str] = ..., capture: _Optional[bool] = ..., hold_ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., external_ref: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class GetRedemptionRequest(_message.Message):
    __slots__ = ("redemption_id",)
    REDEMPTION_ID_FIELD_NUMBER: _ClassVar[int]
    redemption_id: str
    def __init__(self, redemption_id: _Optional[str] = ...) -> None: ...

class ListRedemptionsRequest(_message.Message):
    __slots__ = ("program_id", "participant_id", "state", "page_size", "page_token")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    participant_id: str
    state: RedemptionState
    page_size: int
    page_token: str
    def __init__(self, program_id: _Optional[str] = ..., participant_id: _Optional[str] = ..., state: _Optional[_Union[RedemptionState, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListRedemptionsResponse(_message.Message):
    __slots__ = ("redemptions", "next_page_token")
    REDEMPTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    redemptions: _containers.RepeatedCompositeFieldContainer[Redemption]
    next_page_token: str
    def __init__(self, redemptions: _Optional[_Iterable[_Union[Redemption, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CaptureRedemptionRequest(_message.Message):
    __slots__ = ("redemption_id", "points")
    REDEMPTION_ID_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    redemption_id: str
    points: str
    def __init__(self, redemption_id: _Optional[str] = ..., points: _Optional[str] = ...) -> None: ...

class CancelRedemptionRequest(_message.Message):
    __slots__ = ("redemption_id",)
    REDEMPTION_ID_FIELD_NUMBER: _ClassVar[int]
    redemption_id: str
    def __init__(self, redemption_id: _Optional[str] = ...) -> None: ...

class RefundRedemptionRequest(_message.Message):
    __slots__ = ("redemption_id", "idempotency_key", "points", "reason")
    REDEMPTION_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    redemption_id: str
    idempotency_key: str
    points: str
    reason: str
    def __init__(self, redemption_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., points: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...
