import datetime

from accrual.options.v1 import options_pb2 as _options_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OutcomeStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_STATUS_UNSPECIFIED: _ClassVar[OutcomeStatus]
    OUTCOME_STATUS_COMPLETED: _ClassVar[OutcomeStatus]
    OUTCOME_STATUS_FAILED: _ClassVar[OutcomeStatus]
OUTCOME_STATUS_UNSPECIFIED: OutcomeStatus
OUTCOME_STATUS_COMPLETED: OutcomeStatus
OUTCOME_STATUS_FAILED: OutcomeStatus

class EventsAccepted(_message.Message):
    __slots__ = ("tenant_id", "event_ids")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_IDS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    event_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tenant_id: _Optional[str] = ..., event_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RuleEvaluation(_message.Message):
    __slots__ = ("rule_id", "rule_version", "rule_name", "matched", "skip_reason", "message", "points", "recipient_id", "program_id")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_VERSION_FIELD_NUMBER: _ClassVar[int]
    RULE_NAME_FIELD_NUMBER: _ClassVar[int]
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    SKIP_REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    rule_version: int
    rule_name: str
    matched: bool
    skip_reason: str
    message: str
    points: str
    recipient_id: str
    program_id: str
    def __init__(self, rule_id: _Optional[str] = ..., rule_version: _Optional[int] = ..., rule_name: _Optional[str] = ..., matched: _Optional[bool] = ..., skip_reason: _Optional[str] = ..., message: _Optional[str] = ..., points: _Optional[str] = ..., recipient_id: _Optional[str] = ..., program_id: _Optional[str] = ...) -> None: ...

class EventOutcome(_message.Message):
    __slots__ = ("tenant_id", "event_id", "status", "participant_id", "recipient_id", "rule_evaluations", "points_awarded", "error_code", "error_message", "processed_at")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    POINTS_AWARDED_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PROCESSED_AT_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    event_id: str
    status: OutcomeStatus
    participant_id: str
    recipient_id: str
    rule_evaluations: _containers.RepeatedCompositeFieldContainer[RuleEvaluation]
    points_awarded: str
    error_code: str
    error_message: str
    processed_at: _timestamp_pb2.Timestamp
    def __init__(self, tenant_id: _Optional[str] = ..., event_id: _Optional[str] = ..., status: _Optional[_Union[OutcomeStatus, str]] = ..., participant_id: _Optional[str] = ..., recipient_id: _Optional[str] = ..., rule_evaluations: _Optional[_Iterable[_Union[RuleEvaluation, _Mapping]]] = ..., points_awarded: _Optional[str] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ..., processed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class EventOutcomes(_message.Message):
    __slots__ = ("outcomes",)
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    outcomes: _containers.RepeatedCompositeFieldContainer[EventOutcome]
    def __init__(self, outcomes: _Optional[_Iterable[_Union[EventOutcome, _Mapping]]] = ...) -> None: ...

class Notification(_message.Message):
    __slots__ = ("tenant_id", "type", "fact_id", "created_at", "data", "data_json")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    FACT_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    type: str
    fact_id: str
    created_at: _timestamp_pb2.Timestamp
    data: _struct_pb2.Struct
    data_json: str
    def __init__(self, tenant_id: _Optional[str] = ..., type: _Optional[str] = ..., fact_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., data_json: _Optional[str] = ...) -> None: ...

class ParticipantsMerged(_message.Message):
    __slots__ = ("tenant_id", "merge_id", "merged_participant_id", "survivor_participant_id", "merged_at")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    MERGE_ID_FIELD_NUMBER: _ClassVar[int]
    MERGED_PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    SURVIVOR_PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    MERGED_AT_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    merge_id: str
    merged_participant_id: str
    survivor_participant_id: str
    merged_at: _timestamp_pb2.Timestamp
    def __init__(self, tenant_id: _Optional[str] = ..., merge_id: _Optional[str] = ..., merged_participant_id: _Optional[str] = ..., survivor_participant_id: _Optional[str] = ..., merged_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Notifications(_message.Message):
    __slots__ = ("notifications",)
    NOTIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    notifications: _containers.RepeatedCompositeFieldContainer[Notification]
    def __init__(self, notifications: _Optional[_Iterable[_Union[Notification, _Mapping]]] = ...) -> None: ...

class DeliveryRequested(_message.Message):
    __slots__ = ("tenant_id", "delivery_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    delivery_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., delivery_id: _Optional[str] = ...) -> None: ...
