"""An event's points after it was evaluated (issue 22): reversals (refunds), cancellation of
pending points, and activation of pending points (early by a call, when due by the
scheduler, or by an activating event in the worker). No SQL here: statements are in
:mod:`accrual_rules.event_store` and :mod:`accrual_rules.bank`.

Each use case is one ledger transaction that first locks the balance rows of every account
the event's points went to (in one order), then reads what earlier reversals took, so
concurrent reversals of one event queue and their shares add up exactly. A reversal's key
is unique per event: a retried request finds the original, and nothing is taken twice.

Clawback order of a reversal, per ledger entry of the event: that entry's own lot, the
event's other lots, the participant's other pending lots, the other active lots by earliest
expiry; what they cannot cover follows the program's negative balance policy (FORBID: 409
insufficient_points and nothing written; CLAMP: recorded as unrecovered; ALLOW: debt).
A gifted event's points went to the recipient, so that is whom its reversal takes from.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction

from accrual.messages.v1 import messages_pb2
from accrual_platform import errors, facts
from accrual_platform.db import decimal_str, utcnow
from accrual_platform.ids import new_id

from accrual_rules import bank, ledger
from accrual_rules.bank import LotRecord
from accrual_rules.domain import Json
from accrual_rules.domain.bank import InsufficientPoints, expiry_from_json
from accrual_rules.domain.pending import PendingPolicy, original_reference
from accrual_rules.domain.reversals import ONE, ReversalRequest, fraction_text, monetary_value, proportional, shown
from accrual_rules.event_store import Credit, ReversalRecord
from accrual_rules.ledger import Account
from accrual_rules.store import EntryRecord, LedgerTransaction, ProgramRecord, RulesStore

ZERO = decimal.Decimal(0)
#: Lots the activation run takes per transaction.
ACTIVATION_BATCH = 500


@dataclass(frozen=True)
class EventInfo:
    """What ingest says of an event: its status and event_data."""

    status: str
    data: Mapping[str, Json]


#: (tenant id, event id) -> the event as ingest has it, or None when it does not exist.
EventLookup = Callable[[str, str], "EventInfo | None"]


def _no_lookup(tenant_id: str, event_id: str) -> EventInfo | None:
    return None


@dataclass(frozen=True)
class ReversalResult:
    record: ReversalRecord
    entries: list[EntryRecord]
    deduplicated: bool
    #: by program, the share of the event reversed so far, as of this answer
    reversed: dict[str, Fraction]


@dataclass(frozen=True)
class EventPointsResult:
    """What ActivatePoints or CancelPoints did: the points moved, the entries written, and
    the balances of the event's accounts after."""

    event_id: str
    points: decimal.Decimal
    entries: list[EntryRecord]
    balances: list[Account]


@dataclass
class _Taken:
    """What taking back a share of an event did, across its accounts."""

    points: decimal.Decimal = ZERO
    unrecovered: decimal.Decimal = ZERO
    debt: decimal.Decimal = ZERO
    entry_ids: list[str] = field(default_factory=list)
    notes: list[messages_pb2.Notification] = field(default_factory=list)


