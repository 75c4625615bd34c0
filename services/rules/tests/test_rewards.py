"""RewardsService through a real gRPC server on SQLite and PostgreSQL: the catalogue and its
validation, rewards:examine, and redemptions (hold, capture, cancel, refund, expiry) with
their idempotency, their 409s and what they do to the balance, the lots and the stock."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import TYPE_CHECKING

import grpc
from accrual.rules.v1 import rewards_pb2, rules_pb2
from accrual_rules.expiry import BankJobs
from google.protobuf import duration_pb2, timestamp_pb2

from services.rules.tests.shop import Shop

if TYPE_CHECKING:
    from conftest import Stack

Code = grpc.StatusCode
D = decimal.Decimal
R = rewards_pb2


def _ts(at: dt.datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(at)
    return ts


def _notes(stack: Stack, tenant: str) -> list[str]:
    """The redemption webhooks published for the tenant since the last call."""
    return [n.type for n in stack.drain_notifications() if n.tenant_id == tenant and n.type.startswith("redemption.")]


# -- the catalogue ----------------------------------------------------------------------------
def test_reward_crud_and_validation(stack: Stack) -> None:
    shop = Shop(stack, tiers=[rules_pb2.Tier(name="silver", min_lifetime_points="0", multiplier="1"),
                              rules_pb2.Tier(name="gold", min_lifetime_points="1000", multiplier="2")])
    made = shop.reward("250.5", stock=3, eligible_tiers=["gold"], description="A cup",
                       per_participant_limit=R.RewardLimit(count=2, period="p1m"), status=R.REWARD_STATUS_DRAFT)
    assert (made.name, made.cost_points, made.stock, made.status) == ("Coffee", "250.5", 3, R.REWARD_STATUS_DRAFT)
    assert (made.per_participant_limit.count, made.per_participant_limit.period) == (2, "P1M")
    assert list(made.eligible_tiers) == ["gold"]
    got = stack.rewards.GetReward(R.GetRewardRequest(program_id=shop.program_id, reward_id=made.reward_id),
                                  metadata=shop.md)
    assert got == made
    changed = stack.rewards.UpdateReward(R.UpdateRewardRequest(
        program_id=shop.program_id, reward_id=made.reward_id, clear_stock=True, clear_eligible_tiers=True,
        status=R.REWARD_STATUS_ACTIVE, cost_points="300"), metadata=shop.md)
    assert (changed.HasField("stock"), list(changed.eligible_tiers), changed.status, changed.cost_points) == (
        False, [], R.REWARD_STATUS_ACTIVE, "300")
    assert changed.per_participant_limit.count == 2 and changed.name == "Coffee"
    second = shop.reward("10", status=R.REWARD_STATUS_INACTIVE)
    listed = stack.rewards.ListRewards(R.ListRewardsRequest(program_id=shop.program_id, page_size=1),
                                       metadata=shop.md)
    assert [r.reward_id for r in listed.rewards] == [made.reward_id] and listed.next_page_token
    rest = stack.rewards.ListRewards(R.ListRewardsRequest(program_id=shop.program_id, page_size=1,
                                                          page_token=listed.next_page_token), metadata=shop.md)
    assert [r.reward_id for r in rest.rewards] == [second.reward_id] and not rest.next_page_token
    inactive = stack.rewards.ListRewards(R.ListRewardsRequest(program_id=shop.program_id,
                                                              status=R.REWARD_STATUS_INACTIVE), metadata=shop.md)
    assert [r.reward_id for r in inactive.rewards] == [second.reward_id]

    now = dt.datetime.now(dt.UTC)
    bad = stack.failure(lambda: stack.rewards.CreateReward(R.CreateRewardRequest(
        program_id=shop.program_id, name=" ", cost_points="5", stock=-1, eligible_tiers=["platinum", "gold", "gold"],
        per_participant_limit=R.RewardLimit(count=0, period="P1H"), active_from=_ts(now),
        active_to=_ts(now - dt.timedelta(days=1))), metadata=shop.md))
    assert (bad.code, bad.fields) == (Code.INVALID_ARGUMENT, [
        "name", "stock", "per_participant_limit.count", "per_participant_limit.period", "eligible_tiers[0]",
        "eligible_tiers[2]", "active_to"])
    free = stack.failure(lambda: shop.reward("0"))
    assert free.fields == ["cost_points"]
    both = stack.failure(lambda: stack.rewards.UpdateReward(R.UpdateRewardRequest(
        program_id=shop.program_id, reward_id=made.reward_id, stock=1, clear_stock=True), metadata=shop.md))
    assert both.fields == ["clear_stock"]
    _, other_md = stack.tenant()
    hidden = stack.failure(lambda: stack.rewards.GetReward(R.GetRewardRequest(
        program_id=shop.program_id, reward_id=made.reward_id), metadata=other_md))
    assert (hidden.code, hidden.reason) == (Code.NOT_FOUND, "reward_not_found")
    missing = stack.failure(lambda: stack.rewards.GetReward(R.GetRewardRequest(
        program_id=shop.program_id, reward_id=str(uuid.uuid4())), metadata=shop.md))
    assert (missing.code, missing.reason) == (Code.NOT_FOUND, "reward_not_found")


def test_examine_lists_active_rewards_with_their_reasons(stack: Stack) -> None:
    shop = Shop(stack, tiers=[rules_pb2.Tier(name="gold", min_lifetime_points="1000", multiplier="1")])
    shop.credit("150")
    cheap = shop.reward("100")
    dear = shop.reward("400")
    gone = shop.reward("10", stock=0)
    golden = shop.reward("10", eligible_tiers=["gold"])
    later = shop.reward("10", active_from=_ts(dt.datetime.now(dt.UTC) + dt.timedelta(days=1)))
    once = shop.reward("10", per_participant_limit=R.RewardLimit(count=1))
    shop.reward("10", status=R.REWARD_STATUS_DRAFT)
    shop.redeem(reward_id=once.reward_id)
    seen = stack.rewards.ExamineRewards(R.ExamineRewardsRequest(program_id=shop.program_id,
                                                                participant_id=shop.participant), metadata=shop.md)
    assert seen.available == "140"
    by_id = {r.reward.reward_id: r for r in seen.rewards}
    assert set(by_id) == {cheap.reward_id, dear.reward_id, gone.reward_id, golden.reward_id, later.reward_id,
                          once.reward_id}
    assert by_id[cheap.reward_id].availability == R.REWARD_AVAILABILITY_AVAILABLE
    assert not by_id[cheap.reward_id].reasons

    def reasons(reward: R.Reward) -> list[tuple[str, str]]:
        found = by_id[reward.reward_id]
        assert found.availability == R.REWARD_AVAILABILITY_UNAVAILABLE
        return [(u.code, u.shortfall) for u in found.reasons]

    assert reasons(dear) == [("insufficient_points", "260")]
    assert reasons(gone) == [("out_of_stock", "")]
    assert reasons(golden) == [("tier_not_eligible", "")]
    assert reasons(later) == [("inactive", "")]
    assert reasons(once) == [("limit_reached", "")]


# -- redemptions --------------------------------------------------------------------------------
def test_hold_capture_and_idempotent_retries(stack: Stack) -> None:
    shop = Shop(stack)
    shop.credit("300")
    shop.credit("200")
    _notes(stack, shop.tenant)
    held = shop.redeem("order-1", points="350", external_ref="ord-1")
    assert (held.state, held.points, held.captured_points, held.deduplicated) == (R.REDEMPTION_STATE_HELD, "350",
                                                                                  "0", False)
    first_lot, second_lot = sorted(shop.lots(), key=lambda lot: lot.earned_at)
    assert [(a.lot_id, a.points) for a in held.allocations] == [(first_lot.id, "300"), (second_lot.id, "50")]
    ttl = held.hold_expires_at.ToDatetime(dt.UTC) - held.created_at.ToDatetime(dt.UTC)
    assert ttl == dt.timedelta(minutes=15)
    assert (shop.available(), shop.balance().held) == (150, "350")
    assert _notes(stack, shop.tenant) == ["redemption.held"]
    again = shop.redeem("order-1", points="350.0", external_ref="ord-1")
    assert again.redemption_id == held.redemption_id and again.deduplicated
    conflict = stack.failure(lambda: shop.redeem("order-1", points="351", external_ref="ord-1"))
    assert (conflict.code, conflict.reason) == (Code.ABORTED, "idempotency_conflict")

    entries = shop.entries()
    captured = shop.capture(held.redemption_id, points="300")
    assert (captured.state, captured.captured_points) == (R.REDEMPTION_STATE_CAPTURED, "300")
    assert (shop.available(), shop.balance().held) == (200, "0")
    assert shop.capture(held.redemption_id, points="300") == captured
    assert shop.capture(held.redemption_id) == captured
    assert shop.entries() == entries + 1 and shop.available() == 200
    other = stack.failure(lambda: shop.capture(held.redemption_id, points="10"))
    assert (other.code, other.reason) == (Code.ABORTED, "invalid_state")
    assert (stack.failure(lambda: shop.cancel(held.redemption_id)).reason) == "invalid_state"
    assert _notes(stack, shop.tenant) == ["redemption.captured"]
    remaining = {lot.id: lot.remaining for lot in shop.lots()}
    assert remaining == {first_lot.id: 0, second_lot.id: 200}


def test_refunds_restore_lots_and_stock_once(stack: Stack) -> None:
    shop = Shop(stack)
    shop.credit("500")
    reward = shop.reward("200", stock=1)
    spent = shop.redeem(reward_id=reward.reward_id, capture=True)
    assert (spent.state, spent.captured_points) == (R.REDEMPTION_STATE_CAPTURED, "200")
    assert _notes(stack, shop.tenant)[-2:] == ["redemption.held", "redemption.captured"]
    sold_out = stack.failure(lambda: shop.redeem(reward_id=reward.reward_id))
    assert (sold_out.code, sold_out.reason) == (Code.ABORTED, "out_of_stock")
    part = shop.refund(spent.redemption_id, "r1", points="50", reason="one broken cup")
    assert (part.state, part.refunded_points) == (R.REDEMPTION_STATE_PARTIALLY_REFUNDED, "50")
    assert shop.available() == 350
    entries = shop.entries()
    assert shop.refund(spent.redemption_id, "r1", points="50", reason="one broken cup") == part
    assert shop.entries() == entries and shop.available() == 350
    clash = stack.failure(lambda: shop.refund(spent.redemption_id, "r1", points="60"))
    assert (clash.code, clash.reason) == (Code.ABORTED, "idempotency_conflict")
    too_much = stack.failure(lambda: shop.refund(spent.redemption_id, "r2", points="151"))
    assert (too_much.code, too_much.fields) == (Code.INVALID_ARGUMENT, ["points"])
    full = shop.refund(spent.redemption_id, "r3")
    assert (full.state, full.refunded_points) == (R.REDEMPTION_STATE_REFUNDED, "200")
    assert shop.available() == 500
    assert [lot.remaining for lot in shop.lots()] == [500]
    assert stack.failure(lambda: shop.refund(spent.redemption_id, "r4")).reason == "invalid_state"
    restocked = shop.redeem(reward_id=reward.reward_id)
    assert restocked.state == R.REDEMPTION_STATE_HELD
    assert _notes(stack, shop.tenant) == ["redemption.refunded", "redemption.refunded", "redemption.held"]
    kinds = shop.ledger_by_kind()
    assert (kinds["REDEEM"], kinds["REDEEM_REFUND"]) == (D(-400), D(200))
    history = stack.stub.ListTransactions(rules_pb2.ListTransactionsRequest(
        program_id=shop.program_id, participant_id=shop.participant), metadata=shop.md).transactions
    assert [t.kind for t in history] == [
        rules_pb2.ENTRY_KIND_REDEEM, rules_pb2.ENTRY_KIND_REDEEM_REFUND, rules_pb2.ENTRY_KIND_REDEEM_REFUND,
        rules_pb2.ENTRY_KIND_REDEEM, rules_pb2.ENTRY_KIND_ADJUSTMENT]


def test_cancel_and_expiry_release_the_hold(stack: Stack) -> None:
    shop = Shop(stack)
    shop.credit("100")
    reward = shop.reward("60", stock=1)
    held = shop.redeem(reward_id=reward.reward_id, hold_ttl=duration_pb2.Duration(seconds=60))
    assert shop.available() == 40
    cancelled = shop.cancel(held.redemption_id)
    assert cancelled.state == R.REDEMPTION_STATE_CANCELLED and shop.available() == 100
    assert shop.cancel(held.redemption_id) == cancelled
    assert stack.failure(lambda: shop.capture(held.redemption_id)).reason == "invalid_state"
    again = shop.redeem(reward_id=reward.reward_id, hold_ttl=duration_pb2.Duration(seconds=60))
    rewards_service = stack.runtime.rewards
    later = again.hold_expires_at.ToDatetime(dt.UTC) + dt.timedelta(seconds=1)
    clock = rewards_service.clock
    try:
        rewards_service.clock = lambda: later
        late = stack.failure(lambda: shop.capture(again.redemption_id))
        assert (late.code, late.reason) == (Code.ABORTED, "hold_expired")
        assert rewards_service.expire_holds(later) >= 1
        assert rewards_service.expire_holds(later) == 0
    finally:
        rewards_service.clock = clock
    expired = shop.get(again.redemption_id)
    assert expired.state == R.REDEMPTION_STATE_EXPIRED and shop.available() == 100
    assert stack.failure(lambda: shop.capture(again.redemption_id)).reason == "hold_expired"
    assert shop.redeem(reward_id=reward.reward_id).state == R.REDEMPTION_STATE_HELD
    assert [n for n in _notes(stack, shop.tenant) if n != "redemption.held"] == [
        "redemption.cancelled", "redemption.expired"]


def test_refusals_and_dry_run(stack: Stack) -> None:
    shop = Shop(stack)
    shop.credit("80")
    poor = stack.failure(lambda: shop.redeem(points="100"))
    assert (poor.code, poor.reason) == (Code.ABORTED, "insufficient_points")
    assert poor.metadata == {"available": "80", "required": "100", "shortfall": "20"}
    inactive = shop.reward("10", status=R.REWARD_STATUS_INACTIVE)
    assert stack.failure(lambda: shop.redeem(reward_id=inactive.reward_id)).reason == "reward_inactive"
    gold = shop.reward("10", eligible_tiers=[]).reward_id
    dry = shop.redeem("dry", reward_id=gold, dry_run=True)
    assert (dry.dry_run, dry.state, dry.points) == (True, R.REDEMPTION_STATE_HELD, "10")
    assert shop.available() == 80 and shop.redemptions() == []
    missing = stack.failure(lambda: shop.get(dry.redemption_id))
    assert missing.reason == "redemption_not_found"
    real = shop.redeem("dry", reward_id=gold)
    assert not real.dry_run and not real.deduplicated and shop.available() == 70
    bad = stack.failure(lambda: stack.rewards.CreateRedemption(R.CreateRedemptionRequest(
        program_id=shop.program_id, participant_id="nope", points="1", reward_id=gold,
        hold_ttl=duration_pb2.Duration(seconds=0)), metadata=shop.md))
    assert (bad.code, bad.fields) == (Code.INVALID_ARGUMENT, ["participant_id", "reward_id", "idempotency_key",
                                                              "hold_ttl"])
    limited = shop.reward("1", per_participant_limit=R.RewardLimit(count=1, period="P1D"))
    shop.redeem(reward_id=limited.reward_id)
    assert stack.failure(lambda: shop.redeem(reward_id=limited.reward_id)).reason == "limit_reached"


def test_list_redemptions_by_state(stack: Stack) -> None:
    shop = Shop(stack)
    shop.credit("100")
    a = shop.redeem(points="10")
    b = shop.redeem(points="10")
    c = shop.redeem(points="10")
    shop.cancel(b.redemption_id)

    def listed(state: int = 0, page_size: int = 0, token: str = "") -> R.ListRedemptionsResponse:
        return stack.rewards.ListRedemptions(R.ListRedemptionsRequest(
            program_id=shop.program_id, participant_id=shop.participant, state=state, page_size=page_size,
            page_token=token), metadata=shop.md)

    held = listed(R.REDEMPTION_STATE_HELD)
    assert [r.redemption_id for r in held.redemptions] == [c.redemption_id, a.redemption_id]
    first = listed(page_size=2)
    assert [r.redemption_id for r in first.redemptions] == [c.redemption_id, b.redemption_id]
    rest = listed(page_size=2, token=first.next_page_token)
    assert [r.redemption_id for r in rest.redemptions] == [a.redemption_id] and not rest.next_page_token
    assert stack.failure(lambda: listed(token="junk")).fields == ["page_token"]


def test_points_refunded_into_an_expired_lot_come_back_expired(stack: Stack) -> None:
    shop = Shop(stack, expiry=rules_pb2.ExpiryPolicy(type=rules_pb2.EXPIRY_TYPE_ROLLING, period="P1D"))
    shop.credit("100")
    [lot] = shop.lots()
    assert lot.expires_at is not None
    spent = shop.redeem(points="60", capture=True)
    service = stack.runtime.rewards
    clock = service.clock
    try:
        service.clock = lambda: lot.expires_at + dt.timedelta(hours=1)
        refunded = shop.refund(spent.redemption_id, "late")
    finally:
        service.clock = clock
    assert refunded.state == R.REDEMPTION_STATE_REFUNDED
    kinds = shop.ledger_by_kind()
    assert (kinds["REDEEM_REFUND"], kinds["EXPIRE"]) == (D(60), D(-60))
    assert shop.available() == 40  # the lot's own remainder waits for the expiry run
    [after] = shop.lots()
    assert (after.status, after.remaining) == ("ACTIVE", 40)
    BankJobs(stack.runtime.store).run(lot.expires_at + dt.timedelta(hours=1))
    [gone] = shop.lots()
    assert (gone.status, gone.remaining, shop.available()) == ("EXPIRED", 0, 0)
    assert shop.ledger_by_kind()["EXPIRE"] == D(-100)
