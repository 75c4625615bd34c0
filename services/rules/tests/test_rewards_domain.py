"""The pure part of rewards and redemptions: the state machine, limit windows, examine's
reasons, request checks and hashes, and what a redemption still has out of each lot."""

from __future__ import annotations

import datetime as dt
import decimal

import pytest
from accrual_platform import errors
from accrual_rules.domain import rewards
from accrual_rules.domain.bank import Allocation
from accrual_rules.domain.rewards import Redemption, RewardFields, RewardLimit, Standing

D = decimal.Decimal
NOW = dt.datetime(2026, 3, 31, 12, tzinfo=dt.UTC)
HELD = Redemption("HELD", D(100), NOW + dt.timedelta(minutes=15))


def test_capture_spends_and_releases_the_rest() -> None:
    move = rewards.capture(HELD, D(70), NOW)
    assert (move.after.state, move.after.captured, move.after.released, move.release) == ("CAPTURED", 70, 30, 30)
    assert not move.restock
    full = rewards.capture(HELD, None, NOW)
    assert (full.after.captured, full.release) == (100, 0)
    assert rewards.capture(move.after, D(70), NOW).same
    assert rewards.capture(move.after, None, NOW).same
    with pytest.raises(errors.Conflict) as other:
        rewards.capture(move.after, D(10), NOW)
    assert other.value.reason == "invalid_state"
    with pytest.raises(errors.InvalidArgument):
        rewards.capture(HELD, D(101), NOW)


def test_a_hold_past_its_ttl_cannot_be_captured_and_expires_once() -> None:
    late = HELD.hold_expires_at
    with pytest.raises(errors.Conflict) as expired:
        rewards.capture(HELD, None, late)
    assert expired.value.reason == "hold_expired"
    assert rewards.expire(HELD, late - dt.timedelta(microseconds=1)) is None
    move = rewards.expire(HELD, late)
    assert move is not None and (move.after.state, move.release, move.restock) == ("EXPIRED", 100, True)
    assert rewards.expire(move.after, late) is None
    with pytest.raises(errors.Conflict) as again:
        rewards.capture(move.after, None, NOW)
    assert again.value.reason == "hold_expired"


@pytest.mark.parametrize("state", ["CAPTURED", "EXPIRED", "REFUNDED", "PARTIALLY_REFUNDED"])
def test_only_a_hold_can_be_cancelled(state: str) -> None:
    with pytest.raises(errors.Conflict) as refused:
        rewards.cancel(Redemption(state, D(100), NOW, captured=D(100)))
    assert refused.value.reason == "invalid_state"


def test_cancel_releases_all_and_is_idempotent() -> None:
    move = rewards.cancel(HELD)
    assert (move.after.state, move.release, move.restock) == ("CANCELLED", 100, True)
    assert rewards.cancel(move.after).same


def test_refunds_add_up_to_what_was_captured() -> None:
    captured = rewards.capture(HELD, D(80), NOW).after
    part = rewards.refund(captured, D(30))
    assert (part.after.state, part.after.refunded, part.refund, part.restock) == ("PARTIALLY_REFUNDED", 30, 30,
                                                                                   False)
    rest = rewards.refund(part.after, None)
    assert (rest.after.state, rest.refund, rest.restock) == ("REFUNDED", 50, True)
    with pytest.raises(errors.InvalidArgument):
        rewards.refund(part.after, D(51))
    for state in ("HELD", "CANCELLED", "EXPIRED", "REFUNDED"):
        with pytest.raises(errors.Conflict):
            rewards.refund(Redemption(state, D(100), NOW, captured=D(100), refunded=D(100)), None)


def test_limit_windows_count_back_in_calendar_terms() -> None:
    assert RewardLimit(1).window_start(NOW) is None
    assert RewardLimit(1, "P1M").window_start(NOW) == dt.datetime(2026, 2, 28, 12, tzinfo=dt.UTC)
    assert RewardLimit(1, "P1W").window_start(NOW) == dt.datetime(2026, 3, 24, 12, tzinfo=dt.UTC)
    assert RewardLimit(1, "P1Y1D").window_start(NOW) == dt.datetime(2025, 3, 30, 12, tzinfo=dt.UTC)


def test_unavailable_reasons_come_in_a_fixed_order() -> None:
    fields = RewardFields(name="x", cost_points=D(50), stock=0, limit=RewardLimit(2), eligible_tiers=("gold",),
                          status="ACTIVE", active_to=NOW)
    reasons = rewards.unavailable(fields, Standing(D(20), "silver", 2), NOW)
    assert [(u.code, u.shortfall) for u in reasons] == [
        ("inactive", 0), ("tier_not_eligible", 0), ("out_of_stock", 0), ("limit_reached", 0),
        ("insufficient_points", 30)]
    fine = RewardFields(name="x", cost_points=D(50), status="ACTIVE")
    assert rewards.unavailable(fine, Standing(D(50), None), NOW) == []
    conflict = rewards.refusal(reasons[-1], D(20), D(50))
    assert (conflict.reason, conflict.metadata) == ("insufficient_points",
                                                    {"available": "20", "required": "50", "shortfall": "30"})
    assert rewards.refusal(reasons[0], D(20), D(50)).reason == "reward_inactive"


def test_redemption_requests_are_checked_and_hashed_canonically() -> None:
    v: list[errors.FieldViolation] = []
    with pytest.raises(errors.InvalidArgument) as bad:
        rewards.check_redemption(v, "p", "", "r", "5", False, dt.timedelta(days=8), "x" * 256)
    assert [x.field for x in bad.value.violations] == ["reward_id", "idempotency_key", "hold_ttl", "external_ref"]
    one = rewards.check_redemption([], "p", "k", "", "5.0", False, None, "")
    two = rewards.check_redemption([], "p", "k", "", "5", False, dt.timedelta(minutes=15), "")
    assert one.hold_ttl == rewards.DEFAULT_HOLD_TTL and one.digest() == two.digest()
    assert rewards.check_redemption([], "p", "k", "", "5", True, None, "").digest() != one.digest()


def test_outstanding_subtracts_what_came_back() -> None:
    hold = [Allocation("a", D(30)), Allocation("b", D(50))]
    out = rewards.Outstanding.of(hold, [Allocation("b", D(-20)), Allocation("b", D(-30)), Allocation("a", D(-5))])
    assert out.taken == [Allocation("a", D(25))] and out.total == 25
    assert rewards.Outstanding.of(hold, []).total == 80


def test_reward_checks_name_every_field() -> None:
    with pytest.raises(errors.InvalidArgument) as bad:
        rewards.check_reward(RewardFields(name="", cost_points=D(0), stock=-1, limit=RewardLimit(0, "PT1H"),
                                          eligible_tiers=("x",), status="LIVE"), ["gold"])
    assert [x.field for x in bad.value.violations] == [
        "name", "cost_points", "stock", "per_participant_limit.count", "per_participant_limit.period",
        "eligible_tiers[0]", "status"]
    clean = rewards.check_reward(RewardFields(name=" Tea ", cost_points=D(1), limit=RewardLimit(1, "p1m")), [])
    assert (clean.name, clean.limit) == ("Tea", RewardLimit(1, "P1M"))
