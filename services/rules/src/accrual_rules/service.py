"""Programs, event types, rules and their versions, simulation, balances, ledger history and
direct adjustments (the synchronous API's use cases). Field checks are in
:mod:`accrual_rules.domain.validation`, statements in :mod:`accrual_rules.store`."""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from accrual_platform import errors, facts, pages
from accrual_platform.db import decimal_str, utcnow
from accrual_platform.ids import new_id, require_uuid

from accrual_rules import ledger, sandbox
from accrual_rules.bank import LotRecord
from accrual_rules.domain import Json, validation
from accrual_rules.domain.bank import Debit, InsufficientPoints, allocate, check_policy, local_date
from accrual_rules.domain.evaluation import (
    Evaluation,
    EventFacts,
    ProgramPolicy,
    RuleSpec,
    check_event_type,
    context_for,
    evaluate,
)
from accrual_rules.domain.expressions import LimitExceeded, Position, branches, check_limits, normalised
from accrual_rules.domain.triggers import normalise_triggers
from accrual_rules.domain.validation import (
    SAMPLE_TIME,
    ProgramChanges,
    RuleChanges,
    RuleFields,
    check_adjustment,
    check_points_terms,
    check_program,
    check_rule_fields,
    expression_error,
    position_metadata,
    sample_properties,
    wrong_type,
)
from accrual_rules.sandbox import Job
from accrual_rules.store import EntryRecord, EventTypeRecord, ProgramRecord, RuleRecord, RulesStore

_DIED = {
    sandbox.TIMEOUT: "runs past the {deadline:g} ms CPU deadline on a sample event",
    sandbox.EXHAUSTED: "asks for more than the {memory} MB memory limit on a sample event",
    sandbox.CRASHED: "crashes the expression engine on a sample event",
}


def check_expressions(fields: Mapping[str, str], declared: Sequence[Mapping[str, Json]] | None,
                      evaluator: sandbox.Sandbox) -> None:
    """Check a rule's condition and formula before anything runs them for real.

    First the static limits (length, nesting, literal ranges), in this process: they need no
    engine. Then, in the sandbox: the source must compile, a formula must give a number and a
    condition a boolean on sample events (errors that depend on real data are not refused),
    and neither the whole source nor any branch of its ``?:`` (which a sample may not take)
    may go over the sandbox's budget or crash it."""
    v: list[errors.FieldViolation] = []
    limits: dict[str, str] = {}
    sources = {f: fields[f] for f in ("condition", "formula") if str(fields[f]).strip()}
    for field, source in sources.items():
        try:
            check_limits(source)
        except LimitExceeded as exc:
            v.append(errors.FieldViolation(field, exc.message))
            limits[field] = exc.limit
    if v:
        raise errors.InvalidArgument(f"{v[0].field}: {v[0].description}", reason="expression_limit",
                                     violations=v, metadata={"limit": ",".join(limits.values())})
    sample_program = ProgramPolicy(program_id="sample", name="sample")
    tasks: list[tuple[str, list[dict[str, Json]]]] = []
    index: list[tuple[str, bool]] = []
    for field, source in sources.items():
        contexts = [context_for(sample_program, EventFacts(
            "sample", fields.get("event_type") or "sample", SAMPLE_TIME, props),
            None, decimal.Decimal(0)) for props in sample_properties(source, declared)]
        tasks.append((source, contexts))
        index.append((field, True))
        for branch in branches(source):
            tasks.append((branch, contexts))
            index.append((field, False))
    reason = "invalid_expression"
    done: set[str] = set()
    for (field, whole), result in zip(index, evaluator.check(tasks), strict=True):
        if field in done:
            continue
        if result[0] == "died":
            reason = result[1]
            v.append(errors.FieldViolation(field, _DIED[result[1]].format(
                deadline=evaluator.deadline_ms, memory=evaluator.memory_mb)))
            done.add(field)
            continue
        if result[0] == "compile":
            if whole:
                v.append(expression_error(field, result[1], Position(*result[2]) if result[2] else None))
                done.add(field)
            continue
        if whole:
            problem = wrong_type(field, result)
            if problem:
                v.append(errors.FieldViolation(field, problem))
                done.add(field)
    if v:
        raise errors.InvalidArgument(f"{v[0].field}: {v[0].description}", reason=reason, violations=v,
                                     metadata=position_metadata(v))


