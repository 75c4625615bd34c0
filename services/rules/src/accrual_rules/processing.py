"""The rules worker: turn accepted events into ledger entries, exactly once in effect.

Per message (a batch of event ids): claim the events from ingest, check program and event-type
policy, resolve participants and recipients through identity (one call per batch), evaluate,
and write ledger entries, balances, the stored evaluation and the outbox rows that announce
them (the outcomes for ingest, the facts for notify) in one transaction. Ledger sources and
the stored evaluation are unique, so a redelivered message awards nothing again: it puts the
stored outcome in the outbox once more, because ingest's stale-event sweeper sends an event
again exactly when its outcome never arrived.

CDP events (no program, a ``cdp_source``) and tenant events (no program, seed 002) are resolved
without a program; the rules of every program the participant is actively enrolled in apply,
each program with its own ledger. A tenant event naming nobody completes without points.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import dramatiq
import dramatiq.errors
import grpc
import sqlalchemy as sa
import sqlalchemy.exc
import structlog
from accrual.identity.v1 import identity_pb2
from accrual.ingest.v1 import ingest_pb2
from accrual.messages.v1 import messages_pb2
from accrual_platform import errors, queue, structs
from accrual_platform.db import decimal_str, utcnow
from accrual_platform.facts import notification
from accrual_platform.grpc_server import internal_metadata

from accrual_rules import bank, budget, ledger
from accrual_rules.domain import Json
from accrual_rules.domain.evaluation import (
    Answer,
    Breach,
    CapUsage,
    EventFacts,
    ProgramPolicy,
    RuleSpec,
    check_event_type,
    checks_event_types,
    evaluate,
)
from accrual_rules.event_points import ActivationPlan, EarnedEvent, apply_activations, plan_activations
from accrual_rules.sandbox import CRASHED, Job, Sandbox
from accrual_rules.store import BatchRead, Catalog, LedgerTransaction, ProgramRecord, RulesStore

log = structlog.get_logger("accrual.rules.worker")
ZERO = decimal.Decimal(0)

_POLICY = {"CREATE": identity_pb2.UNKNOWN_PARTICIPANT_POLICY_CREATE,
           "REJECT": identity_pb2.UNKNOWN_PARTICIPANT_POLICY_REJECT}


@dataclass
class Pending:
    event: ingest_pb2.Event
    programs: list[ProgramRecord] = field(default_factory=list)
    actor: identity_pb2.ResolveResult | None = None
    recipient: identity_pb2.ResolveResult | None = None
    facts: EventFacts | None = None
    #: the programs whose rules apply (a CDP event's refused event types left out)
    applicable: list[ProgramRecord] = field(default_factory=list)

    @property
    def programless(self) -> bool:
        """A CDP event or a tenant event: no program of its own."""
        return not self.event.program_id

    @property
    def anonymous(self) -> bool:
        """A tenant event naming no participant: nothing to evaluate."""
        e = self.event
        return self.programless and not any(e.HasField(f) for f in ("cdp_source", "external_id", "participant_id"))


class EventClaims(Protocol):
    """The part of IngestService the worker calls."""

    def ClaimEvents(self, request: ingest_pb2.ClaimEventsRequest, *, metadata: Sequence[tuple[str, str]],
                    timeout: float) -> ingest_pb2.ClaimEventsResponse: ...


class Resolver(Protocol):
    """The part of IdentityService the worker calls."""

    def ResolveParticipants(self, request: identity_pb2.ResolveParticipantsRequest, *,
                            metadata: Sequence[tuple[str, str]],
                            timeout: float) -> identity_pb2.ResolveParticipantsResponse: ...


class Processor:
    def __init__(self, store: RulesStore, ingest: EventClaims, identity: Resolver,
                 internal_token: str, sandbox: Sandbox,
                 on_commit: Callable[[], None] = lambda: None) -> None:
        """``ingest`` and ``identity`` are stubs of IngestService and IdentityService;
        ``sandbox`` runs the rules' expressions; ``on_commit`` wakes the outbox relay (every
        outcome and fact the worker announces goes through it)."""
        self.store = store
        self._ingest = ingest
        self._identity = identity
        self._token = internal_token
        self.sandbox = sandbox
        self._on_commit = on_commit

    # -- entry point ----------------------------------------------------------------------
    def process(self, tenant_id: str, event_ids: Sequence[str]) -> None:
        """Evaluate a batch. A transient failure (database, broker, a peer unavailable) is
        raised, so the message is retried. Any other failure is the batch's own: it is split
        in halves until the event that fails is alone, and that event is FAILED with the
        error, so one event the code cannot handle never holds back the others."""
        if len(event_ids) == 1:
            # every line about a lone event (its failure, its rules' breaches) names it
            with structlog.contextvars.bound_contextvars(event_id=event_ids[0]):
                self._process_isolating(tenant_id, event_ids)
        else:
            self._process_isolating(tenant_id, event_ids)

    def _process_isolating(self, tenant_id: str, event_ids: Sequence[str]) -> None:
        try:
            self._process_replaying(tenant_id, event_ids)
        except Exception as exc:
            if transient(exc):
                raise
            if len(event_ids) > 1:
                log.warning("batch_failed_isolating", events=len(event_ids), error=_describe(exc))
                middle = len(event_ids) // 2
                self.process(tenant_id, event_ids[:middle])
                self.process(tenant_id, event_ids[middle:])
                return
            log.exception("event_processing_failed", event_id=event_ids[0], error=_describe(exc))
            # the partner sees what kind of failure, not its text (SQL, internals): that is logged
            outcome = _failed(tenant_id, event_ids[0], "processing_error",
                              f"the event could not be evaluated ({type(exc).__name__}); "
                              "the error is logged with the event's id")
            self._announce([outcome], messages_pb2.Notifications())

    def _process_replaying(self, tenant_id: str, event_ids: Sequence[str]) -> None:
        for attempt in range(3):
            try:
                self._process(tenant_id, event_ids)
                return
            except _Raced as raced:
                log.info("evaluation_race_replayed", events=len(raced.args[0]), attempt=attempt)
        self._process(tenant_id, event_ids)

    def _process(self, tenant_id: str, event_ids: Sequence[str]) -> None:
        md = internal_metadata(self._token, tenant_id)
        claimed = self._ingest.ClaimEvents(
            ingest_pb2.ClaimEventsRequest(tenant_id=tenant_id, event_ids=list(event_ids)),
            metadata=md, timeout=30).events
        if not claimed:
            return
        outcomes: list[messages_pb2.EventOutcome] = []
        notes = messages_pb2.Notifications()
        catalog = Catalog()
        with self.store.reading() as read:  # one read transaction: earlier results and the programs
            stored = self._stored(read, [e.event_id for e in claimed])
            todo = [Pending(event) for event in claimed if event.event_id not in stored]
            read.load_catalog(tenant_id, {t.event.program_id for t in todo if not t.programless}, catalog)
        for event in claimed:
            if event.event_id in stored:
                self._replay(stored[event.event_id], outcomes, notes)
        if todo:
            self._evaluate_batch(tenant_id, todo, md, outcomes, notes, catalog)
        if outcomes or notes.notifications:  # what the batch's write transaction did not carry
            self._announce(outcomes, notes)

    def _announce(self, outcomes: list[messages_pb2.EventOutcome], notes: messages_pb2.Notifications) -> None:
        """Outcomes and facts no ledger write goes with, through the outbox in a transaction of their own."""
        with self.store.ledger_transaction() as tx:
            tx.announce(outcomes, notes.notifications)
        self._on_commit()

    # -- steps --------------------------------------------------------------------------
    @staticmethod
    def _stored(read: BatchRead, ids: Sequence[str]) -> dict[str, dict[str, Json]]:
        return read.stored_outcomes(ids)

    @staticmethod
    def _replay(stored: dict[str, Json], outcomes: list[messages_pb2.EventOutcome],
                notes: messages_pb2.Notifications) -> None:
        outcomes.append(queue.decode(stored["outcome"], messages_pb2.EventOutcome))
        for n in stored.get("notifications", []):
            notes.notifications.append(queue.decode(n, messages_pb2.Notification))

    def _load(self, tenant_id: str, program_ids: set[str], catalog: Catalog) -> None:
        """The programs of ``program_ids`` not in ``catalog`` yet, in a transaction of their own."""
        missing = program_ids - catalog.programs.keys()
        if missing:
            with self.store.reading() as read:
                read.load_catalog(tenant_id, missing, catalog)

    def _type_failure(self, catalog: Catalog, program: ProgramRecord,
                      event: ingest_pb2.Event) -> tuple[str, str] | None:
        if not checks_event_types(program.event_type_policy):
            return None  # nothing to check: the event's data is not converted for nothing
        return check_event_type(program.event_type_policy, catalog.event_types.get(program.id, {}),
                                event.event_type, structs.text_or_struct(event.event_data_json, event.event_data))

    def _evaluate_batch(self, tenant_id: str, todo: list[Pending], md: list[tuple[str, str]],
                        outcomes: list[messages_pb2.EventOutcome],
                        notes: messages_pb2.Notifications, catalog: Catalog) -> None:
        """``catalog`` holds the programs of todo's loyalty events already."""
        ready: list[Pending] = []
        for item in todo:
            if item.anonymous:
                outcomes.append(_completed(tenant_id, item.event.event_id))
                continue
            if item.programless:
                ready.append(item)
                continue
            program = catalog.programs.get(item.event.program_id)
            if program is None:
                outcomes.append(_failed(tenant_id, item.event.event_id, "program_not_found",
                                        f"program {item.event.program_id} does not exist"))
                continue
            refused = self._type_failure(catalog, program, item.event)
            if refused:  # refused before resolution: no participant is created for it
                outcomes.append(_failed(tenant_id, item.event.event_id, *refused))
                continue
            item.programs = [program]
            ready.append(item)
        if not ready:
            return
        self._resolve(tenant_id, ready, md)
        cdp = [i for i in ready if i.programless and i.actor is not None and not i.actor.error_code]
        self._load(tenant_id, {p for i in cdp if i.actor is not None for p in i.actor.active_program_ids}, catalog)
        for item in cdp:
            assert item.actor is not None
            item.programs = sorted((catalog.programs[p] for p in set(item.actor.active_program_ids)
                                    if p in catalog.programs), key=lambda row: row.id)
        runnable: list[Pending] = []
        for item in ready:
            assert item.actor is not None
            failure = item.actor.error_code or (item.recipient.error_code if item.recipient else "")
            if failure:
                who = item.actor if item.actor.error_code else item.recipient
                assert who is not None
                outcomes.append(_failed(tenant_id, item.event.event_id, failure, who.error_message,
                                        participant_id=item.actor.participant_id))
                continue
            runnable.append(item)
        # The expressions run before the write transaction, so no lock is held while a hostile
        # rule uses its budget; _award asks again for the few events whose balance changed.
        answered, breached = self._ask_sandbox(tenant_id, runnable, catalog)
        plan = plan_activations(self.store, tenant_id, [
            EarnedEvent(i.event.event_id, i.event.idempotency_key, i.event.event_type, i.facts.properties,
                        tuple(p.id for p in i.applicable)) for i in runnable if i.facts is not None],
            catalog.pending)
        with self.store.ledger_transaction() as tx:
            # Every lock up front and in one order (budget rules by id, then balances by program
            # and participant), so two workers on overlapping batches never deadlock.
            tx.lock_budget_rules(tenant_id, [r for i in ready for p in i.programs for r in catalog.rules[p.id]])
            accounts = tx.lock_accounts(tenant_id, {
                (p.id, _beneficiary(i)) for i in ready if _beneficiary(i) for p in i.programs} | plan.accounts)
            writes = _Writes(accounts, answers=answered, breaches=breached, plan=plan)
            now = utcnow()
            for item in runnable:
                self._apply(tx, tenant_id, item, catalog, outcomes, notes, writes, now)
            budget.record_breaches(tx, tenant_id, writes.breaches, self.sandbox.suspend_after, now)
            # The evaluations, stored with their final outcome, are the claim: the unique
            # event id lets one transaction award an event. A concurrent delivery of the same
            # event waited for our account locks above, so losing here is rare; the whole
            # batch then rolls back and process() runs again, replaying the winner's result.
            claimed = tx.claim(tenant_id, writes.evaluations, now)
            if len(claimed) < len(writes.evaluations):
                raise _Raced(sorted({event_id for event_id, _ in writes.evaluations} - claimed))
            writes.flush(tx, tenant_id, now)
            apply_activations(tx, tenant_id, plan, writes.accounts, now)
            # Announced with the writes: ingest and notify hear of exactly what was committed.
            tx.announce(outcomes, notes.notifications)
        outcomes.clear()
        del notes.notifications[:]
        self._on_commit()

    def _programs_of(self, catalog: Catalog, item: Pending) -> list[ProgramRecord]:
        """The programs whose rules apply to the event (a CDP event's refused types left out)."""
        if not item.programless:
            return item.programs
        kept = []
        for program_row in item.programs:
            refused = self._type_failure(catalog, program_row, item.event)
            if refused:
                log.info("cdp_event_skipped_by_program", event_id=item.event.event_id,
                         program_id=program_row.id, reason=refused[0])
                continue
            kept.append(program_row)
        return kept

    def _ask_sandbox(self, tenant_id: str, items: list[Pending], catalog: Catalog
                     ) -> tuple[dict[tuple[str, str], tuple[decimal.Decimal, list[Answer] | None]],
                                dict[str, list[str]]]:
        """Every runnable event's rules, of every program, in one call to the sandbox (in
        chunks), with the balances as they are now: by (event id, program id) the lifetime
        points asked with and the answers, and the breaches per rule id."""
        answered: dict[tuple[str, str], tuple[decimal.Decimal, list[Answer] | None]] = {}
        keys: list[tuple[str, str, str]] = []
        facts: dict[str, EventFacts] = {}
        for item in items:
            item.facts = facts[item.event.event_id] = _facts(item)
            item.applicable = self._programs_of(catalog, item)
            keys.extend((item.event.event_id, p.id, _beneficiary(item)) for p in item.applicable)
        if not keys:
            return answered, {}
        balances = self.store.accounts(tenant_id, {(p, who) for _, p, who in keys})
        jobs = [Job(catalog.policies[p], catalog.rules[p], facts[event_id],
                    balances[(p, who)].lifetime_earned) for event_id, p, who in keys]
        asked = self.sandbox.answers(jobs)
        for (event_id, p, _), job, answers in zip(keys, jobs, asked.answers, strict=True):
            answered[(event_id, p)] = (job.lifetime_points, answers)
        return answered, {k: list(v) for k, v in asked.breaches.items()}

    def _resolve(self, tenant_id: str, items: list[Pending], md: list[tuple[str, str]]) -> None:
        req = identity_pb2.ResolveParticipantsRequest(tenant_id=tenant_id)
        slots: list[tuple[Pending, str]] = []
        for item in items:
            e = item.event
            policy = _POLICY["CREATE"] if item.programless else \
                _POLICY.get(item.programs[0].on_unknown_participant, _POLICY["CREATE"])
            actor = req.items.add(program_id=e.program_id, on_unknown_participant=policy)
            if e.HasField("cdp_source"):
                for ident in e.cdp_identities:
                    actor.identities.add(type=identity_pb2.IdentityType.Value(f"IDENTITY_TYPE_{ident.type}"),
                                         value=ident.value)
            elif e.HasField("participant_id"):
                actor.participant_id = e.participant_id
            else:
                actor.identities.add(type=identity_pb2.IDENTITY_TYPE_EXTERNAL, value=e.external_id)
            slots.append((item, "actor"))
            if e.HasField("recipient_id") or e.HasField("recipient_external_id"):
                rec = req.items.add(program_id=e.program_id, on_unknown_participant=policy)
                if e.HasField("recipient_id"):
                    rec.participant_id = e.recipient_id
                else:
                    rec.identities.add(type=identity_pb2.IDENTITY_TYPE_EXTERNAL,
                                       value=e.recipient_external_id)
                slots.append((item, "recipient"))
        results = self._identity.ResolveParticipants(req, metadata=md, timeout=30).results
        for (item, role), result in zip(slots, results, strict=True):
            setattr(item, role, result)

    def _apply(self, tx: LedgerTransaction, tenant_id: str, item: Pending, catalog: Catalog,
               outcomes: list[messages_pb2.EventOutcome],
               notes: messages_pb2.Notifications, writes: _Writes, now: dt.datetime) -> None:
        """Evaluate one claimed event; its writes are queued in ``writes`` (same transaction)."""
        e = item.event
        assert item.actor is not None and item.facts is not None
        beneficiary = _beneficiary(item)
        facts = item.facts
        occurred = facts.timestamp
        if any(writes.answers.get((e.event_id, p.id), (None, []))[1] is None for p in item.applicable):
            # The evaluator died twice on this event: it is failed, not retried for ever.
            outcomes.append(_failed(tenant_id, e.event_id, CRASHED,
                                    "a rule's expressions crashed the expression engine twice on this "
                                    "event; the rule is suspended if it does so again",
                                    participant_id=item.actor.participant_id))
            return
        writes.keys[e.event_id] = e.idempotency_key
        outcome = messages_pb2.EventOutcome(
            tenant_id=tenant_id, event_id=e.event_id,
            status=messages_pb2.OUTCOME_STATUS_COMPLETED,
            participant_id=item.actor.participant_id,
            recipient_id=item.recipient.participant_id if item.recipient else "")
        structs.set_timestamp(outcome.processed_at, now)
        event_notes: list[messages_pb2.Notification] = []
        total = ZERO
        for program_row in item.applicable:
            total += self._award(tx, tenant_id, catalog, program_row.id, facts, beneficiary, occurred, now,
                                 outcome, event_notes, writes)
        outcome.points_awarded = decimal_str(total)
        writes.evaluations.append((e.event_id, {
            "outcome": queue.encode(outcome), "notifications": [queue.encode(n) for n in event_notes]}))
        outcomes.append(outcome)
        notes.notifications.extend(event_notes)

    def _answers(self, writes: _Writes, program: ProgramPolicy, rules: list[RuleSpec],
                 facts: EventFacts, lifetime: decimal.Decimal) -> list[Answer]:
        """The batch's answers for the event, or new ones when an earlier event of the batch
        changed the participant's lifetime points (expressions may read them, and the tier)."""
        asked_with, answers = writes.answers[(facts.event_id, program.program_id)]
        if asked_with == lifetime and answers is not None:
            return answers
        # Rules already over budget on this event are not run again.
        breached = {i: a for i, a in enumerate(answers or []) if type(a) is Breach}
        again = self.sandbox.answers([Job(program, rules, facts, lifetime)],
                                     earlier={k: len(v) for k, v in writes.breaches.items()}, known=[breached])
        writes.add_breaches(again.breaches)
        if again.answers[0] is None:
            raise _EventCrashed(facts.event_id)
        return again.answers[0]

    def _award(self, tx: LedgerTransaction, tenant_id: str, catalog: Catalog, program_id: str,
               facts: EventFacts, beneficiary: str, occurred: dt.datetime, now: dt.datetime,
               outcome: messages_pb2.EventOutcome, event_notes: list[messages_pb2.Notification],
               writes: _Writes) -> decimal.Decimal:
        """Evaluate one program's rules for the event and queue what they award: ledger
        entries and their lots (each expiring per its rule's policy, or the program's)."""
        program, rules, policy = catalog.policies[program_id], catalog.rules[program_id], catalog.banks[program_id]
        pending = catalog.pending[program_id]
        waiting, activates_at = ZERO, None
        account = writes.accounts.get((program.program_id, beneficiary))
        if account is None:
            account = tx.lock_account(tenant_id, program.program_id, beneficiary)
            writes.accounts[(program.program_id, beneficiary)] = account
        usage: dict[str, CapUsage] = {}
        if any(r.caps.counted() for r in rules):
            writes.flush_entries(tx)  # caps count this batch's earlier awards too
            usage = tx.cap_usage(tenant_id, rules, beneficiary, occurred)
        evaluations = evaluate(program, rules, facts, account.lifetime_earned, usage,
                               self._answers(writes, program, rules, facts, account.lifetime_earned))
        total = ZERO
        for ev in evaluations:
            outcome.rule_evaluations.add(
                rule_id=ev.rule_id, rule_version=ev.version, rule_name=ev.name,
                matched=ev.matched, skip_reason=ev.skip_reason, message=ev.message,
                points=decimal_str(ev.points), recipient_id=beneficiary if ev.matched else "",
                program_id=program.program_id)
            if not ev.matched or ev.points == 0:
                continue
            source = f"event:{facts.event_id}:rule:{ev.rule_id}"
            # The evaluation claim made this transaction the only one to award this event, so
            # its sources are new; the insert still skips a duplicate source, never doubling.
            entry = ledger.entry_row(tenant_id=tenant_id, program_id=program.program_id,
                                     participant_id=beneficiary, amount=ev.points, kind="EARN", source=source,
                                     reason=f"rule {ev.name} v{ev.version}", occurred_at=occurred, now=now,
                                     event_id=facts.event_id, rule_id=ev.rule_id, rule_version=ev.version)
            writes.entries.append(entry)
            entry_id = entry["id"]
            expiry = catalog.rule_expiry.get(ev.rule_id, policy.expiry)
            terms = pending.lot_terms(occurred, now, functools.partial(expiry.expires_at, timezone=policy.timezone),
                                      named=writes.plan.starts_active(program_id, facts.event_id))
            writes.credits.append(bank.credit(account, tenant_id, entry_id, ev.points, earned_at=occurred, now=now,
                                              event_id=facts.event_id, status=terms.status,
                                              activates_at=terms.activates_at, expires_at=terms.expires_at))
            if terms.status == "PENDING":
                waiting += ev.points
                activates_at = terms.activates_at
            total += ev.points
            event_notes.append(notification(tenant_id, "points.awarded", f"points.awarded:{source}", now, {
                "transaction_id": entry_id, "program_id": program.program_id,
                "participant_id": beneficiary, "points": decimal_str(ev.points),
                "event_id": facts.event_id, "rule_id": ev.rule_id, "rule_version": ev.version}))
        if waiting:
            event_notes.append(notification(
                tenant_id, "points.pending", f"points.pending:{facts.event_id}:{program_id}:{beneficiary}", now, {
                    "event_id": facts.event_id, "program_id": program_id, "participant_id": beneficiary,
                    "points": decimal_str(waiting), "pending": decimal_str(account.pending),
                    "activates_at": activates_at.isoformat() if activates_at else None}))
            if pending.type == "ON_EVENT":
                writes.pending_keys.append((tenant_id, program_id, writes.keys[facts.event_id], facts.event_id))
        if policy.expiry.extends_on(facts.event_type):
            writes.slide(account, policy.expiry.expires_at(occurred, policy.timezone))
        if total:
            # the credits above raised available (paying off debt first); lifetime and tier here
            old_tier, new_tier = ledger.apply_delta(program, account, ZERO, total)
            writes.dirty[(account.program_id, account.participant_id)] = account
            if new_tier != old_tier:
                event_notes.append(ledger.tier_changed(
                    tenant_id, f"tier.changed:{facts.event_id}:{program.program_id}:{beneficiary}", now,
                    account, old_tier, new_tier, {"event_id": facts.event_id}))
        return total


