"""The range of dates and instants partners may send.

Python's dates end at years 1 and 9999, and the services shift partner-supplied dates by
windows of up to ten years (segments' windows, analytics' default range, rule activity
checks), so a date near either end made an OverflowError, a 500. Every partner-supplied
date is held to years 1000 to 8999 instead, refused with a 400 naming its field: far from
both ends for any window, and wider than any real event, birth date or schedule.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeVar

from accrual_platform import errors, structs

EARLIEST = dt.datetime(1000, 1, 1, tzinfo=dt.UTC)
#: exclusive
LATEST = dt.datetime(9000, 1, 1, tzinfo=dt.UTC)
RANGE_TEXT = "must be between 1000-01-01 and 8999-12-31"

D = TypeVar("D", dt.datetime, dt.date)

_MIN_SECONDS = int((EARLIEST - structs._EPOCH).total_seconds())
_MAX_SECONDS = int((LATEST - structs._EPOCH).total_seconds())


def in_range(value: dt.datetime | dt.date) -> bool:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return EARLIEST <= value < LATEST
    return EARLIEST.date() <= value < LATEST.date()


def violation(value: dt.datetime | dt.date | None, field: str) -> errors.FieldViolation | None:
    """The violation of a date out of range, for validators that collect them."""
    if value is None or in_range(value):
        return None
    return errors.FieldViolation(field, RANGE_TEXT)


def check(value: D | None, field: str) -> D | None:
    """``value`` itself; raises InvalidArgument naming ``field`` when it is out of range."""
    if value is not None and not in_range(value):
        raise errors.InvalidArgument.field(field, RANGE_TEXT)
    return value


def timestamp_field(msg: Any, name: str, field: str | None = None) -> dt.datetime | None:
    """A request's Timestamp field as an aware datetime, None when unset; raises
    InvalidArgument naming ``field`` (default ``name``) when it is out of range."""
    if not msg.HasField(name):
        return None
    ts = getattr(msg, name)
    if not (_MIN_SECONDS <= ts.seconds < _MAX_SECONDS and 0 <= ts.nanos < 1_000_000_000):
        raise errors.InvalidArgument.field(field or name, RANGE_TEXT)
    return structs.timestamp_datetime(ts)
