"""Property tests of canonical payload comparison: what must not make a retry "different"
(key order, 125 vs 125.0, whitespace, timestamp spelling) and what must."""

from __future__ import annotations

import datetime as dt
import decimal
import json
from typing import Any

from accrual_ingest.domain.canonical import canonical_json, payload_digest
from hypothesis import assume, given
from hypothesis import strategies as st

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=8),
                    st.floats(allow_nan=False, allow_infinity=False))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)), max_leaves=20)
documents = st.dictionaries(st.text(max_size=5), json_values, max_size=6)
instants = st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2100, 1, 1),
                        timezones=st.just(dt.UTC))
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: dt.timezone(dt.timedelta(minutes=m)))


def shuffled(value: Any, seed: int) -> Any:
    """The same JSON value with every object's keys in another order."""
    if isinstance(value, dict):
        items = list(value.items())
        k = seed % len(items) if items else 0
        items = items[k:] + items[:k]
        if seed % 2:
            items.reverse()
        return {key: shuffled(v, seed + 1) for key, v in items}
    if isinstance(value, list):
        return [shuffled(v, seed + 1) for v in value]
    return value


def floated(value: Any) -> Any:
    """Whole numbers spelled as floats (125 -> 125.0)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value) + 0.0  # -0.0 is 0
    if isinstance(value, dict):
        return {k: floated(v) for k, v in value.items()}
    if isinstance(value, list):
        return [floated(v) for v in value]
    return value


@given(documents, st.integers(0, 100))
def test_key_order_does_not_matter(doc: dict[str, Any], seed: int) -> None:
    assert payload_digest({"event_data": doc}) == payload_digest({"event_data": shuffled(doc, seed)})


@given(documents)
def test_whole_numbers_equal_their_float_spelling(doc: dict[str, Any]) -> None:
    assert payload_digest({"event_data": doc}) == payload_digest({"event_data": floated(doc)})


@given(documents, st.integers(0, 4))
def test_whitespace_of_the_wire_json_does_not_matter(doc: dict[str, Any], indent: int) -> None:
    compact = json.loads(json.dumps(doc, separators=(",", ":")))
    pretty = json.loads(json.dumps(doc, indent=indent))
    assert payload_digest({"event_data": compact}) == payload_digest({"event_data": pretty})


@given(instants, offsets)
def test_the_same_instant_in_any_offset_is_the_same_timestamp(instant: dt.datetime, tz: dt.timezone) -> None:
    assert payload_digest({"event_timestamp": instant}) == payload_digest({"event_timestamp": instant.astimezone(tz)})


@given(instants, instants)
def test_different_instants_differ(a: dt.datetime, b: dt.datetime) -> None:
    assume(a != b)
    assert payload_digest({"event_timestamp": a}) != payload_digest({"event_timestamp": b})


@given(documents, documents)
def test_different_payloads_differ(a: dict[str, Any], b: dict[str, Any]) -> None:
    def canon(doc: dict[str, Any]) -> str:
        return json.dumps(floated(doc), sort_keys=True)

    assume(canon(a) != canon(b))
    assert payload_digest({"event_data": a}) != payload_digest({"event_data": b})


@given(st.integers(-(10**6), 10**6))
def test_numbers_are_compared_by_value(n: int) -> None:
    assert payload_digest({"x": n}) == payload_digest({"x": float(n)})
    assert payload_digest({"x": n}) != payload_digest({"x": n + 1})
    assert payload_digest({"x": n}) != payload_digest({"x": str(n)})


canonical_bodies = st.recursive(
    st.one_of(st.none(), st.booleans(), st.text()),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(), inner, max_size=4)),
    max_leaves=25)


@given(st.dictionaries(st.text(), canonical_bodies, max_size=6))
def test_canonical_json_is_the_text_digests_were_first_made_from(body: dict[str, Any]) -> None:
    """Digests stored by earlier versions (json.dumps) must match those made now (orjson)."""
    expected = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert canonical_json(body) == expected


def test_decimals_are_compared_in_every_digit() -> None:
    """The default decimal context would round to 28 digits; two payloads differing in the
    35th digit, or two integers beyond a double's 53 bits, are different payloads."""
    a = decimal.Decimal("1.2345678901234567890123456789012345")
    b = decimal.Decimal("1.2345678901234567890123456789012346")
    assert payload_digest({"event_data": {"x": a}}) != payload_digest({"event_data": {"x": b}})
    assert payload_digest({"event_data": {"x": 2**53 + 1}}) != payload_digest({"event_data": {"x": 2**53}})
    assert payload_digest({"event_data": {"x": decimal.Decimal("1.10")}}) == payload_digest({"event_data": {"x": 1.1}})
    assert payload_digest({"event_data": {"x": decimal.Decimal("125.0")}}) == payload_digest({"event_data": {"x": 125}})
