"""What an attempt's result means for the delivery, and when to try again.

The schedule lists seconds to wait after the previous attempt, indexed by how many attempts
were made, with index 0 being the wait before the first attempt. ``429`` and ``503`` may
ask for more time with ``Retry-After``; we honour it when it is longer than the schedule, up
to a cap, so a receiver cannot park a delivery for a month.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

MAX_RETRY_AFTER_SECONDS = 24 * 3600.0
RETRY_AFTER_STATUSES = frozenset({429, 503})
GONE = 410


class Verdict(enum.Enum):
    SUCCEEDED = "succeeded"
    #: the receiver said 410 Gone: stop this delivery and disable the endpoint
    DISABLE_ENDPOINT = "disable_endpoint"
    RETRY = "retry"
    #: the schedule is exhausted
    FAILED = "failed"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    #: seconds to wait before the next attempt, for RETRY
    delay_seconds: float | None = None


def initial_delay(schedule: Sequence[float]) -> float:
    """Wait before the first attempt (schedule index 0)."""
    return float(schedule[0]) if schedule else 0.0


def next_delay(schedule: Sequence[float], attempts_made: int) -> float | None:
    """Seconds until the next attempt, or None when every scheduled attempt was made."""
    if attempts_made < 0:
        raise ValueError("attempts_made must be >= 0")
    if attempts_made >= len(schedule):
        return None
    return float(schedule[attempts_made])


def parse_retry_after(value: str | None, now: dt.datetime) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delay-seconds or HTTP-date).

    Unparseable values are ignored (None) rather than failing the attempt: the header is
    advice, the schedule still applies.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - now).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def decide(status_code: int | None, attempts_made: int, schedule: Sequence[float],
           retry_after: float | None = None) -> Decision:
    """Outcome of an attempt; ``status_code`` is None when no response arrived (network
    error, timeout), and ``attempts_made`` counts this attempt."""
    if status_code is not None and 200 <= status_code < 300:
        return Decision(Verdict.SUCCEEDED)
    if status_code == GONE:
        return Decision(Verdict.DISABLE_ENDPOINT)
    delay = next_delay(schedule, attempts_made)
    if delay is None:
        return Decision(Verdict.FAILED)
    if status_code in RETRY_AFTER_STATUSES and retry_after is not None:
        delay = max(delay, retry_after)
    return Decision(Verdict.RETRY, delay)
