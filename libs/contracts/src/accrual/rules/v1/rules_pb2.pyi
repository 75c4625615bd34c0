import datetime

from accrual.identity.v1 import identity_pb2 as _identity_pb2
from accrual.messages.v1 import messages_pb2 as _messages_pb2
from accrual.options.v1 import options_pb2 as _options_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RoundingMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROUNDING_MODE_UNSPECIFIED: _ClassVar[RoundingMode]
    ROUNDING_MODE_FLOOR: _ClassVar[RoundingMode]
    ROUNDING_MODE_CEILING: _ClassVar[RoundingMode]
    ROUNDING_MODE_HALF_UP: _ClassVar[RoundingMode]
    ROUNDING_MODE_HALF_EVEN: _ClassVar[RoundingMode]

class ExpiryType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPIRY_TYPE_UNSPECIFIED: _ClassVar[ExpiryType]
    EXPIRY_TYPE_NONE: _ClassVar[ExpiryType]
    EXPIRY_TYPE_ROLLING: _ClassVar[ExpiryType]
    EXPIRY_TYPE_CALENDAR: _ClassVar[ExpiryType]
    EXPIRY_TYPE_SLIDING: _ClassVar[ExpiryType]

class ExpiryRounding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPIRY_ROUNDING_UNSPECIFIED: _ClassVar[ExpiryRounding]
    EXPIRY_ROUNDING_NONE: _ClassVar[ExpiryRounding]
    EXPIRY_ROUNDING_END_OF_MONTH: _ClassVar[ExpiryRounding]
    EXPIRY_ROUNDING_END_OF_QUARTER: _ClassVar[ExpiryRounding]
    EXPIRY_ROUNDING_END_OF_YEAR: _ClassVar[ExpiryRounding]

class NegativeBalancePolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NEGATIVE_BALANCE_POLICY_UNSPECIFIED: _ClassVar[NegativeBalancePolicy]
    NEGATIVE_BALANCE_POLICY_FORBID: _ClassVar[NegativeBalancePolicy]
    NEGATIVE_BALANCE_POLICY_CLAMP: _ClassVar[NegativeBalancePolicy]
    NEGATIVE_BALANCE_POLICY_ALLOW: _ClassVar[NegativeBalancePolicy]

class EventTypePolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_POLICY_UNSPECIFIED: _ClassVar[EventTypePolicy]
    EVENT_TYPE_POLICY_OPEN: _ClassVar[EventTypePolicy]
    EVENT_TYPE_POLICY_REGISTERED: _ClassVar[EventTypePolicy]

class PendingType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PENDING_TYPE_UNSPECIFIED: _ClassVar[PendingType]
    PENDING_TYPE_IMMEDIATE: _ClassVar[PendingType]
    PENDING_TYPE_DURATION: _ClassVar[PendingType]
    PENDING_TYPE_ON_EVENT: _ClassVar[PendingType]

class PropertyType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROPERTY_TYPE_UNSPECIFIED: _ClassVar[PropertyType]
    PROPERTY_TYPE_STRING: _ClassVar[PropertyType]
    PROPERTY_TYPE_NUMBER: _ClassVar[PropertyType]
    PROPERTY_TYPE_BOOLEAN: _ClassVar[PropertyType]
    PROPERTY_TYPE_OBJECT: _ClassVar[PropertyType]
    PROPERTY_TYPE_ARRAY: _ClassVar[PropertyType]

class RuleStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RULE_STATUS_UNSPECIFIED: _ClassVar[RuleStatus]
    RULE_STATUS_ACTIVE: _ClassVar[RuleStatus]
    RULE_STATUS_SUSPENDED: _ClassVar[RuleStatus]
    RULE_STATUS_ARCHIVED: _ClassVar[RuleStatus]

class EntryKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENTRY_KIND_UNSPECIFIED: _ClassVar[EntryKind]
    ENTRY_KIND_EARN: _ClassVar[EntryKind]
    ENTRY_KIND_ADJUSTMENT: _ClassVar[EntryKind]
    ENTRY_KIND_REVERSAL: _ClassVar[EntryKind]
    ENTRY_KIND_EXPIRE: _ClassVar[EntryKind]
    ENTRY_KIND_CANCEL: _ClassVar[EntryKind]
    ENTRY_KIND_REDEEM: _ClassVar[EntryKind]
    ENTRY_KIND_REDEEM_RELEASE: _ClassVar[EntryKind]
    ENTRY_KIND_REDEEM_REFUND: _ClassVar[EntryKind]

class LotStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOT_STATUS_UNSPECIFIED: _ClassVar[LotStatus]
    LOT_STATUS_PENDING: _ClassVar[LotStatus]
    LOT_STATUS_ACTIVE: _ClassVar[LotStatus]
    LOT_STATUS_EXHAUSTED: _ClassVar[LotStatus]
    LOT_STATUS_EXPIRED: _ClassVar[LotStatus]
    LOT_STATUS_CANCELLED: _ClassVar[LotStatus]
