import datetime

from accrual.messages.v1 import messages_pb2 as _messages_pb2
from accrual.options.v1 import options_pb2 as _options_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_STATUS_UNSPECIFIED: _ClassVar[EventStatus]
    EVENT_STATUS_PENDING: _ClassVar[EventStatus]
    EVENT_STATUS_PROCESSING: _ClassVar[EventStatus]
    EVENT_STATUS_COMPLETED: _ClassVar[EventStatus]
    EVENT_STATUS_FAILED: _ClassVar[EventStatus]

class EventOrigin(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_ORIGIN_UNSPECIFIED: _ClassVar[EventOrigin]
    EVENT_ORIGIN_EXTERNAL: _ClassVar[EventOrigin]
    EVENT_ORIGIN_SYSTEM: _ClassVar[EventOrigin]

class CdpPropertyType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CDP_PROPERTY_TYPE_UNSPECIFIED: _ClassVar[CdpPropertyType]
    CDP_PROPERTY_TYPE_STRING: _ClassVar[CdpPropertyType]
    CDP_PROPERTY_TYPE_NUMBER: _ClassVar[CdpPropertyType]
    CDP_PROPERTY_TYPE_INTEGER: _ClassVar[CdpPropertyType]
    CDP_PROPERTY_TYPE_BOOLEAN: _ClassVar[CdpPropertyType]
    CDP_PROPERTY_TYPE_OBJECT: _ClassVar[CdpPropertyType]
    CDP_PROPERTY_TYPE_ARRAY: _ClassVar[CdpPropertyType]
    CDP_PROPERTY_TYPE_TIMESTAMP: _ClassVar[CdpPropertyType]
EVENT_STATUS_UNSPECIFIED: EventStatus
EVENT_STATUS_PENDING: EventStatus
EVENT_STATUS_PROCESSING: EventStatus
EVENT_STATUS_COMPLETED: EventStatus
EVENT_STATUS_FAILED: EventStatus
EVENT_ORIGIN_UNSPECIFIED: EventOrigin
EVENT_ORIGIN_EXTERNAL: EventOrigin
EVENT_ORIGIN_SYSTEM: EventOrigin
CDP_PROPERTY_TYPE_UNSPECIFIED: CdpPropertyType
CDP_PROPERTY_TYPE_STRING: CdpPropertyType
CDP_PROPERTY_TYPE_NUMBER: CdpPropertyType
CDP_PROPERTY_TYPE_INTEGER: CdpPropertyType
CDP_PROPERTY_TYPE_BOOLEAN: CdpPropertyType
CDP_PROPERTY_TYPE_OBJECT: CdpPropertyType
CDP_PROPERTY_TYPE_ARRAY: CdpPropertyType
CDP_PROPERTY_TYPE_TIMESTAMP: CdpPropertyType

class Event(_message.Message):
    __slots__ = ("event_id", "program_id", "idempotency_key", "event_type", "external_id", "participant_id", "recipient_external_id", "recipient_id", "event_data", "event_timestamp", "received_at", "status", "deduplicated", "rule_evaluations", "points_awarded", "error_code", "error_message", "processed_at", "origin", "cdp_source", "cdp_identities", "event_data_json")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_DATA_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DEDUPLICATED_FIELD_NUMBER: _ClassVar[int]
    RULE_EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    POINTS_AWARDED_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PROCESSED_AT_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    CDP_SOURCE_FIELD_NUMBER: _ClassVar[int]
    CDP_IDENTITIES_FIELD_NUMBER: _ClassVar[int]
    EVENT_DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    program_id: str
    idempotency_key: str
    event_type: str
    external_id: str
    participant_id: str
    recipient_external_id: str
    recipient_id: str
    event_data: _struct_pb2.Struct
    event_timestamp: _timestamp_pb2.Timestamp
    received_at: _timestamp_pb2.Timestamp
    status: EventStatus
    deduplicated: bool
    rule_evaluations: _containers.RepeatedCompositeFieldContainer[_messages_pb2.RuleEvaluation]
    points_awarded: str
    error_code: str
    error_message: str
    processed_at: _timestamp_pb2.Timestamp
    origin: EventOrigin
    cdp_source: str
    cdp_identities: _containers.RepeatedCompositeFieldContainer[CdpIdentityValue]
    event_data_json: str
    def __init__(self, event_id: _Optional[str] = ..., program_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., event_type: _Optional[str] = ..., external_id: _Optional[str] = ..., participant_id: _Optional[str] = ..., recipient_external_id: _Optional[str] = ..., recipient_id: _Optional[str] = ..., event_data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., event_timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[EventStatus, str]] = ..., deduplicated: _Optional[bool] = ..., rule_evaluations: _Optional[_Iterable[_Union[_messages_pb2.RuleEvaluation, _Mapping]]] = ..., points_awarded: _Optional[str] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ..., processed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., origin: _Optional[_Union[EventOrigin, str]] = ..., cdp_source: _Optional[str] = ..., cdp_identities: _Optional[_Iterable[_Union[CdpIdentityValue, _Mapping]]] = ..., event_data_json: _Optional[str] = ...) -> None: ...

