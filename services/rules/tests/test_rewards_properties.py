"""Hypothesis sequences of earns, holds, captures, cancels, refunds and hold expiries, with
retried requests, on SQLite and PostgreSQL. After every step:

- available + held + spent - refunded = credited - expired - reversed;
- no lot's remaining is below 0 or above its original, and the active lots hold what is
  available;
- each redemption's lots still hold out exactly what it has not given back;
- a retried request answers what it answered first and moves nothing.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
import sqlalchemy as sa
from accrual.rules.v1 import rewards_pb2 as R
from accrual_rules import storage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.rules.tests.shop import Shop

if TYPE_CHECKING:
    from conftest import Stack

D = decimal.Decimal
ZERO = D(0)

amounts = st.integers(min_value=1, max_value=300)
steps = st.one_of(
    st.tuples(st.just("earn"), amounts),
    st.tuples(st.just("hold"), amounts, st.booleans()),
    st.tuples(st.just("capture"), st.integers(0, 20), st.one_of(st.none(), amounts)),
    st.tuples(st.just("cancel"), st.integers(0, 20)),
    st.tuples(st.just("refund"), st.integers(0, 20), st.one_of(st.none(), amounts)),
    st.tuples(st.just("retry"), st.integers(0, 40)),
    st.tuples(st.just("expire"), st.just(0)),
)


@dataclass
class Run:
    shop: Shop
    credited: D = ZERO
    redemptions: list[str] = field(default_factory=list)
    #: successful calls, to retry: (call, its first answer)
    done: list[tuple[Callable[[], Any], Any]] = field(default_factory=list)
    n: int = 0

    def key(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}-{self.n}"

    def attempt(self, call: Callable[[], Any]) -> None:
        """A call that may be refused (the sequence is random); remembered when it goes through."""
        try:
            answer = call()
        except grpc.RpcError as exc:
            assert exc.code() in (grpc.StatusCode.ABORTED, grpc.StatusCode.INVALID_ARGUMENT), exc.details()
            return
        self.done.append((call, answer))
        if isinstance(answer, R.Redemption) and answer.redemption_id not in self.redemptions:
            self.redemptions.append(answer.redemption_id)


def _check(run: Run) -> None:
    shop = run.shop
    db = shop.stack.runtime.db
    balance = shop.balance()
    reds = shop.redemptions()
    held = sum((D(r.points) for r in reds if r.state == "HELD"), ZERO)
    spent = sum((D(r.captured_points) for r in reds), ZERO)
    refunded = sum((D(r.refunded_points) for r in reds), ZERO)
    kinds = shop.ledger_by_kind()
    expired = -kinds.get("EXPIRE", ZERO)
    assert D(balance.held) == held
    assert D(balance.available) + held + spent - refunded == run.credited - expired
    lots = shop.lots()
    assert all(0 <= lot.remaining <= lot.original for lot in lots)
    assert sum((D(lot.remaining) for lot in lots if lot.status == "ACTIVE"), ZERO) == D(balance.available)
    e, a = storage.ledger, storage.lot_allocations
    with db.transaction() as session:
        for r in reds:
            out = session.execute(sa.select(sa.func.coalesce(sa.func.sum(a.c.amount), 0)).join(
                e, e.c.id == a.c.entry_id).where(e.c.tenant_id == shop.tenant,
                                                 e.c.source.like(f"redemption:{r.id}:%"))).scalar_one()
            still_out = D(r.points) - D(r.released_points) - D(r.refunded_points)
            assert D(str(out)) == still_out, r.state
            if r.state == "HELD":
                assert D(r.captured_points) == D(r.released_points) == 0
            else:
                assert D(r.captured_points) + D(r.released_points) == D(r.points)
            assert D(r.refunded_points) <= D(r.captured_points)


def _step(run: Run, step: tuple[Any, ...], clock: list[dt.timedelta]) -> None:
    shop = run.shop
    kind = step[0]
    pick = (lambda i: run.redemptions[i % len(run.redemptions)]) if run.redemptions else None
    if kind == "earn":
        shop.credit(str(step[1]))
        run.credited += step[1]
    elif kind == "hold":
        key = run.key("hold")
        run.attempt(lambda: shop.redeem(key, points=str(step[1]), capture=step[2]))
    elif kind == "capture" and pick:
        rid, points = pick(step[1]), step[2]
        run.attempt(lambda: shop.capture(rid, **({"points": str(points)} if points else {})))
    elif kind == "cancel" and pick:
        rid = pick(step[1])
        run.attempt(lambda: shop.cancel(rid))
    elif kind == "refund" and pick:
        rid, points, key = pick(step[1]), step[2], run.key("refund")
        run.attempt(lambda: shop.refund(rid, key, **({"points": str(points)} if points else {})))
    elif kind == "retry" and run.done:
        call, first = run.done[step[1] % len(run.done)]
        entries = shop.entries()
        again = call()
        assert again.redemption_id == first.redemption_id
        assert shop.entries() == entries
    elif kind == "expire":
        clock[0] += dt.timedelta(hours=1)
        shop.stack.runtime.rewards.expire_holds(dt.datetime.now(dt.UTC) + clock[0])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(sequence=st.lists(steps, min_size=1, max_size=14))
def test_sequences_keep_the_books(stack: Stack, sequence: list[tuple[Any, ...]]) -> None:
    service = stack.runtime.rewards
    clock = [dt.timedelta(0)]
    service.clock = lambda: dt.datetime.now(dt.UTC) + clock[0]
    try:
        run = Run(Shop(stack))
        for step in sequence:
            _step(run, step, clock)
            _check(run)
    finally:
        service.clock = lambda: dt.datetime.now(dt.UTC)


def test_a_retried_capture_or_refund_moves_nothing(stack: Stack) -> None:
    shop = Shop(stack)
    shop.credit("100")
    held = shop.redeem(points="80")
    captured = shop.capture(held.redemption_id, points="70")
    refunded = shop.refund(held.redemption_id, "r", points="30")
    entries, lots = shop.entries(), [(lot.id, lot.remaining) for lot in shop.lots()]
    for _ in range(3):
        assert shop.capture(held.redemption_id, points="70").captured_points == captured.captured_points
        assert shop.refund(held.redemption_id, "r", points="30") == refunded
        assert shop.redeem(held.idempotency_key, points="80").deduplicated
    assert shop.entries() == entries
    assert [(lot.id, lot.remaining) for lot in shop.lots()] == lots
    assert shop.available() == 60