ROUNDING_MODE_UNSPECIFIED: RoundingMode
ROUNDING_MODE_FLOOR: RoundingMode
ROUNDING_MODE_CEILING: RoundingMode
ROUNDING_MODE_HALF_UP: RoundingMode
ROUNDING_MODE_HALF_EVEN: RoundingMode
EXPIRY_TYPE_UNSPECIFIED: ExpiryType
EXPIRY_TYPE_NONE: ExpiryType
EXPIRY_TYPE_ROLLING: ExpiryType
EXPIRY_TYPE_CALENDAR: ExpiryType
EXPIRY_TYPE_SLIDING: ExpiryType
EXPIRY_ROUNDING_UNSPECIFIED: ExpiryRounding
EXPIRY_ROUNDING_NONE: ExpiryRounding
EXPIRY_ROUNDING_END_OF_MONTH: ExpiryRounding
EXPIRY_ROUNDING_END_OF_QUARTER: ExpiryRounding
EXPIRY_ROUNDING_END_OF_YEAR: ExpiryRounding
NEGATIVE_BALANCE_POLICY_UNSPECIFIED: NegativeBalancePolicy
NEGATIVE_BALANCE_POLICY_FORBID: NegativeBalancePolicy
NEGATIVE_BALANCE_POLICY_CLAMP: NegativeBalancePolicy
NEGATIVE_BALANCE_POLICY_ALLOW: NegativeBalancePolicy
EVENT_TYPE_POLICY_UNSPECIFIED: EventTypePolicy
EVENT_TYPE_POLICY_OPEN: EventTypePolicy
EVENT_TYPE_POLICY_REGISTERED: EventTypePolicy
PENDING_TYPE_UNSPECIFIED: PendingType
PENDING_TYPE_IMMEDIATE: PendingType
PENDING_TYPE_DURATION: PendingType
PENDING_TYPE_ON_EVENT: PendingType
PROPERTY_TYPE_UNSPECIFIED: PropertyType
PROPERTY_TYPE_STRING: PropertyType
PROPERTY_TYPE_NUMBER: PropertyType
PROPERTY_TYPE_BOOLEAN: PropertyType
PROPERTY_TYPE_OBJECT: PropertyType
PROPERTY_TYPE_ARRAY: PropertyType
RULE_STATUS_UNSPECIFIED: RuleStatus
RULE_STATUS_ACTIVE: RuleStatus
RULE_STATUS_SUSPENDED: RuleStatus
RULE_STATUS_ARCHIVED: RuleStatus
ENTRY_KIND_UNSPECIFIED: EntryKind
ENTRY_KIND_EARN: EntryKind
ENTRY_KIND_ADJUSTMENT: EntryKind
ENTRY_KIND_REVERSAL: EntryKind
ENTRY_KIND_EXPIRE: EntryKind
ENTRY_KIND_CANCEL: EntryKind
ENTRY_KIND_REDEEM: EntryKind
ENTRY_KIND_REDEEM_RELEASE: EntryKind
ENTRY_KIND_REDEEM_REFUND: EntryKind
LOT_STATUS_UNSPECIFIED: LotStatus
LOT_STATUS_PENDING: LotStatus
LOT_STATUS_ACTIVE: LotStatus
LOT_STATUS_EXHAUSTED: LotStatus
LOT_STATUS_EXPIRED: LotStatus
LOT_STATUS_CANCELLED: LotStatus

class Tier(_message.Message):
    __slots__ = ("name", "min_lifetime_points", "multiplier")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MIN_LIFETIME_POINTS_FIELD_NUMBER: _ClassVar[int]
    MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    name: str
    min_lifetime_points: str
    multiplier: str
    def __init__(self, name: _Optional[str] = ..., min_lifetime_points: _Optional[str] = ..., multiplier: _Optional[str] = ...) -> None: ...