def validate_rule(fields: RuleFields, declared: Sequence[Mapping[str, Json]] | None,
                  evaluator: sandbox.Sandbox) -> RuleFields:
    """Check every field of a rule (create, update or draft); returns the clean fields."""
    clean = check_rule_fields(fields)
    check_expressions(clean.expressions(), declared, evaluator)
    return clean


def _anyone(tenant_id: str, participant_id: str) -> bool:
    return True


def _nothing_held(tenant_id: str, program_id: str, participant_id: str) -> decimal.Decimal:
    return decimal.Decimal(0)


class RulesService:
    def __init__(self, store: RulesStore, evaluator: sandbox.Sandbox, on_commit: Callable[[], None] = lambda: None,
                 participant_exists: Callable[[str, str], bool] = _anyone,
                 held: Callable[[str, str, str], decimal.Decimal] = _nothing_held) -> None:
        """``evaluator`` runs rule expressions (simulations and save-time checks);
        ``participant_exists(tenant, participant_id)`` asks identity (adjustments only go to
        participants that exist); ``on_commit`` wakes the outbox relay; ``held(tenant,
        program, participant)`` sums the participant's redemption holds."""
        self.held = held
        self.store = store
        self.sandbox = evaluator
        self._on_commit = on_commit
        self.participant_exists = participant_exists

    # -- programs -----------------------------------------------------------------------
    def create_program(self, tenant_id: str, *, name: str, on_unknown: str,
                       tiers: Sequence[dict[str, str]], rounding_mode: str,
                       rounding_precision: int, event_type_policy: str = "OPEN",
                       scheduled_triggers: Mapping[str, Json] | None = None,
                       bank: Mapping[str, Json] | None = None,
                       pending: Mapping[str, Json] | None = None, monetary_field: str = "") -> ProgramRecord:
        """``bank``: the points bank's fields (expiry, timezone, negative_balance,
        expiring_lead_days); missing ones take their defaults."""
        clean_tiers = check_program(name, rounding_mode, rounding_precision, tiers, on_unknown,
                                    event_type_policy)
        triggers = _triggers(scheduled_triggers)
        bank_policy = _bank(bank or {})
        pending_policy, money = check_points_terms(pending, monetary_field)
        now = utcnow()
        program = ProgramRecord(
            id=new_id(), tenant_id=tenant_id, name=name.strip(), on_unknown_participant=on_unknown,
            tiers=clean_tiers or [], rounding_mode=rounding_mode, rounding_precision=rounding_precision,
            created_at=now, updated_at=now, event_type_policy=event_type_policy, scheduled_triggers=triggers,
            bank_policy=bank_policy, pending_policy=pending_policy.to_json(), monetary_field=money)
        self.store.insert_program(program)
        return self.get_program(tenant_id, program.id)

    def update_program(self, tenant_id: str, program_id: str, changes: ProgramChanges) -> ProgramRecord:
        """Change the given fields; tier changes apply to the next evaluation of each
        participant (stored tiers are recomputed on their next ledger change)."""
        current = self.get_program(tenant_id, program_id)
        triggers = _triggers(changes["scheduled_triggers"]) if "scheduled_triggers" in changes else None
        name = changes.get("name", current.name)
        on_unknown = changes.get("on_unknown_participant", current.on_unknown_participant)
        rounding_mode = changes.get("rounding_mode", current.rounding_mode)
        rounding_precision = changes.get("rounding_precision", current.rounding_precision)
        event_type_policy = changes.get("event_type_policy", current.event_type_policy)
        tiers = check_program(name, rounding_mode, rounding_precision, changes.get("tiers"), on_unknown,
                              event_type_policy)
        # A policy change applies to lots created from now on: stored lots keep their dates.
        bank_policy = _bank({**current.bank().to_json(), **changes["bank"]}) if "bank" in changes \
            else current.bank_policy
        pending_policy, money = check_points_terms(
            changes.get("pending", current.pending_policy),
            changes.get("monetary_field", current.monetary_field or ""))
        updated = replace(current, name=name.strip(), on_unknown_participant=on_unknown,
                          rounding_mode=rounding_mode, rounding_precision=rounding_precision,
                          event_type_policy=event_type_policy, updated_at=utcnow(),
                          tiers=current.tiers if tiers is None else tiers,
                          scheduled_triggers=current.scheduled_triggers if triggers is None else triggers,
                          bank_policy=bank_policy, pending_policy=pending_policy.to_json(),
                          monetary_field=money)
        # A disabled trigger forgets its progress: enabled again, it starts on that day
        # instead of catching up every day it was off.
        off = None if triggers is None else [name for name, config in triggers.items() if not config["enabled"]]
        self.store.update_program(updated, tiers_changed=tiers is not None, disabled_triggers=off)
        return self.get_program(tenant_id, current.id)

    def get_program(self, tenant_id: str, program_id: str) -> ProgramRecord:
        program_id = require_uuid(program_id, "program_id")
        return errors.found(self.store.program(tenant_id, program_id), "program", program_id)

    def list_programs(self, tenant_id: str, page_size: int, page_token: str
                      ) -> tuple[list[ProgramRecord], str]:
        if not 0 <= page_size <= 200:
            raise errors.InvalidArgument.field("page_size", "must be between 1 and 200")
        size = page_size or 50
        after: str | None = PROGRAM_PAGES.decode(page_token)[0] if page_token else None
        rows = self.store.programs(tenant_id, after, size + 1)
        token = PROGRAM_PAGES.encode(rows[size - 1].id) if len(rows) > size else ""
        return rows[:size], token

    # -- event types ----------------------------------------------------------------------
    def create_event_type(self, tenant_id: str, program_id: str, name: str, description: str,
                          properties: Sequence[Mapping[str, Json]]) -> EventTypeRecord:
        program = self.get_program(tenant_id, program_id)
        clean = validation.check_event_type(name, description, properties)
        if not self.store.insert_event_type(tenant_id, program.id, name, description, clean, utcnow()):
            raise errors.AlreadyExists(f"event type {errors.excerpt(name)} is already registered on the program",
                                       reason="event_type_exists",
                                       violations=[errors.FieldViolation("name", "is already registered")])
        return self.get_event_type(tenant_id, program.id, name)

    def get_event_type(self, tenant_id: str, program_id: str, name: str) -> EventTypeRecord:
        program = self.get_program(tenant_id, program_id)
        return _event_type_found(self.store.event_type(tenant_id, program.id, name), name)

    def update_event_type(self, tenant_id: str, program_id: str, name: str, *, description: str | None,
                          properties: Sequence[Mapping[str, Json]] | None) -> EventTypeRecord:
        """Change the fields given (None keeps one); validated as on create."""
        current = self.get_event_type(tenant_id, program_id, name)
        merged_description = current.description if description is None else description
        clean = validation.check_event_type(name, merged_description,
                                            current.properties if properties is None else properties)
        return _event_type_found(self.store.update_event_type(tenant_id, current.program_id, name,
                                                              merged_description, clean), name)

    def delete_event_type(self, tenant_id: str, program_id: str, name: str) -> EventTypeRecord:
        """Delete an event type no unarchived rule refers to; rules and stored events stay as they are."""
        program = self.get_program(tenant_id, program_id)
        deleted, users = self.store.delete_event_type(tenant_id, program.id, name)
        deleted = _event_type_found(deleted, name)
        if users:
            raise errors.FailedPrecondition(
                f"event type {errors.excerpt(name)} is used by rules {', '.join(users[:10])}: "
                "archive them or change their event_type first", reason="event_type_in_use",
                metadata={"rule_ids": ",".join(users[:10])})
        return deleted

    def list_event_types(self, tenant_id: str, program_id: str) -> list[EventTypeRecord]:
        program = self.get_program(tenant_id, program_id)
        return self.store.event_types(tenant_id, program.id)

    # -- rules --------------------------------------------------------------------------
    def create_rule(self, tenant_id: str, program_id: str, fields: RuleFields) -> RuleRecord:
        program = self.get_program(tenant_id, program_id)
        clean = validate_rule(fields, self.store.declared(tenant_id, program.id, fields.event_type),
                              self.sandbox)
        rule_id = new_id()
        self.store.insert_rule(tenant_id, program.id, rule_id, clean, utcnow())
        return self.get_rule(tenant_id, program.id, rule_id)

    def rule_violations(self, tenant_id: str, program_id: str,
                        draft: Callable[[], RuleFields]) -> list[errors.FieldViolation]:
        """Every reason create_rule would refuse a draft, its fields' and its expressions'
        together; writes nothing. ``draft`` reads the request and may refuse it itself."""
        program = self.get_program(tenant_id, program_id)
        try:
            fields = draft()
        except errors.InvalidArgument as exc:
            return list(exc.violations)
        found: list[errors.FieldViolation] = []
        try:
            check_rule_fields(fields)
        except errors.InvalidArgument as exc:
            found.extend(exc.violations)
        # a refused event type is not looked up (it may hold what the database refuses)
        declared = None if any(v.field == "event_type" for v in found) else \
            self.store.declared(tenant_id, program.id, fields.event_type)
        written = replace(fields, condition=normalised(fields.condition), formula=normalised(fields.formula))
        try:
            check_expressions(written.expressions(), declared, self.sandbox)
        except errors.InvalidArgument as exc:
            found.extend(exc.violations)
        return found

    def update_rule(self, tenant_id: str, program_id: str, rule_id: str,
                    changes: RuleChanges) -> RuleRecord:
        program = self.get_program(tenant_id, program_id)
        current = self.get_rule(tenant_id, program.id, rule_id)

        def change(locked: RuleRecord, declared: Callable[[str], list[dict[str, Json]] | None]) -> RuleFields:
            if locked.fields.status == "ARCHIVED":
                raise errors.Conflict(f"rule {rule_id} is archived", reason="rule_archived")
            merged = locked.fields.changed(changes)
            return validate_rule(merged, declared(merged.event_type), self.sandbox)

        self.store.change_rule(tenant_id, current.id, utcnow(), change)
        return self.get_rule(tenant_id, program.id, rule_id)

    def reorder_rules(self, tenant_id: str, program_id: str, rule_ids: Sequence[str]) -> list[RuleRecord]:
        """Evaluate the program's rules in the order ``rule_ids`` lists them (every unarchived
        rule once), in one transaction; the rules in their new order."""
        program = self.get_program(tenant_id, program_id)
        wanted = validation.check_rule_ids(rule_ids)
        self.store.reorder_rules(tenant_id, program.id, utcnow(), lambda locked: validation.plan_reorder(
            wanted, {r.id: r.fields.order for r in locked}))
        return self.store.rules(tenant_id, program.id)

    def delete_rule(self, tenant_id: str, program_id: str, rule_id: str) -> RuleRecord:
        """Archive: a new version with status ARCHIVED; deleting again changes nothing."""
        current = self.get_rule(tenant_id, program_id, rule_id)

        def change(locked: RuleRecord, _: object) -> RuleFields | None:
            return None if locked.fields.status == "ARCHIVED" else locked.fields.changed({"status": "ARCHIVED"})

        self.store.change_rule(tenant_id, current.id, utcnow(), change)
        return self.get_rule(tenant_id, program_id, rule_id)

    def get_rule(self, tenant_id: str, program_id: str, rule_id: str) -> RuleRecord:
        program_id = require_uuid(program_id, "program_id")
        rule_id = require_uuid(rule_id, "rule_id")
        return errors.found(self.store.rule(tenant_id, program_id, rule_id), "rule", rule_id)

    def list_rules(self, tenant_id: str, program_id: str) -> list[RuleRecord]:
        """The program's rules in evaluation order; archived rules are left out."""
        program = self.get_program(tenant_id, program_id)
        return self.store.rules(tenant_id, program.id)

    def rule_versions(self, tenant_id: str, program_id: str, rule_id: str,
                      version: int | None = None) -> list[RuleRecord]:
        rule = self.get_rule(tenant_id, program_id, rule_id)
        rows = self.store.rule_versions(rule, version)
        if version is not None and not rows:
            raise errors.NotFound(f"rule {rule.id} has no version {version}", reason="rule_version_not_found")
        return rows

    # -- simulation -----------------------------------------------------------------------
    def simulate(self, tenant_id: str, program_id: str, *, event_type: str, event_data: dict[str, Json],
                 event_timestamp: dt.datetime | None, participant_id: str,
                 attributes: dict[str, Json], drafts: Sequence[RuleFields]
                 ) -> tuple[list[Evaluation], decimal.Decimal, str]:
        """Evaluate a hypothetical event exactly as the worker would, reading (never writing)
        the participant's tier and cap usage."""
        program_record = self.get_program(tenant_id, program_id)
        if participant_id:
            participant_id = require_uuid(participant_id, "participant_id")
        program = program_record.policy()
        registered = {r.name: r.properties for r in self.list_event_types(tenant_id, program.program_id)}
        failure = check_event_type(program_record.event_type_policy, registered, event_type, event_data)
        if failure:
            raise errors.InvalidArgument(failure[1], reason=failure[0],
                                         violations=[errors.FieldViolation(
                                             "event_type" if failure[0] == "event_type_not_registered"
                                             else "event_data", failure[1])])
        if drafts:
            rules = [self._draft(i, draft, registered) for i, draft in enumerate(drafts)]
        else:
            rules = [r.spec() for r in self.list_rules(tenant_id, program.program_id)]
        at = event_timestamp or utcnow()
        with self.store.ledger_transaction() as tx:
            account = tx.read_account(tenant_id, program.program_id, participant_id) \
                if participant_id else ledger.Account(program.program_id, "", ledger.ZERO, ledger.ZERO, None)
            usage = tx.cap_usage(tenant_id, [r for r in rules if not r.rule_id.startswith("draft-")],
                                 participant_id, at) if participant_id else {}
        event = EventFacts("simulation", event_type, at, event_data,
                           participant={"id": participant_id or None, "attributes": attributes})
        asked = self.sandbox.answers([Job(program, rules, event, account.lifetime_earned)])
        if asked.answers[0] is None:
            raise errors.InvalidArgument(
                "a rule's expressions crashed the expression engine on this event",
                reason=sandbox.CRASHED, violations=[errors.FieldViolation(
                    "event_data", "a rule's expressions crashed the expression engine on this event")])
        evaluations = evaluate(program, rules, event, account.lifetime_earned, usage, asked.answers[0])
        tier = program.tier_for(account.lifetime_earned)
        total = sum((e.points for e in evaluations if e.matched), ledger.ZERO)
        return evaluations, total, tier.name if tier else ""

    def _draft(self, i: int, draft: RuleFields, registered: Mapping[str, Sequence[Mapping[str, Json]]]
               ) -> RuleSpec:
        try:
            clean = validate_rule(draft, registered.get(draft.event_type), self.sandbox)
        except errors.InvalidArgument as exc:
            raise errors.InvalidArgument(
                f"draft_rules[{i}]: {exc.message}", reason=exc.reason,
                violations=[errors.FieldViolation(f"draft_rules[{i}].{x.field}", x.description)
                            for x in exc.violations],
                metadata={k: f"draft_rules[{i}].{v}" if k == "field" else v
                          for k, v in exc.metadata.items()}) from None
        return clean.spec(f"draft-{i}", 0)

    # -- ledger -------------------------------------------------------------------------
    def balance(self, tenant_id: str, program_id: str, participant_id: str) -> Balance:
        program = self.get_program(tenant_id, program_id)
        participant_id = require_uuid(participant_id, "participant_id")
        account = self.store.accounts(tenant_id, [(program.id, participant_id)])[(program.id, participant_id)]
        # The tier follows the program's current tiers, also right after they were changed.
        tier = program.policy().tier_for(account.lifetime_earned)
        account.tier = tier.name if tier else None
        timezone = program.bank().timezone
        return Balance(account, [Expiring(at, last_day(at, timezone), points) for at, points in
                                 self.store.expiring(tenant_id, program.id, participant_id, EXPIRING_SHOWN)],
                       self.held(tenant_id, program.id, participant_id))

    def lots(self, tenant_id: str, program_id: str, participant_id: str, status: str, page_size: int,
             page_token: str) -> tuple[list[LotRecord], str]:
        """A participant's lots oldest first (of ``status``, all when empty), by pages."""
        program = self.get_program(tenant_id, program_id)
        participant_id = require_uuid(participant_id, "participant_id")
        if not 0 <= page_size <= 200:
            raise errors.InvalidArgument.field("page_size", "must be between 1 and 200")
        size = page_size or 50
        after = LOT_PAGES.decode(page_token) if page_token else None
        rows = self.store.lots(tenant_id, program.id, participant_id, [status] if status else [],
                               (after[0], after[1]) if after else None, size + 1)
        token = LOT_PAGES.encode(rows[size - 1].earned_at, rows[size - 1].id) if len(rows) > size else ""
        return rows[:size], token

    def adjust(self, tenant_id: str, program_id: str, participant_id: str, *, amount: str,
               reason: str, idempotency_key: str, allow_negative: bool
               ) -> tuple[EntryRecord, ledger.Account, bool]:
        """Credit or debit points directly: (entry, balance after, deduplicated).

        Idempotent by key within the program, like events: the same key with the same payload
        answers the original entry; with another payload it is 409 idempotency_conflict. A debit
        that would take the available balance below zero is 409 insufficient_points unless
        ``allow_negative``. Positive adjustments count towards lifetime earned (and tiers);
        debits lower only the available balance.

        The points bank: a credit is a lot (it pays off debt first) that expires per the
        program's policy; a debit takes from the active lots in spend order. What the lots
        cannot cover follows the program's negative_balance policy (FORBID: 409
        insufficient_points; CLAMP: the entry takes what there is and records the rest as
        unrecovered; ALLOW: the rest becomes debt); ``allow_negative`` makes it ALLOW for
        this request, so requests written before the policy existed behave as they did."""
        program_record = self.get_program(tenant_id, program_id)
        v: list[errors.FieldViolation] = []
        participant = ""
        try:
            participant = require_uuid(participant_id, "participant_id")
        except errors.InvalidArgument as exc:
            v.extend(exc.violations)
        request = check_adjustment(v, participant, amount, reason, idempotency_key, allow_negative)
        if not self.participant_exists(tenant_id, participant):
            raise errors.NotFound(f"participant {participant} not found", reason="participant_not_found")
        program = program_record.policy()
        value = request.amount
        source = f"adjustment:{program.program_id}:{idempotency_key}"
        digest = request.digest()
        now = utcnow()
        bank = program_record.bank()
        with self.store.ledger_transaction() as tx:
            original = _adjustment(tx.entry(tenant_id, source), digest)
            if original is not None:
                return original, tx.read_account(tenant_id, program.program_id, participant), True
            account = tx.lock_account(tenant_id, program.program_id, participant)
            entry_id = new_id()
            lots: list[LotRecord] = []
            debit = None
            if value < 0:
                lots = tx.lock_lots(tenant_id, program.program_id, participant)
                debit = _debit(lots, -value, "ALLOW" if allow_negative else bank.negative_balance, account)
            # The entry goes in before any lot changes: a concurrent request with the same key
            # that committed first leaves this transaction nothing to undo.
            posted = tx.post(tenant_id=tenant_id, program_id=program.program_id, participant_id=participant,
                             amount=-debit.amount if debit else value, kind="ADJUSTMENT", source=source,
                             reason=request.reason, occurred_at=now, now=now, payload_hash=digest,
                             unrecovered=debit.unrecovered if debit and debit.unrecovered else None,
                             entry_id=entry_id)
            if posted is None:
                original = _adjustment(tx.entry(tenant_id, source), digest)
                assert original is not None
                return original, account, True
            if debit is not None:
                tx.apply_debit(tenant_id, account, lots, debit, entry_id, now)
            else:
                tx.store_credits([tx.credit(account, tenant_id, entry_id, value, earned_at=now, now=now,
                                            expires_at=bank.expiry.expires_at(now, bank.timezone))])
            old_tier, new_tier = tx.settle(tenant_id, program, account, ledger.ZERO,
                                           value if value > 0 else ledger.ZERO, now)
            notes = [facts.notification(tenant_id, "points.adjusted", f"points.adjusted:{source}", now, {
                "transaction_id": entry_id, "program_id": program.program_id,
                "participant_id": participant, "points": decimal_str(value), "reason": request.reason,
                "idempotency_key": idempotency_key, "available": decimal_str(account.available)})]
            if old_tier != new_tier:
                notes.append(ledger.tier_changed(tenant_id, f"tier.changed:{source}", now, account,
                                                 old_tier, new_tier, {"transaction_id": entry_id}))
            tx.announce(notifications=notes)
            entry = tx.entry(tenant_id, source)
            assert entry is not None
        self._on_commit()
        return entry, account, False

    def transactions(self, tenant_id: str, program_id: str, participant_id: str,
                     page_size: int, page_token: str) -> tuple[list[EntryRecord], str]:
        program = self.get_program(tenant_id, program_id)
        participant_id = require_uuid(participant_id, "participant_id")
        if not 0 <= page_size <= 200:
            raise errors.InvalidArgument.field("page_size", "must be between 1 and 200")
        size = page_size or 50
        before: tuple[dt.datetime, str] | None = None
        if page_token:
            at, last_id = TRANSACTION_PAGES.decode(page_token)
            before = (at, last_id)
        rows = self.store.entries(tenant_id, program.id, participant_id, before, size + 1)
        token = ""
        if len(rows) > size:
            last = rows[size - 1]
            token = TRANSACTION_PAGES.encode(last.created_at, last.id)
        return rows[:size], token


