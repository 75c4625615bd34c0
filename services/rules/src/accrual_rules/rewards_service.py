"""Rewards and redemptions, the use cases (issue 23): the catalogue, examine, and the
redemptions' hold, capture, cancel, refund and expiry. Decisions are in
:mod:`accrual_rules.domain.rewards`, statements in :mod:`accrual_rules.rewards_store`; the
points move through the bank's lots (:mod:`accrual_rules.bank`).

A hold is a REDEEM ledger entry for the price whose allocations take the points from the
participant's lots, earliest expiry first, so ``available`` drops at once and the price is
fixed. A release (a partial capture's rest, a cancel, an expiry) is a REDEEM_RELEASE entry and
a refund a REDEEM_REFUND entry; both restore points into the lots they came from (points whose
lot has expired meanwhile expire at once). Each entry's source is unique per redemption and
step, and each step runs in one transaction under the participant's balance lock, so a retry,
a second machine or a process dying mid-way never moves points twice.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable
from typing import Any

import structlog
from accrual_platform import errors, facts, pages
from accrual_platform.db import utcnow
from accrual_platform.ids import new_id, require_uuid

from accrual_rules import ledger
from accrual_rules.bank import AllocationRecord
from accrual_rules.domain import rewards
from accrual_rules.domain.bank import Allocation, InsufficientPoints
from accrual_rules.domain.rewards import (
    Move,
    RedemptionRequest,
    RewardFields,
    Standing,
    Unavailable,
    check_redemption,
    check_reward,
)
from accrual_rules.domain.validation import decimal_text
from accrual_rules.rewards_store import RedemptionRecord, RedemptionTransaction, RewardRecord, RewardsStore
from accrual_rules.service import RulesService
from accrual_rules.store import ProgramRecord

log = structlog.get_logger("accrual.rewards")

REWARD_PAGES = pages.Codec("rewards", pages.timestamp, pages.uuid_key)
REDEMPTION_PAGES = pages.Codec("redemptions", pages.timestamp, pages.uuid_key)
EXPIRY_BATCH = 200

Clock = Callable[[], dt.datetime]


class _DryRun(Exception):
    """Rolls a dry run's transaction back, carrying its answer out."""

    def __init__(self, answer: RedemptionRecord) -> None:
        super().__init__("dry run")
        self.answer = answer


def _page_size(page_size: int) -> int:
    if not 0 <= page_size <= 200:
        raise errors.InvalidArgument.field("page_size", "must be between 1 and 200")
    return page_size or 50


def _tier(program: ProgramRecord, account: ledger.Account) -> str | None:
    tier = program.policy().tier_for(account.lifetime_earned)
    return tier.name if tier else None


def redemption_data(r: RedemptionRecord) -> dict[str, Any]:
    """A redemption as its webhooks carry it."""
    return {"redemption_id": r.id, "program_id": r.program_id, "participant_id": r.participant_id,
            "reward_id": r.reward_id, "state": r.state, "points": decimal_text(r.points),
            "captured_points": decimal_text(r.captured_points),
            "refunded_points": decimal_text(r.refunded_points), "external_ref": r.external_ref,
            "idempotency_key": r.idempotency_key}


