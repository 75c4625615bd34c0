"""The points bank's pure rules: spend order, allocation under each negative balance policy,
restores, and the expiry date math at its boundaries (end of month, leap day, midnight in the
program's timezone, a DST change)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
from accrual_rules.domain.bank import (
    Allocation,
    ExpiryPolicy,
    InsufficientPoints,
    Lot,
    add_months,
    allocate,
    apply_allocations,
    check_policy,
    end_of_day,
    parse_period,
    pay_debt,
    restore_plan,
    spend_order,
)

UTC = dt.UTC


def at(*args: int, tz: dt.tzinfo = UTC) -> dt.datetime:
    return dt.datetime(*args, tzinfo=tz)


def lot(lot_id: str, remaining: str, expires: dt.datetime | None, earned: dt.datetime = at(2026, 1, 1)) -> Lot:
    return Lot(lot_id, "ACTIVE", D(remaining), D(remaining), earned, None, expires)


def test_spend_order_earliest_expiry_then_earned_then_id_never_expiring_last() -> None:
    lots = [lot("e", "1", None), lot("d", "1", at(2026, 3, 1)), lot("c", "1", at(2026, 2, 1), at(2026, 1, 5)),
            lot("b", "1", at(2026, 2, 1), at(2026, 1, 2)), lot("a", "1", at(2026, 2, 1), at(2026, 1, 2)),
            lot("f", "1", None, at(2025, 1, 1))]
    assert [x.id for x in spend_order(lots)] == ["a", "b", "c", "d", "f", "e"]


def test_allocate_takes_lots_in_order_and_applies_the_policy() -> None:
    lots = spend_order([lot("a", "10", at(2026, 2, 1)), lot("b", "5", None)])
    assert allocate(lots, D(12)).allocations == (Allocation("a", D(10)), Allocation("b", D(2)))
    with pytest.raises(InsufficientPoints):
        allocate(lots, D(20), "FORBID")
    clamp = allocate(lots, D(20), "CLAMP")
    assert (clamp.allocated, clamp.unrecovered, clamp.debt, clamp.amount) == (D(15), D(5), D(0), D(15))
    allow = allocate(lots, D(20), "ALLOW")
    assert (allow.allocated, allow.unrecovered, allow.debt, allow.amount) == (D(15), D(0), D(5), D(20))
    with pytest.raises(ValueError):
        allocate(lots, D(0))


def test_allocations_never_leave_a_lot_below_zero_or_above_its_original() -> None:
    lots = {"a": lot("a", "10", None)}
    (after,) = apply_allocations(lots, [Allocation("a", D(10))])
    assert (after.remaining, after.status) == (D(0), "EXHAUSTED")
    (back,) = apply_allocations({"a": after}, [Allocation("a", D(-4))])
    assert (back.remaining, back.status) == (D(4), "ACTIVE")
    with pytest.raises(ValueError):
        apply_allocations(lots, [Allocation("a", D(11))])
    with pytest.raises(ValueError):
        apply_allocations(lots, [Allocation("a", D(-1))])


def test_restore_gives_back_last_taken_first_and_debt_is_paid_first() -> None:
    taken = [Allocation("a", D(3)), Allocation("b", D(4))]
    assert restore_plan(taken, D(5)) == [Allocation("b", D(-4)), Allocation("a", D(-1))]
    assert pay_debt(D(10), D(4)) == D(4)
    assert pay_debt(D(3), D(4)) == D(3)
    assert pay_debt(D(3), D(0)) == D(0)


@pytest.mark.parametrize(("day", "months", "expected"), [
    (dt.date(2026, 1, 31), 1, dt.date(2026, 2, 28)),
    (dt.date(2028, 1, 31), 1, dt.date(2028, 2, 29)),  # leap year
    (dt.date(2028, 2, 29), 12, dt.date(2029, 2, 28)),  # leap day + 1 year
    (dt.date(2026, 3, 31), -1, dt.date(2026, 2, 28)),
    (dt.date(2026, 11, 30), 3, dt.date(2027, 2, 28)),
    (dt.date(2026, 5, 15), 12, dt.date(2027, 5, 15)),
])
def test_month_arithmetic_clamps_to_the_end_of_the_month(day: dt.date, months: int, expected: dt.date) -> None:
    assert add_months(day, months) == expected


def test_rolling_expiry_ends_the_day_in_the_program_timezone() -> None:
    policy = ExpiryPolicy("ROLLING", parse_period("P1M"))
    # Jan 31 + 1 month = the end of Feb 28, in UTC ...
    assert policy.expires_at(at(2026, 1, 31, 10), "UTC") == at(2026, 3, 1)
    # ... and in New York: 23:30 local on Jan 30 is already Jan 31 in UTC, but Jan 30 there.
    ny = "America/New_York"
    earned = at(2026, 1, 31, 4, 30)  # Jan 30, 23:30 in New York
    assert policy.expires_at(earned, ny) == at(2026, 3, 1, 5)  # Feb 28 ends at 00:00 EST = 05:00 UTC
    assert policy.expires_at(earned, "UTC") == at(2026, 3, 1)
    # midnight exactly belongs to the new day
    assert policy.expires_at(at(2026, 2, 1, 5), ny) == at(2026, 3, 2, 5)
    assert policy.expires_at(at(2026, 2, 1, 4, 59, 59), ny) == at(2026, 3, 1, 5)


def test_a_day_with_a_dst_change_ends_at_its_own_midnight() -> None:
    paris = "Europe/Paris"
    # 2026-03-29 has 23 hours in Paris: it starts at 23:00 UTC (CET) and ends at 22:00 UTC (CEST).
    assert end_of_day(dt.date(2026, 3, 28), paris) == at(2026, 3, 28, 23)
    assert end_of_day(dt.date(2026, 3, 29), paris) == at(2026, 3, 29, 22)
    # 2026-10-25 has 25 hours: it ends at 23:00 UTC.
    assert end_of_day(dt.date(2026, 10, 25), paris) == at(2026, 10, 25, 23)
    policy = ExpiryPolicy("ROLLING", parse_period("P1D"))
    assert policy.expires_at(at(2026, 3, 28, 12), paris) == at(2026, 3, 29, 22)


@pytest.mark.parametrize(("rounding", "expected"), [
    ("NONE", dt.date(2027, 2, 14)), ("END_OF_MONTH", dt.date(2027, 2, 28)),
    ("END_OF_QUARTER", dt.date(2027, 3, 31)), ("END_OF_YEAR", dt.date(2027, 12, 31)),
])
def test_rolling_rounding(rounding: str, expected: dt.date) -> None:
    policy = ExpiryPolicy("ROLLING", parse_period("P12M"), rounding)
    assert policy.expires_at(at(2026, 2, 14, 9), "UTC") == end_of_day(expected, "UTC")


def test_calendar_expiry_is_the_first_month_day_on_or_after_the_start() -> None:
    policy = ExpiryPolicy("CALENDAR", month_day="12-31")
    assert policy.expires_at(at(2026, 6, 1), "UTC") == at(2027, 1, 1)
    assert policy.expires_at(at(2026, 12, 31, 12), "UTC") == at(2027, 1, 1)
    leap = ExpiryPolicy("CALENDAR", month_day="02-29")
    assert leap.expires_at(at(2026, 3, 1), "UTC") == end_of_day(dt.date(2027, 2, 28), "UTC")
    assert leap.expires_at(at(2027, 3, 1), "UTC") == end_of_day(dt.date(2028, 2, 29), "UTC")


def test_sliding_and_none() -> None:
    assert ExpiryPolicy().expires_at(at(2026, 1, 1), "UTC") is None
    sliding = ExpiryPolicy("SLIDING", parse_period("P30D"), activity=("purchase",))
    assert sliding.extends_on("purchase") and not sliding.extends_on("login")
    assert ExpiryPolicy("SLIDING", parse_period("P30D")).extends_on("anything")
    assert not ExpiryPolicy("ROLLING", parse_period("P30D")).extends_on("purchase")


@pytest.mark.parametrize("text", ["", "P", "P0D", "PT1H", "12M", "P-1M", "P1.5Y", "P101Y", "P1M2Y"])
def test_bad_periods_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_period(text)


def test_periods_print_as_they_parse() -> None:
    for text in ("P12M", "P1Y6M", "P30D", "P2W", "P1Y2M3W4D"):
        assert str(parse_period(text)) == text


def test_policy_validation_names_each_field() -> None:
    _, problems = check_policy({"expiry": {"type": "ROLLING", "period": "P0D", "rounding": "WEEKLY"},
                                "timezone": "Mars/Olympus", "negative_balance": "SOMETIMES",
                                "expiring_lead_days": [0]})
    assert {f for f, _ in problems} == {"expiry.period", "expiry.rounding", "timezone", "negative_balance",
                                        "expiring_lead_days"}
    _, problems = check_policy({"expiry": {"type": "CALENDAR", "month_day": "02-30"}})
    assert [f for f, _ in problems] == ["expiry.month_day"]
    _, problems = check_policy({"expiry": {"type": "NONE", "period": "P1M", "activity": ["x"]}})
    assert {f for f, _ in problems} == {"expiry.period", "expiry.activity"}
    policy, problems = check_policy({"expiry": {"type": "SLIDING", "period": "P6M", "activity": ["purchase"]},
                                     "timezone": "Asia/Tokyo", "negative_balance": "ALLOW",
                                     "expiring_lead_days": [7, 30, 7]})
    assert problems == [] and policy.expiring_lead_days == (30, 7) and policy.timezone == "Asia/Tokyo"

