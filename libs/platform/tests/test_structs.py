"""structs.to_dict gives what json_format.MessageToDict gives, for any JSON-like value."""

from __future__ import annotations

from typing import Any

import pytest
from accrual_platform import structs
from google.protobuf import json_format, struct_pb2
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
