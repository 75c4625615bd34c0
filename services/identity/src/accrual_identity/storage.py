"""Tables of the identity schema and the set-based queries the use cases run on them.

Every query takes whole batches (``IN`` lists, multi-row inserts) because resolution runs
for every event: a batch of hundreds of items costs a handful of statements, not hundreds.
Writes that may race use INSERT ... ON CONFLICT DO NOTHING ... RETURNING, so the unique
keys decide who won and the caller sees which rows were really written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from accrual_platform.db import JsonType, UtcDateTime
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

outbox = outbox_table(metadata)


@dataclass(frozen=True)
class ParticipantRecord:
    id: str
    attributes: dict[str, Any]
    created_at: dt.datetime


T = TypeVar("T")


def _chunks(items: Collection[T]) -> Iterator[list[T]]:
    ordered = list(items)
    for start in range(0, len(ordered), CHUNK):
        yield ordered[start:start + CHUNK]


def insert_ignoring_conflicts(session: Session, table: sa.Table) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING in the session's dialect (both spell it alike)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing()


def tenant_region(session: Session, tenant_id: str) -> str | None:
    t = tenants
    return session.execute(
        sa.select(t.c.default_phone_region).where(t.c.id == tenant_id)).scalar_one_or_none()


# -- participants ---------------------------------------------------------------------------

def insert_participants(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        session.execute(participants.insert(), list(rows))


def survivors(session: Session, tenant_id: str,
              ids: Collection[str]) -> dict[str, ParticipantRecord]:
    """Each id of the tenant that exists, mapped to the participant it stands for now (its
    survivor when it was merged). Ids of other tenants or nobody are absent."""
    p = participants
    found: dict[str, ParticipantRecord] = {}
    pending = {pid: pid for pid in ids}  # requested id -> id to look up next
    for _ in range(MAX_MERGE_DEPTH):
        if not pending:
            break
        rows: dict[str, Any] = {}
        for chunk in _chunks(set(pending.values())):
            for row in session.execute(sa.select(
                    p.c.id, p.c.attributes, p.c.status, p.c.merged_into, p.c.created_at
            ).where(p.c.tenant_id == tenant_id, p.c.id.in_(chunk))):
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
                sa.tuple_(i.c.type, i.c.value).in_([(k.type.value, k.value) for k in chunk]))):
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
    stmt = insert_ignoring_conflicts(session, i).returning(i.c.type, i.c.value)
    return {Identity(IdentityType(r.type), r.value) for r in session.execute(stmt, rows)}


# -- enrollments ----------------------------------------------------------------------------

def enrollment_statuses(session: Session, tenant_id: str,
                        pairs: Collection[Pair]) -> dict[Pair, EnrollmentStatus]:
    e = enrollments
    found: dict[Pair, EnrollmentStatus] = {}
    for chunk in _chunks(set(pairs)):
        for row in session.execute(sa.select(e.c.program_id, e.c.participant_id, e.c.status).where(
                e.c.tenant_id == tenant_id,
                sa.tuple_(e.c.program_id, e.c.participant_id).in_(chunk))):
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
    stmt = insert_ignoring_conflicts(session, e).returning(e.c.program_id, e.c.participant_id)
    return {(r.program_id, r.participant_id) for r in session.execute(stmt, rows)}


def reactivate_enrollments(session: Session, tenant_id: str, pairs: Collection[Pair],
                           now: dt.datetime) -> set[Pair]:
    """Set inactive enrollments of the pairs ACTIVE; returns those this call changed (a
    concurrent reactivation of the same row re-checks the status and reports nothing)."""
    e = enrollments
    changed: set[Pair] = set()
    for chunk in _chunks(sorted(set(pairs))):
        result = session.execute(sa.update(e).where(
            e.c.tenant_id == tenant_id,
            sa.tuple_(e.c.program_id, e.c.participant_id).in_(chunk),
            e.c.status.in_([s.value for s in INACTIVE]),
        ).values(status=EnrollmentStatus.ACTIVE.value, updated_at=now).returning(
            e.c.program_id, e.c.participant_id))
        changed.update((r.program_id, r.participant_id) for r in result)
    return changed
