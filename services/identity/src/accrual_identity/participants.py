"""Participant use cases: create, get, look up, link identities, and resolve the people
behind a batch of events.

Resolution is the hot path (the rules worker calls it once per batch of events), so it
reads everything a batch needs in a few set-based queries, plans the batch in memory with
the pure rules of ``domain.resolution``, and writes in a few multi-row statements. Races
with concurrent batches are settled by the unique keys: when an identity this batch meant
to claim was committed by someone else first, the whole transaction is rolled back and the
batch planned again against the new truth, so concurrent workers never create two
participants for one person and never leave a half-written one behind.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from accrual.messages.v1 import messages_pb2
from accrual_platform import errors
from accrual_platform.db import Database, utcnow
from accrual_platform.ids import canonical_uuid, new_id, require_uuid
from sqlalchemy.orm import Session

from accrual_identity import notifications, storage
from accrual_identity.domain import resolution
from accrual_identity.domain.attributes import InvalidAttribute, validate_attributes
from accrual_identity.domain.enrollments import EnrollmentChange, Pair, changes
from accrual_identity.domain.identities import (
    DEFAULT_REGION,
    Identity,
    IdentityType,
    InvalidIdentity,
    by_precedence,
    normalize,
)
from accrual_identity.enrollments import activate
from accrual_identity.validation import MAX_ID_LENGTH, existing_participant

#: attempts of a batch that keeps losing identities to concurrent writers
MAX_ATTEMPTS = 5
MAX_ITEMS = 5000

RawIdentity = tuple[IdentityType | None, str]
log = structlog.get_logger("accrual.identity")


@dataclass(frozen=True)
class ParticipantView:
    id: str
    identities: list[Identity]
    attributes: dict[str, Any]
    created_at: dt.datetime


@dataclass(frozen=True)
class ResolveItem:
    program_id: str
    participant_id: str
    identities: Sequence[RawIdentity]
    create_unknown: bool


@dataclass(frozen=True)
class ResolveOutcome:
    participant_id: str = ""
    participant_created: bool = False
    enrollment_change: EnrollmentChange | None = None
    error_code: str = ""
    error_message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    #: programs the participant is ACTIVE in; filled for items without a program
    active_program_ids: tuple[str, ...] = ()


class _LostRace(Exception):
    """A concurrent writer claimed an identity this batch planned to claim."""


class Participants:
    def __init__(self, db: Database, on_commit: Callable[[], None] = lambda: None) -> None:
        """``on_commit`` runs after a transaction that wrote outbox rows (wakes the relay)."""
        self._db = db
        self._on_commit = on_commit
        self._regions: dict[str, str] = {}

    def region(self, tenant_id: str) -> str:
        """The tenant's default phone region, cached: no API changes it once created."""
        cached = self._regions.get(tenant_id)
        if cached is not None:
            return cached
        with self._db.transaction() as session:
            region = storage.tenant_region(session, tenant_id)
        if region is None:
            return str(DEFAULT_REGION)  # not cached: the tenant may be created later
        self._regions[tenant_id] = region
        return region

    # -- create and get -----------------------------------------------------------------------

    def create(self, tenant_id: str, identities: Sequence[RawIdentity],
               attributes: dict[str, Any]) -> ParticipantView:
        """All or nothing: a participant with every identity, or an error and no row."""
        region = self.region(tenant_id)
        violations: list[errors.FieldViolation] = []
        if not identities:
            violations.append(errors.FieldViolation(
                "identities", "at least one identity is required"))
        fields: dict[Identity, str] = {}
        for index, (kind, value) in enumerate(identities):
            try:
                fields.setdefault(normalize(kind, value, region), f"identities[{index}].value")
            except InvalidIdentity as exc:
                violations.append(errors.FieldViolation(
                    f"identities[{index}].{exc.field}", exc.message))
        try:
            attributes, birth_date = validate_attributes(attributes, utcnow().date())
        except InvalidAttribute as exc:
            violations.append(errors.FieldViolation(exc.field, exc.message))
        errors.collect(violations)

        participant_id, now = new_id(), utcnow()
        with self._db.transaction() as session:
            storage.insert_participants(session, [{
                "id": participant_id, "tenant_id": tenant_id, "attributes": attributes,
                "birth_date": birth_date, "birthday": storage.birthday(birth_date),
                "status": storage.ACTIVE, "created_at": now}])
            claimed = storage.claim_identities(
                session, tenant_id, [(ident, participant_id) for ident in fields], now)
            taken = [ident for ident in fields if ident not in claimed]
            if taken:
                where = fields[taken[0]]
                raise _identity_conflict(taken[0], where)
            notifications.write(session, [
                notifications.participant_created(tenant_id, participant_id, now)])
        self._on_commit()
        return ParticipantView(participant_id, by_precedence(fields), attributes, now)

    def get(self, tenant_id: str, participant_id: str) -> ParticipantView:
        """The participant (its survivor if merged); another tenant's is not found."""
        canonical = require_uuid(participant_id, "participant_id")
        with self._db.transaction() as session:
            return view(session, tenant_id, existing_participant(session, tenant_id, canonical))

    def lookup(self, tenant_id: str, wanted: Sequence[tuple[str, IdentityType, str]]
               ) -> ParticipantView:
        """The owner of the one identity given as (field, type, raw value) among ``wanted``
        (the non-empty query fields), normalised as it is when stored."""
        if len(wanted) != 1:
            names = [name for name, _, _ in wanted] or list(LOOKUP_FIELDS)
            problem = ("exactly one of " if wanted else "one of ") + ", ".join(LOOKUP_FIELDS) + (
                " may be given" if wanted else " is required")
            errors.collect([errors.FieldViolation(name, problem) for name in names])
        [(name, kind, raw)] = wanted
        try:
            identity = normalize(kind, raw, self.region(tenant_id))
        except InvalidIdentity as exc:
            raise errors.InvalidArgument.field(name, exc.message) from None
        with self._db.transaction() as session:
            owner = storage.identity_owners(session, tenant_id, [identity]).get(identity)
            record = storage.survivors(session, tenant_id, [owner]).get(owner) if owner else None
            if record is None:
                raise errors.NotFound(f"no participant has this {kind.value} identity",
                                      reason="participant_not_found", metadata={"field": name})
            return view(session, tenant_id, record)

    def link(self, tenant_id: str, participant_id: str,
             identity: RawIdentity | None) -> ParticipantView:
        """Attach one more identity to a participant (its survivor, when merged).

        Idempotent: an identity the participant already has is success and changes nothing.
        One that another participant owns is ALREADY_EXISTS (``identity_conflict``): merges
        are explicit, so an identity never moves by being linked elsewhere.
        """
        canonical = require_uuid(participant_id, "participant_id")
        if identity is None:
            raise errors.InvalidArgument.field("identity", "is required (type and value)")
        kind, raw = identity
        try:
            wanted = normalize(kind, raw, self.region(tenant_id))
        except InvalidIdentity as exc:
            raise errors.InvalidArgument.field(f"identity.{exc.field}", exc.message) from None

        def work(session: Session) -> ParticipantView:
            person = existing_participant(session, tenant_id, canonical, lock=True)
            if not storage.claim_identities(session, tenant_id, [(wanted, person.id)], utcnow()):
                owner = storage.identity_owners(session, tenant_id, [wanted]).get(wanted)
                current = storage.survivors(session, tenant_id, [owner]).get(owner) if owner else None
                if current is None or current.id != person.id:
                    raise _identity_conflict(wanted, "identity.value")
            return view(session, tenant_id, person)

        return storage.in_transaction(self._db, work)

    # -- resolve ------------------------------------------------------------------------------

    def resolve(self, tenant_id: str, items: Sequence[ResolveItem]) -> list[ResolveOutcome]:
        """One outcome per item, in order; per-item failures are outcomes, not errors."""
        if len(items) > MAX_ITEMS:
            raise errors.InvalidArgument.field("items", f"at most {MAX_ITEMS} items per call")
        region = self.region(tenant_id)
        prepared = [_prepare(item, region) for item in items]
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                with self._db.transaction() as session:
                    outcomes, wrote = self._resolve_in(session, tenant_id, items, prepared)
                break
            except _LostRace:
                log.debug("resolve_lost_race", attempt=attempt, items=len(items))
            except errors.Unavailable as exc:
                if attempt == MAX_ATTEMPTS or not storage.retryable(exc):
                    raise
                log.info("resolve_retry_after_conflict", attempt=attempt, error=str(exc.__cause__))
        else:
            raise errors.Unavailable("identities are contended by concurrent writers, retry",
                                     reason="contention")
        if wrote:
            self._on_commit()
        return outcomes

    def _resolve_in(self, session: Session, tenant_id: str, items: Sequence[ResolveItem],
                    prepared: Sequence[resolution.Subject | ResolveOutcome],
                    ) -> tuple[list[ResolveOutcome], bool]:
        subjects = [p for p in prepared if isinstance(p, resolution.Subject)]
        wanted = {ident for s in subjects for ident in s.identities}
        owners = storage.identity_owners(session, tenant_id, wanted)
        explicit = {s.participant_id for s in subjects if s.participant_id is not None}
        people = storage.survivors(session, tenant_id, explicit | set(owners.values()), lock=True)
        decisions = iter(resolution.plan(
            subjects,
            participants={pid: people[pid].id for pid in explicit if pid in people},
            owners={ident: people[pid].id for ident, pid in owners.items() if pid in people},
            new_id=lambda: new_id()))
        planned = [p if isinstance(p, ResolveOutcome) else next(decisions) for p in prepared]

        now = utcnow()
        notes: list[messages_pb2.Notification] = []
        created = [d.participant_id for d in planned
                   if isinstance(d, resolution.Decision) and d.created]
        storage.insert_participants(session, [
            {"id": pid, "tenant_id": tenant_id, "attributes": {}, "birth_date": None,
             "birthday": None, "status": storage.ACTIVE, "created_at": now} for pid in created])
        notes += [notifications.participant_created(tenant_id, pid, now) for pid in created]
        claims = [(ident, d.participant_id) for d in planned
                  if isinstance(d, resolution.Decision) for ident in d.attach]
        if len(storage.claim_identities(session, tenant_id, claims, now)) != len(claims):
            raise _LostRace()

        resolved = [isinstance(d, resolution.Decision) and d.ok for d in planned]
        pairs: list[Pair | None] = [
            (item.program_id, d.participant_id) if ok and item.program_id else None
            for item, d, ok in zip(items, planned, resolved, strict=True)]
        activation = activate(session, tenant_id, {p for p in pairs if p is not None}, now)
        notes += activation.notes
        wrote = notifications.write(session, notes)
        # Items without a program (CDP events) apply to every program the person is ACTIVE
        # in, read after this batch's own enrollments so they count too.
        programless = {d.participant_id for item, d, ok in zip(items, planned, resolved, strict=True)
                       if ok and not item.program_id and isinstance(d, resolution.Decision)}
        active = storage.active_programs(session, tenant_id, programless)

        by_id = {record.id: record for record in people.values()}
        outcomes = []
        changed = changes(pairs, activation.created, activation.reactivated)
        for item, decision, change in zip(items, planned, changed, strict=True):
            if isinstance(decision, ResolveOutcome):
                outcomes.append(decision)
            elif not decision.ok:
                outcomes.append(ResolveOutcome(error_code=decision.error_code,
                                               error_message=decision.error_message))
            else:
                person = by_id.get(decision.participant_id)
                outcomes.append(ResolveOutcome(
                    participant_id=decision.participant_id,
                    participant_created=decision.created,
                    enrollment_change=change if item.program_id else EnrollmentChange.NONE,
                    attributes=dict(person.attributes) if person else {},
                    active_program_ids=() if item.program_id else tuple(
                        active.get(decision.participant_id, ()))))
        return outcomes, wrote