class EventPoints:
    def __init__(self, store: RulesStore, lookup: EventLookup = _no_lookup,
                 on_commit: Callable[[], None] = lambda: None) -> None:
        """``lookup`` asks ingest about an event (status, event_data); ``on_commit`` wakes
        the outbox relay."""
        self.store = store
        self.lookup = lookup
        self._on_commit = on_commit

    # -- reversals ------------------------------------------------------------------------
    def reverse(self, tenant_id: str, request: ReversalRequest) -> ReversalResult:
        """Take back ``request``'s share of the event's points (see the module docstring)."""
        digest = request.digest()
        with self.store.ledger_transaction() as tx:
            earlier = tx.events.reversal(tenant_id, request.event_id, request.idempotency_key)
            if earlier is not None:
                return self._replayed(tx, tenant_id, earlier, digest)
            credits = self._completed_credits(tx, tenant_id, request.event_id)
            programs = tx.programs(tenant_id, {c.program_id for c in credits})
        shares = self._shares(tenant_id, request, programs)
        now = utcnow()
        with self.store.ledger_transaction() as tx:
            accounts = tx.lock_accounts(tenant_id, {(c.program_id, c.participant_id) for c in credits})
            earlier = tx.events.reversal(tenant_id, request.event_id, request.idempotency_key)
            if earlier is not None:  # a concurrent retry of this request committed while we waited
                return self._replayed(tx, tenant_id, earlier, digest)
            before = tx.events.reversed_shares(tenant_id, request.event_id)
            after = {p: before.get(p, Fraction(0)) + share for p, share in shares.items()}
            over = sorted(p for p, total in after.items() if total > ONE)
            if over:
                left = ONE - before.get(over[0], Fraction(0))
                field_name = "ratio" if request.ratio is not None else "amount"
                raise errors.Conflict(
                    f"{field_name}: the event's reversals would exceed what it earned "
                    f"(a share of {shown(left)} is left to reverse)", reason="reversal_exceeds_original",
                    violations=[errors.FieldViolation(field_name, "exceeds what is left to reverse")],
                    metadata={"remaining_ratio": shown(left)})
            record_id = new_id()
            taken = self._take_back(tx, tenant_id, request.event_id, credits, programs, accounts, before, after,
                                    kind="REVERSAL", record_id=record_id, reason=request.reason, now=now)
            record = ReversalRecord(
                id=record_id, tenant_id=tenant_id, event_id=request.event_id,
                idempotency_key=request.idempotency_key, kind="REVERSAL", request_hash=digest,
                shares={p: fraction_text(s) for p, s in sorted(shares.items())}, points=taken.points,
                unrecovered=taken.unrecovered, debt=taken.debt, reason=request.reason, created_at=now)
            if not tx.events.insert_reversal(record):
                # Only without accounts to lock (an event that earned nothing) can two requests
                # with one key get here together; the loser's transaction wrote nothing else.
                stored = tx.events.reversal(tenant_id, request.event_id, request.idempotency_key)
                assert stored is not None
                return self._replayed(tx, tenant_id, stored, digest)
            tx.announce(notifications=taken.notes)
            entries = tx.entries_by_id(tenant_id, taken.entry_ids)
        self._on_commit()
        return ReversalResult(record, entries, deduplicated=False, reversed=after)

    def _replayed(self, tx: LedgerTransaction, tenant_id: str, record: ReversalRecord,
                  digest: str) -> ReversalResult:
        if record.request_hash != digest:
            raise errors.Conflict("idempotency_key was already used with a different reversal of this event",
                                  reason="idempotency_conflict",
                                  violations=[errors.FieldViolation("idempotency_key",
                                                                    "already used with a different payload")])
        ids = tx.events.entries_of(tenant_id, f"reversal:{record.id}:")
        return ReversalResult(record, tx.entries_by_id(tenant_id, ids), deduplicated=True,
                              reversed=tx.events.reversed_shares(tenant_id, record.event_id))

    def _completed_credits(self, tx: LedgerTransaction, tenant_id: str, event_id: str) -> list[Credit]:
        """The event's EARN entries; 404 when the event does not exist, 409 when it is not
        COMPLETED (still PENDING or PROCESSING, or FAILED)."""
        if not tx.events.evaluated(tenant_id, event_id):
            info = self.lookup(tenant_id, event_id)
            if info is None:
                raise errors.NotFound(f"event {event_id} not found", reason="event_not_found")
            raise errors.Conflict(f"event {event_id} is {info.status}, not COMPLETED: its points are not "
                                  "settled yet", reason="event_not_completed", metadata={"status": info.status})
        return tx.events.credits(tenant_id, event_id)

    def _shares(self, tenant_id: str, request: ReversalRequest,
                programs: Mapping[str, ProgramRecord]) -> dict[str, Fraction]:
        """By program of the event's entries, the share this request takes back."""
        if request.amount is None:
            return {p: request.share(None) for p in programs}
        info = self.lookup(tenant_id, request.event_id)
        data: Mapping[str, Json] = info.data if info is not None else {}
        shares: dict[str, Fraction] = {}
        for program_id, program in sorted(programs.items()):
            if not program.monetary_field:
                raise errors.InvalidArgument.field(
                    "amount", f"program {program_id} names no monetary_field: send a ratio")
            value = monetary_value(data, program.monetary_field)
            if value is None:
                raise errors.InvalidArgument.field(
                    "amount", f"the event has no positive number in {errors.excerpt(program.monetary_field)}, "
                              "the program's monetary_field: send a ratio")
            share = request.share(value)
            if share > ONE:
                raise errors.InvalidArgument.field(
                    "amount", f"must be at most the event's {errors.excerpt(program.monetary_field)} "
                              f"({decimal_str(value)})")
            shares[program_id] = share
        return shares

    def _take_back(self, tx: LedgerTransaction, tenant_id: str, event_id: str, credits: Sequence[Credit],
                   programs: Mapping[str, ProgramRecord], accounts: Mapping[tuple[str, str], Account],
                   before: Mapping[str, Fraction], after: Mapping[str, Fraction], *, kind: str, record_id: str,
                   reason: str, now: dt.datetime) -> _Taken:
        """Reverse the event's entries from share ``before`` to ``after`` (by program), under
        the locks of ``accounts`` the caller holds (changed in memory, and stored)."""
        groups: dict[tuple[str, str], list[Credit]] = {}
        for c in credits:
            groups.setdefault((c.program_id, c.participant_id), []).append(c)
        taken = _Taken()
        for key in sorted(groups):
            program_id, participant_id = key
            program = programs[program_id]
            policy, negative = program.policy(), program.bank().negative_balance
            group = groups[key]
            deltas = proportional([c.amount for c in group], before.get(program_id, Fraction(0)),
                                  after[program_id], policy.rounding_precision)
            account = accounts[key]
            requested = recovered = ZERO
            for credit, delta in zip(group, deltas, strict=True):
                if delta <= 0:
                    continue
                entry_id = new_id()
                try:
                    debit = tx.debit(tenant_id, account, self._clawback(tx, tenant_id, key, event_id, credit),
                                     delta, negative, entry_id, now)
                except InsufficientPoints as exc:
                    raise errors.Conflict(
                        f"the participant has {decimal_str(exc.available)} of the {decimal_str(exc.requested)} "
                        "points to take back, and the program's negative_balance policy is FORBID",
                        reason="insufficient_points", metadata={"participant_id": participant_id}) from None
                tx.post(tenant_id=tenant_id, program_id=program_id, participant_id=participant_id,
                        amount=-debit.amount, kind=kind, source=f"{kind.lower()}:{record_id}:{credit.entry_id}",
                        reason=reason, occurred_at=now, now=now, event_id=event_id, rule_id=credit.rule_id,
                        rule_version=credit.rule_version, unrecovered=debit.unrecovered or None,
                        entry_id=entry_id)
                taken.entry_ids.append(entry_id)
                requested += delta
                recovered += debit.amount
                taken.unrecovered += debit.unrecovered
                taken.debt += debit.debt
            if not requested:
                continue
            taken.points += requested
            old_tier, new_tier = ledger.apply_delta(policy, account, ZERO, -requested)
            fact = f"points.{'reversed' if kind == 'REVERSAL' else 'cancelled'}:{record_id}:{program_id}"
            taken.notes.append(facts.notification(tenant_id, "points.reversed", fact, now, {
                "event_id": event_id, "program_id": program_id, "participant_id": participant_id,
                "points": decimal_str(requested), "recovered": decimal_str(recovered),
                "reversal_id": record_id, "cancelled": kind == "CANCEL", "reason": reason,
                "available": decimal_str(account.available)}))
            if old_tier != new_tier:
                taken.notes.append(ledger.tier_changed(tenant_id, f"tier.changed:{fact}", now, account,
                                                       old_tier, new_tier, {"event_id": event_id}))
        tx.write_accounts(tenant_id, [accounts[k] for k in sorted(groups)], now)
        return taken

    @staticmethod
    def _clawback(tx: LedgerTransaction, tenant_id: str, account: tuple[str, str], event_id: str,
                  credit: Credit) -> list[LotRecord]:
        """The lots a reversal of ``credit`` takes from, in clawback order (read again for
        every entry: the previous one changed them)."""
        program_id, participant_id = account
        own = tx.lock_lots(tenant_id, program_id, participant_id, ("PENDING", "ACTIVE"), event_id=event_id)
        own.sort(key=lambda lot: lot.entry_id != credit.entry_id)  # stable: its own lot first
        pending = [lot for lot in tx.lock_lots(tenant_id, program_id, participant_id, ("PENDING",))
                   if lot.event_id != event_id]
        active = [lot for lot in tx.lock_lots(tenant_id, program_id, participant_id, ("ACTIVE",))
                  if lot.event_id != event_id]
        return own + pending + active

    # -- cancellation ---------------------------------------------------------------------
    def cancel(self, tenant_id: str, event_id: str, reason: str) -> EventPointsResult:
        """Take back every point of the event that is left, while all of them are pending:
        a CANCEL entry per entry of the event, its lots CANCELLED. 409 not_pending once any
        of its points is active (a reversal is the refund then); a repeat moves nothing."""
        with self.store.ledger_transaction() as tx:
            credits = self._completed_credits(tx, tenant_id, event_id)
            programs = tx.programs(tenant_id, {c.program_id for c in credits})
        now = utcnow()
        with self.store.ledger_transaction() as tx:
            accounts, lots = _locked_with_lots(tx, tenant_id, event_id, credits, "cancel")
            if any(_was_active(lot, now) for lot in lots):
                raise errors.Conflict(f"the points of event {event_id} are active already: reverse them "
                                      "with POST /v1/events/{event_id}/reversals", reason="not_pending")
            before = tx.events.reversed_shares(tenant_id, event_id)
            after = {p: ONE for p in programs}
            if all(before.get(p, Fraction(0)) >= ONE for p in programs):
                taken = _Taken()
            else:
                record_id = new_id()
                taken = self._take_back(tx, tenant_id, event_id, credits, programs, accounts, before, after,
                                        kind="CANCEL", record_id=record_id, reason=reason, now=now)
                shares = {p: fraction_text(ONE - before.get(p, Fraction(0))) for p in sorted(programs)}
                tx.events.insert_reversal(ReversalRecord(
                    id=record_id, tenant_id=tenant_id, event_id=event_id, idempotency_key=f"cancel:{record_id}",
                    kind="CANCEL", request_hash="", shares=shares, points=taken.points,
                    unrecovered=taken.unrecovered, debt=taken.debt, reason=reason, created_at=now))
                tx.announce(notifications=taken.notes)
            tx.events.set_lots([replace(lot, status="CANCELLED") for lot in tx.events.lots(tenant_id, event_id)
                                if lot.status in ("PENDING", "EXHAUSTED") and lot.remaining == 0], now)
            entries = tx.entries_by_id(tenant_id, taken.entry_ids)
            balances = [accounts[k] for k in sorted(accounts)]
        if taken.notes:
            self._on_commit()
        return EventPointsResult(event_id, taken.points, entries, balances)

    # -- activation -----------------------------------------------------------------------
    def activate(self, tenant_id: str, event_id: str) -> EventPointsResult:
        """Activate the event's pending lots now (early); a repeat activates nothing."""
        with self.store.ledger_transaction() as tx:
            credits = self._completed_credits(tx, tenant_id, event_id)
        now = utcnow()
        with self.store.ledger_transaction() as tx:
            accounts, lots = _locked_with_lots(tx, tenant_id, event_id, credits, "activate")
            points = activate_lots(tx, tenant_id, accounts, [lot for lot in lots if lot.status == "PENDING"], now,
                                   early=True)
            balances = [accounts[k] for k in sorted(accounts)]
        if points:
            self._on_commit()
        return EventPointsResult(event_id, points, [], balances)

    def activate_due(self, now: dt.datetime | None = None, batch: int = ACTIVATION_BATCH) -> int:
        """Activate every PENDING lot whose activation time has passed (the scheduler's run):
        a batch per transaction, accounts locked first, lots read again under the locks, so
        two runs at once activate each lot once. Returns the lots activated."""
        now = now or utcnow()
        done = 0
        while True:
            with self.store.ledger_transaction() as tx:
                due = tx.events.due(now, batch)
                if not due:
                    break
                by_tenant: dict[str, list[str]] = {}
                for lot in due:
                    by_tenant.setdefault(lot.tenant_id, []).append(lot.id)
                for tenant_id in sorted(by_tenant):
                    accounts = tx.lock_accounts(tenant_id, {(d.program_id, d.participant_id) for d in due
                                                            if d.tenant_id == tenant_id})
                    locked = tx.lock_lot_ids(tenant_id, by_tenant[tenant_id])
                    ready = [lot for lot in locked.values() if lot.status == "PENDING"
                             and lot.activates_at is not None and lot.activates_at <= now]
                    activate_lots(tx, tenant_id, accounts, ready, now, early=False)
                    done += len(ready)
            self._on_commit()
            if len(due) < batch:
                break
        return done


