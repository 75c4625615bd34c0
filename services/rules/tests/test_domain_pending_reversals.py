"""Pure rules of pending points and reversals: activation times, policy checks, proportional
reversal amounts (exact remainder on the last), request checks."""

from __future__ import annotations

import datetime as dt
import decimal
from fractions import Fraction

import pytest
from accrual_platform import errors
from accrual_rules.domain.pending import (
    LotTerms,
    PendingPolicy,
    check_pending,
    original_reference,
    parse_duration,
)
from accrual_rules.domain.reversals import check_reversal, monetary_value, proportional, shown, trim
from hypothesis import given
from hypothesis import strategies as st

D = decimal.Decimal
UTC = dt.UTC


def at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(("text", "start", "end"), [
    ("P30D", at(2026, 1, 1), at(2026, 1, 31)),
    ("P2W", at(2026, 1, 1), at(2026, 1, 15)),
    ("PT12H", at(2026, 1, 1), at(2026, 1, 1, 12)),
    ("P1M", at(2026, 1, 31, 10), at(2026, 2, 28, 10)),
    ("P1M", at(2028, 1, 31), at(2028, 2, 29)),
    ("P1Y", at(2028, 2, 29), at(2029, 2, 28)),
    ("P1DT1H30M", at(2026, 3, 1), at(2026, 3, 2, 1, 30)),
])
def test_durations_add_calendar_months_and_exact_spans(text: str, start: dt.datetime, end: dt.datetime) -> None:
    duration = parse_duration(text)
    assert duration is not None and duration.after(start) == end


@pytest.mark.parametrize("text", ["", "P", "30D", "PT", "P1.5D", "P-1D", "p30d", "P30DT"])
def test_malformed_durations_are_refused(text: str) -> None:
    assert parse_duration(text) is None


def test_duration_policy_activates_from_the_event_time_so_backdated_events_are_active() -> None:
    policy = PendingPolicy("DURATION", "P30D")
    now = at(2026, 6, 1)
    assert policy.pending(at(2026, 5, 20), now) == (True, at(2026, 6, 19))
    assert policy.pending(at(2026, 4, 1), now) == (False, at(2026, 5, 1))
    assert PendingPolicy().pending(at(2026, 5, 20), now) == (False, at(2026, 5, 20))
    assert PendingPolicy().pending(at(2026, 6, 2), now) == (False, at(2026, 6, 2))
    assert PendingPolicy("ON_EVENT", event_types=("delivered",)).pending(at(2020, 1, 1), now) == (True, None)


def test_lot_terms_start_the_expiry_clock_at_activation() -> None:
    def expires(start: dt.datetime) -> dt.datetime:
        return start + dt.timedelta(days=365)

    now = at(2026, 6, 1)
    duration = PendingPolicy("DURATION", "P30D")
    assert duration.lot_terms(at(2026, 5, 20), now, expires) == LotTerms(
        "PENDING", at(2026, 6, 19), at(2027, 6, 19))
    assert duration.lot_terms(at(2026, 4, 1), now, expires) == LotTerms("ACTIVE", at(2026, 5, 1), at(2027, 5, 1))
    assert PendingPolicy().lot_terms(at(2026, 5, 20), now, expires) == LotTerms(
        "ACTIVE", at(2026, 5, 20), at(2027, 5, 20))
    on_event = PendingPolicy("ON_EVENT", event_types=("delivered",))
    assert on_event.lot_terms(at(2026, 5, 20), now, expires) == LotTerms("PENDING", None, None)
    assert on_event.lot_terms(at(2026, 5, 20), now, expires, named=True) == LotTerms("ACTIVE", now, at(2027, 6, 1))
    assert duration.lot_terms(at(2026, 5, 20), now, expires, named=True).status == "PENDING"


def test_pending_policy_violations_name_the_field() -> None:
    def problems(raw: dict[str, object]) -> list[str]:
        v: list[errors.FieldViolation] = []
        check_pending(raw, v)
        return [x.field for x in v]

    assert problems({"type": "LATER"}) == ["pending.type"]
    assert problems({"type": "DURATION", "duration": "30 days"}) == ["pending.duration"]
    assert problems({"type": "DURATION", "duration": "PT10S"}) == ["pending.duration"]
    assert problems({"type": "DURATION", "duration": "P11Y"}) == ["pending.duration"]
    assert problems({"type": "ON_EVENT"}) == ["pending.event_types"]
    assert problems({"type": "ON_EVENT", "event_types": ["ok", " pad"]}) == ["pending.event_types[1]"]
    assert problems({"type": "IMMEDIATE", "duration": "P1D"}) == ["pending.duration"]
    assert problems({"type": "DURATION", "duration": "P30D", "event_types": ["x"]}) == ["pending.event_types"]
    v: list[errors.FieldViolation] = []
    assert check_pending({"type": "ON_EVENT", "event_types": ["a", "a", "b"]}, v).event_types == ("a", "b")
    assert PendingPolicy.from_json(PendingPolicy("DURATION", "P7D").to_json()) == PendingPolicy("DURATION", "P7D")


