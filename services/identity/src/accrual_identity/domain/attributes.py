"""Participant attributes: free-form JSON, except for the few keys the product reads.

``birth_date`` drives birthday automations (seed 001), so it must be a real calendar date
in one spelling; the rest is stored as given, within limits a database accepts.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import Any

from accrual_platform import dates

MAX_ATTRIBUTES_BYTES = 32 * 1024
BIRTH_DATE = "birth_date"
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class InvalidAttribute(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def validate_attributes(attributes: Mapping[str, Any],
                        today: dt.date) -> tuple[dict[str, Any], dt.date | None]:
    """The attributes to store and the birth date they carry (None when absent)."""
    clean = dict(attributes)
    _reject_nul(clean, "attributes")
    try:
        encoded = json.dumps(clean, ensure_ascii=False, allow_nan=False).encode()
    except ValueError:
        raise InvalidAttribute("attributes", "numbers must be finite") from None
    if len(encoded) > MAX_ATTRIBUTES_BYTES:
        raise InvalidAttribute("attributes", f"must be at most {MAX_ATTRIBUTES_BYTES} bytes")
    raw = clean.get(BIRTH_DATE)
    if raw is None:
        clean.pop(BIRTH_DATE, None)
        return clean, None
    return clean, parse_birth_date(raw, today)


def parse_birth_date(raw: object, today: dt.date) -> dt.date:
    field = f"attributes.{BIRTH_DATE}"
    if not isinstance(raw, str) or not _DATE.fullmatch(raw):
        raise InvalidAttribute(field, "must be a date as YYYY-MM-DD")
    try:
        value = dt.date.fromisoformat(raw)
    except ValueError:
        raise InvalidAttribute(field, "is not a calendar date") from None
    if value > today:
        raise InvalidAttribute(field, "must not be in the future")
    if not dates.in_range(value):
        raise InvalidAttribute(field, dates.RANGE_TEXT)
    return value


def _reject_nul(value: Any, path: str) -> None:
    """PostgreSQL JSONB cannot hold U+0000; refuse it here rather than fail on insert."""
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidAttribute(path, "must not contain NUL characters")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if "\x00" in key:
                raise InvalidAttribute(path, "keys must not contain NUL characters")
            _reject_nul(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _reject_nul(item, f"{path}[{index}]")