@dataclass(frozen=True)
class Expiring:
    """Points of active lots that expire at one instant (``last_day``: local, in the program's timezone)."""

    expires_at: dt.datetime
    last_day: dt.date
    points: decimal.Decimal


@dataclass(frozen=True)
class Balance:
    account: ledger.Account
    expiring: list[Expiring]
    #: points of the participant's open redemption holds (not in ``account.available``)
    held: decimal.Decimal = decimal.Decimal(0)


#: How many upcoming expiries a balance shows.
EXPIRING_SHOWN = 5


def last_day(expires_at: dt.datetime, timezone: str) -> dt.date:
    """The last local day of points that expire at ``expires_at`` (the end of that day)."""
    return local_date(expires_at - dt.timedelta(microseconds=1), timezone)


def _debit(lots: Sequence[LotRecord], amount: decimal.Decimal, policy: str, account: ledger.Account) -> Debit:
    """A debit over the active lots, or 409 insufficient_points when FORBID cannot cover it."""
    try:
        return allocate([lot.lot() for lot in lots], amount, policy)
    except InsufficientPoints:
        raise errors.Conflict(
            f"amount: debit of {decimal_str(amount)} exceeds the available balance "
            f"{decimal_str(account.available)}", reason="insufficient_points",
            violations=[errors.FieldViolation("amount", "exceeds the available balance")],
            metadata={"available": decimal_str(account.available), "required": decimal_str(amount),
                      "shortfall": decimal_str(amount - max(account.available, ledger.ZERO))}) from None


