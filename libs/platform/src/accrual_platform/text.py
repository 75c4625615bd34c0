"""Control characters in names and descriptions, refused with one rule everywhere.

Names (programs, rules, tiers, event types, properties, reasons) are shown on one line in
consoles, logs and partners' screens: a NUL cuts them short in C code and PostgreSQL, and an
escape sequence or a newline forges what a reader sees. They refuse every control character
(Unicode category Cc: U+0000-U+001F, U+007F-U+009F). Descriptions are free text, so they
keep tab, newline and carriage return.
"""

from __future__ import annotations

import re

from accrual_platform.errors import FieldViolation

#: one regular expression scan in C instead of a category lookup per character in Python
_IN_NAMES = re.compile("[\x00-\x1f\x7f-\x9f]")
_IN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def has_control_chars(value: str) -> bool:
    """True when ``value`` holds a character a name must not (NUL, tab, newline, ESC, DEL...)."""
    return _IN_NAMES.search(value) is not None


def control_problem(value: str, *, multiline: bool = False) -> str | None:
    """What is wrong with ``value`` (a description of the first offending character), or None.

    ``multiline``: free text, where tab, newline and carriage return are allowed.
    """
    found = (_IN_TEXT if multiline else _IN_NAMES).search(value)
    if found is None:
        return None
    return (f"must not contain control characters (U+{ord(found.group()):04X} at position "
            f"{found.start()})")


def check_name(violations: list[FieldViolation], field: str, value: str) -> None:
    """Append the violation of a name holding a control character."""
    problem = control_problem(value)
    if problem:
        violations.append(FieldViolation(field, problem))


def check_text(violations: list[FieldViolation], field: str, value: str) -> None:
    """Append the violation of a description holding a control character other than tab,
    newline or carriage return."""
    problem = control_problem(value, multiline=True)
    if problem:
        violations.append(FieldViolation(field, problem))
