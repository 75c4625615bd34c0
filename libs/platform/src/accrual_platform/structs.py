"""google.protobuf.Struct to plain Python, without json_format's generic printer.

``json_format.MessageToDict`` walks a Struct through descriptor lookups per value in pure
Python; it was a third of the notify worker's time (each notification's ``data``). This does
the same conversion by each Value's kind, with the same result (numbers stay floats, and
NaN or infinity is refused as ProtoJSON refuses it).
"""

from __future__ import annotations

import math
from typing import Any

from google.protobuf import struct_pb2


def to_dict(message: struct_pb2.Struct) -> dict[str, Any]:
    return {key: _value(value) for key, value in message.fields.items()}


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