class Program(_message.Message):
    __slots__ = ("program_id", "name", "on_unknown_participant", "tiers", "rounding_mode", "rounding_precision", "created_at", "updated_at", "event_type_policy", "scheduled_triggers", "expiry", "timezone", "negative_balance", "expiring_lead_days", "pending", "monetary_field")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ON_UNKNOWN_PARTICIPANT_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    ROUNDING_MODE_FIELD_NUMBER: _ClassVar[int]
    ROUNDING_PRECISION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_POLICY_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_TRIGGERS_FIELD_NUMBER: _ClassVar[int]
    EXPIRY_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_BALANCE_FIELD_NUMBER: _ClassVar[int]
    EXPIRING_LEAD_DAYS_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    MONETARY_FIELD_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    name: str
    on_unknown_participant: _identity_pb2.UnknownParticipantPolicy
    tiers: _containers.RepeatedCompositeFieldContainer[Tier]
    rounding_mode: RoundingMode
    rounding_precision: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    event_type_policy: EventTypePolicy
    scheduled_triggers: ScheduledTriggers
    expiry: ExpiryPolicy
    timezone: str
    negative_balance: NegativeBalancePolicy
    expiring_lead_days: _containers.RepeatedScalarFieldContainer[int]
    pending: PendingPolicy
    monetary_field: str
    def __init__(self, program_id: _Optional[str] = ..., name: _Optional[str] = ..., on_unknown_participant: _Optional[_Union[_identity_pb2.UnknownParticipantPolicy, str]] = ..., tiers: _Optional[_Iterable[_Union[Tier, _Mapping]]] = ..., rounding_mode: _Optional[_Union[RoundingMode, str]] = ..., rounding_precision: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., event_type_policy: _Optional[_Union[EventTypePolicy, str]] = ..., scheduled_triggers: _Optional[_Union[ScheduledTriggers, _Mapping]] = ..., expiry: _Optional[_Union[ExpiryPolicy, _Mapping]] = ..., timezone: _Optional[str] = ..., negative_balance: _Optional[_Union[NegativeBalancePolicy, str]] = ..., expiring_lead_days: _Optional[_Iterable[int]] = ..., pending: _Optional[_Union[PendingPolicy, _Mapping]] = ..., monetary_field: _Optional[str] = ...) -> None: ...

class ExpiryPolicy(_message.Message):
    __slots__ = ("type", "period", "rounding", "month_day", "activity")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    ROUNDING_FIELD_NUMBER: _ClassVar[int]
    MONTH_DAY_FIELD_NUMBER: _ClassVar[int]
    ACTIVITY_FIELD_NUMBER: _ClassVar[int]
    type: ExpiryType
    period: str
    rounding: ExpiryRounding
    month_day: str
    activity: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, type: _Optional[_Union[ExpiryType, str]] = ..., period: _Optional[str] = ..., rounding: _Optional[_Union[ExpiryRounding, str]] = ..., month_day: _Optional[str] = ..., activity: _Optional[_Iterable[str]] = ...) -> None: ...

class ScheduledTrigger(_message.Message):
    __slots__ = ("enabled", "event_type", "days")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    DAYS_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    event_type: str
    days: int
    def __init__(self, enabled: _Optional[bool] = ..., event_type: _Optional[str] = ..., days: _Optional[int] = ...) -> None: ...

class ScheduledTriggers(_message.Message):
    __slots__ = ("birthday", "anniversary", "inactivity")
    BIRTHDAY_FIELD_NUMBER: _ClassVar[int]
    ANNIVERSARY_FIELD_NUMBER: _ClassVar[int]
    INACTIVITY_FIELD_NUMBER: _ClassVar[int]
    birthday: ScheduledTrigger
    anniversary: ScheduledTrigger
    inactivity: ScheduledTrigger
    def __init__(self, birthday: _Optional[_Union[ScheduledTrigger, _Mapping]] = ..., anniversary: _Optional[_Union[ScheduledTrigger, _Mapping]] = ..., inactivity: _Optional[_Union[ScheduledTrigger, _Mapping]] = ...) -> None: ...

class CreateProgramRequest(_message.Message):
    __slots__ = ("name", "on_unknown_participant", "tiers", "rounding_mode", "rounding_precision", "event_type_policy", "scheduled_triggers", "expiry", "timezone", "negative_balance", "expiring_lead_days", "pending", "monetary_field")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ON_UNKNOWN_PARTICIPANT_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    ROUNDING_MODE_FIELD_NUMBER: _ClassVar[int]
    ROUNDING_PRECISION_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_POLICY_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_TRIGGERS_FIELD_NUMBER: _ClassVar[int]
    EXPIRY_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_BALANCE_FIELD_NUMBER: _ClassVar[int]
    EXPIRING_LEAD_DAYS_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    MONETARY_FIELD_FIELD_NUMBER: _ClassVar[int]
    name: str
    on_unknown_participant: _identity_pb2.UnknownParticipantPolicy
    tiers: _containers.RepeatedCompositeFieldContainer[Tier]
    rounding_mode: RoundingMode
    rounding_precision: int
    event_type_policy: EventTypePolicy
    scheduled_triggers: ScheduledTriggers
    expiry: ExpiryPolicy
    timezone: str
    negative_balance: NegativeBalancePolicy
    expiring_lead_days: _containers.RepeatedScalarFieldContainer[int]
    pending: PendingPolicy
    monetary_field: str
    def __init__(self, name: _Optional[str] = ..., on_unknown_participant: _Optional[_Union[_identity_pb2.UnknownParticipantPolicy, str]] = ..., tiers: _Optional[_Iterable[_Union[Tier, _Mapping]]] = ..., rounding_mode: _Optional[_Union[RoundingMode, str]] = ..., rounding_precision: _Optional[int] = ..., event_type_policy: _Optional[_Union[EventTypePolicy, str]] = ..., scheduled_triggers: _Optional[_Union[ScheduledTriggers, _Mapping]] = ..., expiry: _Optional[_Union[ExpiryPolicy, _Mapping]] = ..., timezone: _Optional[str] = ..., negative_balance: _Optional[_Union[NegativeBalancePolicy, str]] = ..., expiring_lead_days: _Optional[_Iterable[int]] = ..., pending: _Optional[_Union[PendingPolicy, _Mapping]] = ..., monetary_field: _Optional[str] = ...) -> None: ...