@dataclass
class _Writes:
    """What one batch transaction writes, queued so that it takes a few statements for the
    whole batch (locks once per account, one ledger insert, one balance and one evaluation
    update) instead of several round trips per event while every lock is held. The
    evaluations are written by the claim itself (LedgerTransaction.claim)."""

    accounts: dict[tuple[str, str], ledger.Account]
    entries: list[dict[str, Json]] = field(default_factory=list)
    #: the lots of the entries (and the debt they paid off), written with them
    credits: list[bank.Credit] = field(default_factory=list)
    #: SLIDING expiry: (program, participant) -> the latest new expiry of their active lots
    slides: dict[tuple[str, str], dt.datetime] = field(default_factory=dict)
    dirty: dict[tuple[str, str], ledger.Account] = field(default_factory=dict)
    #: (event id, the stored evaluation: its outcome and facts, encoded)
    evaluations: list[tuple[str, dict[str, Json]]] = field(default_factory=list)
    #: (event id, program id) -> (lifetime points asked with, the sandbox's answers or None)
    answers: dict[tuple[str, str], tuple[decimal.Decimal, list[Answer] | None]] = field(default_factory=dict)
    #: rule id -> the reasons of its breaches in this batch
    breaches: dict[str, list[str]] = field(default_factory=dict)
    #: ON_EVENT pending points: what the batch's activating events do
    plan: ActivationPlan = field(default_factory=ActivationPlan)
    #: event id -> idempotency key, and (tenant, program, key, event) of events whose points
    #: wait for an activating event (which may name them by key)
    keys: dict[str, str] = field(default_factory=dict)
    pending_keys: list[tuple[str, str, str, str]] = field(default_factory=list)

    def add_breaches(self, found: dict[str, list[str]]) -> None:
        for rule_id, reasons in found.items():
            self.breaches.setdefault(rule_id, []).extend(reasons)

    def flush_entries(self, tx: LedgerTransaction, *, last: bool = False) -> None:
        tx.insert_entries(self.entries, last=last)
        self.entries = []

    def slide(self, account: ledger.Account, until: dt.datetime | None) -> None:
        key = (account.program_id, account.participant_id)
        if until is not None and (key not in self.slides or self.slides[key] < until):
            self.slides[key] = until

    def flush(self, tx: LedgerTransaction, tenant_id: str, now: dt.datetime) -> None:
        # Stored lots slide in the database; this batch's own lots, before they go in.
        tx.slide_lots(tenant_id, self.slides, now)
        for credit in self.credits:
            until = self.slides.get((credit.lot["program_id"], credit.lot["participant_id"]))
            if until is not None and credit.lot["expires_at"] is not None and credit.lot["expires_at"] < until:
                credit.lot["expires_at"] = until
        self.flush_entries(tx, last=True)
        tx.store_credits(self.credits)
        tx.events.remember_keys(self.pending_keys)
        tx.write_accounts(tenant_id, self.dirty.values(), now)


