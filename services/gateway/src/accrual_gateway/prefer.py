"""The ``Prefer`` request header (RFC 7240) for the routes that can wait: ``wait=N``.

A request message with a ``wait_seconds`` field (SubmitEvent) takes N from ``Prefer: wait=N``
(at most ``MAX_WAIT_SECONDS``; a malformed preference is ignored, as RFC 7240 allows), and
the upstream answer's ``preference-applied`` metadata becomes the ``Preference-Applied``
header. Such a call goes upstream alone, not through the coalescer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

FIELD = "wait_seconds"
MAX_WAIT_SECONDS = 10
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
#: one comma-separated element of the header, quoted strings kept whole
_ELEMENT = re.compile(rf'(?:[^,"]|{_QUOTED})+')
#: a preference: token [= word] *(; parameter), the name and the raw value captured
_PREFERENCE = re.compile(rf'\s*({_TOKEN})\s*(?:=\s*({_TOKEN}|{_QUOTED}))?\s*(?:;.*)?', re.DOTALL)


def wait_preference(headers: Iterable[str]) -> int | None:
    """N of the first ``wait`` preference among the ``Prefer`` header values, capped at
    ``MAX_WAIT_SECONDS``; None when there is none or it is malformed."""
    for header in headers:
        for element in _ELEMENT.findall(header):
            match = _PREFERENCE.fullmatch(element)
            if match is None or match.group(1).lower() != "wait":
                continue
            # Only the first instance of a preference counts (RFC 7240, section 2).
            value = (match.group(2) or "").strip('"')
            return min(int(value), MAX_WAIT_SECONDS) if value.isascii() and value.isdigit() else None
    return None


def apply_wait(message: Any, headers: Iterable[str]) -> int:
    """Set the message's ``wait_seconds`` from ``Prefer: wait=N`` when it has that field; the
    seconds the call may wait (0: an ordinary call)."""
    if FIELD not in message.DESCRIPTOR.fields_by_name:
        return 0
    seconds = wait_preference(headers)
    if seconds is not None:
        setattr(message, FIELD, seconds)
    value = min(getattr(message, FIELD), MAX_WAIT_SECONDS)
    return int(value)
