import datetime

from accrual.options.v1 import options_pb2 as _options_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IdentityType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IDENTITY_TYPE_UNSPECIFIED: _ClassVar[IdentityType]
    IDENTITY_TYPE_EXTERNAL: _ClassVar[IdentityType]
    IDENTITY_TYPE_EMAIL: _ClassVar[IdentityType]
    IDENTITY_TYPE_PHONE: _ClassVar[IdentityType]
    IDENTITY_TYPE_DEVICE_KEY: _ClassVar[IdentityType]

class UnknownParticipantPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNKNOWN_PARTICIPANT_POLICY_UNSPECIFIED: _ClassVar[UnknownParticipantPolicy]
    UNKNOWN_PARTICIPANT_POLICY_CREATE: _ClassVar[UnknownParticipantPolicy]
    UNKNOWN_PARTICIPANT_POLICY_REJECT: _ClassVar[UnknownParticipantPolicy]

class EnrollmentStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENROLLMENT_STATUS_UNSPECIFIED: _ClassVar[EnrollmentStatus]
    ENROLLMENT_STATUS_ACTIVE: _ClassVar[EnrollmentStatus]
    ENROLLMENT_STATUS_FROZEN: _ClassVar[EnrollmentStatus]
    ENROLLMENT_STATUS_LOCKED: _ClassVar[EnrollmentStatus]
    ENROLLMENT_STATUS_CLOSED: _ClassVar[EnrollmentStatus]

