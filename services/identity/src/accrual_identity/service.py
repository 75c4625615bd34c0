"""Participants: creation, lookup, and resolution of the people behind events."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from accrual_identity import storage
from accrual_identity.domain.normalize import PRECEDENCE, InvalidIdentity, normalize
from accrual_platform import errors
from accrual_platform.db import Database, utcnow

INACTIVE = ("FROZEN", "LOCKED", "CLOSED")


@dataclass
class ResolveInput:
    program_id: str
    create_unknown: bool
    participant_id: str
    identities: list[tuple[str, str]]


@dataclass
class Resolution:
    participant_id: str = ""
    participant_created: bool = False
    enrollment_change: str = "NONE"
    error_code: str = ""
    error_message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)


class _Retry(Exception):
    """A concurrent writer claimed an identifier first: start the item again."""


class IdentityService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _insert(self) -> Any:
        return postgresql.insert if self.db.dialect == "postgresql" else sqlite.insert

    def _region(self, session: Session, tenant_id: str) -> str:
        t = storage.tenants
        row = session.execute(sa.select(t.c.default_phone_region).where(t.c.id == tenant_id)).first()
        return row.default_phone_region if row else "US"

    # -- participants -----------------------------------------------------------------
    def create_participant(self, tenant_id: str, identities: Sequence[tuple[str, str]],
                           attributes: dict[str, Any]) -> tuple[sa.Row[Any], list[sa.Row[Any]]]:
        violations: list[errors.FieldViolation] = []
        if not identities:
            violations.append(errors.FieldViolation("identities", "at least one identity is required"))
        with self.db.transaction() as session:
            region = self._region(session, tenant_id)
        clean: list[tuple[str, str]] = []
        for i, (kind, value) in enumerate(identities):
            try:
                clean.append((kind, normalize(kind, value, region)))
            except InvalidIdentity as exc:
                violations.append(errors.FieldViolation(
                    f"identities[{i}].{'type' if kind not in PRECEDENCE else 'value'}", str(exc)))
        errors.collect(violations)
        pid = str(uuid.uuid4())
        now = utcnow()
        try:
            with self.db.transaction() as session:
                session.execute(storage.participants.insert().values(
                    id=pid, tenant_id=tenant_id, attributes=attributes, status="ACTIVE",
                    created_at=now))
                for kind, value in dict.fromkeys(clean):
                    session.execute(storage.identities.insert().values(
                        tenant_id=tenant_id, type=kind, value=value, participant_id=pid,
                        created_at=now))
        except sa_exc.IntegrityError:
            raise errors.AlreadyExists("an identity is already linked to another participant",
                                       reason="identity_taken") from None
        return self.get_participant(tenant_id, pid)

    def get_participant(self, tenant_id: str, participant_id: str
                        ) -> tuple[sa.Row[Any], list[sa.Row[Any]]]:
        try:
            participant_id = str(uuid.UUID(participant_id))
        except ValueError:
            raise errors.InvalidArgument.field("participant_id", "must be a UUID") from None
        with self.db.transaction() as session:
            row = self._participant(session, tenant_id, participant_id)
            if row is None:
                raise errors.NotFound(f"participant {participant_id} not found",
                                      reason="participant_not_found")
            idents = list(session.execute(sa.select(storage.identities).where(
                storage.identities.c.tenant_id == tenant_id,
                storage.identities.c.participant_id == row.id)).all())
        return row, idents

    def _participant(self, session: Session, tenant_id: str, pid: str) -> sa.Row[Any] | None:
        p = storage.participants
        for _ in range(5):  # follow merges to the survivor
            row = session.execute(sa.select(p).where(p.c.tenant_id == tenant_id, p.c.id == pid)).first()
            if row is None or not row.merged_into:
                return row
            pid = row.merged_into
        return None

    # -- resolution -------------------------------------------------------------------------
    def resolve(self, tenant_id: str, items: Sequence[ResolveInput]) -> list[Resolution]:
        with self.db.transaction() as session:
            region = self._region(session, tenant_id)
        results = []
        for item in items:
            for attempt in range(5):
                try:
                    results.append(self._resolve_one(tenant_id, item, region))
                    break
                except _Retry:
                    if attempt == 4:
                        raise errors.Unavailable("identity contention, retry") from None
        return results

    def _resolve_one(self, tenant_id: str, item: ResolveInput, region: str) -> Resolution:
        res = Resolution()
        clean: list[tuple[str, str]] = []
        for kind, value in item.identities:
            try:
                clean.append((kind, normalize(kind, value, region)))
            except InvalidIdentity as exc:
                return Resolution(error_code="invalid_identity", error_message=f"{kind}: {exc}")
        clean.sort(key=lambda kv: PRECEDENCE[kv[0]])
        now = utcnow()
        ins = self._insert()
        with self.db.transaction() as session:
            if item.participant_id:
                try:
                    pid = str(uuid.UUID(item.participant_id))
                except ValueError:
                    pid = ""
                row = self._participant(session, tenant_id, pid) if pid else None
                if row is None:
                    return Resolution(error_code="participant_not_found",
                                      error_message=f"participant {item.participant_id} does not exist")
                winner = row
            else:
                i = storage.identities
                owners: dict[tuple[str, str], str] = {}
                if clean:
                    for r in session.execute(sa.select(i).where(
                            i.c.tenant_id == tenant_id,
                            sa.tuple_(i.c.type, i.c.value).in_(clean))):
                        owners[(r.type, r.value)] = r.participant_id
                owner = next((owners[k] for k in clean if k in owners), None)
                winner = self._participant(session, tenant_id, owner) if owner else None
                if winner is None:
                    if not item.create_unknown:
                        return Resolution(error_code="participant_not_found",
                                          error_message="no participant matches the event's identity "
                                                        "and the program does not create unknown ones")
                    pid = str(uuid.uuid4())
                    session.execute(storage.participants.insert().values(
                        id=pid, tenant_id=tenant_id, attributes={}, status="ACTIVE", created_at=now))
                    res.participant_created = True
                    winner = session.execute(sa.select(storage.participants).where(
                        storage.participants.c.id == pid)).one()
                for kind, value in clean:
                    if (kind, value) in owners:
                        continue  # claimed: never stolen
                    got = session.execute(ins(i).values(
                        tenant_id=tenant_id, type=kind, value=value, participant_id=winner.id,
                        created_at=now).on_conflict_do_nothing().returning(i.c.participant_id)).first()
                    if got is None and res.participant_created:
                        raise _Retry()  # someone created this person meanwhile: use theirs
            res.participant_id = winner.id
            res.attributes = dict(winner.attributes or {})
            e = storage.enrollments
            created = session.execute(ins(e).values(
                tenant_id=tenant_id, program_id=item.program_id, participant_id=winner.id,
                status="ACTIVE", created_at=now, updated_at=now,
            ).on_conflict_do_nothing().returning(e.c.status)).first()
            if created is not None:
                res.enrollment_change = "CREATED"
            else:
                reactivated = session.execute(sa.update(e).where(
                    e.c.tenant_id == tenant_id, e.c.program_id == item.program_id,
                    e.c.participant_id == winner.id, e.c.status.in_(INACTIVE)
                ).values(status="ACTIVE", updated_at=now))
                if reactivated.rowcount:
                    res.enrollment_change = "REACTIVATED"
        return res