class RewardsService:
    def __init__(self, store: RewardsStore, rules: RulesService, on_commit: Callable[[], None] = lambda: None,
                 clock: Clock = utcnow) -> None:
        """``rules``: programs and participants (their existence is identity's);
        ``on_commit`` wakes the outbox relay; ``clock`` is the time holds expire by."""
        self.store = store
        self.rules = rules
        self._on_commit = on_commit
        self.clock = clock

    # -- the catalogue ------------------------------------------------------------------------
    def create_reward(self, tenant_id: str, program_id: str, fields: RewardFields) -> RewardRecord:
        program = self.rules.get_program(tenant_id, program_id)
        clean = check_reward(fields, [t["name"] for t in program.tiers])
        reward_id = new_id()
        self.store.insert_reward(tenant_id, program.id, reward_id, clean, utcnow())
        return self.get_reward(tenant_id, program.id, reward_id)

    def get_reward(self, tenant_id: str, program_id: str, reward_id: str) -> RewardRecord:
        program_id = require_uuid(program_id, "program_id")
        reward_id = require_uuid(reward_id, "reward_id")
        return errors.found(self.store.reward(tenant_id, program_id, reward_id), "reward", reward_id)

    def update_reward(self, tenant_id: str, program_id: str, reward_id: str,
                      change: Callable[[RewardFields], RewardFields]) -> RewardRecord:
        """``change`` gives the new fields from the current ones; checked as on create."""
        program = self.rules.get_program(tenant_id, program_id)
        current = self.get_reward(tenant_id, program.id, reward_id)
        clean = check_reward(change(current.fields), [t["name"] for t in program.tiers])
        return errors.found(self.store.update_reward(tenant_id, program.id, current.id, clean, utcnow()),
                            "reward", reward_id)

    def list_rewards(self, tenant_id: str, program_id: str, status: str | None, page_size: int,
                     page_token: str) -> tuple[list[RewardRecord], str]:
        program = self.rules.get_program(tenant_id, program_id)
        size = _page_size(page_size)
        after = REWARD_PAGES.decode(page_token) if page_token else None
        rows = self.store.rewards(tenant_id, program.id, status, (after[0], after[1]) if after else None, size + 1)
        token = REWARD_PAGES.encode(rows[size - 1].created_at, rows[size - 1].id) if len(rows) > size else ""
        return rows[:size], token

    def examine(self, tenant_id: str, program_id: str, participant_id: str
                ) -> tuple[list[tuple[RewardRecord, list[Unavailable]]], decimal.Decimal]:
        """Every ACTIVE reward with the reasons the participant cannot redeem it now (none:
        available), and the participant's available points."""
        program = self.rules.get_program(tenant_id, program_id)
        participant_id = require_uuid(participant_id, "participant_id")
        now = self.clock()
        account = self.rules.balance(tenant_id, program.id, participant_id).account
        active: list[RewardRecord] = []
        after: tuple[dt.datetime, str] | None = None
        while True:
            page = self.store.rewards(tenant_id, program.id, "ACTIVE", after, 500)
            active.extend(page)
            if len(page) < 500:
                break
            after = (page[-1].created_at, page[-1].id)
        counts = self.store.redeemed_counts(tenant_id, participant_id, {
            r.id: r.fields.limit.window_start(now) for r in active if r.fields.limit is not None})
        out = [(r, rewards.unavailable(r.fields, Standing(account.available, account.tier, counts.get(r.id, 0)),
                                       now)) for r in active]
        return out, account.available

    # -- redemptions ----------------------------------------------------------------------------
    def redeem(self, tenant_id: str, program_id: str, participant_id: str, *, idempotency_key: str,
               reward_id: str, points: str, capture: bool, hold_ttl: dt.timedelta | None, external_ref: str,
               dry_run: bool) -> tuple[RedemptionRecord, bool]:
        """Hold (``capture``: spend) points for a reward or a plain amount: (the redemption,
        deduplicated). Same key + same payload answers the original; another payload is 409
        idempotency_conflict. ``dry_run``: every check and the allocation, then nothing stored."""
        program = self.rules.get_program(tenant_id, program_id)
        v: list[errors.FieldViolation] = []
        participant = _uuid(v, participant_id, "participant_id")
        reward = _uuid(v, reward_id, "reward_id") if reward_id else ""
        request = check_redemption(v, participant, idempotency_key, reward, points, capture, hold_ttl, external_ref)
        if not self.rules.participant_exists(tenant_id, participant):
            raise errors.NotFound(f"participant {participant} not found", reason="participant_not_found")
        try:
            with self.store.transaction() as tx:
                account = tx.lock_account(tenant_id, program.id, participant)
                if not dry_run:  # after the lock: a concurrent retry's commit is seen here
                    original = _original(tx.redemption_by_key(tenant_id, program.id, idempotency_key),
                                         request.digest())
                    if original is not None:
                        return original, True
                created = self._hold(tx, tenant_id, program, account, request)
                if dry_run:
                    raise _DryRun(created)
        except _DryRun as dry:
            return dry.answer, False
        self._on_commit()
        return created, False

    def _hold(self, tx: RedemptionTransaction, tenant_id: str, program: ProgramRecord, account: ledger.Account,
              request: RedemptionRequest) -> RedemptionRecord:
        now = self.clock()
        price = request.points
        if request.reward_id is not None:
            reward = errors.found(tx.reward(tenant_id, program.id, request.reward_id), "reward", request.reward_id)
            fields = reward.fields
            start = fields.limit.window_start(now) if fields.limit is not None else None
            redeemed = tx.redeemed(tenant_id, account.participant_id, reward.id, start) if fields.limit else 0
            reasons = rewards.unavailable(fields, Standing(account.available, _tier(program, account), redeemed),
                                          now)
            if reasons:
                raise rewards.refusal(reasons[0], account.available, fields.cost_points)
            if not tx.take_stock(reward.id):  # taken by a concurrent redemption since the read
                raise rewards.refusal(Unavailable("out_of_stock", "the reward is out of stock"),
                                      account.available, fields.cost_points)
            price = fields.cost_points
        assert price is not None
        if account.available < price:
            raise rewards.insufficient(account.available, price)
        redemption_id, entry_id = new_id(), new_id()
        tx.post(tenant_id=tenant_id, program_id=program.id, participant_id=account.participant_id, amount=-price,
                kind="REDEEM", source=f"redemption:{redemption_id}:hold", entry_id=entry_id,
                reason=f"redemption {redemption_id}", occurred_at=now, now=now)
        try:
            debit = tx.debit(tenant_id, account, tx.lock_lots(tenant_id, program.id, account.participant_id), price,
                             "FORBID", entry_id, now)
        except InsufficientPoints as exc:  # the lots hold less than the balance says
            raise rewards.insufficient(exc.available, price) from None
        tx.write_accounts(tenant_id, [account], now)
        created = RedemptionRecord(
            id=redemption_id, tenant_id=tenant_id, program_id=program.id, participant_id=account.participant_id,
            idempotency_key=request.idempotency_key, payload_hash=request.digest(), reward_id=request.reward_id,
            state="CAPTURED" if request.capture else "HELD", points=price,
            captured_points=price if request.capture else rewards.ZERO, refunded_points=rewards.ZERO,
            released_points=rewards.ZERO, external_ref=request.external_ref, hold_entry_id=entry_id,
            hold_expires_at=now + request.hold_ttl, created_at=now, updated_at=now,
            allocations=tuple(AllocationRecord(entry_id, a.lot_id, a.amount) for a in debit.allocations))
        tx.insert_redemption(created)
        notes = [_fact(tenant_id, "redemption.held", created, now)]
        if request.capture:
            notes.append(_fact(tenant_id, "redemption.captured", created, now))
        tx.announce(notifications=notes)
        return created

    def get_redemption(self, tenant_id: str, redemption_id: str) -> RedemptionRecord:
        redemption_id = require_uuid(redemption_id, "redemption_id")
        return errors.found(self.store.redemption(tenant_id, redemption_id), "redemption", redemption_id)

    def list_redemptions(self, tenant_id: str, program_id: str, participant_id: str, state: str | None,
                         page_size: int, page_token: str) -> tuple[list[RedemptionRecord], str]:
        program = self.rules.get_program(tenant_id, program_id)
        participant_id = require_uuid(participant_id, "participant_id")
        size = _page_size(page_size)
        before = REDEMPTION_PAGES.decode(page_token) if page_token else None
        rows = self.store.redemptions(tenant_id, program.id, participant_id, state,
                                      (before[0], before[1]) if before else None, size + 1)
        token = REDEMPTION_PAGES.encode(rows[size - 1].created_at, rows[size - 1].id) if len(rows) > size else ""
        return rows[:size], token

    def capture(self, tenant_id: str, redemption_id: str, points: str | None) -> RedemptionRecord:
        amount = None if points is None else rewards.parse_cost(points, "points")
        return self._transition(tenant_id, redemption_id,
                                lambda r, now: rewards.capture(r.machine(), amount, now), "redemption.captured")[0]

    def cancel(self, tenant_id: str, redemption_id: str) -> RedemptionRecord:
        return self._transition(tenant_id, redemption_id, lambda r, now: rewards.cancel(r.machine()),
                                "redemption.cancelled")[0]

    def refund(self, tenant_id: str, redemption_id: str, *, idempotency_key: str, points: str | None,
               reason: str) -> RedemptionRecord:
        """Give captured points back; the key makes a retry answer the redemption and move
        nothing (another payload with the key: 409 idempotency_conflict)."""
        v: list[errors.FieldViolation] = []
        amount: decimal.Decimal | None = None
        if points is not None:
            try:
                amount = rewards.parse_cost(points, "points")
            except errors.InvalidArgument as exc:
                v.extend(exc.violations)
        if not 1 <= len(idempotency_key) <= 255:
            v.append(errors.FieldViolation("idempotency_key", "is required (1 to 255 characters)"))
        if len(reason) > 500:
            v.append(errors.FieldViolation("reason", "must be at most 500 characters"))
        errors.collect(v)
        digest = rewards.refund_hash(amount, reason)
        return self._transition(tenant_id, redemption_id, lambda r, now: rewards.refund(r.machine(), amount),
                                "redemption.refunded", step=f"refund:{idempotency_key}", digest=digest)[0]

    def _transition(self, tenant_id: str, redemption_id: str,
                    decide: Callable[[RedemptionRecord, dt.datetime], Move | None], fact: str, *,
                    step: str = "release", digest: str | None = None,
                    at: dt.datetime | None = None) -> tuple[RedemptionRecord, bool]:
        """Lock the redemption's account, let ``decide`` choose the move from its current
        state, and apply it (None or ``same``: answer it as it is); (the redemption, moved)."""
        found = self.get_redemption(tenant_id, redemption_id)
        with self.store.transaction() as tx:
            account = tx.lock_account(tenant_id, found.program_id, found.participant_id)
            r = tx.redemption(tenant_id, found.id)
            assert r is not None
            source = f"redemption:{r.id}:{step}"
            if digest is not None:
                done = tx.entry(tenant_id, source)
                if done is not None:
                    if done.payload_hash != digest:
                        raise _key_conflict()
                    return r, False
            now = at or self.clock()
            move = decide(r, now)
            if move is None or move.same:
                return r, False
            self._apply(tx, tenant_id, account, r, move, source, digest, now)
            after = tx.redemption(tenant_id, r.id)
            assert after is not None
            fact_id = f"{fact}:{r.id}" if digest is None else f"{fact}:{r.id}:{step}"
            tx.announce(notifications=[_fact(tenant_id, fact, after, now, fact_id)])
        self._on_commit()
        return after, True

    def _apply(self, tx: RedemptionTransaction, tenant_id: str, account: ledger.Account, r: RedemptionRecord,
               move: Move, source: str, digest: str | None, now: dt.datetime) -> None:
        back = move.release + move.refund
        if back > 0:
            kind = "REDEEM_REFUND" if move.refund > 0 else "REDEEM_RELEASE"
            entry_id = new_id()
            tx.post(tenant_id=tenant_id, program_id=r.program_id, participant_id=r.participant_id, amount=back,
                    kind=kind, source=source, entry_id=entry_id, payload_hash=digest,
                    reason=f"redemption {r.id} {move.after.state.lower()}", occurred_at=now, now=now)
            hold = [Allocation(a.lot_id, a.amount) for a in r.allocations]
            taken = rewards.Outstanding.of(hold, tx.returned(tenant_id, r))
            tx.restore(tenant_id, account, entry_id, taken.taken, back, now)
            tx.write_accounts(tenant_id, [account], now)
        if move.restock and r.reward_id:
            tx.give_stock(r.reward_id)
        tx.update_redemption(r.id, move.after, now)

    # -- expiry of holds ---------------------------------------------------------------------
    def expire_holds(self, now: dt.datetime | None = None, limit: int = EXPIRY_BATCH) -> int:
        """Release every hold past its time to live at ``now`` (default: the clock's), each
        once: a second run, or a second machine, finds it no longer HELD under the lock.
        Returns how many it released."""
        at = now or self.clock()
        released = 0
        while True:
            due = self.store.due_holds(at, limit)
            for tenant_id, redemption_id in due:
                released += self._transition(tenant_id, redemption_id,
                                             lambda r, when: rewards.expire(r.machine(), when),
                                             "redemption.expired", at=at)[1]
            if len(due) < limit:
                return released


def _uuid(v: list[errors.FieldViolation], value: str, field: str) -> str:
    try:
        return require_uuid(value, field)
    except errors.InvalidArgument as exc:
        v.extend(exc.violations)
        return value


def _key_conflict() -> errors.Conflict:
    return errors.Conflict("idempotency_key was already used with a different request",
                           reason="idempotency_conflict",
                           violations=[errors.FieldViolation("idempotency_key",
                                                             "already used with a different payload")])


def _original(found: RedemptionRecord | None, digest: str) -> RedemptionRecord | None:
    """The redemption of a key; 409 when the key came with another payload."""
    if found is not None and found.payload_hash != digest:
        raise _key_conflict()
    return found


def _fact(tenant_id: str, kind: str, r: RedemptionRecord, at: dt.datetime, fact_id: str | None = None) -> Any:
    return facts.notification(tenant_id, kind, fact_id or f"{kind}:{r.id}", at, redemption_data(r))

