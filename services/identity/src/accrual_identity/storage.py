"""Tables of the identity schema and the set-based queries the use cases run on them.

Every query takes whole batches (``IN`` lists, multi-row inserts) because resolution runs
for every event: a batch of hundreds of items costs a handful of statements, not hundreds.
Writes that may race use INSERT ... ON CONFLICT DO NOTHING ... RETURNING, so the unique
keys decide who won and the caller sees which rows were really written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
import structlog
from accrual_platform import errors
from accrual_platform.db import Database, JsonType, UtcDateTime, in_values, insert_rows
from accrual_platform.outbox import outbox_table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from accrual_identity.domain.enrollments import INACTIVE, EnrollmentStatus, Pair
from accrual_identity.domain.identities import Identity, IdentityType

SCHEMA = "identity"
ACTIVE = "ACTIVE"
MERGED = "MERGED"
#: merges chain survivor to survivor; a longer chain than this is a data error
MAX_MERGE_DEPTH = 8
#: bound on one IN list, well under SQLite's and PostgreSQL's parameter limits
CHUNK = 1000
#: attempts of a transaction that keeps losing deadlocks or serialization checks
MAX_ATTEMPTS = 5
#: PostgreSQL codes of a transaction that lost a race and may simply be run again
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock

log = structlog.get_logger("accrual.identity")

metadata = sa.MetaData(schema=SCHEMA, naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})


def _one_of(column: str, values: Collection[str]) -> str:
    quoted = ", ".join(f"'{value}'" for value in sorted(values))
    return f"{column} IN ({quoted})"


tenants = sa.Table(
    "tenants", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("default_phone_region", sa.String(2), nullable=False, server_default="US"),
    sa.Column("created_at", UtcDateTime(), nullable=False),
)

api_keys = sa.Table(
    "api_keys", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey(f"{SCHEMA}.tenants.id"),
              nullable=False, index=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("scopes", JsonType, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("revoked_at", UtcDateTime(), nullable=True),
)

participants = sa.Table(
    "participants", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(36), nullable=False),
    sa.Column("attributes", JsonType, nullable=False),
    sa.Column("birth_date", sa.Date(), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("merged_into", sa.String(36), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    # "MM-DD" of birth_date: whose birthday is today is one indexed equality (the birthday
    # scheduler), on both backends, without date functions that differ between them
    sa.Column("birthday", sa.String(5), nullable=True, index=True),
    sa.CheckConstraint(_one_of("status", (ACTIVE, MERGED)), name="status"),
)

identities = sa.Table(
    "identities", metadata,
    sa.Column("tenant_id", sa.String(36), primary_key=True),
    sa.Column("type", sa.String(16), primary_key=True),
    sa.Column("value", sa.String(255), primary_key=True),
    sa.Column("participant_id", sa.String(36), sa.ForeignKey(f"{SCHEMA}.participants.id"),
              nullable=False, index=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.CheckConstraint(_one_of("type", tuple(IdentityType)), name="type"),
)

enrollments = sa.Table(
    "enrollments", metadata,
    sa.Column("tenant_id", sa.String(36), primary_key=True),
    sa.Column("program_id", sa.String(36), primary_key=True),
    sa.Column("participant_id", sa.String(36), sa.ForeignKey(f"{SCHEMA}.participants.id"),
              primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.CheckConstraint(_one_of("status", tuple(EnrollmentStatus)), name="status"),
    # a participant's programs, e.g. every program a CDP event applies to
    sa.Index(None, "tenant_id", "participant_id"),
)

merges = sa.Table(
    "merges", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(36), nullable=False),
    sa.Column("survivor_participant_id", sa.String(36),
              sa.ForeignKey(f"{SCHEMA}.participants.id"), nullable=False, index=True),
    # a participant is merged away at most once
    sa.Column("merged_participant_id", sa.String(36),
              sa.ForeignKey(f"{SCHEMA}.participants.id"), nullable=False, unique=True),
    sa.Column("merged_at", UtcDateTime(), nullable=False),
)

outbox = outbox_table(metadata)


@dataclass(frozen=True)
class ParticipantRecord:
    id: str
    attributes: dict[str, Any]
    created_at: dt.datetime


@dataclass(frozen=True)
class EnrollmentRecord:
    program_id: str
    participant_id: str
    status: EnrollmentStatus
    created_at: dt.datetime
    updated_at: dt.datetime


T = TypeVar("T")


def _chunks(items: Collection[T]) -> Iterator[list[T]]:
    ordered = list(items)
    for start in range(0, len(ordered), CHUNK):
        yield ordered[start:start + CHUNK]


def retryable(exc: errors.Unavailable) -> bool:
    """A deadlock or serialization failure between transactions: running again will succeed."""
    orig = getattr(exc.__cause__, "orig", None)
    return getattr(orig, "sqlstate", None) in _RETRYABLE_SQLSTATES


def in_transaction(db: Database, work: Callable[[Session], T]) -> T:
    """``work`` in one transaction, run again when it lost a deadlock to a concurrent one
    (everything it wrote was rolled back, so running it again is safe)."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            with db.transaction() as session:
                return work(session)
        except errors.Unavailable as exc:
            if attempt == MAX_ATTEMPTS or not retryable(exc):
                raise
            log.info("transaction_retry_after_conflict", attempt=attempt, error=str(exc.__cause__))
    raise AssertionError("unreachable")


