"""The partner date range: inside it dates pass, outside it a 400 names the field."""

from __future__ import annotations

import datetime as dt

import pytest
from accrual_platform import dates, errors
from google.protobuf import timestamp_pb2
from google.protobuf.timestamp_pb2 import Timestamp


class Holder:
    def __init__(self, ts: Timestamp | None) -> None:
        self.at = ts or Timestamp()
        self._set = ts is not None

    def HasField(self, name: str) -> bool:
        return self._set


def ts(text: str) -> timestamp_pb2.Timestamp:
    out = Timestamp()
    out.FromJsonString(text)
    return out


@pytest.mark.parametrize("text", ["1000-01-01T00:00:00Z", "2026-05-01T12:00:00Z", "8999-12-31T23:59:59Z"])
def test_inside(text: str) -> None:
    got = dates.timestamp_field(Holder(ts(text)), "at", "as_of")
    assert got is not None and got.isoformat().startswith(text[:19])
    assert dates.check(got.date(), "day") == got.date()


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00Z", "0999-12-31T23:59:59Z", "9000-01-01T00:00:00Z",
                                  "9999-12-31T23:59:59Z"])
def test_outside_names_the_field(text: str) -> None:
    with pytest.raises(errors.InvalidArgument) as info:
        dates.timestamp_field(Holder(ts(text)), "at", "as_of")
    assert [v.field for v in info.value.violations] == ["as_of"]
    day = dt.date.fromisoformat(text[:10])
    with pytest.raises(errors.InvalidArgument):
        dates.check(day, "to_date")
    assert dates.violation(day, "to_date") == errors.FieldViolation("to_date", dates.RANGE_TEXT)


def test_unset_and_naive() -> None:
    assert dates.timestamp_field(Holder(None), "at") is None
    assert dates.check(None, "x") is None
    assert dates.in_range(dt.datetime(2020, 1, 1))
    assert not dates.in_range(dt.datetime(1, 1, 1))