class _EventCrashed(Exception):
    """The evaluator died twice on an event asked about again (rare: see Processor._answers)."""


class _Raced(Exception):
    """A concurrent delivery stored some of this batch's evaluations first."""


#: gRPC codes that say "this request cannot work", whenever it is sent; any other code (a
#: peer unavailable, timing out, failing inside) may clear up, so the message is retried.
_REFUSED_CODES = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                            grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.OUT_OF_RANGE,
                            grpc.StatusCode.ALREADY_EXISTS})


def transient(exc: BaseException) -> bool:
    """Whether a retry of the same work may succeed. Everything that went to another process
    counts, except what the database or a peer refused as such (a value out of range, an
    invalid argument); so does our own Unavailable (what Database.transaction raises when the
    database is down). Only the rest, an error in this process's own handling of the events'
    data, is isolated and fails the one event: an outage must never fail events."""
    if isinstance(exc, errors.AppError):
        return exc.grpc_code not in _REFUSED_CODES
    if isinstance(exc, grpc.RpcError):
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        return code not in _REFUSED_CODES
    if isinstance(exc, sa.exc.DBAPIError):
        return not isinstance(exc, (sa.exc.DataError, sa.exc.IntegrityError, sa.exc.ProgrammingError))
    return isinstance(exc, (sa.exc.TimeoutError, sa.exc.DisconnectionError, sa.exc.PendingRollbackError,
                            dramatiq.errors.BrokerError, OSError, TimeoutError))


