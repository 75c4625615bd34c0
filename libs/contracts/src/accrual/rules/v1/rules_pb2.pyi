import datetime

from accrual.identity.v1 import identity_pb2 as _identity_pb2
from accrual.options.v1 import options_pb2 as _options_pb2
from google.api import annotations_pb2 as _annotations_pb2
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

class RuleStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RULE_STATUS_UNSPECIFIED: _ClassVar[RuleStatus]
    RULE_STATUS_ACTIVE: _ClassVar[RuleStatus]
    RULE_STATUS_SUSPENDED: _ClassVar[RuleStatus]

class EntryKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENTRY_KIND_UNSPECIFIED: _ClassVar[EntryKind]
    ENTRY_KIND_EARN: _ClassVar[EntryKind]
    ENTRY_KIND_ADJUSTMENT: _ClassVar[EntryKind]
    ENTRY_KIND_REVERSAL: _ClassVar[EntryKind]
ROUNDING_MODE_UNSPECIFIED: RoundingMode
ROUNDING_MODE_FLOOR: RoundingMode
ROUNDING_MODE_CEILING: RoundingMode
ROUNDING_MODE_HALF_UP: RoundingMode
ROUNDING_MODE_HALF_EVEN: RoundingMode
RULE_STATUS_UNSPECIFIED: RuleStatus
RULE_STATUS_ACTIVE: RuleStatus
RULE_STATUS_SUSPENDED: RuleStatus
ENTRY_KIND_UNSPECIFIED: EntryKind
ENTRY_KIND_EARN: EntryKind
ENTRY_KIND_ADJUSTMENT: EntryKind
ENTRY_KIND_REVERSAL: EntryKind

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
    __slots__ = ("program_id", "name", "on_unknown_participant", "tiers", "rounding_mode", "rounding_precision", "created_at", "updated_at")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ON_UNKNOWN_PARTICIPANT_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    ROUNDING_MODE_FIELD_NUMBER: _ClassVar[int]
    ROUNDING_PRECISION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    name: str
    on_unknown_participant: _identity_pb2.UnknownParticipantPolicy
    tiers: _containers.RepeatedCompositeFieldContainer[Tier]
    rounding_mode: RoundingMode
    rounding_precision: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, program_id: _Optional[str] = ..., name: _Optional[str] = ..., on_unknown_participant: _Optional[_Union[_identity_pb2.UnknownParticipantPolicy, str]] = ..., tiers: _Optional[_Iterable[_Union[Tier, _Mapping]]] = ..., rounding_mode: _Optional[_Union[RoundingMode, str]] = ..., rounding_precision: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateProgramRequest(_message.Message):
    __slots__ = ("name", "on_unknown_participant", "tiers", "rounding_mode", "rounding_precision")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ON_UNKNOWN_PARTICIPANT_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    ROUNDING_MODE_FIELD_NUMBER: _ClassVar[int]
    ROUNDING_PRECISION_FIELD_NUMBER: _ClassVar[int]
    name: str
    on_unknown_participant: _identity_pb2.UnknownParticipantPolicy
    tiers: _containers.RepeatedCompositeFieldContainer[Tier]
    rounding_mode: RoundingMode
    rounding_precision: int
    def __init__(self, name: _Optional[str] = ..., on_unknown_participant: _Optional[_Union[_identity_pb2.UnknownParticipantPolicy, str]] = ..., tiers: _Optional[_Iterable[_Union[Tier, _Mapping]]] = ..., rounding_mode: _Optional[_Union[RoundingMode, str]] = ..., rounding_precision: _Optional[int] = ...) -> None: ...

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

class Rule(_message.Message):
    __slots__ = ("rule_id", "program_id", "version", "name", "event_type", "condition", "formula", "apply_tier_multiplier", "order", "stop_after_match", "active_from", "active_to", "status", "created_at", "updated_at")
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
    def __init__(self, rule_id: _Optional[str] = ..., program_id: _Optional[str] = ..., version: _Optional[int] = ..., name: _Optional[str] = ..., event_type: _Optional[str] = ..., condition: _Optional[str] = ..., formula: _Optional[str] = ..., apply_tier_multiplier: _Optional[bool] = ..., order: _Optional[int] = ..., stop_after_match: _Optional[bool] = ..., active_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active_to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[RuleStatus, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateRuleRequest(_message.Message):
    __slots__ = ("program_id", "name", "event_type", "condition", "formula", "apply_tier_multiplier", "order", "stop_after_match", "active_from", "active_to", "status")
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
    def __init__(self, program_id: _Optional[str] = ..., name: _Optional[str] = ..., event_type: _Optional[str] = ..., condition: _Optional[str] = ..., formula: _Optional[str] = ..., apply_tier_multiplier: _Optional[bool] = ..., order: _Optional[int] = ..., stop_after_match: _Optional[bool] = ..., active_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active_to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[RuleStatus, str]] = ...) -> None: ...

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
    __slots__ = ("program_id", "participant_id", "available", "lifetime_earned", "tier")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    LIFETIME_EARNED_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    participant_id: str
    available: str
    lifetime_earned: str
    tier: str
    def __init__(self, program_id: _Optional[str] = ..., participant_id: _Optional[str] = ..., available: _Optional[str] = ..., lifetime_earned: _Optional[str] = ..., tier: _Optional[str] = ...) -> None: ...

class Transaction(_message.Message):
    __slots__ = ("transaction_id", "program_id", "participant_id", "amount", "kind", "source", "event_id", "rule_id", "rule_version", "reason", "created_at")
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
    def __init__(self, transaction_id: _Optional[str] = ..., program_id: _Optional[str] = ..., participant_id: _Optional[str] = ..., amount: _Optional[str] = ..., kind: _Optional[_Union[EntryKind, str]] = ..., source: _Optional[str] = ..., event_id: _Optional[str] = ..., rule_id: _Optional[str] = ..., rule_version: _Optional[int] = ..., reason: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

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