def _locked_with_lots(tx: LedgerTransaction, tenant_id: str, event_id: str, credits: Sequence[Credit],
                      verb: str) -> tuple[dict[tuple[str, str], Account], list[LotRecord]]:
    """Lock the accounts the event credited, then read its lots; 409 not_pending when it
    earned none, since there is nothing to cancel or activate."""
    accounts = tx.lock_accounts(tenant_id, {(c.program_id, c.participant_id) for c in credits})
    lots = list(tx.events.lots(tenant_id, event_id))
    if not lots:
        raise errors.Conflict(f"event {event_id} earned no points to {verb}", reason="not_pending")
    return accounts, lots


def _was_active(lot: LotRecord, now: dt.datetime) -> bool:
    """Whether the lot's points were spendable at some time (or their window has passed)."""
    if lot.status in ("ACTIVE", "EXPIRED"):
        return True
    return lot.status != "CANCELLED" and lot.activates_at is not None and lot.activates_at <= now


def activate_lots(tx: LedgerTransaction, tenant_id: str, accounts: Mapping[tuple[str, str], Account],
                  lots: Sequence[LotRecord], now: dt.datetime, *, early: bool) -> decimal.Decimal:
    """Make PENDING ``lots`` spendable under their accounts' locks (held by the caller): their
    points pay off debt first, their expiry clock starts at activation (``now`` when
    ``early``, else their activation time), and a ``points.activated`` fact per event and
    account. Stores the lots and the accounts; returns the points activated."""
    if not lots:
        return ZERO
    programs = tx.programs(tenant_id, {lot.program_id for lot in lots})
    overrides = tx.events.rule_expiry(tenant_id, [lot.entry_id for lot in lots])
    changed: list[LotRecord] = []
    payoffs: list[dict[str, Json]] = []
    moved: dict[tuple[str, str, str], decimal.Decimal] = {}
    for lot in sorted(lots, key=lambda x: x.id):
        key = (lot.program_id, lot.participant_id)
        account = accounts[key]
        paid = bank.activate(account, lot)
        start = now if early or lot.activates_at is None else lot.activates_at
        policy = programs[lot.program_id].bank()
        expiry = expiry_from_json(overrides[lot.entry_id]) if lot.entry_id in overrides else policy.expiry
        left = lot.remaining - paid
        changed.append(replace(lot, status="ACTIVE" if left > 0 else "EXHAUSTED", remaining=left,
                               activates_at=start, expires_at=expiry.expires_at(start, policy.timezone)))
        if paid:
            payoffs.append(bank.allocation_row(tenant_id, lot.entry_id, lot.id, paid, now))
        group = (lot.event_id or lot.id, *key)
        moved[group] = moved.get(group, ZERO) + lot.remaining
    tx.events.set_lots(changed, now)
    tx.insert_allocations(payoffs)
    tx.write_accounts(tenant_id, [accounts[k] for k in sorted({(lot.program_id, lot.participant_id)
                                                              for lot in lots})], now)
    notes = []
    for (source, program_id, participant_id), points in sorted(moved.items()):
        notes.append(facts.notification(
            tenant_id, "points.activated", f"points.activated:{source}:{program_id}:{participant_id}", now, {
                "event_id": source, "program_id": program_id, "participant_id": participant_id,
                "points": decimal_str(points), "early": early,
                "available": decimal_str(accounts[(program_id, participant_id)].available)}))
    tx.announce(notifications=notes)
    return sum(moved.values(), ZERO)


