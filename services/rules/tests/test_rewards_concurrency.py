"""Redemptions racing each other on PostgreSQL (the row locks are what make them exact):
concurrent holds against one balance, concurrent redemptions of a reward's last units, and a
capture racing the hold's expiry."""

from __future__ import annotations

import datetime as dt
import decimal
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from accrual.rules.v1 import rewards_pb2 as R
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from services.rules.tests.shop import Shop

if TYPE_CHECKING:
    from conftest import Stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def database_url(pg_url: str) -> str:
    return pg_url


def _race(calls: list[Callable[[], Any]]) -> tuple[list[Any], list[str]]:
    """Run the calls at once (released together by a barrier): (answers, failure reasons)."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> tuple[Any, str]:
        barrier.wait()
        try:
            return call(), ""
        except grpc.RpcError as exc:
            return None, _reason(exc)

    with ThreadPoolExecutor(len(calls)) as pool:
        results = list(pool.map(run, calls))
    return [r for r, e in results if not e], [e for _, e in results if e]


def _reason(exc: Any) -> str:
    """The ErrorInfo reason of a failed call."""
    status = rpc_status.from_call(exc)
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason.lower()
    return exc.code().name


def test_twenty_holds_of_100_against_500(stack: Stack) -> None:
    shop = Shop(stack)
    shop.credit("500")
    held, refused = _race([lambda i=i: shop.redeem(f"hold-{i}", points="100") for i in range(20)])
    assert len(held) == 5
    assert refused == ["insufficient_points"] * 15
    assert shop.available() == 0 and shop.balance().held == "500"
    assert [lot.remaining for lot in shop.lots()] == [0]


def test_ten_redemptions_of_a_reward_with_stock_3(stack: Stack) -> None:
    shop = Shop(stack)
    people = [str(uuid.uuid4()) for _ in range(10)]
    for p in people:
        shop.credit("50", participant=p)
    reward = shop.reward("50", stock=3)
    held, refused = _race([lambda p=p: shop.redeem(participant=p, reward_id=reward.reward_id) for p in people])
    assert len(held) == 3 and refused == ["out_of_stock"] * 7
    left = stack.rewards.GetReward(R.GetRewardRequest(program_id=shop.program_id, reward_id=reward.reward_id),
                                   metadata=shop.md)
    assert left.stock == 0
    assert sorted(shop.available(p) for p in people) == [0] * 3 + [50] * 7


def test_capture_racing_the_hold_expiry_has_one_outcome(stack: Stack) -> None:
    service = stack.runtime.rewards
    outcomes = [_capture_or_expire(stack, service) for _ in range(6)]
    assert set(outcomes) <= {R.REDEMPTION_STATE_CAPTURED, R.REDEMPTION_STATE_EXPIRED}


def _capture_or_expire(stack: Stack, service: Any) -> int:
    """One race of a capture (just before the deadline) and the expiry run (just after)."""
    shop = Shop(stack)
    shop.credit("100")
    hold = shop.redeem(points="60", hold_ttl=duration_pb2.Duration(seconds=30))
    deadline = hold.hold_expires_at.ToDatetime(dt.UTC)
    service.clock = lambda: deadline - dt.timedelta(milliseconds=1)
    try:
        _, refused = _race([lambda: shop.capture(hold.redemption_id), lambda: service.expire_holds(deadline)])
    finally:
        service.clock = _utcnow
    final = shop.get(hold.redemption_id)
    released = shop.ledger_by_kind().get("REDEEM_RELEASE", decimal.Decimal(0))
    if refused:
        assert refused == ["hold_expired"] and final.state == R.REDEMPTION_STATE_EXPIRED
        assert (shop.available(), released) == (100, 60)
    else:
        assert final.state == R.REDEMPTION_STATE_CAPTURED
        assert (shop.available(), released) == (40, 0)
    return final.state


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