def _prepare(item: ResolveItem, region: str) -> resolution.Subject | ResolveOutcome:
    """The item's normalised subject, or the outcome that rejects it before any query."""
    if len(item.program_id) > MAX_ID_LENGTH:
        return ResolveOutcome(error_code=resolution.INVALID_ARGUMENT,
                              error_message=f"program_id must be at most {MAX_ID_LENGTH} characters")
    participant_id: str | None = None
    if item.participant_id:
        participant_id = canonical_uuid(item.participant_id)
        if participant_id is None:
            return ResolveOutcome(error_code=resolution.PARTICIPANT_NOT_FOUND,
                                  error_message=f"participant_id {errors.excerpt(item.participant_id)} "
                                                "is not a UUID")
    identities = []
    for index, (kind, value) in enumerate(item.identities):
        try:
            identities.append(normalize(kind, value, region))
        except InvalidIdentity as exc:
            return ResolveOutcome(error_code=resolution.INVALID_IDENTITY,
                                  error_message=f"identities[{index}].{exc.field}: {exc.message}")
    return resolution.Subject(participant_id, tuple(identities), item.create_unknown)



#: query fields of a lookup and the identity type each names
LOOKUP_FIELDS: dict[str, IdentityType] = {
    "external_id": IdentityType.EXTERNAL, "email": IdentityType.EMAIL,
    "phone": IdentityType.PHONE, "device_key": IdentityType.DEVICE_KEY}


def view(session: Session, tenant_id: str, record: storage.ParticipantRecord) -> ParticipantView:
    """A participant with its identities, in precedence order."""
    idents = storage.identities_of(session, tenant_id, record.id)
    return ParticipantView(record.id, by_precedence(sorted(idents)), record.attributes,
                           record.created_at)


def _identity_conflict(identity: Identity, where: str) -> errors.AlreadyExists:
    return errors.AlreadyExists(
        f"{where}: this {identity.type.value} identity already belongs to another participant",
        reason="identity_conflict", metadata={"field": where})