# -- the worker's side of pending points ---------------------------------------------------
@dataclass(frozen=True)
class EarnedEvent:
    """What the worker's pending-points steps need of one event of a batch."""

    event_id: str
    idempotency_key: str
    event_type: str
    data: Mapping[str, Json]
    program_ids: tuple[str, ...]


@dataclass(frozen=True)
class Activation:
    """An activating event naming an earlier event (``kind``: event_id or idempotency_key)."""

    event_id: str
    program_id: str
    kind: str
    value: str

    @property
    def reference(self) -> str:
        return f"{self.kind}:{self.value}"


@dataclass
class ActivationPlan:
    """What a worker batch does about ON_EVENT pending points, read before its transaction:
    which of its events an activating event already named (their points start active), the
    activations its events make, and the accounts those touch (locked with the batch's)."""

    named: set[tuple[str, str]] = field(default_factory=set)
    activations: list[Activation] = field(default_factory=list)
    accounts: set[tuple[str, str]] = field(default_factory=set)

    def starts_active(self, program_id: str, event_id: str) -> bool:
        return (program_id, event_id) in self.named


def plan_activations(store: RulesStore, tenant_id: str, events: Sequence[EarnedEvent],
                     pending: Mapping[str, PendingPolicy]) -> ActivationPlan:
    """The batch's :class:`ActivationPlan`; ``pending``: each program's pending policy (no
    query at all when no program of the batch waits for events)."""
    plan = ActivationPlan()
    waiting = {p for p, policy in pending.items() if policy.type == "ON_EVENT"}
    if not waiting:
        return plan
    refs: list[tuple[str, str]] = []
    for e in events:
        for p in e.program_ids:
            if p not in waiting:
                continue
            refs += [(p, f"event_id:{e.event_id}"), (p, f"idempotency_key:{e.idempotency_key}")]
            named = original_reference(e.data) if pending[p].activates_on(e.event_type) else None
            if named is not None:
                plan.activations.append(Activation(e.event_id, p, *named))
    with store.ledger_transaction() as tx:
        early = tx.events.early(tenant_id, refs)
        plan.named = {(p, e.event_id) for e in events for p in e.program_ids
                      if (p, f"event_id:{e.event_id}") in early or (p, f"idempotency_key:{e.idempotency_key}") in early}
        targets = _targets(tx, tenant_id, plan.activations)
        found = tx.events.lot_accounts(tenant_id, sorted(set(targets.values())))
    plan.accounts = {key for keys in found.values() for key in keys}
    return plan