def insert_ignoring_conflicts(session: Session, table: sa.Table) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING in the session's dialect (both spell it alike)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing()


def tenant_region(session: Session, tenant_id: str) -> str | None:
    t = tenants
    region: str | None = session.execute(
        sa.select(t.c.default_phone_region).where(t.c.id == tenant_id)).scalar_one_or_none()
    return region


# -- participants ---------------------------------------------------------------------------

def insert_participants(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    insert_rows(session, participants, rows)


def birthday(birth_date: dt.date | None) -> str | None:
    return birth_date.strftime("%m-%d") if birth_date else None


def survivors(session: Session, tenant_id: str, ids: Collection[str], *,
              lock: bool = False) -> dict[str, ParticipantRecord]:
    """Each id of the tenant that exists, mapped to the participant it stands for now (its
    survivor when it was merged). Ids of other tenants or nobody are absent.

    ``lock`` takes a KEY SHARE lock on the rows read (PostgreSQL; SQLite writers are
    serialised anyway), in id order. It lets concurrent readers through but makes a merge,
    which locks both participants FOR UPDATE, wait for the transaction, or the transaction
    wait for the merge and then read the merged row's new state, so nothing is attached to
    a participant that is merged away at the same moment.
    """
    p = participants
    found: dict[str, ParticipantRecord] = {}
    pending = {pid: pid for pid in ids}  # requested id -> id to look up next
    for _ in range(MAX_MERGE_DEPTH):
        if not pending:
            break
        rows: dict[str, Any] = {}
        for chunk in _chunks(sorted(set(pending.values()))):
            query = sa.select(p.c.id, p.c.attributes, p.c.status, p.c.merged_into, p.c.created_at
                              ).where(p.c.tenant_id == tenant_id, in_values(session, [p.c.id], chunk))
            if lock:
                query = query.order_by(p.c.id).with_for_update(key_share=True)
            for row in session.execute(query):
                rows[row.id] = row
        following: dict[str, str] = {}
        for requested, current in pending.items():
            hit = rows.get(current)
            if hit is None:
                continue
            if hit.status == MERGED and hit.merged_into:
                following[requested] = hit.merged_into
            else:
                found[requested] = ParticipantRecord(hit.id, dict(hit.attributes or {}),
                                                     hit.created_at)
        pending = following
    return found


# -- identities -----------------------------------------------------------------------------

def identity_owners(session: Session, tenant_id: str,
                    wanted: Collection[Identity]) -> dict[Identity, str]:
    """Owner participant id of each wanted identity that somebody owns."""
    i = identities
    owners: dict[Identity, str] = {}
    for chunk in _chunks(set(wanted)):
        for row in session.execute(sa.select(i.c.type, i.c.value, i.c.participant_id).where(
                i.c.tenant_id == tenant_id,
                in_values(session, [i.c.type, i.c.value], [(k.type.value, k.value) for k in chunk]))):
            owners[Identity(IdentityType(row.type), row.value)] = row.participant_id
    return owners


def identities_of(session: Session, tenant_id: str, participant_id: str) -> list[Identity]:
    i = identities
    rows = session.execute(sa.select(i.c.type, i.c.value).where(
        i.c.tenant_id == tenant_id, i.c.participant_id == participant_id))
    return [Identity(IdentityType(r.type), r.value) for r in rows]


def claim_identities(session: Session, tenant_id: str, claims: Sequence[tuple[Identity, str]],
                     now: dt.datetime) -> set[Identity]:
    """Insert (identity -> participant) rows; returns the identities really inserted, so an
    identity someone else committed meanwhile is left to them and reported by absence.

    Rows go in key order so concurrent batches lock unique keys in one order (no deadlock).
    """
    if not claims:
        return set()
    i = identities
    rows = [{"tenant_id": tenant_id, "type": ident.type.value, "value": ident.value,
             "participant_id": pid, "created_at": now}
            for ident, pid in sorted(claims, key=lambda c: (c[0].type.value, c[0].value))]
    inserted = insert_rows(session, i, rows, conflict=lambda q: q.on_conflict_do_nothing(),
                           returning=[i.c.type, i.c.value])
    return {Identity(IdentityType(r.type), r.value) for r in inserted}


# -- enrollments ----------------------------------------------------------------------------

def enrollment_statuses(session: Session, tenant_id: str,
                        pairs: Collection[Pair]) -> dict[Pair, EnrollmentStatus]:
    e = enrollments
    found: dict[Pair, EnrollmentStatus] = {}
    for chunk in _chunks(set(pairs)):
        for row in session.execute(sa.select(e.c.program_id, e.c.participant_id, e.c.status).where(
                e.c.tenant_id == tenant_id,
                in_values(session, [e.c.program_id, e.c.participant_id], chunk))):
            found[(row.program_id, row.participant_id)] = EnrollmentStatus(row.status)
    return found


def create_enrollments(session: Session, tenant_id: str, pairs: Collection[Pair],
                       now: dt.datetime) -> set[Pair]:
    """ACTIVE enrollments for the pairs; returns those this call created."""
    if not pairs:
        return set()
    e = enrollments
    rows = [{"tenant_id": tenant_id, "program_id": program, "participant_id": participant,
             "status": EnrollmentStatus.ACTIVE.value, "created_at": now, "updated_at": now}
            for program, participant in sorted(set(pairs))]
    inserted = insert_rows(session, e, rows, conflict=lambda q: q.on_conflict_do_nothing(),
                           returning=[e.c.program_id, e.c.participant_id])
    return {(r.program_id, r.participant_id) for r in inserted}


def reactivate_enrollments(session: Session, tenant_id: str, pairs: Collection[Pair],
                           now: dt.datetime) -> set[Pair]:
    """Set inactive enrollments of the pairs ACTIVE; returns those this call changed (a
    concurrent reactivation of the same row re-checks the status and reports nothing)."""
    e = enrollments
    changed: set[Pair] = set()
    for chunk in _chunks(sorted(set(pairs))):
        result = session.execute(sa.update(e).where(
            e.c.tenant_id == tenant_id,
            in_values(session, [e.c.program_id, e.c.participant_id], chunk),
            e.c.status.in_([s.value for s in INACTIVE]),
        ).values(status=EnrollmentStatus.ACTIVE.value, updated_at=now).returning(
            e.c.program_id, e.c.participant_id))
        changed.update((r.program_id, r.participant_id) for r in result)
    return changed


def active_programs(session: Session, tenant_id: str,
                    participant_ids: Collection[str]) -> dict[str, list[str]]:
    """The programs each participant is ACTIVE in, sorted."""
    e = enrollments
    found: dict[str, list[str]] = {}
    for chunk in _chunks(sorted(set(participant_ids))):
        for row in session.execute(sa.select(e.c.participant_id, e.c.program_id).where(
                e.c.tenant_id == tenant_id, in_values(session, [e.c.participant_id], chunk),
                e.c.status == EnrollmentStatus.ACTIVE.value).order_by(e.c.program_id)):
            found.setdefault(row.participant_id, []).append(row.program_id)
    return found


def _enrollment(row: Any) -> EnrollmentRecord:
    return EnrollmentRecord(row.program_id, row.participant_id, EnrollmentStatus(row.status),
                            row.created_at, row.updated_at)


_ENROLLMENT_COLUMNS = (enrollments.c.program_id, enrollments.c.participant_id,
                       enrollments.c.status, enrollments.c.created_at, enrollments.c.updated_at)


def get_enrollment(session: Session, tenant_id: str, pair: Pair, *,
                   lock: bool = False) -> EnrollmentRecord | None:
    e = enrollments
    query = sa.select(*_ENROLLMENT_COLUMNS).where(
        e.c.tenant_id == tenant_id, e.c.program_id == pair[0], e.c.participant_id == pair[1])
    if lock:
        query = query.with_for_update()
    row = session.execute(query).first()
    return _enrollment(row) if row else None


def list_enrollments(session: Session, tenant_id: str, *, program_id: str | None = None,
                     participant_id: str | None = None, status: EnrollmentStatus | None = None,
                     after: str | None = None, limit: int) -> list[EnrollmentRecord]:
    """A page of enrollments of one program (ordered by participant id) or of one
    participant (ordered by program id), after the key ``after``; both orders follow a
    primary-key or indexed column, so pages are stable and cheap however deep."""
    e = enrollments
    if (program_id is None) == (participant_id is None):
        raise ValueError("exactly one of program_id or participant_id")
    query = sa.select(*_ENROLLMENT_COLUMNS).where(e.c.tenant_id == tenant_id)
    key = e.c.participant_id if program_id is not None else e.c.program_id
    if program_id is not None:
        query = query.where(e.c.program_id == program_id)
    else:
        query = query.where(e.c.participant_id == participant_id)
    if status is not None:
        query = query.where(e.c.status == status.value)
    if after is not None:
        query = query.where(key > after)
    return [_enrollment(r) for r in session.execute(query.order_by(key).limit(limit))]


def set_enrollment_status(session: Session, tenant_id: str, pair: Pair,
                          status: EnrollmentStatus, now: dt.datetime) -> None:
    e = enrollments
    session.execute(sa.update(e).where(
        e.c.tenant_id == tenant_id, e.c.program_id == pair[0], e.c.participant_id == pair[1],
    ).values(status=status.value, updated_at=now))


# -- merges ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class LockedParticipant:
    id: str
    status: str
    merged_into: str | None
    attributes: dict[str, Any]
    birth_date: dt.date | None


def lock_participants(session: Session, tenant_id: str,
                      ids: Collection[str]) -> dict[str, LockedParticipant]:
    """The tenant's participants among ``ids``, locked FOR UPDATE in id order (so two
    merges of overlapping pairs queue instead of deadlocking)."""
    p = participants
    rows = session.execute(sa.select(
        p.c.id, p.c.status, p.c.merged_into, p.c.attributes, p.c.birth_date,
    ).where(p.c.tenant_id == tenant_id, p.c.id.in_(sorted(set(ids)))).order_by(p.c.id)
        .with_for_update())
    return {r.id: LockedParticipant(r.id, r.status, r.merged_into, dict(r.attributes or {}),
                                    r.birth_date) for r in rows}


def merge_participant_rows(session: Session, tenant_id: str, *, survivor: LockedParticipant,
                           merged: LockedParticipant, merge_id: str, now: dt.datetime,
                           ) -> None:
    """Move everything of ``merged`` to ``survivor`` and mark it merged; the caller holds
    both rows locked. Enrollments in a program both have keep the survivor's row with the
    earlier enrolment time; the survivor keeps its attributes and gains those it lacks."""
    p, i, e = participants, identities, enrollments
    session.execute(sa.update(i).where(
        i.c.tenant_id == tenant_id, i.c.participant_id == merged.id,
    ).values(participant_id=survivor.id))

    mine = {r.program_id: r for r in session.execute(sa.select(e.c.program_id, e.c.created_at)
            .where(e.c.tenant_id == tenant_id, e.c.participant_id == survivor.id))}
    theirs = {r.program_id: r for r in session.execute(sa.select(e.c.program_id, e.c.created_at)
              .where(e.c.tenant_id == tenant_id, e.c.participant_id == merged.id))}
    shared = sorted(mine.keys() & theirs.keys())
    for program in shared:
        if theirs[program].created_at < mine[program].created_at:
            session.execute(sa.update(e).where(
                e.c.tenant_id == tenant_id, e.c.program_id == program,
                e.c.participant_id == survivor.id,
            ).values(created_at=theirs[program].created_at, updated_at=now))
    for chunk in _chunks(shared):
        session.execute(sa.delete(e).where(
            e.c.tenant_id == tenant_id, e.c.participant_id == merged.id,
            e.c.program_id.in_(chunk)))
    session.execute(sa.update(e).where(
        e.c.tenant_id == tenant_id, e.c.participant_id == merged.id,
    ).values(participant_id=survivor.id, updated_at=now))

    # Earlier merges into the merged participant now point straight at the survivor.
    session.execute(sa.update(p).where(
        p.c.tenant_id == tenant_id, p.c.merged_into == merged.id,
    ).values(merged_into=survivor.id))
    # The merged row keeps its data as history but no longer has a birthday to celebrate.
    session.execute(sa.update(p).where(p.c.id == merged.id).values(
        status=MERGED, merged_into=survivor.id, birthday=None))
    attributes = {**merged.attributes, **survivor.attributes}
    birth_date = survivor.birth_date or merged.birth_date
    if attributes != survivor.attributes:
        session.execute(sa.update(p).where(p.c.id == survivor.id).values(
            attributes=attributes, birth_date=birth_date, birthday=birthday(birth_date)))
    session.execute(merges.insert().values(
        id=merge_id, tenant_id=tenant_id, survivor_participant_id=survivor.id,
        merged_participant_id=merged.id, merged_at=now))
