"""ZEN expressions: compile and validate on save, evaluate compiled on every event.

zen-engine evaluates with exact decimals internally and hands back floats; the shortest
float repr is turned back into a Decimal, so ``120.5 * 1`` gives exactly ``120.5``.
"""

from __future__ import annotations

import decimal
import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import zen


class ExpressionError(ValueError):
    """An expression that does not parse, or fails on a given event."""

    def __init__(self, message: str, position: tuple[int, int] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


_POS = re.compile(r"at \((\d+), (\d+)\)")


#: The engine computes in 96-bit decimals: a number past about ±7.9e28 in the context (valid
#: JSON, so accepted with the event) cannot be read; from a dict it says so, from JSON text it
#: says "Invalid JSON" (the text is valid: orjson wrote it).
OUT_OF_RANGE = "the event holds a number beyond what expressions compute with (about ±7.9e28)"


def _error(exc: Exception) -> ExpressionError:
    first = str(exc).splitlines()[0] if str(exc) else repr(exc)
    if first == "Invalid JSON":
        return ExpressionError(OUT_OF_RANGE)
    try:
        body = json.loads(first)
        message = str(body.get("source") or body)
    except (ValueError, AttributeError):
        message = first
    m = _POS.search(message)
    return ExpressionError(message, (int(m.group(1)), int(m.group(2))) if m else None)


_WORD = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")


@dataclass(frozen=True)
class Compiled:
    source: str
    program: Any
    # Words of the source: only context entries named by one of them are handed to the
    # engine, because converting the whole context costs more than evaluating.
    words: frozenset[str] = frozenset()

    def narrow(self, context: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in context.items() if k in self.words}

    def evaluate(self, context: dict[str, Any] | bytes, *, narrowed: bool = False) -> Any:
        """``context`` as a dict, or (narrowed only) as JSON text of one."""
        try:
            return self.program.evaluate(context if narrowed or isinstance(context, bytes) else self.narrow(context))
        except RuntimeError as exc:
            raise _error(exc) from None
        except Exception as exc:  # the engine raises plain Exceptions for values it cannot convert
            raise ExpressionError(f"{OUT_OF_RANGE} ({str(exc).splitlines()[0][:200]})") from None


@lru_cache(maxsize=4096)
def compile_expression(source: str) -> Compiled:
    """Compile once per distinct source (rule versions share their compiled form)."""
    try:
        return Compiled(source, zen.compile_expression(source), frozenset(_WORD.findall(source)))
    except RuntimeError as exc:
        raise _error(exc) from None


def to_decimal(value: Any) -> decimal.Decimal:
    kind = type(value)  # exact types: a bool is no number here, and the engine makes no subclasses
    if kind is float:
        if not math.isfinite(value):
            raise ExpressionError("formula gave a non-finite number")
        return decimal.Decimal(repr(value))
    if kind is int:
        return decimal.Decimal(value)
    if kind is str:
        try:
            number = decimal.Decimal(value)
        except decimal.InvalidOperation:
            pass
        else:  # "NaN" and "Infinity" parse, then fail every comparison and rounding after
            if number.is_finite():
                return number
            raise ExpressionError(f"formula gave a non-finite number ({json.dumps(value)})")
    raise ExpressionError(f"formula must give a number, got {json.dumps(value, default=str)}")
