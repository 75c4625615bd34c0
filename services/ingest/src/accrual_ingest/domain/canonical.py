"""Canonical form of an event payload, for idempotency comparison.

Two submissions with the same idempotency key are "the same" when their canonical digests
match: key order, whitespace, ``125`` vs ``125.0`` and equivalent timestamp spellings do not
matter. A timestamp the client did not send is left out (its default is the receipt time,
which differs on every retry).
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
from typing import Any

import orjson

#: Normalizes without rounding: the default context would round to 28 digits, and two
#: payloads differing in the 29th would count as one.
_EXACT = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)


def _canonical_value(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:  # the text Decimal(value).normalize() prints with "f", without Decimal
        return {"$num": str(value)}
    if isinstance(value, int | float | decimal.Decimal):
        d = decimal.Decimal(repr(value)) if isinstance(value, float) else decimal.Decimal(value)
        if not d.is_finite():
            return str(d)
        text = format(d.normalize(_EXACT), "f")
        return {"$num": "0" if text in ("-0", "0") else text}
    if isinstance(value, dict):
        return {str(k): _canonical_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical_value(v) for v in value]
    if isinstance(value, dt.datetime):
        return {"$ts": value.astimezone(dt.UTC).isoformat(timespec="microseconds")}
    raise TypeError(f"not canonicalisable: {type(value).__name__}")


def payload_digest(fields: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``fields`` (None values are dropped)."""
    body = _canonical_value({k: v for k, v in fields.items() if v is not None})
    return hashlib.sha256(canonical_json(body)).hexdigest()


def canonical_json(body: Any) -> bytes:
    """UTF-8 of ``json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
    (the text digests were first made from, so stored digests still match), written by
    orjson. A canonical body holds only strings, booleans, None, lists and dicts with string
    keys (numbers became ``{"$num": …}``), where the two agree byte for byte: same escapes,
    and sorting by UTF-8 bytes is sorting by code points. A string that is not valid
    Unicode (a lone surrogate) falls back to json, which fails on it as before."""
    try:
        return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
