"""structs.to_dict gives what json_format.MessageToDict gives, for any JSON-like value; the
timestamp helpers what Timestamp.FromDatetime / ToDatetime give."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from accrual.messages.v1 import messages_pb2
from accrual_platform import structs
from google.protobuf import json_format, struct_pb2, timestamp_pb2
from hypothesis import given
from hypothesis import strategies as st

json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53)
    | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=8))
def test_same_as_json_format(data: dict[str, Any]) -> None:
    message = struct_pb2.Struct()
    message.update(data)
    assert structs.to_dict(message) == json_format.MessageToDict(message)


def test_non_finite_numbers_are_refused_like_json_format() -> None:
    message = struct_pb2.Struct()
    message.update({"x": float("inf")})
    with pytest.raises(ValueError):
        json_format.MessageToDict(message)
    with pytest.raises(ValueError):
        structs.to_dict(message)


@given(st.builds(
    messages_pb2.RuleEvaluation, rule_id=st.text(), rule_version=st.integers(-(2**31), 2**31 - 1),
    rule_name=st.text(), matched=st.booleans(), skip_reason=st.text(), message=st.text(),
    points=st.text(), recipient_id=st.text(), program_id=st.text()))
def test_scalars_to_dict_is_message_to_dict(message: messages_pb2.RuleEvaluation) -> None:
    assert structs.scalars_to_dict(message) == json_format.MessageToDict(message, preserving_proto_field_name=True)


def test_scalars_to_dict_refuses_fields_whose_json_differs() -> None:
    with pytest.raises(TypeError):
        structs.scalars_to_dict(messages_pb2.EventOutcome(status=messages_pb2.OUTCOME_STATUS_COMPLETED))
    with pytest.raises(TypeError):
        structs.scalars_to_dict(messages_pb2.EventOutcome(rule_evaluations=[messages_pb2.RuleEvaluation()]))


@given(at=st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59),
                       timezones=st.none() | st.integers(-23 * 60, 23 * 60).map(
                           lambda minutes: dt.timezone(dt.timedelta(minutes=minutes)))))
def test_timestamps_are_what_protobuf_makes_of_them(at: dt.datetime) -> None:
    ours, theirs = timestamp_pb2.Timestamp(), timestamp_pb2.Timestamp()
    structs.set_timestamp(ours, at)
    theirs.FromDatetime(at)
    assert ours == theirs
    assert structs.timestamp_datetime(ours) == theirs.ToDatetime(dt.UTC)
    assert structs.timestamp_datetime(ours).tzinfo == dt.UTC
