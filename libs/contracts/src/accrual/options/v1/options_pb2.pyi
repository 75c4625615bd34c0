from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor
REQUIRED_SCOPE_FIELD_NUMBER: _ClassVar[int]
required_scope: _descriptor.FieldDescriptor
INVALID_ARGUMENT_HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
invalid_argument_http_status: _descriptor.FieldDescriptor
COALESCED_BY_FIELD_NUMBER: _ClassVar[int]
coalesced_by: _descriptor.FieldDescriptor
EXACT_JSON_OF_FIELD_NUMBER: _ClassVar[int]
exact_json_of: _descriptor.FieldDescriptor
DECIMAL_FIELD_NUMBER: _ClassVar[int]
decimal: _descriptor.FieldDescriptor