def test_original_reference_prefers_the_event_id() -> None:
    assert original_reference({"original_event_id": "e", "original_idempotency_key": "k"}) == ("event_id", "e")
    assert original_reference({"original_idempotency_key": "k"}) == ("idempotency_key", "k")
    assert original_reference({"original_event_id": 5}) is None
    assert original_reference({}) is None


def test_partial_reversals_add_up_to_the_entry_and_the_last_takes_the_remainder() -> None:
    amounts = [D("100"), D("33"), D("1")]
    first = proportional(amounts, Fraction(0), Fraction(1, 3), 0)
    second = proportional(amounts, Fraction(1, 3), Fraction(2, 3), 0)
    last = proportional(amounts, Fraction(2, 3), Fraction(1), 0)
    assert first == [D(33), D(11), D(0)]
    assert second == [D(33), D(11), D(0)]
    assert last == [D(34), D(11), D(1)]
    assert [a + b + c for a, b, c in zip(first, second, last, strict=True)] == amounts


def test_proportional_keeps_the_program_precision() -> None:
    assert proportional([D("10.05")], Fraction(0), Fraction(1, 2), 2) == [D("5.02")]
    assert proportional([D("10.05")], Fraction(1, 2), Fraction(1), 2) == [D("5.03")]


@given(st.lists(st.integers(1, 10**9), min_size=1, max_size=4),
       st.lists(st.fractions(min_value=Fraction(1, 10**6), max_value=1), min_size=1, max_size=8),
       st.integers(0, 4))
def test_any_sequence_of_shares_never_exceeds_and_reaching_one_is_exact(
        cents: list[int], shares: list[Fraction], precision: int) -> None:
    amounts = [D(c).scaleb(-precision) for c in cents]
    done = Fraction(0)
    taken = [D(0)] * len(amounts)
    for share in shares:
        after = min(done + share, Fraction(1))
        for i, d in enumerate(proportional(amounts, done, after, precision)):
            assert d >= 0
            taken[i] += d
        done = after
        assert all(t <= a for t, a in zip(taken, amounts, strict=True))
    rest = proportional(amounts, done, Fraction(1), precision)
    assert [t + r for t, r in zip(taken, rest, strict=True)] == amounts


def test_trim_takes_the_shortfall_from_the_last_amounts() -> None:
    assert trim([D(5), D(3), D(2)], D(4)) == [D(5), D(1), D(0)]
    assert trim([D(5)], D(0)) == [D(5)]


def test_reversal_request_checks_every_field() -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        check_reversal("e", "", "1.5", "10", " ", [])
    fields = sorted(v.field for v in caught.value.violations)
    assert fields == ["idempotency_key", "ratio", "ratio", "reason"]
    with pytest.raises(errors.InvalidArgument) as caught:
        check_reversal("e", "k", None, None, "refund", [])
    assert [v.field for v in caught.value.violations] == ["ratio"]
    with pytest.raises(errors.InvalidArgument) as caught:
        check_reversal("e", "k", None, "-3", "refund", [])
    assert [v.field for v in caught.value.violations] == ["amount"]
    ok = check_reversal("e", "k", "0.5", None, " refund ", [])
    assert ok.reason == "refund" and ok.share(None) == Fraction(1, 2)
    assert ok.digest() == check_reversal("e", "k2", "0.50", None, "refund", []).digest()
    assert ok.digest() != check_reversal("e", "k", "0.4", None, "refund", []).digest()
    by_amount = check_reversal("e", "k", None, "25", "refund", [])
    assert by_amount.share(D("75")) == Fraction(1, 3)


def test_monetary_values_are_positive_numbers() -> None:
    assert monetary_value({"total": 75}, "total") == D(75)
    assert monetary_value({"total": "12.50"}, "total") == D("12.50")
    for bad in ({"total": 0}, {"total": True}, {"total": "x"}, {"total": None}, {}, {"total": [1]}):
        assert monetary_value(bad, "total") is None


def test_shares_are_shown_exactly_or_rounded() -> None:
    assert shown(Fraction(1, 4)) == "0.25"
    assert shown(Fraction(1)) == "1"
    assert shown(Fraction(1, 3)) == "0.333333333333"
