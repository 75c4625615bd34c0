"""google.protobuf.Struct to plain Python, without json_format's generic printer.

``json_format.MessageToDict`` walks a Struct through descriptor lookups per value in pure
Python; it was a third of the notify worker's time (each notification's ``data``). This does
the same conversion by each Value's kind, with the same result (numbers stay floats, and
NaN or infinity is refused as ProtoJSON refuses it).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from accrual_platform import exactjson


def to_dict(message: struct_pb2.Struct) -> dict[str, Any]:
    return {key: _value(value) for key, value in message.fields.items()}


def text_or_struct(text: str, message: struct_pb2.Struct) -> dict[str, Any]:
    """A JSON object sent both as exact text and as a Struct (ingest's Event.event_data_json
    and event_data), as the rule engine takes it: from the text when there is one, integers
    as integers, decimals as the doubles they read as; else from the Struct."""
    if not text:
        return to_dict(message)
    return exactjson.approximate(exactjson.loads(text))  # type: ignore[no-any-return]


def _value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        number = value.number_value
        if math.isinf(number) or math.isnan(number):
            raise ValueError("a Struct number is not finite, which ProtoJSON cannot express")
        return number
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return to_dict(value.struct_value)
    if kind == "list_value":
        return [_value(v) for v in value.list_value.values]
    return None


_JSON_SCALARS = frozenset({
    FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BOOL, FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_SFIXED32})


def scalars_to_dict(message: Message) -> dict[str, Any]:
    """``MessageToDict(message, preserving_proto_field_name=True)`` for a message of only
    singular string, bool and 32-bit integer fields (e.g. RuleEvaluation): the fields set,
    read by the C runtime's ListFields instead of json_format's per-field Python walk.
    Another field type (whose JSON form differs: 64-bit integers are strings, enums names)
    is a TypeError rather than a silently different result."""
    desc = message.DESCRIPTOR
    if desc.full_name not in _SCALAR_MESSAGES:  # checked once per message type, not per value
        bad = [f.full_name for f in desc.fields if f.type not in _JSON_SCALARS or f.is_repeated]
        if bad:
            raise TypeError(f"{bad[0]} is not a singular string, bool or 32-bit integer field")
        _SCALAR_MESSAGES.add(desc.full_name)
    return {field.name: value for field, value in message.ListFields()}


#: Message types found to hold only fields scalars_to_dict covers.
_SCALAR_MESSAGES: set[str] = set()


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def set_timestamp(target: timestamp_pb2.Timestamp, at: dt.datetime) -> None:
    """``target.FromDatetime(at)`` (a naive ``at`` read as UTC) by datetime arithmetic: the
    same seconds and nanos in a sixth of the time (protobuf's is Python over a time tuple),
    on the hot paths that stamp every event and notification."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    delta = at - _EPOCH
    target.seconds = delta.days * 86_400 + delta.seconds
    target.nanos = delta.microseconds * 1000


def timestamp_datetime(ts: timestamp_pb2.Timestamp) -> dt.datetime:
    """``ts.ToDatetime(dt.UTC)`` by datetime arithmetic (nanos truncated to microseconds)."""
    return _EPOCH + dt.timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)
