"""Retry schedule arithmetic and Retry-After parsing."""

from __future__ import annotations

import datetime as dt
import email.utils

import pytest
from accrual_notify.domain.retry import (
    MAX_RETRY_AFTER_SECONDS,
    Decision,
    Verdict,
    decide,
    initial_delay,
    next_delay,
    parse_retry_after,
)

DEFAULT = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
NOW = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)


def test_schedule_is_indexed_by_attempts_made() -> None:
    assert initial_delay(DEFAULT) == 0
    assert [next_delay(DEFAULT, n) for n in range(1, 9)] == [
        5, 300, 1800, 7200, 18000, 36000, 36000, None]


def test_default_schedule_allows_eight_attempts() -> None:
    verdicts = [decide(500, n, DEFAULT).verdict for n in range(1, 9)]
    assert verdicts == [Verdict.RETRY] * 7 + [Verdict.FAILED]


@pytest.mark.parametrize(("status", "expected"), [
    (200, Decision(Verdict.SUCCEEDED)),
    (204, Decision(Verdict.SUCCEEDED)),
    (299, Decision(Verdict.SUCCEEDED)),
    (410, Decision(Verdict.DISABLE_ENDPOINT)),
    (301, Decision(Verdict.RETRY, 5)),
    (400, Decision(Verdict.RETRY, 5)),
    (500, Decision(Verdict.RETRY, 5)),
    (None, Decision(Verdict.RETRY, 5)),
])
def test_verdict_of_a_first_attempt(status: int | None, expected: Decision) -> None:
    assert decide(status, 1, DEFAULT) == expected


def test_retry_after_wins_only_when_longer_and_only_on_429_and_503() -> None:
    assert decide(429, 1, DEFAULT, retry_after=60) == Decision(Verdict.RETRY, 60)
    assert decide(503, 2, DEFAULT, retry_after=60) == Decision(Verdict.RETRY, 300)
    assert decide(500, 1, DEFAULT, retry_after=60) == Decision(Verdict.RETRY, 5)
    assert decide(429, 8, DEFAULT, retry_after=60) == Decision(Verdict.FAILED)


@pytest.mark.parametrize(("value", "expected"), [
    ("120", 120.0),
    (" 7 ", 7.0),
    ("0", 0.0),
    ("-5", 0.0),
    ("1.5", 1.5),
    (email.utils.format_datetime(NOW + dt.timedelta(seconds=90), usegmt=True), 90.0),
    (email.utils.format_datetime(NOW - dt.timedelta(hours=1), usegmt=True), 0.0),
    ("9999999999", MAX_RETRY_AFTER_SECONDS),
    ("soon", None),
    ("nan", None),
    ("", None),
    (None, None),
])
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_negative_attempts_are_a_bug() -> None:
    with pytest.raises(ValueError):
        next_delay(DEFAULT, -1)