class UpdateProgramRequest(_message.Message):
    __slots__ = ("program_id", "name", "on_unknown_participant", "tiers", "clear_tiers", "rounding_mode", "rounding_precision", "event_type_policy", "scheduled_triggers", "expiry", "timezone", "negative_balance", "expiring_lead_days", "pending", "monetary_field")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ON_UNKNOWN_PARTICIPANT_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    CLEAR_TIERS_FIELD_NUMBER: _ClassVar[int]
    ROUNDING_MODE_FIELD_NUMBER: _ClassVar[int]
    ROUNDING_PRECISION_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_POLICY_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_TRIGGERS_FIELD_NUMBER: _ClassVar[int]
    EXPIRY_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_BALANCE_FIELD_NUMBER: _ClassVar[int]
    EXPIRING_LEAD_DAYS_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    MONETARY_FIELD_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    name: str
    on_unknown_participant: _identity_pb2.UnknownParticipantPolicy
    tiers: _containers.RepeatedCompositeFieldContainer[Tier]
    clear_tiers: bool
    rounding_mode: RoundingMode
    rounding_precision: int
    event_type_policy: EventTypePolicy
    scheduled_triggers: ScheduledTriggers
    expiry: ExpiryPolicy
    timezone: str
    negative_balance: NegativeBalancePolicy
    expiring_lead_days: _containers.RepeatedScalarFieldContainer[int]
    pending: PendingPolicy
    monetary_field: str
    def __init__(self, program_id: _Optional[str] = ..., name: _Optional[str] = ..., on_unknown_participant: _Optional[_Union[_identity_pb2.UnknownParticipantPolicy, str]] = ..., tiers: _Optional[_Iterable[_Union[Tier, _Mapping]]] = ..., clear_tiers: _Optional[bool] = ..., rounding_mode: _Optional[_Union[RoundingMode, str]] = ..., rounding_precision: _Optional[int] = ..., event_type_policy: _Optional[_Union[EventTypePolicy, str]] = ..., scheduled_triggers: _Optional[_Union[ScheduledTriggers, _Mapping]] = ..., expiry: _Optional[_Union[ExpiryPolicy, _Mapping]] = ..., timezone: _Optional[str] = ..., negative_balance: _Optional[_Union[NegativeBalancePolicy, str]] = ..., expiring_lead_days: _Optional[_Iterable[int]] = ..., pending: _Optional[_Union[PendingPolicy, _Mapping]] = ..., monetary_field: _Optional[str] = ...) -> None: ...

class PendingPolicy(_message.Message):
    __slots__ = ("type", "duration", "event_types")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    type: PendingType
    duration: str
    event_types: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, type: _Optional[_Union[PendingType, str]] = ..., duration: _Optional[str] = ..., event_types: _Optional[_Iterable[str]] = ...) -> None: ...

class EventTypeProperty(_message.Message):
    __slots__ = ("name", "type", "required")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: PropertyType
    required: bool
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[PropertyType, str]] = ..., required: _Optional[bool] = ...) -> None: ...