def _describe(exc: BaseException) -> str:
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first[:300]}" if first else type(exc).__name__


def _facts(item: Pending) -> EventFacts:
    e = item.event
    assert item.actor is not None
    return EventFacts(
        event_id=e.event_id, event_type=e.event_type, timestamp=structs.timestamp_datetime(e.event_timestamp),
        properties=structs.text_or_struct(e.event_data_json, e.event_data),
        participant={"id": item.actor.participant_id,
                     "attributes": structs.to_dict(item.actor.attributes)})


def _beneficiary(item: Pending) -> str:
    """Who receives the points: the recipient when the event names one; "" if unresolved."""
    for result in (item.recipient, item.actor):
        if result is not None:
            return "" if result.error_code else result.participant_id
    return ""


def _completed(tenant_id: str, event_id: str) -> messages_pb2.EventOutcome:
    outcome = messages_pb2.EventOutcome(tenant_id=tenant_id, event_id=event_id,
                                        status=messages_pb2.OUTCOME_STATUS_COMPLETED, points_awarded="0")
    structs.set_timestamp(outcome.processed_at, utcnow())
    return outcome


def _failed(tenant_id: str, event_id: str, code: str, message: str,
            participant_id: str = "") -> messages_pb2.EventOutcome:
    outcome = messages_pb2.EventOutcome(
        tenant_id=tenant_id, event_id=event_id, status=messages_pb2.OUTCOME_STATUS_FAILED,
        error_code=code, error_message=message, participant_id=participant_id)
    structs.set_timestamp(outcome.processed_at, utcnow())
    return outcome