def _targets(tx: LedgerTransaction, tenant_id: str, activations: Sequence[Activation]) -> dict[Activation, str]:
    """The event each activation names, when known (an idempotency key only once its event
    earned pending points)."""
    out = {a: a.value for a in activations if a.kind == "event_id"}
    by_program: dict[str, list[Activation]] = {}
    for a in activations:
        if a.kind == "idempotency_key":
            by_program.setdefault(a.program_id, []).append(a)
    for program_id, named in sorted(by_program.items()):
        ids = tx.events.events_by_key(tenant_id, program_id, [a.value for a in named])
        out.update({a: ids[a.value] for a in named if a.value in ids})
    return out


def apply_activations(tx: LedgerTransaction, tenant_id: str, plan: ActivationPlan,
                      accounts: dict[tuple[str, str], Account], now: dt.datetime) -> None:
    """In the batch's transaction, after its lots are stored: activate what the batch's
    activating events name, or remember the names whose event has not earned yet."""
    targets = _targets(tx, tenant_id, plan.activations)
    for activation in plan.activations:
        target = targets.get(activation)
        lots = [lot for lot in tx.events.lots(tenant_id, target) if lot.program_id == activation.program_id] \
            if target is not None else []
        if not lots:
            tx.events.record_early(tenant_id, activation.program_id, activation.reference, activation.event_id, now)
            continue
        for lot in lots:
            key = (lot.program_id, lot.participant_id)
            if key not in accounts:  # its event earned after this batch was planned: rare
                accounts[key] = tx.lock_account(tenant_id, *key)
        activate_lots(tx, tenant_id, accounts, [lot for lot in lots if lot.status == "PENDING"], now, early=True)
