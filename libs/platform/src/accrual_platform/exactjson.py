"""JSON whose numbers are kept exactly (event data, CDP properties).

orjson reads every number with a fraction or an exponent as a double and refuses integers
beyond 64 bits (it reads them as doubles too), so ``9007199254740993.5`` or
``123456789012345678901`` would change on the way in. Here such numbers come back exact:
integers as ``int`` where orjson can write them back, everything else as ``decimal.Decimal``.
Numbers orjson keeps exactly (the vast majority) come back as orjson reads them, and orjson
does the reading: only text with a long run of digits or a three-digit exponent is read again
by ``json`` with decimal hooks.

The canonical form (:func:`canonical`) is what is stored and answered: integral numbers as
integers (``125.0`` is ``125``), decimals without trailing zeros (``1.10`` is ``1.1``),
doubles that are not integral as they are.
"""

from __future__ import annotations

import decimal
import json
from typing import Any

import orjson

#: Text that may hold a number orjson would change is found with bytes methods (in C: a
#: regular expression took several times orjson's reading): with every digit and dot made
#: "0", a run of 16 (16 or more significant digits, or an integer beyond 64 bits), or a
#: negative three-digit exponent (1e-400 reads as 0.0) in a number token. Such text inside
#: a string can match too: that costs a second, exact reading, never a different result.
#: Larger positive exponents need nothing: orjson refuses what overflows a double.
_DIGITS = bytes.maketrans(b"0123456789.E", b"00000000000e")
_LONG_RUN = b"0" * 16
_TINY = b"0e-000"  # a digit, then the exponent
_MANTISSA = frozenset(b"0123456789.-")
_BEFORE_NUMBER = frozenset(b":,[ \t\r\n")
#: The integers orjson writes: int64 and uint64.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
#: Integral values up to this decimal exponent are written out as integers; beyond it they
#: keep their exponent (1E+300 stays short instead of becoming 301 digits).
_MAX_INT_EXPONENT = 20
#: Decimal arithmetic that never rounds a number it normalizes (a JSON number has at most
#: a body's length of digits).
_EXACT = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)
_SAFE_INT = 2**53
_MAX_WHOLE_FLOAT = 10.0 ** (_MAX_INT_EXPONENT + 1)


def needs_exact_reading(text: str | bytes) -> bool:
    """Whether orjson might change a number of ``text`` (see _DIGITS)."""
    raw = text if isinstance(text, bytes) else text.encode(errors="surrogatepass")
    shape = raw.translate(_DIGITS)
    if _LONG_RUN in shape:
        return True
    at = shape.find(_TINY)
    while at != -1:
        start = at + 1  # back to the start of the token: a number's follows a separator
        while start > 0 and raw[start - 1] in _MANTISSA:
            start -= 1
        if start == 0 or raw[start - 1] in _BEFORE_NUMBER:
            return True
        at = shape.find(_TINY, at + 1)
    return False


def _float(text: str) -> Any:
    number = float(text)
    # Exact when the double's shortest spelling has the text's value (0.1, 1.10, 1e20).
    if number - number == 0 and decimal.Decimal(repr(number)) == decimal.Decimal(text):
        return number
    return decimal.Decimal(text)


def _int(text: str) -> Any:
    number = int(text)
    return number if _INT_MIN <= number <= _INT_MAX else decimal.Decimal(text)


def _constant(text: str) -> Any:
    raise ValueError(f"{text} is not a JSON number")


def loads(text: str | bytes) -> Any:
    """``text`` read as orjson reads it, except that numbers orjson would change come back
    exact (see the module's docstring). Raises ValueError for text that is not JSON, or
    that orjson refuses (NaN, a lone surrogate, nesting deeper than 1024)."""
    value = orjson.loads(text)
    if not needs_exact_reading(text):
        return value
    if isinstance(text, bytes):
        text = text.decode()
    try:
        return json.loads(text, parse_float=_float, parse_int=_int, parse_constant=_constant)
    except RecursionError:  # orjson read it, so it is not deeper than orjson's limit
        raise ValueError("JSON nested too deeply") from None


def _whole(number: int) -> Any:
    return number if _INT_MIN <= number <= _INT_MAX else decimal.Decimal(number)


def _number(value: Any) -> Any:
    if isinstance(value, float):
        if not value.is_integer() or abs(value) >= _MAX_WHOLE_FLOAT:
            return value
        # Beyond 2**53 a double's own value may differ from the text it was read from;
        # its shortest spelling does not (9007199254740993.0 was read exactly above).
        return int(value) if abs(value) < _SAFE_INT else _whole(int(decimal.Decimal(repr(value))))
    d: decimal.Decimal = value
    if not d.is_finite():
        return d
    if d == 0:
        return 0
    whole_digits = d.as_tuple().exponent >= 0  # type: ignore[operator]  # finite: an int
    if whole_digits or d == d.to_integral_value(context=_EXACT):
        if d.adjusted() <= _MAX_INT_EXPONENT:
            return _whole(int(d))
        return d if whole_digits else d.normalize(_EXACT)
    return d.normalize(_EXACT)


def canonical(value: Any) -> Any:
    """``value`` (as :func:`loads` or a protobuf Struct gives it) with its numbers in
    canonical form; every other value as it is."""
    kind = type(value)
    if kind is dict:
        return {k: canonical(v) for k, v in value.items()}
    if kind is list:
        return [canonical(v) for v in value]
    if kind is float or kind is decimal.Decimal:
        return _number(value)
    if kind is int and not _INT_MIN <= value <= _INT_MAX:
        return decimal.Decimal(value)
    return value


def _default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal) and value.is_finite():
        return orjson.Fragment(str(value))
    raise TypeError(f"not JSON: {type(value).__name__}")


def dumps(value: Any, *, sort_keys: bool = True) -> bytes:
    """Compact JSON of ``value`` (keys sorted unless told), decimals written exactly."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else None, default=_default)


def approximate(value: Any) -> Any:
    """``value`` with its decimals and wide integers as the nearest doubles: what a protobuf
    Struct and the rule engine can hold. Integers orjson writes stay integers; a decimal
    becomes the double its text reads as."""
    kind = type(value)
    if kind is dict:
        return {k: approximate(v) for k, v in value.items()}
    if kind is list:
        return [approximate(v) for v in value]
    if kind is decimal.Decimal:
        return float(str(value))
    if kind is int and not _INT_MIN <= value <= _INT_MAX:
        return float(value)
    return value
