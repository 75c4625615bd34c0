"""Enrollment use cases: list, get, enroll, change status; and the activation that event
resolution and explicit enrollment share.

Enrollments live under ``/v1/programs/{program_id}`` but belong to identity; the program
itself belongs to the rules service, so the public routes ask it (cached) that the program
exists and is the caller's before reading or writing: otherwise another tenant's or a made-up
program id would get enrollments, and ``enrollment.created`` webhooks for them. Event
resolution (``activate`` via ResolveParticipants) does not ask: the rules worker calling it
has just read the program.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection
from dataclasses import dataclass

from accrual.messages.v1 import messages_pb2
from accrual_platform import errors, pages
from accrual_platform.clients import ProgramExists, require_program
from accrual_platform.db import Database, utcnow
from accrual_platform.ids import require_uuid
from sqlalchemy.orm import Session

from accrual_identity import notifications, storage
from accrual_identity.domain.enrollments import INACTIVE, EnrollmentStatus, Pair
from accrual_identity.validation import MAX_ID_LENGTH, existing_participant, page_size

#: a program's enrollments go by participant id, a participant's by program id
PROGRAM_PAGES = pages.Codec("program_enrollments", pages.text(MAX_ID_LENGTH))
PARTICIPANT_PAGES = pages.Codec("participant_enrollments", pages.text(MAX_ID_LENGTH))


@dataclass(frozen=True)
class Activation:
    """What making some enrollments ACTIVE changed, and the facts to announce."""

    created: set[Pair]
    reactivated: set[Pair]
    notes: list[messages_pb2.Notification]


def activate(session: Session, tenant_id: str, pairs: Collection[Pair],
             now: dt.datetime) -> Activation:
    """Leave every (program, participant) pair ACTIVE: create missing enrollments and
    reactivate FROZEN, LOCKED or CLOSED ones, race-safe against concurrent writers (the
    primary key decides who created a row; the status re-check who reactivated it)."""
    wanted = set(pairs)
    statuses = storage.enrollment_statuses(session, tenant_id, wanted)
    missing = wanted - statuses.keys()
    created = storage.create_enrollments(session, tenant_id, missing, now)
    # A pair another writer enrolled meanwhile is ACTIVE unless it was closed since.
    inactive = {p for p, s in statuses.items() if s in INACTIVE} | (missing - created)
    reactivated = storage.reactivate_enrollments(session, tenant_id, inactive, now)
    notes = [notifications.enrollment_created(tenant_id, program, participant, now)
             for program, participant in sorted(created)]
    for program, participant in sorted(reactivated):
        previous = statuses.get((program, participant))
        notes.append(notifications.enrollment_reactivated(
            tenant_id, program, participant, previous.value if previous else None, now))
    return Activation(created, reactivated, notes)


Page = tuple[list[storage.EnrollmentRecord], str]


class Enrollments:
    def __init__(self, db: Database, *, program_exists: ProgramExists,
                 on_commit: Callable[[], None] = lambda: None) -> None:
        """``program_exists(tenant, program_id)`` asks the rules service; ``on_commit`` runs
        after a transaction that wrote outbox rows (wakes the relay)."""
        self._db = db
        self.program_exists = program_exists
        self._on_commit = on_commit

    def _require_program(self, tenant_id: str, program: str) -> None:
        """404 unless the rules service has the program for the tenant: asked once the
        request is valid and before any transaction, so no transaction waits on it."""
        require_program(self.program_exists, tenant_id, program)

    def list_for_program(self, tenant_id: str, program_id: str, status: EnrollmentStatus | None,
                         size: int, token: str) -> Page:
        """A page of the program's enrollments; empty for a program nobody is enrolled in."""
        program = require_uuid(program_id, "program_id")
        limit, after = page_size(size), _after(PROGRAM_PAGES, token)
        self._require_program(tenant_id, program)
        with self._db.transaction() as session:
            rows = storage.list_enrollments(session, tenant_id, program_id=program,
                                            status=status, after=after, limit=limit + 1)
        return _page(PROGRAM_PAGES, rows, limit, lambda r: r.participant_id)

    def list_for_participant(self, tenant_id: str, participant_id: str,
                             status: EnrollmentStatus | None, size: int, token: str) -> Page:
        """A page of the participant's (its survivor's, when merged) enrollments."""
        wanted = require_uuid(participant_id, "participant_id")
        limit, after = page_size(size), _after(PARTICIPANT_PAGES, token)
        with self._db.transaction() as session:
            person = existing_participant(session, tenant_id, wanted)
            rows = storage.list_enrollments(session, tenant_id, participant_id=person.id,
                                            status=status, after=after, limit=limit + 1)
        return _page(PARTICIPANT_PAGES, rows, limit, lambda r: r.program_id)

    def get(self, tenant_id: str, program_id: str,
            participant_id: str) -> storage.EnrollmentRecord:
        program = require_uuid(program_id, "program_id")
        wanted = require_uuid(participant_id, "participant_id")
        self._require_program(tenant_id, program)
        with self._db.transaction() as session:
            person = existing_participant(session, tenant_id, wanted)
            found = storage.get_enrollment(session, tenant_id, (program, person.id))
        if found is None:
            raise _not_enrolled(program, person.id)
        return found

    def enroll(self, tenant_id: str, program_id: str,
               participant_id: str) -> storage.EnrollmentRecord:
        """The participant ACTIVE in the program, announced like an event's enrollment;
        enrolling an ACTIVE member again changes and announces nothing."""
        program = require_uuid(program_id, "program_id")
        wanted = require_uuid(participant_id, "participant_id")
        self._require_program(tenant_id, program)

        def work(session: Session) -> tuple[storage.EnrollmentRecord, bool]:
            person = existing_participant(session, tenant_id, wanted, lock=True)
            pair = (program, person.id)
            activation = activate(session, tenant_id, [pair], utcnow())
            wrote = notifications.write(session, activation.notes)
            found = storage.get_enrollment(session, tenant_id, pair)
            assert found is not None  # just created or already there, in this transaction
            return found, wrote

        enrollment, wrote = storage.in_transaction(self._db, work)
        if wrote:
            self._on_commit()
        return enrollment

    def set_status(self, tenant_id: str, program_id: str, participant_id: str,
                   status: EnrollmentStatus) -> storage.EnrollmentRecord:
        """Change an enrollment's status. Setting the status it has changes nothing; making
        an inactive enrollment ACTIVE is announced as ``enrollment.reactivated``."""
        program = require_uuid(program_id, "program_id")
        wanted = require_uuid(participant_id, "participant_id")
        self._require_program(tenant_id, program)

        def work(session: Session) -> tuple[storage.EnrollmentRecord, bool]:
            person = existing_participant(session, tenant_id, wanted, lock=True)
            pair = (program, person.id)
            found = storage.get_enrollment(session, tenant_id, pair, lock=True)
            if found is None:
                raise _not_enrolled(program, person.id)
            if found.status == status:
                return found, False
            now = utcnow()
            storage.set_enrollment_status(session, tenant_id, pair, status, now)
            notes = []
            if status is EnrollmentStatus.ACTIVE:
                notes.append(notifications.enrollment_reactivated(
                    tenant_id, program, person.id, found.status.value, now))
            wrote = notifications.write(session, notes)
            return storage.EnrollmentRecord(program, person.id, status, found.created_at,
                                            now), wrote

        enrollment, wrote = storage.in_transaction(self._db, work)
        if wrote:
            self._on_commit()
        return enrollment


def _after(codec: pages.Codec, token: str) -> str | None:
    """The last key of the previous page (a participant or program id), None for the first."""
    parts = codec.decode_optional(token)
    return parts[0] if parts else None


def _page(codec: pages.Codec, rows: list[storage.EnrollmentRecord], limit: int,
          key: Callable[[storage.EnrollmentRecord], str]) -> Page:
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, codec.encode(key(rows[-1]))
    return rows, ""


def _not_enrolled(program_id: str, participant_id: str) -> errors.NotFound:
    return errors.NotFound(f"participant {participant_id} is not enrolled in program {program_id}",
                           reason="enrollment_not_found")
