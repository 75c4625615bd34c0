"""The shim's direct fill of request messages gives what json_format.ParseDict gives, for every
request message of the routed methods, and is what fills the event submissions."""

from __future__ import annotations

import datetime as dt
from typing import Any

from accrual.identity.v1 import identity_pb2
from accrual.ingest.v1 import ingest_pb2
from accrual.notify.v1 import notify_pb2
from accrual.rules.v1 import rewards_pb2, rules_pb2
from accrual_gateway import codec as shim
from accrual_gateway import routing
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FILES = (ingest_pb2.DESCRIPTOR, identity_pb2.DESCRIPTOR, rules_pb2.DESCRIPTOR,
         rewards_pb2.DESCRIPTOR, notify_pb2.DESCRIPTOR)
REQUESTS = sorted({r.method.input_type.full_name: r.method.input_type for r in routing.build_routes(FILES)}.items())

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8)
timestamps = st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2200, 1, 1),
                          timezones=st.just(dt.UTC)).map(lambda d: d.isoformat().replace("+00:00", "Z"))
INT_RANGES = {FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1), FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
              FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1), FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
              FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1)}


def _value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        name = field.message_type.full_name
        if field.message_type.GetOptions().map_entry:
            return st.dictionaries(st.text(max_size=4), _value(field.message_type.fields_by_name["value"], depth))
        if name == "google.protobuf.Timestamp":
            return timestamps
        if name == "google.protobuf.Struct":
            return st.dictionaries(st.text(max_size=4), json_values, max_size=3)
        return _message(field.message_type, depth + 1)
    if field.type == FieldDescriptor.TYPE_ENUM:
        return st.sampled_from([v.name for v in field.enum_type.values if v.number])
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type == FieldDescriptor.TYPE_STRING:
        return st.text(max_size=6)
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(-1e6, 1e6, allow_nan=False)
    lo, hi = INT_RANGES.get(field.type, (-(2**31), 2**31 - 1))
    return st.integers(lo, hi) | st.integers(lo, hi).map(str) | st.integers(2**64, 2**65)


def _message(desc: Descriptor, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    if depth > 3:
        return st.just({})
    fields = {}
    for field in desc.fields:
        value = _value(field, depth)
        fields[field.name] = st.lists(value, max_size=2) if field.is_repeated and not (
            field.message_type is not None and field.message_type.GetOptions().map_entry) else value
    return st.fixed_dictionaries({}, optional=fields)


@st.composite
def requests(draw: st.DrawFn) -> tuple[Descriptor, dict[str, Any]]:
    _, desc = draw(st.sampled_from(REQUESTS))
    return desc, draw(_message(desc))


def _outcome(desc: Descriptor, data: dict[str, Any], parse: Any) -> tuple[str, Any]:
    message = GetMessageClass(desc)()
    try:
        parse(message, data)
    except (shim.ShimError, json_format.ParseError) as exc:
        return "error", type(exc).__name__
    return "ok", message.SerializeToString(deterministic=True)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_parse_into_is_json_format(case: tuple[Descriptor, dict[str, Any]]) -> None:
    desc, data = case
    try:
        shaped = shim.shape_input(data, desc)
    except shim.ShimError:
        return  # refused before either parser runs
    fast = _outcome(desc, data, shim.parse_into)
    slow = _outcome(desc, shaped, lambda m, d: json_format.ParseDict(d, m))
    assert fast[0] == ("error" if slow[0] == "error" else "ok")
    if slow[0] == "ok":
        assert fast[1] == slow[1]


def test_event_submissions_take_the_direct_fill() -> None:
    event = {"program_id": "p", "idempotency_key": "k", "external_id": "u", "event_type": "purchase",
             "event_timestamp": "2024-01-15T10:30:00Z", "event_data": {"amount": 125, "tags": ["a", None],
                                                                        "nested": {"ok": True}}}
    for desc, data in ((ingest_pb2.SubmitEventRequest.DESCRIPTOR, event),
                       (ingest_pb2.BatchSubmitEventsRequest.DESCRIPTOR, {"events": [event, event]})):
        message = GetMessageClass(desc)()
        shim._fill(message, shim.shape_input(data, desc))
        expected = json_format.ParseDict(shim.shape_input(data, desc), GetMessageClass(desc)())
        assert message.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)
