"""ZEN expressions: compile and validate on save, evaluate compiled on every event.

zen-engine evaluates with exact decimals internally and hands back floats; the shortest
float repr is turned back into a Decimal, so ``120.5 * 1`` gives exactly ``120.5``.
"""

from __future__ import annotations

import decimal
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import zen

from accrual_rules.domain import Json


@dataclass(frozen=True)
class Position:
    """Where in a source an error is: ``start`` and ``end`` (exclusive) count characters (code
    points) from 0; ``line`` and ``column`` of ``start`` count from 1."""

    start: int
    end: int
    line: int
    column: int

    @classmethod
    def of(cls, source: str, start: int, end: int) -> Position:
        before = source[:start]
        return cls(start, max(start, end), before.count("\n") + 1, start - before.rfind("\n"))


class ExpressionError(ValueError):
    """An expression that does not parse, or fails on a given event."""

    def __init__(self, message: str, position: Position | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


#: The engine's parser names a span of the source, the lexer one offset; both in UTF-8 bytes.
_SPAN = re.compile(r" ?at \((\d+), (\d+)\)")
_OFFSET = re.compile(r" at (\d+)$")


#: The engine computes in 96-bit decimals: a number past about ±7.9e28 in the context (valid
#: JSON, so accepted with the event) cannot be read; from a dict it says so, from JSON text it
#: says "Invalid JSON" (the text is valid: orjson wrote it).
OUT_OF_RANGE = "the event holds a number beyond what expressions compute with (about ±7.9e28)"


def _error(exc: Exception, source: str | None = None) -> ExpressionError:
    """The engine's error as an ExpressionError; with the ``source`` that failed to compile,
    the place it names is taken out of the message and given as a Position."""
    first = str(exc).splitlines()[0] if str(exc) else repr(exc)
    if first == "Invalid JSON":
        return ExpressionError(OUT_OF_RANGE)
    try:
        body = json.loads(first)
        message = str(body.get("source") or body)
    except (ValueError, AttributeError):
        message = first
    if source is None:
        return ExpressionError(message)
    if m := _SPAN.search(message) or _OFFSET.search(message):
        start = int(m.group(1))
        end = int(m.group(2)) if m.re is _SPAN else start + 1
        encoded = source.encode()
        chars = [len(encoded[:offset].decode(errors="ignore")) for offset in (start, end)]
        return ExpressionError(message[:m.start()] + message[m.end():],
                               Position.of(source, chars[0], min(chars[1], len(source))))
    if (unmatched := _unmatched_bracket(source)) is not None:
        at, problem = unmatched
        return ExpressionError(problem, Position.of(source, at, at + 1))
    return ExpressionError(message)


_WORD = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")


@dataclass(frozen=True)
class Compiled:
    source: str
    program: Any
    # Words of the source: only context entries named by one of them are handed to the
    # engine, because converting the whole context costs more than evaluating.
    words: frozenset[str] = frozenset()

    def narrow(self, context: dict[str, Json]) -> dict[str, Json]:
        return {k: v for k, v in context.items() if k in self.words}

    def evaluate(self, context: dict[str, Json] | bytes, *, narrowed: bool = False) -> Json:
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
        raise _error(exc, source) from None


def to_decimal(value: Json) -> decimal.Decimal:
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
            raise ExpressionError(f"formula gave a non-finite number ({shown(value)})")
    raise ExpressionError(f"formula must give a number, got {shown(value)}")


def shown(value: Json, limit: int = 80, render: Callable[[Json], str] | None = None) -> str:
    """A value as short JSON (or ``render``'s text) for a message: a result may be huge or
    nested thousands deep."""
    try:
        text = render(value) if render is not None else json.dumps(value, default=str)
    except (RecursionError, ValueError):
        text = "a value nested too deep to show"
    return text if len(text) <= limit else text[:limit] + "…"


# -- static limits, checked on save before the engine sees a source ---------------------------

#: A rule's expression is at most this many bytes (UTF-8).
MAX_SOURCE_BYTES = 4096
#: Brackets, parentheses and braces nest at most this deep (the engine recurses per level
#: and overflows its stack on deep nesting).
MAX_NESTING = 32
#: A literal range such as ``[1..10]`` spans at most this many values.
MAX_RANGE = 10_000

_RANGE = re.compile(r"[\[(]\s*(-?\d+(?:\.\d+)?)\s*\.\.\s*(-?\d+(?:\.\d+)?)\s*[\])]")
_OPEN, _CLOSE = "([{", ")]}"


class LimitExceeded(ExpressionError):
    """A source over one of the static limits; ``limit`` names which."""

    def __init__(self, message: str, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


def _code_only(source: str) -> str:
    """The source with the text of string literals blanked (their brackets are no nesting)."""
    out = []
    quote = ""
    escaped = False
    for ch in source:
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
                out.append(ch)
                continue
            out.append(" ")
            continue
        if ch in "'\"`":
            quote = ch
        out.append(ch)
    return "".join(out)


def _unmatched_bracket(source: str) -> tuple[int, str] | None:
    """The first closing bracket without its opening one, else the last one never closed
    (the engine only says "Incomplete parser output" for either): (where, what is wrong)."""
    stack: list[int] = []
    for i, ch in enumerate(_code_only(source)):
        if ch in _OPEN:
            stack.append(i)
        elif ch in _CLOSE:
            if not stack or _OPEN.index(source[stack[-1]]) != _CLOSE.index(ch):
                return i, f"'{ch}' closes no open bracket"
            stack.pop()
    return (stack[-1], f"'{source[stack[-1]]}' is never closed") if stack else None


def check_limits(source: str) -> None:
    """Raise LimitExceeded when ``source`` is over a static limit."""
    size = len(source.encode())
    if size > MAX_SOURCE_BYTES:
        raise LimitExceeded(f"is {size} bytes long; an expression may be at most {MAX_SOURCE_BYTES} bytes",
                            "max_length")
    code = _code_only(source)
    depth = deepest = 0
    for ch in code:
        if ch in _OPEN:
            depth += 1
            deepest = max(deepest, depth)
        elif ch in _CLOSE:
            depth -= 1
    if deepest > MAX_NESTING:
        raise LimitExceeded(f"nests {deepest} levels deep; an expression may nest at most {MAX_NESTING}",
                            "max_nesting")
    for m in _RANGE.finditer(code):
        low, high = decimal.Decimal(m.group(1)), decimal.Decimal(m.group(2))
        count = abs(high - low) + 1
        if count > MAX_RANGE:
            raise LimitExceeded(f"range {m.group(0)} spans {count:f} values; a literal range "
                                f"may span at most {MAX_RANGE}", "max_range")


def branches(source: str, limit: int = 64) -> list[str]:
    """Sub-expressions a sample event may not reach: both branches of every ``?:``, at the
    top level and inside every parenthesised or bracketed group (function arguments
    included), so a save-time check runs each of them once. At most ``limit``."""
    code = _code_only(source)
    found: list[str] = []
    groups: list[tuple[int, int]] = [(0, len(code))]
    stack: list[int] = []
    for i, ch in enumerate(code):
        if ch in _OPEN:
            stack.append(i)
        elif ch in _CLOSE and stack:
            groups.append((stack.pop() + 1, i))
    for start, end in groups:
        for part_start, part_end in _split_depth0(code, start, end, ","):
            found.extend(_ternary_branches(source, code, part_start, part_end))
        if len(found) >= limit:
            break
    return [b for b in dict.fromkeys(found) if b.strip()][:limit]


def _depth0(code: str, start: int, end: int) -> list[int]:
    """Positions in code[start:end] outside any nested group."""
    out, depth = [], 0
    for i in range(start, end):
        ch = code[i]
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
        elif depth == 0:
            out.append(i)
    return out


def _split_depth0(code: str, start: int, end: int, sep: str) -> list[tuple[int, int]]:
    parts, last = [], start
    for i in _depth0(code, start, end):
        if code[i] == sep:
            parts.append((last, i))
            last = i + 1
    parts.append((last, end))
    return parts


def _ternary_branches(source: str, code: str, start: int, end: int) -> list[str]:
    """The two branches of a top-level ``c ? a : b`` in code[start:end] (recursively)."""
    positions = _depth0(code, start, end)
    question = None
    for i in positions:
        if code[i] == "?" and code[i + 1:i + 2] not in ("?", ".") and code[i - 1:i] != "?":
            question = i
            break
    if question is None:
        return []
    pending = 0
    for i in positions:
        if i <= question:
            continue
        ch = code[i]
        if ch == "?" and code[i + 1:i + 2] not in ("?", ".") and code[i - 1:i] != "?":
            pending += 1
        elif ch == ":":
            if pending:
                pending -= 1
                continue
            then, otherwise = (question + 1, i), (i + 1, end)
            return [source[then[0]:then[1]], source[otherwise[0]:otherwise[1]],
                    *_ternary_branches(source, code, *then), *_ternary_branches(source, code, *otherwise)]
    return []


#: Seed 001 prints its formulas with the multiplication sign (``properties.amount \u00d7 1``).
MULTIPLICATION_SIGNS = "\N{MULTIPLICATION SIGN}"


def normalised(source: str) -> str:
    """``source`` with every multiplication sign outside string literals written as ``*``,
    so that formulas copied from seed 001 work as printed; the text of strings is kept."""
    if not any(sign in source for sign in MULTIPLICATION_SIGNS):
        return source
    code = _code_only(source)
    return "".join("*" if code[i] in MULTIPLICATION_SIGNS else ch for i, ch in enumerate(source))