def _adjustment(entry: EntryRecord | None, digest: str) -> EntryRecord | None:
    """The entry of an adjustment's key; 409 when the key came with another payload."""
    if entry is not None and entry.payload_hash != digest:
        raise errors.Conflict("idempotency_key was already used with a different adjustment",
                              reason="idempotency_conflict",
                              violations=[errors.FieldViolation("idempotency_key",
                                                                "already used with a different payload")])
    return entry


def _bank(raw: Mapping[str, Json]) -> dict[str, Json]:
    policy, problems = check_policy(raw)
    errors.collect([errors.FieldViolation(f, d) for f, d in problems])
    return policy.to_json()


def _triggers(raw: Mapping[str, Json] | None) -> dict[str, dict[str, Json]]:
    clean, problems = normalise_triggers(raw)
    errors.collect([errors.FieldViolation(f, d) for f, d in problems])
    return clean


PROGRAM_PAGES = pages.Codec("programs", pages.uuid_key)
TRANSACTION_PAGES = pages.Codec("transactions", pages.timestamp, pages.uuid_key)
LOT_PAGES = pages.Codec("lots", pages.timestamp, pages.uuid_key)


def _event_type_found(record: EventTypeRecord | None, name: str) -> EventTypeRecord:
    if record is None:
        raise errors.NotFound(f"event type {errors.excerpt(name)} is not registered on the program",
                              reason="event_type_not_found")
    return record