class CdpIdentityValue(_message.Message):
    __slots__ = ("type", "value")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    type: str
    value: str
    def __init__(self, type: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class SubmitEventRequest(_message.Message):
    __slots__ = ("program_id", "idempotency_key", "event_type", "event_timestamp", "external_id", "participant_id", "recipient_external_id", "recipient_id", "event_data", "event_data_json", "wait_seconds", "occurred_at", "data", "data_json", "reference")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_DATA_FIELD_NUMBER: _ClassVar[int]
    EVENT_DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    idempotency_key: str
    event_type: str
    event_timestamp: _timestamp_pb2.Timestamp
    external_id: str
    participant_id: str
    recipient_external_id: str
    recipient_id: str
    event_data: _struct_pb2.Struct
    event_data_json: str
    wait_seconds: int
    occurred_at: _timestamp_pb2.Timestamp
    data: _struct_pb2.Struct
    data_json: str
    reference: str
    def __init__(self, program_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., event_type: _Optional[str] = ..., event_timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., external_id: _Optional[str] = ..., participant_id: _Optional[str] = ..., recipient_external_id: _Optional[str] = ..., recipient_id: _Optional[str] = ..., event_data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., event_data_json: _Optional[str] = ..., wait_seconds: _Optional[int] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., data_json: _Optional[str] = ..., reference: _Optional[str] = ...) -> None: ...

class BatchSubmitEventsRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[SubmitEventRequest]
    def __init__(self, events: _Optional[_Iterable[_Union[SubmitEventRequest, _Mapping]]] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("code", "message", "field")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    field: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., field: _Optional[str] = ...) -> None: ...

class BatchItemResult(_message.Message):
    __slots__ = ("index", "status", "event_id", "error")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    index: int
    status: str
    event_id: str
    error: ItemError
    def __init__(self, index: _Optional[int] = ..., status: _Optional[str] = ..., event_id: _Optional[str] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...

class BatchSubmitEventsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BatchItemResult]
    def __init__(self, results: _Optional[_Iterable[_Union[BatchItemResult, _Mapping]]] = ...) -> None: ...

class GetEventRequest(_message.Message):
    __slots__ = ("event_id",)
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    def __init__(self, event_id: _Optional[str] = ...) -> None: ...

class ListEventsRequest(_message.Message):
    __slots__ = ("program_id", "participant_id", "external_id", "status", "received_after", "received_before", "occurred_after", "occurred_before", "page_size", "page_token", "origin", "cdp_source", "event_type")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AFTER_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AFTER_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    CDP_SOURCE_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    participant_id: str
    external_id: str
    status: EventStatus
    received_after: _timestamp_pb2.Timestamp
    received_before: _timestamp_pb2.Timestamp
    occurred_after: _timestamp_pb2.Timestamp
    occurred_before: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    origin: EventOrigin
    cdp_source: str
    event_type: str
    def __init__(self, program_id: _Optional[str] = ..., participant_id: _Optional[str] = ..., external_id: _Optional[str] = ..., status: _Optional[_Union[EventStatus, str]] = ..., received_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., received_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., occurred_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., occurred_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., origin: _Optional[_Union[EventOrigin, str]] = ..., cdp_source: _Optional[str] = ..., event_type: _Optional[str] = ...) -> None: ...

class ListEventsResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RetryEventRequest(_message.Message):
    __slots__ = ("event_id",)
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    def __init__(self, event_id: _Optional[str] = ...) -> None: ...

class ClaimEventsRequest(_message.Message):
    __slots__ = ("tenant_id", "event_ids")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_IDS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    event_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tenant_id: _Optional[str] = ..., event_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ClaimEventsResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class CoalescedSubmitEventCall(_message.Message):
    __slots__ = ("metadata", "request")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    METADATA_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    metadata: _containers.ScalarMap[str, str]
    request: SubmitEventRequest
    def __init__(self, metadata: _Optional[_Mapping[str, str]] = ..., request: _Optional[_Union[SubmitEventRequest, _Mapping]] = ...) -> None: ...

class CoalescedSubmitEventsRequest(_message.Message):
    __slots__ = ("calls",)
    CALLS_FIELD_NUMBER: _ClassVar[int]
    calls: _containers.RepeatedCompositeFieldContainer[CoalescedSubmitEventCall]
    def __init__(self, calls: _Optional[_Iterable[_Union[CoalescedSubmitEventCall, _Mapping]]] = ...) -> None: ...

class CoalescedSubmitEventResult(_message.Message):
    __slots__ = ("response", "status", "trailing_metadata")
    class TrailingMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TRAILING_METADATA_FIELD_NUMBER: _ClassVar[int]
    response: Event
    status: _status_pb2.Status
    trailing_metadata: _containers.ScalarMap[str, str]
    def __init__(self, response: _Optional[_Union[Event, _Mapping]] = ..., status: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., trailing_metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class CoalescedSubmitEventsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CoalescedSubmitEventResult]
    def __init__(self, results: _Optional[_Iterable[_Union[CoalescedSubmitEventResult, _Mapping]]] = ...) -> None: ...

class CdpIdentity(_message.Message):
    __slots__ = ("external_user_id", "email", "phone", "device_key")
    EXTERNAL_USER_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    PHONE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_KEY_FIELD_NUMBER: _ClassVar[int]
    external_user_id: str
    email: str
    phone: str
    device_key: str
    def __init__(self, external_user_id: _Optional[str] = ..., email: _Optional[str] = ..., phone: _Optional[str] = ..., device_key: _Optional[str] = ...) -> None: ...

class SubmitCdpEventRequest(_message.Message):
    __slots__ = ("source", "external_event_id", "event_type", "occurred_at", "identity", "properties", "properties_json")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_JSON_FIELD_NUMBER: _ClassVar[int]
    source: str
    external_event_id: str
    event_type: str
    occurred_at: _timestamp_pb2.Timestamp
    identity: CdpIdentity
    properties: _struct_pb2.Struct
    properties_json: str
    def __init__(self, source: _Optional[str] = ..., external_event_id: _Optional[str] = ..., event_type: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., identity: _Optional[_Union[CdpIdentity, _Mapping]] = ..., properties: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., properties_json: _Optional[str] = ...) -> None: ...

class CdpFieldViolation(_message.Message):
    __slots__ = ("field", "description")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    field: str
    description: str
    def __init__(self, field: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class CdpEventResult(_message.Message):
    __slots__ = ("status", "event_id", "original_event_id", "error_code", "message", "details")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    status: str
    event_id: str
    original_event_id: str
    error_code: str
    message: str
    details: _containers.RepeatedCompositeFieldContainer[CdpFieldViolation]
    def __init__(self, status: _Optional[str] = ..., event_id: _Optional[str] = ..., original_event_id: _Optional[str] = ..., error_code: _Optional[str] = ..., message: _Optional[str] = ..., details: _Optional[_Iterable[_Union[CdpFieldViolation, _Mapping]]] = ...) -> None: ...

class BatchSubmitCdpEventsRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[SubmitCdpEventRequest]
    def __init__(self, items: _Optional[_Iterable[_Union[SubmitCdpEventRequest, _Mapping]]] = ...) -> None: ...

class BatchSubmitCdpEventsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CdpEventResult]
    def __init__(self, results: _Optional[_Iterable[_Union[CdpEventResult, _Mapping]]] = ...) -> None: ...

class CdpPropertySpec(_message.Message):
    __slots__ = ("name", "type", "required")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: CdpPropertyType
    required: bool
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[CdpPropertyType, str]] = ..., required: _Optional[bool] = ...) -> None: ...

