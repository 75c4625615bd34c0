"""A program with a participant, for the rewards and redemption tests: credit points, make
rewards, redeem, and read what the ledger and lots say (shared by the API, concurrency and
property tests)."""

from __future__ import annotations

import decimal
import itertools
import uuid
from typing import Any

import sqlalchemy as sa
from accrual.rules.v1 import rewards_pb2, rules_pb2
from accrual_rules import storage

_keys = itertools.count()


class Shop:
    def __init__(self, stack: Any, participant: str | None = None, **program: Any) -> None:
        self.stack = stack
        self.tenant, self.md = stack.tenant()
        self.program_id = stack.stub.CreateProgram(rules_pb2.CreateProgramRequest(name="Shop", **program),
                                                   metadata=self.md).program_id
        self.participant = participant or str(uuid.uuid4())

    def credit(self, amount: str, participant: str | None = None) -> rules_pb2.Adjustment:
        return self.stack.stub.CreateAdjustment(rules_pb2.CreateAdjustmentRequest(
            program_id=self.program_id, participant_id=participant or self.participant, amount=amount,
            reason="test credit", idempotency_key=f"credit-{next(_keys)}"), metadata=self.md)

    def reward(self, cost: str = "100", **kw: Any) -> rewards_pb2.Reward:
        kw.setdefault("status", rewards_pb2.REWARD_STATUS_ACTIVE)
        return self.stack.rewards.CreateReward(rewards_pb2.CreateRewardRequest(
            program_id=self.program_id, name="Coffee", cost_points=cost, **kw), metadata=self.md)

    def redeem(self, key: str | None = None, participant: str | None = None, **kw: Any) -> rewards_pb2.Redemption:
        return self.stack.rewards.CreateRedemption(rewards_pb2.CreateRedemptionRequest(
            program_id=self.program_id, participant_id=participant or self.participant,
            idempotency_key=key or f"redeem-{next(_keys)}", **kw), metadata=self.md)

    def capture(self, redemption_id: str, **kw: Any) -> rewards_pb2.Redemption:
        return self.stack.rewards.CaptureRedemption(rewards_pb2.CaptureRedemptionRequest(
            redemption_id=redemption_id, **kw), metadata=self.md)

    def cancel(self, redemption_id: str) -> rewards_pb2.Redemption:
        return self.stack.rewards.CancelRedemption(rewards_pb2.CancelRedemptionRequest(
            redemption_id=redemption_id), metadata=self.md)

    def refund(self, redemption_id: str, key: str, **kw: Any) -> rewards_pb2.Redemption:
        return self.stack.rewards.RefundRedemption(rewards_pb2.RefundRedemptionRequest(
            redemption_id=redemption_id, idempotency_key=key, **kw), metadata=self.md)

    def get(self, redemption_id: str) -> rewards_pb2.Redemption:
        return self.stack.rewards.GetRedemption(rewards_pb2.GetRedemptionRequest(redemption_id=redemption_id),
                                                metadata=self.md)

    def balance(self, participant: str | None = None) -> rules_pb2.Balance:
        return self.stack.balance(self.md, self.program_id, participant or self.participant)

    def available(self, participant: str | None = None) -> decimal.Decimal:
        return decimal.Decimal(self.balance(participant).available)

    # -- what the database says -------------------------------------------------------------
    def ledger_by_kind(self, participant: str | None = None) -> dict[str, decimal.Decimal]:
        e = storage.ledger
        with self.stack.runtime.db.transaction() as session:
            rows = session.execute(sa.select(e.c.kind, e.c.amount).where(
                e.c.tenant_id == self.tenant, e.c.program_id == self.program_id,
                e.c.participant_id == (participant or self.participant))).all()
        out: dict[str, decimal.Decimal] = {}
        for kind, amount in rows:
            out[kind] = out.get(kind, decimal.Decimal(0)) + decimal.Decimal(amount)
        return out

    def entries(self) -> int:
        return sum(1 for _ in self._rows(storage.ledger))

    def lots(self) -> list[Any]:
        return self._rows(storage.lots)

    def redemptions(self) -> list[Any]:
        return self._rows(storage.redemptions)

    def _rows(self, table: sa.Table) -> list[Any]:
        with self.stack.runtime.db.transaction() as session:
            return list(session.execute(sa.select(table).where(
                table.c.tenant_id == self.tenant, table.c.program_id == self.program_id)))
