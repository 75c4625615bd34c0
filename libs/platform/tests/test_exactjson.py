"""exactjson: numbers read, normalised and written without passing through doubles."""

from __future__ import annotations

import decimal
import json
from typing import Any

import orjson
import pytest
from accrual_platform import db, exactjson, structs
from google.protobuf import struct_pb2
from hypothesis import given, settings
from hypothesis import strategies as st


def exact_value(text: str | bytes) -> Any:
    return json.loads(text, parse_float=decimal.Decimal)


@pytest.mark.parametrize("text,expected", [
    ("9007199254740993", 9007199254740993),
    ("9007199254740993.0", 9007199254740993),
    ("125.0", 125),
    ("-0.0", 0),
    ("1.10", decimal.Decimal("1.1")),
    ("18446744073709551616", 18446744073709551616),
    ("1.2345678901234567890123456789012345", decimal.Decimal("1.2345678901234567890123456789012345")),
    ("1e-400", decimal.Decimal("1e-400")),
    ("1e25", decimal.Decimal("1e25")),
    ("0.1", decimal.Decimal("0.1")),
])
def test_a_number_keeps_its_value(text: str, expected: Any) -> None:
    value = exactjson.canonical(exactjson.loads(f'{{"n": {text}}}'))
    written = exactjson.dumps(value)
    assert exact_value(written) == {"n": expected}
    if isinstance(expected, int):
        assert written == f'{{"n":{expected}}}'.encode()  # integers are written as integers


def test_canonical_text_sorts_keys_and_drops_trailing_zeros() -> None:
    value = exactjson.canonical(exactjson.loads('{"b": [1.50, {"z": 2.0, "a": null}], "a": true}'))
    assert exactjson.dumps(value) == b'{"a":true,"b":[1.5,{"a":null,"z":2}]}'


def test_orjson_reads_what_it_reads_exactly() -> None:
    """No long digits and no tiny exponent in a number: orjson's reading, the fast path.
    Ids (UUIDs with "e" and digits, long order numbers) are no numbers."""
    assert not exactjson.needs_exact_reading(
        b'{"amount": 125.5, "id": "550e8400-e29b-412e-3716-446655440000", "t": 1e21, "s": 1.5e-30}')
    assert not exactjson.needs_exact_reading('{"k": "x-1e-400", "o": "order-1234567890"}')
    for text in ['{"n": 9007199254740993}', '{"n": -1E-400}', "1e-400", '[1, 0.1000000000000000055511]',
                 '{"a":\n 123456789012345678901}']:
        assert exactjson.needs_exact_reading(text) and exactjson.needs_exact_reading(text.encode()), text


@pytest.mark.parametrize("text", ["1e400", "NaN", "Infinity", "{", '"\\ud800"', "[" * 1100 + "]" * 1100])
def test_what_orjson_refuses_is_refused_on_the_exact_path_too(text: str) -> None:
    whole = f"[12345678901234567890.5, {text}]"  # a long number: the exact path
    assert exactjson.needs_exact_reading(whole)
    with pytest.raises(ValueError):
        exactjson.loads(whole)


def test_approximate_gives_doubles_and_keeps_integers() -> None:
    value = exactjson.canonical(exactjson.loads(
        '{"d": 1.2345678901234567890123, "i": 125, "h": 340282366920938463463374607431768211456}'))
    approx = exactjson.approximate(value)
    assert approx["d"] == 1.2345678901234568 and approx["i"] == 125 and type(approx["i"]) is int
    assert approx["h"] == float(2**128)
    assert orjson.dumps(approx)  # what the rule engine's context is written with


def test_text_or_struct_reads_the_text_when_there_is_one() -> None:
    struct = struct_pb2.Struct()
    struct.update({"n": 125})
    assert structs.text_or_struct("", struct) == {"n": 125.0}
    assert structs.text_or_struct('{"n":125,"d":0.5,"b":9007199254740993}', struct) == {
        "n": 125, "d": 0.5, "b": 9007199254740993}


def test_json_columns_write_decimals_exactly() -> None:
    assert db.dumps_json({"d": decimal.Decimal("1.2345678901234567890123")}) == '{"d":1.2345678901234567890123}'
    with pytest.raises(TypeError):
        db.dumps_json({"d": decimal.Decimal("NaN")})


_numbers = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
        lambda d: -300 < d.adjusted() < 300).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_numbers, min_size=1, max_size=8))
def test_every_number_survives_a_round_trip(numbers: list[str]) -> None:
    text = "[" + ", ".join(n.replace("Infinity", "1") for n in numbers) + "]"
    value = exactjson.canonical(exactjson.loads(text))
    written = exactjson.dumps(value)
    assert exact_value(written) == exact_value(text)  # Decimal and int compare by value
    assert exactjson.dumps(exactjson.canonical(exactjson.loads(written))) == written  # a fixed point