class CdpEventType(_message.Message):
    __slots__ = ("name", "properties", "allow_unknown_properties", "created_at", "updated_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    ALLOW_UNKNOWN_PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    properties: _containers.RepeatedCompositeFieldContainer[CdpPropertySpec]
    allow_unknown_properties: bool
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., properties: _Optional[_Iterable[_Union[CdpPropertySpec, _Mapping]]] = ..., allow_unknown_properties: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateCdpEventTypeRequest(_message.Message):
    __slots__ = ("name", "properties", "allow_unknown_properties")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    ALLOW_UNKNOWN_PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    name: str
    properties: _containers.RepeatedCompositeFieldContainer[CdpPropertySpec]
    allow_unknown_properties: bool
    def __init__(self, name: _Optional[str] = ..., properties: _Optional[_Iterable[_Union[CdpPropertySpec, _Mapping]]] = ..., allow_unknown_properties: _Optional[bool] = ...) -> None: ...

class ListCdpEventTypesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCdpEventTypesResponse(_message.Message):
    __slots__ = ("event_types",)
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    event_types: _containers.RepeatedCompositeFieldContainer[CdpEventType]
    def __init__(self, event_types: _Optional[_Iterable[_Union[CdpEventType, _Mapping]]] = ...) -> None: ...

class GetCdpEventTypeRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class UpdateCdpEventTypeRequest(_message.Message):
    __slots__ = ("name", "properties", "clear_properties", "allow_unknown_properties")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    CLEAR_PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    ALLOW_UNKNOWN_PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    name: str
    properties: _containers.RepeatedCompositeFieldContainer[CdpPropertySpec]
    clear_properties: bool
    allow_unknown_properties: bool
    def __init__(self, name: _Optional[str] = ..., properties: _Optional[_Iterable[_Union[CdpPropertySpec, _Mapping]]] = ..., clear_properties: _Optional[bool] = ..., allow_unknown_properties: _Optional[bool] = ...) -> None: ...

class DeleteCdpEventTypeRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetProgramAnalyticsRequest(_message.Message):
    __slots__ = ("program_id", "from_date", "to_date", "top")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_DATE_FIELD_NUMBER: _ClassVar[int]
    TO_DATE_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    from_date: str
    to_date: str
    top: int
    def __init__(self, program_id: _Optional[str] = ..., from_date: _Optional[str] = ..., to_date: _Optional[str] = ..., top: _Optional[int] = ...) -> None: ...

class EventsPerParticipantBucket(_message.Message):
    __slots__ = ("label", "min_events", "max_events", "participants")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    MIN_EVENTS_FIELD_NUMBER: _ClassVar[int]
    MAX_EVENTS_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    label: str
    min_events: int
    max_events: int
    participants: int
    def __init__(self, label: _Optional[str] = ..., min_events: _Optional[int] = ..., max_events: _Optional[int] = ..., participants: _Optional[int] = ...) -> None: ...

class EventTypeStats(_message.Message):
    __slots__ = ("event_type", "events", "points")
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    event_type: str
    events: int
    points: str
    def __init__(self, event_type: _Optional[str] = ..., events: _Optional[int] = ..., points: _Optional[str] = ...) -> None: ...

class RuleStats(_message.Message):
    __slots__ = ("rule_id", "rule_name", "matches", "points")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_NAME_FIELD_NUMBER: _ClassVar[int]
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    rule_name: str
    matches: int
    points: str
    def __init__(self, rule_id: _Optional[str] = ..., rule_name: _Optional[str] = ..., matches: _Optional[int] = ..., points: _Optional[str] = ...) -> None: ...

class DailyStats(_message.Message):
    __slots__ = ("date", "events", "points")
    DATE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    date: str
    events: int
    points: str
    def __init__(self, date: _Optional[str] = ..., events: _Optional[int] = ..., points: _Optional[str] = ...) -> None: ...

class ParticipantStats(_message.Message):
    __slots__ = ("participant_id", "events", "points")
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    participant_id: str
    events: int
    points: str
    def __init__(self, participant_id: _Optional[str] = ..., events: _Optional[int] = ..., points: _Optional[str] = ...) -> None: ...

class ProgramAnalytics(_message.Message):
    __slots__ = ("program_id", "from_date", "to_date", "total_events", "total_points", "active_participants", "average_events_per_participant", "events_per_participant", "events_by_type", "points_by_rule", "daily", "top_participants")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_DATE_FIELD_NUMBER: _ClassVar[int]
    TO_DATE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_EVENTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_POINTS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_EVENTS_PER_PARTICIPANT_FIELD_NUMBER: _ClassVar[int]
    EVENTS_PER_PARTICIPANT_FIELD_NUMBER: _ClassVar[int]
    EVENTS_BY_TYPE_FIELD_NUMBER: _ClassVar[int]
    POINTS_BY_RULE_FIELD_NUMBER: _ClassVar[int]
    DAILY_FIELD_NUMBER: _ClassVar[int]
    TOP_PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    from_date: str
    to_date: str
    total_events: int
    total_points: str
    active_participants: int
    average_events_per_participant: str
    events_per_participant: _containers.RepeatedCompositeFieldContainer[EventsPerParticipantBucket]
    events_by_type: _containers.RepeatedCompositeFieldContainer[EventTypeStats]
    points_by_rule: _containers.RepeatedCompositeFieldContainer[RuleStats]
    daily: _containers.RepeatedCompositeFieldContainer[DailyStats]
    top_participants: _containers.RepeatedCompositeFieldContainer[ParticipantStats]
    def __init__(self, program_id: _Optional[str] = ..., from_date: _Optional[str] = ..., to_date: _Optional[str] = ..., total_events: _Optional[int] = ..., total_points: _Optional[str] = ..., active_participants: _Optional[int] = ..., average_events_per_participant: _Optional[str] = ..., events_per_participant: _Optional[_Iterable[_Union[EventsPerParticipantBucket, _Mapping]]] = ..., events_by_type: _Optional[_Iterable[_Union[EventTypeStats, _Mapping]]] = ..., points_by_rule: _Optional[_Iterable[_Union[RuleStats, _Mapping]]] = ..., daily: _Optional[_Iterable[_Union[DailyStats, _Mapping]]] = ..., top_participants: _Optional[_Iterable[_Union[ParticipantStats, _Mapping]]] = ...) -> None: ...

class HighEngagersConfig(_message.Message):
    __slots__ = ("min_events", "window_days")
    MIN_EVENTS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_DAYS_FIELD_NUMBER: _ClassVar[int]
    min_events: int
    window_days: int
    def __init__(self, min_events: _Optional[int] = ..., window_days: _Optional[int] = ...) -> None: ...

class EventTypeSegmentConfig(_message.Message):
    __slots__ = ("event_types", "min_events")
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    MIN_EVENTS_FIELD_NUMBER: _ClassVar[int]
    event_types: _containers.RepeatedScalarFieldContainer[str]
    min_events: int
    def __init__(self, event_types: _Optional[_Iterable[str]] = ..., min_events: _Optional[int] = ...) -> None: ...

class AtRiskConfig(_message.Message):
    __slots__ = ("inactive_days",)
    INACTIVE_DAYS_FIELD_NUMBER: _ClassVar[int]
    inactive_days: int
    def __init__(self, inactive_days: _Optional[int] = ...) -> None: ...

class SegmentConfig(_message.Message):
    __slots__ = ("program_id", "high_engagers", "purchasers", "advocates", "at_risk", "updated_at")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    HIGH_ENGAGERS_FIELD_NUMBER: _ClassVar[int]
    PURCHASERS_FIELD_NUMBER: _ClassVar[int]
    ADVOCATES_FIELD_NUMBER: _ClassVar[int]
    AT_RISK_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    high_engagers: HighEngagersConfig
    purchasers: EventTypeSegmentConfig
    advocates: EventTypeSegmentConfig
    at_risk: AtRiskConfig
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, program_id: _Optional[str] = ..., high_engagers: _Optional[_Union[HighEngagersConfig, _Mapping]] = ..., purchasers: _Optional[_Union[EventTypeSegmentConfig, _Mapping]] = ..., advocates: _Optional[_Union[EventTypeSegmentConfig, _Mapping]] = ..., at_risk: _Optional[_Union[AtRiskConfig, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UpdateSegmentConfigRequest(_message.Message):
    __slots__ = ("program_id", "high_engagers", "purchasers", "advocates", "at_risk")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    HIGH_ENGAGERS_FIELD_NUMBER: _ClassVar[int]
    PURCHASERS_FIELD_NUMBER: _ClassVar[int]
    ADVOCATES_FIELD_NUMBER: _ClassVar[int]
    AT_RISK_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    high_engagers: HighEngagersConfig
    purchasers: EventTypeSegmentConfig
    advocates: EventTypeSegmentConfig
    at_risk: AtRiskConfig
    def __init__(self, program_id: _Optional[str] = ..., high_engagers: _Optional[_Union[HighEngagersConfig, _Mapping]] = ..., purchasers: _Optional[_Union[EventTypeSegmentConfig, _Mapping]] = ..., advocates: _Optional[_Union[EventTypeSegmentConfig, _Mapping]] = ..., at_risk: _Optional[_Union[AtRiskConfig, _Mapping]] = ...) -> None: ...

class GetSegmentConfigRequest(_message.Message):
    __slots__ = ("program_id",)
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    def __init__(self, program_id: _Optional[str] = ...) -> None: ...

class Segment(_message.Message):
    __slots__ = ("name", "description", "count")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    count: int
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class ListSegmentsRequest(_message.Message):
    __slots__ = ("program_id", "as_of")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, program_id: _Optional[str] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListSegmentsResponse(_message.Message):
    __slots__ = ("segments", "as_of")
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    segments: _containers.RepeatedCompositeFieldContainer[Segment]
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, segments: _Optional[_Iterable[_Union[Segment, _Mapping]]] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListSegmentMembersRequest(_message.Message):
    __slots__ = ("program_id", "segment", "as_of", "page_size", "page_token")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    segment: str
    as_of: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    def __init__(self, program_id: _Optional[str] = ..., segment: _Optional[str] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSegmentMembersResponse(_message.Message):
    __slots__ = ("members", "next_page_token", "as_of")
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[ParticipantStats]
    next_page_token: str
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, members: _Optional[_Iterable[_Union[ParticipantStats, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SystemEvent(_message.Message):
    __slots__ = ("program_id", "idempotency_key", "event_type", "participant_id", "event_timestamp", "event_data")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    EVENT_DATA_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    idempotency_key: str
    event_type: str
    participant_id: str
    event_timestamp: _timestamp_pb2.Timestamp
    event_data: _struct_pb2.Struct
    def __init__(self, program_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., event_type: _Optional[str] = ..., participant_id: _Optional[str] = ..., event_timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., event_data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class SubmitSystemEventsRequest(_message.Message):
    __slots__ = ("tenant_id", "events")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    events: _containers.RepeatedCompositeFieldContainer[SystemEvent]
    def __init__(self, tenant_id: _Optional[str] = ..., events: _Optional[_Iterable[_Union[SystemEvent, _Mapping]]] = ...) -> None: ...

class ListInactiveParticipantsRequest(_message.Message):
    __slots__ = ("tenant_id", "program_id", "last_event_on_or_before", "page_size", "page_token")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_EVENT_ON_OR_BEFORE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    program_id: str
    last_event_on_or_before: str
    page_size: int
    page_token: str
    def __init__(self, tenant_id: _Optional[str] = ..., program_id: _Optional[str] = ..., last_event_on_or_before: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class InactiveParticipant(_message.Message):
    __slots__ = ("participant_id", "last_event_date")
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_EVENT_DATE_FIELD_NUMBER: _ClassVar[int]
    participant_id: str
    last_event_date: str
    def __init__(self, participant_id: _Optional[str] = ..., last_event_date: _Optional[str] = ...) -> None: ...

class ListInactiveParticipantsResponse(_message.Message):
    __slots__ = ("participants", "next_page_token")
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    participants: _containers.RepeatedCompositeFieldContainer[InactiveParticipant]
    next_page_token: str
    def __init__(self, participants: _Optional[_Iterable[_Union[InactiveParticipant, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