class EnrollmentChange(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENROLLMENT_CHANGE_UNSPECIFIED: _ClassVar[EnrollmentChange]
    ENROLLMENT_CHANGE_NONE: _ClassVar[EnrollmentChange]
    ENROLLMENT_CHANGE_CREATED: _ClassVar[EnrollmentChange]
    ENROLLMENT_CHANGE_REACTIVATED: _ClassVar[EnrollmentChange]

class ScheduledOccasion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCHEDULED_OCCASION_UNSPECIFIED: _ClassVar[ScheduledOccasion]
    SCHEDULED_OCCASION_BIRTHDAY: _ClassVar[ScheduledOccasion]
    SCHEDULED_OCCASION_ANNIVERSARY: _ClassVar[ScheduledOccasion]
IDENTITY_TYPE_UNSPECIFIED: IdentityType
IDENTITY_TYPE_EXTERNAL: IdentityType
IDENTITY_TYPE_EMAIL: IdentityType
IDENTITY_TYPE_PHONE: IdentityType
IDENTITY_TYPE_DEVICE_KEY: IdentityType
UNKNOWN_PARTICIPANT_POLICY_UNSPECIFIED: UnknownParticipantPolicy
UNKNOWN_PARTICIPANT_POLICY_CREATE: UnknownParticipantPolicy
UNKNOWN_PARTICIPANT_POLICY_REJECT: UnknownParticipantPolicy
ENROLLMENT_STATUS_UNSPECIFIED: EnrollmentStatus
ENROLLMENT_STATUS_ACTIVE: EnrollmentStatus
ENROLLMENT_STATUS_FROZEN: EnrollmentStatus
ENROLLMENT_STATUS_LOCKED: EnrollmentStatus
ENROLLMENT_STATUS_CLOSED: EnrollmentStatus
ENROLLMENT_CHANGE_UNSPECIFIED: EnrollmentChange
ENROLLMENT_CHANGE_NONE: EnrollmentChange
ENROLLMENT_CHANGE_CREATED: EnrollmentChange
ENROLLMENT_CHANGE_REACTIVATED: EnrollmentChange
SCHEDULED_OCCASION_UNSPECIFIED: ScheduledOccasion
SCHEDULED_OCCASION_BIRTHDAY: ScheduledOccasion
SCHEDULED_OCCASION_ANNIVERSARY: ScheduledOccasion

class Identity(_message.Message):
    __slots__ = ("type", "value")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    type: IdentityType
    value: str
    def __init__(self, type: _Optional[_Union[IdentityType, str]] = ..., value: _Optional[str] = ...) -> None: ...

class Participant(_message.Message):
    __slots__ = ("participant_id", "identities", "attributes", "created_at")
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTITIES_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    participant_id: str
    identities: _containers.RepeatedCompositeFieldContainer[Identity]
    attributes: _struct_pb2.Struct
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, participant_id: _Optional[str] = ..., identities: _Optional[_Iterable[_Union[Identity, _Mapping]]] = ..., attributes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateParticipantRequest(_message.Message):
    __slots__ = ("identities", "attributes")
    IDENTITIES_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    identities: _containers.RepeatedCompositeFieldContainer[Identity]
    attributes: _struct_pb2.Struct
    def __init__(self, identities: _Optional[_Iterable[_Union[Identity, _Mapping]]] = ..., attributes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class GetParticipantRequest(_message.Message):
    __slots__ = ("participant_id",)
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    participant_id: str
    def __init__(self, participant_id: _Optional[str] = ...) -> None: ...

class LookupParticipantRequest(_message.Message):
    __slots__ = ("external_id", "email", "phone", "device_key")
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    PHONE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_KEY_FIELD_NUMBER: _ClassVar[int]
    external_id: str
    email: str
    phone: str
    device_key: str
    def __init__(self, external_id: _Optional[str] = ..., email: _Optional[str] = ..., phone: _Optional[str] = ..., device_key: _Optional[str] = ...) -> None: ...

class LinkIdentityRequest(_message.Message):
    __slots__ = ("participant_id", "identity")
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    participant_id: str
    identity: Identity
    def __init__(self, participant_id: _Optional[str] = ..., identity: _Optional[_Union[Identity, _Mapping]] = ...) -> None: ...

class MergeParticipantsRequest(_message.Message):
    __slots__ = ("survivor_participant_id", "merged_participant_id")
    SURVIVOR_PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    MERGED_PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    survivor_participant_id: str
    merged_participant_id: str
    def __init__(self, survivor_participant_id: _Optional[str] = ..., merged_participant_id: _Optional[str] = ...) -> None: ...

class MergeParticipantsResponse(_message.Message):
    __slots__ = ("merge_id", "merged_participant_id", "survivor", "merged_at")
    MERGE_ID_FIELD_NUMBER: _ClassVar[int]
    MERGED_PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    SURVIVOR_FIELD_NUMBER: _ClassVar[int]
    MERGED_AT_FIELD_NUMBER: _ClassVar[int]
    merge_id: str
    merged_participant_id: str
    survivor: Participant
    merged_at: _timestamp_pb2.Timestamp
    def __init__(self, merge_id: _Optional[str] = ..., merged_participant_id: _Optional[str] = ..., survivor: _Optional[_Union[Participant, _Mapping]] = ..., merged_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Enrollment(_message.Message):
    __slots__ = ("program_id", "participant_id", "status", "enrolled_at", "updated_at")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ENROLLED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    participant_id: str
    status: EnrollmentStatus
    enrolled_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, program_id: _Optional[str] = ..., participant_id: _Optional[str] = ..., status: _Optional[_Union[EnrollmentStatus, str]] = ..., enrolled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListParticipantEnrollmentsRequest(_message.Message):
    __slots__ = ("participant_id", "status", "page_size", "page_token")
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    participant_id: str
    status: EnrollmentStatus
    page_size: int
    page_token: str
    def __init__(self, participant_id: _Optional[str] = ..., status: _Optional[_Union[EnrollmentStatus, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListParticipantEnrollmentsResponse(_message.Message):
    __slots__ = ("enrollments", "next_page_token")
    ENROLLMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    enrollments: _containers.RepeatedCompositeFieldContainer[Enrollment]
    next_page_token: str
    def __init__(self, enrollments: _Optional[_Iterable[_Union[Enrollment, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListProgramEnrollmentsRequest(_message.Message):
    __slots__ = ("program_id", "status", "page_size", "page_token")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    status: EnrollmentStatus
    page_size: int
    page_token: str
    def __init__(self, program_id: _Optional[str] = ..., status: _Optional[_Union[EnrollmentStatus, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListProgramEnrollmentsResponse(_message.Message):
    __slots__ = ("enrollments", "next_page_token")
    ENROLLMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    enrollments: _containers.RepeatedCompositeFieldContainer[Enrollment]
    next_page_token: str
    def __init__(self, enrollments: _Optional[_Iterable[_Union[Enrollment, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetEnrollmentRequest(_message.Message):
    __slots__ = ("program_id", "participant_id")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    participant_id: str
    def __init__(self, program_id: _Optional[str] = ..., participant_id: _Optional[str] = ...) -> None: ...

class CreateEnrollmentRequest(_message.Message):
    __slots__ = ("program_id", "participant_id")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    participant_id: str
    def __init__(self, program_id: _Optional[str] = ..., participant_id: _Optional[str] = ...) -> None: ...

class UpdateEnrollmentRequest(_message.Message):
    __slots__ = ("program_id", "participant_id", "status")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    participant_id: str
    status: EnrollmentStatus
    def __init__(self, program_id: _Optional[str] = ..., participant_id: _Optional[str] = ..., status: _Optional[_Union[EnrollmentStatus, str]] = ...) -> None: ...

class ApiKey(_message.Message):
    __slots__ = ("key_id", "tenant_id", "scopes", "prefix", "created_at", "revoked_at")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    tenant_id: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    prefix: str
    created_at: _timestamp_pb2.Timestamp
    revoked_at: _timestamp_pb2.Timestamp
    def __init__(self, key_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., prefix: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListApiKeysRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListApiKeysResponse(_message.Message):
    __slots__ = ("keys", "next_page_token")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[ApiKey]
    next_page_token: str
    def __init__(self, keys: _Optional[_Iterable[_Union[ApiKey, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RevokeApiKeyRequest(_message.Message):
    __slots__ = ("key_id",)
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    def __init__(self, key_id: _Optional[str] = ...) -> None: ...

class GetCurrentApiKeyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CurrentApiKey(_message.Message):
    __slots__ = ("key", "tenant_name", "allowed_scopes")
    KEY_FIELD_NUMBER: _ClassVar[int]
    TENANT_NAME_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_SCOPES_FIELD_NUMBER: _ClassVar[int]
    key: ApiKey
    tenant_name: str
    allowed_scopes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, key: _Optional[_Union[ApiKey, _Mapping]] = ..., tenant_name: _Optional[str] = ..., allowed_scopes: _Optional[_Iterable[str]] = ...) -> None: ...

class AuthenticateApiKeyRequest(_message.Message):
    __slots__ = ("api_key",)
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    api_key: str
    def __init__(self, api_key: _Optional[str] = ...) -> None: ...

class AuthenticateApiKeyResponse(_message.Message):
    __slots__ = ("tenant_id", "key_id", "scopes")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    key_id: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tenant_id: _Optional[str] = ..., key_id: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ...) -> None: ...

class ResolveItem(_message.Message):
    __slots__ = ("program_id", "on_unknown_participant", "participant_id", "identities")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    ON_UNKNOWN_PARTICIPANT_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTITIES_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    on_unknown_participant: UnknownParticipantPolicy
    participant_id: str
    identities: _containers.RepeatedCompositeFieldContainer[Identity]
    def __init__(self, program_id: _Optional[str] = ..., on_unknown_participant: _Optional[_Union[UnknownParticipantPolicy, str]] = ..., participant_id: _Optional[str] = ..., identities: _Optional[_Iterable[_Union[Identity, _Mapping]]] = ...) -> None: ...

class ResolveResult(_message.Message):
    __slots__ = ("participant_id", "participant_created", "enrollment_change", "error_code", "error_message", "attributes", "active_program_ids")
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_CREATED_FIELD_NUMBER: _ClassVar[int]
    ENROLLMENT_CHANGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_PROGRAM_IDS_FIELD_NUMBER: _ClassVar[int]
    participant_id: str
    participant_created: bool
    enrollment_change: EnrollmentChange
    error_code: str
    error_message: str
    attributes: _struct_pb2.Struct
    active_program_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, participant_id: _Optional[str] = ..., participant_created: _Optional[bool] = ..., enrollment_change: _Optional[_Union[EnrollmentChange, str]] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ..., attributes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., active_program_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ResolveParticipantsRequest(_message.Message):
    __slots__ = ("tenant_id", "items")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    items: _containers.RepeatedCompositeFieldContainer[ResolveItem]
    def __init__(self, tenant_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[ResolveItem, _Mapping]]] = ...) -> None: ...

class ResolveParticipantsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ResolveResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ResolveResult, _Mapping]]] = ...) -> None: ...

class ListScheduledCandidatesRequest(_message.Message):
    __slots__ = ("tenant_id", "program_id", "occasion", "date", "page_size", "page_token")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    OCCASION_FIELD_NUMBER: _ClassVar[int]
    DATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    program_id: str
    occasion: ScheduledOccasion
    date: str
    page_size: int
    page_token: str
    def __init__(self, tenant_id: _Optional[str] = ..., program_id: _Optional[str] = ..., occasion: _Optional[_Union[ScheduledOccasion, str]] = ..., date: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ScheduledCandidate(_message.Message):
    __slots__ = ("participant_id", "years")
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    YEARS_FIELD_NUMBER: _ClassVar[int]
    participant_id: str
    years: int
    def __init__(self, participant_id: _Optional[str] = ..., years: _Optional[int] = ...) -> None: ...

class ListScheduledCandidatesResponse(_message.Message):
    __slots__ = ("candidates", "next_page_token")
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    candidates: _containers.RepeatedCompositeFieldContainer[ScheduledCandidate]
    next_page_token: str
    def __init__(self, candidates: _Optional[_Iterable[_Union[ScheduledCandidate, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
