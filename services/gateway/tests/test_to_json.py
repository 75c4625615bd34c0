"""The shim's answer converter (to_json) gives what shape_output makes of
json_format.MessageToDict, for every response message of the routed methods."""

from __future__ import annotations

import math
import random
from typing import Any

import orjson
import pytest
from accrual.identity.v1 import identity_pb2
from accrual.ingest.v1 import ingest_pb2
from accrual.notify.v1 import notify_pb2
from accrual.rules.v1 import rewards_pb2, rules_pb2
from accrual_gateway import codec as shim
from accrual_gateway import routing
from google.protobuf import struct_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import given, settings
from hypothesis import strategies as st

FILES = (ingest_pb2.DESCRIPTOR, identity_pb2.DESCRIPTOR, rules_pb2.DESCRIPTOR,
         rewards_pb2.DESCRIPTOR, notify_pb2.DESCRIPTOR)
RESPONSES = sorted({r.method.output_type.full_name: r.method.output_type for r in routing.build_routes(FILES)}.items())

TEXT = ["", "a", "é", "A-1", "line\nbreak", "\u2603", "x" * 40, "EVENT_STATUS_PENDING"]
INT_RANGES = {FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1), FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
              FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1), FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
              FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1), FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
              FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1)}


def _json_value(rnd: random.Random, depth: int) -> Any:
    kind = rnd.randrange(7 if depth < 2 else 5)
    if kind == 5:
        return [_json_value(rnd, depth + 1) for _ in range(rnd.randrange(3))]
    if kind == 6:
        return {rnd.choice(TEXT): _json_value(rnd, depth + 1) for _ in range(rnd.randrange(3))}
    return [None, rnd.random() < 0.5, rnd.choice([0, 1.5, -3, 1e300]), rnd.choice(TEXT), rnd.randint(-99, 99)][kind]


def _scalar(field: FieldDescriptor, rnd: random.Random) -> Any:
    t = field.type
    if t == FieldDescriptor.TYPE_ENUM:
        numbers = [v.number for v in field.enum_type.values]
        return rnd.choice([*numbers, max(numbers) + 7])  # an unknown number too (open enums)
    if t == FieldDescriptor.TYPE_BOOL:
        return rnd.random() < 0.5
    if t == FieldDescriptor.TYPE_STRING:
        return rnd.choice(TEXT)
    if t == FieldDescriptor.TYPE_BYTES:
        return bytes(rnd.randrange(256) for _ in range(rnd.randrange(4)))
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return rnd.choice([0.0, 1.5, -2.25, 0.1, 1e-7, 3.4e38, math.inf, -math.inf, math.nan])
    lo, hi = INT_RANGES.get(t, (-(2**63), 2**63 - 1) if t in shim._INT64S else (-(2**31), 2**31 - 1))
    return rnd.choice([0, lo, hi, rnd.randint(lo, hi)])


def _fill(message: Message, rnd: random.Random, depth: int = 0) -> None:
    for field in message.DESCRIPTOR.fields:
        if rnd.random() < 0.3:
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            target = getattr(message, field.name)
            key_field, value_field = (field.message_type.fields_by_name[n] for n in ("key", "value"))
            for _ in range(rnd.randrange(3)):
                key = _scalar(key_field, rnd)
                if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                    _fill_message(target[key], value_field, rnd, depth)
                else:
                    target[key] = _scalar(value_field, rnd)
        elif field.is_repeated:
            target = getattr(message, field.name)
            for _ in range(rnd.randrange(3)):
                if field.type == FieldDescriptor.TYPE_MESSAGE:
                    _fill_message(target.add(), field, rnd, depth)
                else:
                    target.append(_scalar(field, rnd))
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth < 3:
                _fill_message(getattr(message, field.name), field, rnd, depth)
        elif shim.is_hidden(field):  # the exact JSON text of a Struct field
            setattr(message, field.name, orjson.dumps(
                {rnd.choice(TEXT): _json_value(rnd, 1) for _ in range(rnd.randrange(3))}).decode())
        else:
            setattr(message, field.name, _scalar(field, rnd))


def _fill_message(target: Message, field: FieldDescriptor, rnd: random.Random, depth: int) -> None:
    name = field.message_type.full_name
    if name == "google.protobuf.Timestamp":
        target.FromSeconds(rnd.randint(0, 253402300799))  # type: ignore[attr-defined]
        target.nanos = rnd.choice([0, 1000, 123456789])  # type: ignore[attr-defined]
    elif name == "google.protobuf.Struct":
        target.update({rnd.choice(TEXT): _json_value(rnd, 1) for _ in range(rnd.randrange(3))})  # type: ignore[attr-defined]
    elif name == "google.protobuf.Value":
        target.MergeFrom(_struct_value(rnd))
    else:
        target.SetInParent()
        _fill(target, rnd, depth + 1)


def _struct_value(rnd: random.Random) -> Any:
    s = struct_pb2.Struct()
    s.update({"v": _json_value(rnd, 1)})
    return s.fields["v"]


@pytest.mark.parametrize("name,desc", RESPONSES, ids=[n for n, _ in RESPONSES])
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_to_json_is_shape_output_of_message_to_dict(name: str, desc: Descriptor, seed: int) -> None:
    message = GetMessageClass(desc)()
    _fill(message, random.Random(seed))
    assert _plain(shim.to_json(message)) == _plain(shim._to_json_generic(message))


def _plain(answer: dict[str, Any]) -> Any:
    """An answer as its JSON reads (exact-text fields are orjson Fragments, which do not
    compare by value)."""
    return orjson.loads(shim.dumps(answer))


@pytest.mark.parametrize("name,desc", RESPONSES, ids=[n for n, _ in RESPONSES])
def test_to_json_of_an_empty_message(name: str, desc: Descriptor) -> None:
    message = GetMessageClass(desc)()
    assert shim.to_json(message) == shim._to_json_generic(message)


def test_every_response_is_covered_by_the_direct_converter() -> None:
    """Where the direct converter cannot answer it falls back to json_format (still
    correct); the routed responses should all be covered, or the speed-up is lost unseen."""
    assert [n for n, d in RESPONSES if shim._shaper(d) is None] == []


def test_batch_answer() -> None:
    resp = ingest_pb2.BatchSubmitEventsResponse()
    resp.results.add(index=0, status="accepted", event_id="e1")
    item = resp.results.add(index=1, status="error")
    item.error.code = "invalid_argument"
    assert shim.to_json(resp) == {"results": [
        {"index": 0, "status": "accepted", "event_id": "e1", "error": None},
        {"index": 1, "status": "error", "event_id": None, "error": {"code": "invalid_argument", "message": "",
                                                                  "field": ""}}]}