class EventType(_message.Message):
    __slots__ = ("program_id", "name", "description", "properties", "created_at")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    name: str
    description: str
    properties: _containers.RepeatedCompositeFieldContainer[EventTypeProperty]
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, program_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., properties: _Optional[_Iterable[_Union[EventTypeProperty, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateEventTypeRequest(_message.Message):
    __slots__ = ("program_id", "name", "description", "properties")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    name: str
    description: str
    properties: _containers.RepeatedCompositeFieldContainer[EventTypeProperty]
    def __init__(self, program_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., properties: _Optional[_Iterable[_Union[EventTypeProperty, _Mapping]]] = ...) -> None: ...

class ListEventTypesRequest(_message.Message):
    __slots__ = ("program_id",)
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    def __init__(self, program_id: _Optional[str] = ...) -> None: ...

class ListEventTypesResponse(_message.Message):
    __slots__ = ("event_types",)
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    event_types: _containers.RepeatedCompositeFieldContainer[EventType]
    def __init__(self, event_types: _Optional[_Iterable[_Union[EventType, _Mapping]]] = ...) -> None: ...

class GetEventTypeRequest(_message.Message):
    __slots__ = ("program_id", "name")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    name: str
    def __init__(self, program_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class UpdateEventTypeRequest(_message.Message):
    __slots__ = ("program_id", "name", "description", "properties", "clear_properties")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    CLEAR_PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    name: str
    description: str
    properties: _containers.RepeatedCompositeFieldContainer[EventTypeProperty]
    clear_properties: bool
    def __init__(self, program_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., properties: _Optional[_Iterable[_Union[EventTypeProperty, _Mapping]]] = ..., clear_properties: _Optional[bool] = ...) -> None: ...

class DeleteEventTypeRequest(_message.Message):
    __slots__ = ("program_id", "name")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    name: str
    def __init__(self, program_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class GetProgramRequest(_message.Message):
    __slots__ = ("program_id",)
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    def __init__(self, program_id: _Optional[str] = ...) -> None: ...

class ListProgramsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListProgramsResponse(_message.Message):
    __slots__ = ("programs", "next_page_token")
    PROGRAMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    programs: _containers.RepeatedCompositeFieldContainer[Program]
    next_page_token: str
    def __init__(self, programs: _Optional[_Iterable[_Union[Program, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RuleCaps(_message.Message):
    __slots__ = ("max_points_per_event", "per_participant_daily", "per_participant_weekly", "per_participant_monthly", "per_participant_lifetime", "total_budget")
    MAX_POINTS_PER_EVENT_FIELD_NUMBER: _ClassVar[int]
    PER_PARTICIPANT_DAILY_FIELD_NUMBER: _ClassVar[int]
    PER_PARTICIPANT_WEEKLY_FIELD_NUMBER: _ClassVar[int]
    PER_PARTICIPANT_MONTHLY_FIELD_NUMBER: _ClassVar[int]
    PER_PARTICIPANT_LIFETIME_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BUDGET_FIELD_NUMBER: _ClassVar[int]
    max_points_per_event: str
    per_participant_daily: str
    per_participant_weekly: str
    per_participant_monthly: str
    per_participant_lifetime: str
    total_budget: str
    def __init__(self, max_points_per_event: _Optional[str] = ..., per_participant_daily: _Optional[str] = ..., per_participant_weekly: _Optional[str] = ..., per_participant_monthly: _Optional[str] = ..., per_participant_lifetime: _Optional[str] = ..., total_budget: _Optional[str] = ...) -> None: ...

class Rule(_message.Message):
    __slots__ = ("rule_id", "program_id", "version", "name", "event_type", "condition", "formula", "apply_tier_multiplier", "order", "stop_after_match", "active_from", "active_to", "status", "created_at", "updated_at", "caps", "expiry")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    FORMULA_FIELD_NUMBER: _ClassVar[int]
    APPLY_TIER_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    STOP_AFTER_MATCH_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FROM_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_TO_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    CAPS_FIELD_NUMBER: _ClassVar[int]
    EXPIRY_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    program_id: str
    version: int
    name: str
    event_type: str
    condition: str
    formula: str
    apply_tier_multiplier: bool
    order: int
    stop_after_match: bool
    active_from: _timestamp_pb2.Timestamp
    active_to: _timestamp_pb2.Timestamp
    status: RuleStatus
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    caps: RuleCaps
    expiry: ExpiryPolicy
    def __init__(self, rule_id: _Optional[str] = ..., program_id: _Optional[str] = ..., version: _Optional[int] = ..., name: _Optional[str] = ..., event_type: _Optional[str] = ..., condition: _Optional[str] = ..., formula: _Optional[str] = ..., apply_tier_multiplier: _Optional[bool] = ..., order: _Optional[int] = ..., stop_after_match: _Optional[bool] = ..., active_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active_to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[RuleStatus, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., caps: _Optional[_Union[RuleCaps, _Mapping]] = ..., expiry: _Optional[_Union[ExpiryPolicy, _Mapping]] = ...) -> None: ...

class CreateRuleRequest(_message.Message):
    __slots__ = ("program_id", "name", "event_type", "condition", "formula", "apply_tier_multiplier", "order", "stop_after_match", "active_from", "active_to", "status", "caps", "expiry")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    FORMULA_FIELD_NUMBER: _ClassVar[int]
    APPLY_TIER_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    STOP_AFTER_MATCH_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FROM_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_TO_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CAPS_FIELD_NUMBER: _ClassVar[int]
    EXPIRY_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    name: str
    event_type: str
    condition: str
    formula: str
    apply_tier_multiplier: bool
    order: int
    stop_after_match: bool
    active_from: _timestamp_pb2.Timestamp
    active_to: _timestamp_pb2.Timestamp
    status: RuleStatus
    caps: RuleCaps
    expiry: ExpiryPolicy
    def __init__(self, program_id: _Optional[str] = ..., name: _Optional[str] = ..., event_type: _Optional[str] = ..., condition: _Optional[str] = ..., formula: _Optional[str] = ..., apply_tier_multiplier: _Optional[bool] = ..., order: _Optional[int] = ..., stop_after_match: _Optional[bool] = ..., active_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active_to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[RuleStatus, str]] = ..., caps: _Optional[_Union[RuleCaps, _Mapping]] = ..., expiry: _Optional[_Union[ExpiryPolicy, _Mapping]] = ...) -> None: ...

class UpdateRuleRequest(_message.Message):
    __slots__ = ("program_id", "rule_id", "name", "event_type", "condition", "formula", "apply_tier_multiplier", "order", "stop_after_match", "active_from", "active_to", "status", "caps", "clear_active_from", "clear_active_to", "expiry", "clear_expiry")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    FORMULA_FIELD_NUMBER: _ClassVar[int]
    APPLY_TIER_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    STOP_AFTER_MATCH_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FROM_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_TO_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CAPS_FIELD_NUMBER: _ClassVar[int]
    CLEAR_ACTIVE_FROM_FIELD_NUMBER: _ClassVar[int]
    CLEAR_ACTIVE_TO_FIELD_NUMBER: _ClassVar[int]
    EXPIRY_FIELD_NUMBER: _ClassVar[int]
    CLEAR_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    rule_id: str
    name: str
    event_type: str
    condition: str
    formula: str
    apply_tier_multiplier: bool
    order: int
    stop_after_match: bool
    active_from: _timestamp_pb2.Timestamp
    active_to: _timestamp_pb2.Timestamp
    status: RuleStatus
    caps: RuleCaps
    clear_active_from: bool
    clear_active_to: bool
    expiry: ExpiryPolicy
    clear_expiry: bool
    def __init__(self, program_id: _Optional[str] = ..., rule_id: _Optional[str] = ..., name: _Optional[str] = ..., event_type: _Optional[str] = ..., condition: _Optional[str] = ..., formula: _Optional[str] = ..., apply_tier_multiplier: _Optional[bool] = ..., order: _Optional[int] = ..., stop_after_match: _Optional[bool] = ..., active_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active_to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[RuleStatus, str]] = ..., caps: _Optional[_Union[RuleCaps, _Mapping]] = ..., clear_active_from: _Optional[bool] = ..., clear_active_to: _Optional[bool] = ..., expiry: _Optional[_Union[ExpiryPolicy, _Mapping]] = ..., clear_expiry: _Optional[bool] = ...) -> None: ...

class ReorderRulesRequest(_message.Message):
    __slots__ = ("program_id", "rule_ids")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_IDS_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    rule_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, program_id: _Optional[str] = ..., rule_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ReorderRulesResponse(_message.Message):
    __slots__ = ("rules",)
    RULES_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[Rule]
    def __init__(self, rules: _Optional[_Iterable[_Union[Rule, _Mapping]]] = ...) -> None: ...

class DeleteRuleRequest(_message.Message):
    __slots__ = ("program_id", "rule_id")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    rule_id: str
    def __init__(self, program_id: _Optional[str] = ..., rule_id: _Optional[str] = ...) -> None: ...

class ListRuleVersionsRequest(_message.Message):
    __slots__ = ("program_id", "rule_id")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    rule_id: str
    def __init__(self, program_id: _Optional[str] = ..., rule_id: _Optional[str] = ...) -> None: ...

class ListRuleVersionsResponse(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[Rule]
    def __init__(self, versions: _Optional[_Iterable[_Union[Rule, _Mapping]]] = ...) -> None: ...

class GetRuleVersionRequest(_message.Message):
    __slots__ = ("program_id", "rule_id", "version")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    rule_id: str
    version: int
    def __init__(self, program_id: _Optional[str] = ..., rule_id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class SimulateRulesRequest(_message.Message):
    __slots__ = ("program_id", "event_type", "event_data", "event_timestamp", "participant_id", "participant_attributes", "draft_rules")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    EVENT_DATA_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    DRAFT_RULES_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    event_type: str
    event_data: _struct_pb2.Struct
    event_timestamp: _timestamp_pb2.Timestamp
    participant_id: str
    participant_attributes: _struct_pb2.Struct
    draft_rules: _containers.RepeatedCompositeFieldContainer[CreateRuleRequest]
    def __init__(self, program_id: _Optional[str] = ..., event_type: _Optional[str] = ..., event_data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., event_timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., participant_id: _Optional[str] = ..., participant_attributes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., draft_rules: _Optional[_Iterable[_Union[CreateRuleRequest, _Mapping]]] = ...) -> None: ...

class ValidateRuleRequest(_message.Message):
    __slots__ = ("program_id", "rule")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    rule: CreateRuleRequest
    def __init__(self, program_id: _Optional[str] = ..., rule: _Optional[_Union[CreateRuleRequest, _Mapping]] = ...) -> None: ...

class ExpressionPosition(_message.Message):
    __slots__ = ("start", "end", "line", "column")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    line: int
    column: int
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ..., line: _Optional[int] = ..., column: _Optional[int] = ...) -> None: ...

class RuleViolation(_message.Message):
    __slots__ = ("field", "description", "position")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    field: str
    description: str
    position: ExpressionPosition
    def __init__(self, field: _Optional[str] = ..., description: _Optional[str] = ..., position: _Optional[_Union[ExpressionPosition, _Mapping]] = ...) -> None: ...

class ValidateRuleResponse(_message.Message):
    __slots__ = ("valid", "violations")
    VALID_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    violations: _containers.RepeatedCompositeFieldContainer[RuleViolation]
    def __init__(self, valid: _Optional[bool] = ..., violations: _Optional[_Iterable[_Union[RuleViolation, _Mapping]]] = ...) -> None: ...

class SimulateRulesResponse(_message.Message):
    __slots__ = ("rule_evaluations", "points_awarded", "tier")
    RULE_EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    POINTS_AWARDED_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    rule_evaluations: _containers.RepeatedCompositeFieldContainer[_messages_pb2.RuleEvaluation]
    points_awarded: str
    tier: str
    def __init__(self, rule_evaluations: _Optional[_Iterable[_Union[_messages_pb2.RuleEvaluation, _Mapping]]] = ..., points_awarded: _Optional[str] = ..., tier: _Optional[str] = ...) -> None: ...

class GetRuleRequest(_message.Message):
    __slots__ = ("program_id", "rule_id")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    rule_id: str
    def __init__(self, program_id: _Optional[str] = ..., rule_id: _Optional[str] = ...) -> None: ...

class ListRulesRequest(_message.Message):
    __slots__ = ("program_id",)
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    def __init__(self, program_id: _Optional[str] = ...) -> None: ...

class ListRulesResponse(_message.Message):
    __slots__ = ("rules",)
    RULES_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[Rule]
    def __init__(self, rules: _Optional[_Iterable[_Union[Rule, _Mapping]]] = ...) -> None: ...

class GetBalanceRequest(_message.Message):
    __slots__ = ("program_id", "participant_id")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    participant_id: str
    def __init__(self, program_id: _Optional[str] = ..., participant_id: _Optional[str] = ...) -> None: ...

class Balance(_message.Message):
    __slots__ = ("program_id", "participant_id", "available", "lifetime_earned", "tier", "pending", "held", "debt", "expiring")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    LIFETIME_EARNED_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    DEBT_FIELD_NUMBER: _ClassVar[int]
    EXPIRING_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    participant_id: str
    available: str
    lifetime_earned: str
    tier: str
    pending: str
    held: str
    debt: str
    expiring: _containers.RepeatedCompositeFieldContainer[ExpiringPoints]
    def __init__(self, program_id: _Optional[str] = ..., participant_id: _Optional[str] = ..., available: _Optional[str] = ..., lifetime_earned: _Optional[str] = ..., tier: _Optional[str] = ..., pending: _Optional[str] = ..., held: _Optional[str] = ..., debt: _Optional[str] = ..., expiring: _Optional[_Iterable[_Union[ExpiringPoints, _Mapping]]] = ...) -> None: ...

class ExpiringPoints(_message.Message):
    __slots__ = ("expires_at", "expires_on", "points")
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_ON_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    expires_at: _timestamp_pb2.Timestamp
    expires_on: str
    points: str
    def __init__(self, expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_on: _Optional[str] = ..., points: _Optional[str] = ...) -> None: ...

class Transaction(_message.Message):
    __slots__ = ("transaction_id", "program_id", "participant_id", "amount", "kind", "source", "event_id", "rule_id", "rule_version", "reason", "created_at", "allocations", "unrecovered")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    UNRECOVERED_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    program_id: str
    participant_id: str
    amount: str
    kind: EntryKind
    source: str
    event_id: str
    rule_id: str
    rule_version: int
    reason: str
    created_at: _timestamp_pb2.Timestamp
    allocations: _containers.RepeatedCompositeFieldContainer[LotAllocation]
    unrecovered: str
    def __init__(self, transaction_id: _Optional[str] = ..., program_id: _Optional[str] = ..., participant_id: _Optional[str] = ..., amount: _Optional[str] = ..., kind: _Optional[_Union[EntryKind, str]] = ..., source: _Optional[str] = ..., event_id: _Optional[str] = ..., rule_id: _Optional[str] = ..., rule_version: _Optional[int] = ..., reason: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., allocations: _Optional[_Iterable[_Union[LotAllocation, _Mapping]]] = ..., unrecovered: _Optional[str] = ...) -> None: ...

class LotAllocation(_message.Message):
    __slots__ = ("lot_id", "amount")
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    lot_id: str
    amount: str
    def __init__(self, lot_id: _Optional[str] = ..., amount: _Optional[str] = ...) -> None: ...

class Lot(_message.Message):
    __slots__ = ("lot_id", "program_id", "participant_id", "transaction_id", "event_id", "original", "remaining", "status", "earned_at", "activates_at", "expires_at", "created_at", "updated_at")
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EARNED_AT_FIELD_NUMBER: _ClassVar[int]
    ACTIVATES_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    lot_id: str
    program_id: str
    participant_id: str
    transaction_id: str
    event_id: str
    original: str
    remaining: str
    status: LotStatus
    earned_at: _timestamp_pb2.Timestamp
    activates_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, lot_id: _Optional[str] = ..., program_id: _Optional[str] = ..., participant_id: _Optional[str] = ..., transaction_id: _Optional[str] = ..., event_id: _Optional[str] = ..., original: _Optional[str] = ..., remaining: _Optional[str] = ..., status: _Optional[_Union[LotStatus, str]] = ..., earned_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., activates_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListLotsRequest(_message.Message):
    __slots__ = ("program_id", "participant_id", "status", "page_size", "page_token")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    participant_id: str
    status: LotStatus
    page_size: int
    page_token: str
    def __init__(self, program_id: _Optional[str] = ..., participant_id: _Optional[str] = ..., status: _Optional[_Union[LotStatus, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListLotsResponse(_message.Message):
    __slots__ = ("lots", "next_page_token")
    LOTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    lots: _containers.RepeatedCompositeFieldContainer[Lot]
    next_page_token: str
    def __init__(self, lots: _Optional[_Iterable[_Union[Lot, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreateAdjustmentRequest(_message.Message):
    __slots__ = ("program_id", "participant_id", "amount", "reason", "idempotency_key", "allow_negative")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    ALLOW_NEGATIVE_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    participant_id: str
    amount: str
    reason: str
    idempotency_key: str
    allow_negative: bool
    def __init__(self, program_id: _Optional[str] = ..., participant_id: _Optional[str] = ..., amount: _Optional[str] = ..., reason: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., allow_negative: _Optional[bool] = ...) -> None: ...

class Adjustment(_message.Message):
    __slots__ = ("transaction", "balance", "deduplicated")
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    DEDUPLICATED_FIELD_NUMBER: _ClassVar[int]
    transaction: Transaction
    balance: Balance
    deduplicated: bool
    def __init__(self, transaction: _Optional[_Union[Transaction, _Mapping]] = ..., balance: _Optional[_Union[Balance, _Mapping]] = ..., deduplicated: _Optional[bool] = ...) -> None: ...

class ListTransactionsRequest(_message.Message):
    __slots__ = ("program_id", "participant_id", "page_size", "page_token")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    participant_id: str
    page_size: int
    page_token: str
    def __init__(self, program_id: _Optional[str] = ..., participant_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTransactionsResponse(_message.Message):
    __slots__ = ("transactions", "next_page_token")
    TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    transactions: _containers.RepeatedCompositeFieldContainer[Transaction]
    next_page_token: str
    def __init__(self, transactions: _Optional[_Iterable[_Union[Transaction, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ActivatePointsRequest(_message.Message):
    __slots__ = ("event_id",)
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    def __init__(self, event_id: _Optional[str] = ...) -> None: ...

class CancelPointsRequest(_message.Message):
    __slots__ = ("event_id", "reason")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    reason: str
    def __init__(self, event_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class EventPoints(_message.Message):
    __slots__ = ("event_id", "points", "transactions", "balances")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    BALANCES_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    points: str
    transactions: _containers.RepeatedCompositeFieldContainer[Transaction]
    balances: _containers.RepeatedCompositeFieldContainer[Balance]
    def __init__(self, event_id: _Optional[str] = ..., points: _Optional[str] = ..., transactions: _Optional[_Iterable[_Union[Transaction, _Mapping]]] = ..., balances: _Optional[_Iterable[_Union[Balance, _Mapping]]] = ...) -> None: ...

class CreateReversalRequest(_message.Message):
    __slots__ = ("event_id", "idempotency_key", "ratio", "amount", "reason")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    RATIO_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    idempotency_key: str
    ratio: str
    amount: str
    reason: str
    def __init__(self, event_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., ratio: _Optional[str] = ..., amount: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Reversal(_message.Message):
    __slots__ = ("reversal_id", "event_id", "idempotency_key", "ratio", "reversed_ratio", "points", "unrecovered", "debt", "reason", "transactions", "deduplicated", "created_at")
    REVERSAL_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    RATIO_FIELD_NUMBER: _ClassVar[int]
    REVERSED_RATIO_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    UNRECOVERED_FIELD_NUMBER: _ClassVar[int]
    DEBT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    DEDUPLICATED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    reversal_id: str
    event_id: str
    idempotency_key: str
    ratio: str
    reversed_ratio: str
    points: str
    unrecovered: str
    debt: str
    reason: str
    transactions: _containers.RepeatedCompositeFieldContainer[Transaction]
    deduplicated: bool
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, reversal_id: _Optional[str] = ..., event_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., ratio: _Optional[str] = ..., reversed_ratio: _Optional[str] = ..., points: _Optional[str] = ..., unrecovered: _Optional[str] = ..., debt: _Optional[str] = ..., reason: _Optional[str] = ..., transactions: _Optional[_Iterable[_Union[Transaction, _Mapping]]] = ..., deduplicated: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
