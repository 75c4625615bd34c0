"""What one processed event adds to analytics (pure code): program attribution of CDP
events, SYSTEM events as non-activity, exact points, and the distribution buckets."""

from __future__ import annotations

import datetime as dt
import decimal

from accrual_ingest.domain.engagement import (
    BUCKETS,
    ProcessedEvent,
    SegmentConfig,
    bucket_of,
    from_micros,
    increments,
    to_micros,
    validate_segment_config,
)
from hypothesis import given
from hypothesis import strategies as st

AT = dt.datetime(2024, 5, 1, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-2)))  # 2024-05-02 UTC


def evaluation(program: str, rule: str, points: str, recipient: str = "p1") -> dict[str, object]:
    return {"rule_id": rule, "rule_name": rule.upper(), "matched": points != "0", "points": points,
            "recipient_id": recipient, "program_id": program}


def test_cdp_event_counts_under_each_program_that_evaluated_it() -> None:
    event = ProcessedEvent("", "purchase", AT, "EXTERNAL", "p1",
                           [evaluation("P1", "r1", "12.5"), evaluation("P2", "r2", "0"), evaluation("P2", "r3", "3")])
    inc = increments([event])
    day = dt.date(2024, 5, 2)
    assert inc.daily == {("P1", day, "purchase"): [1, 12_500_000], ("P2", day, "purchase"): [1, 3_000_000]}
    assert sorted(inc.rules) == [("P1", day, "r1"), ("P2", day, "r3")]
    assert inc.participants[("P1", "p1")][:2] == [1, 12_500_000]


def test_cdp_event_no_program_evaluated_counts_nowhere() -> None:
    assert not increments([ProcessedEvent("", "purchase", AT, "EXTERNAL", "p1", [])])


def test_system_event_adds_points_but_no_activity() -> None:
    inc = increments([ProcessedEvent("P", "birthday", AT, "SYSTEM", "p1", [evaluation("P", "r", "100")])])
    assert inc.daily == {("P", dt.date(2024, 5, 2), "birthday"): [1, 100_000_000]}
    assert inc.participants[("P", "p1")] == [0, 100_000_000, None, None]
    assert inc.participant_days[("P", "p1", dt.date(2024, 5, 2), "birthday")] == [0, 100_000_000]


def test_gifted_points_go_to_the_recipient_and_the_event_to_the_actor() -> None:
    inc = increments([ProcessedEvent("P", "referral", AT, "EXTERNAL", "actor", [evaluation("P", "r", "5", "friend")])])
    assert inc.participants[("P", "actor")][:2] == [1, 0]
    assert inc.participants[("P", "friend")][:2] == [0, 5_000_000]


@given(st.decimals(min_value=0, max_value=10**12, places=6))
def test_micros_round_trip_exactly(points: decimal.Decimal) -> None:
    assert from_micros(to_micros(points)) == points


@given(st.integers(min_value=1, max_value=10**6))
def test_every_positive_count_has_exactly_one_bucket(events: int) -> None:
    label = bucket_of(events)
    assert sum(1 for name, low, high in BUCKETS if low <= events and (high == 0 or events <= high)) == 1
    assert label in {name for name, _, _ in BUCKETS}


def test_segment_config_defaults_and_violations() -> None:
    assert validate_segment_config({}) == (SegmentConfig().to_json(), [])
    _, problems = validate_segment_config({"advocates": {"event_types": ["a", "a"]},
                                           "high_engagers": {"window_days": 4000}})
    assert [f for f, _ in problems] == ["high_engagers.window_days", "advocates.event_types"]
