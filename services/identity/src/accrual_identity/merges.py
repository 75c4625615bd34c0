"""Explicit merges: two records of one person become one.

Resolution never moves a claimed identity (SPEC section 5), so when a partner learns that
two participants are the same person it says so here. In one transaction the merged
participant's identities and enrollments move to the survivor, the merged one is marked
MERGED (its id resolves to the survivor everywhere from then on), and a
``ParticipantsMerged`` message for the rules service, which owns the balances, is written
to the outbox: the ledgers move exactly when the merge commits, never without it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from accrual.messages.v1 import messages_pb2
from accrual_platform import contract, errors
from accrual_platform.contract import outbox_row
from accrual_platform.db import Database, utcnow
from accrual_platform.ids import new_id, require_uuid
from sqlalchemy.orm import Session

from accrual_identity import storage
from accrual_identity.participants import ParticipantView, view

#: actor of the rules service that moves ledger balances of a merge
SURVIVOR, MERGED = "survivor_participant_id", "merged_participant_id"


@dataclass(frozen=True)
class MergeResult:
    merge_id: str
    merged_participant_id: str
    survivor: ParticipantView
    merged_at: dt.datetime


class Merges:
    def __init__(self, db: Database, on_commit: Callable[[], None] = lambda: None) -> None:
        """``on_commit`` runs after a merge committed (wakes the outbox relay)."""
        self._db = db
        self._on_commit = on_commit

    def merge(self, tenant_id: str, survivor_participant_id: str,
              merged_participant_id: str) -> MergeResult:
        """Merge ``merged_participant_id`` into ``survivor_participant_id``; every refusal
        (same participant, unknown or another tenant's, already merged) changes nothing."""
        violations: list[errors.FieldViolation] = []
        ids: dict[str, str] = {}
        for name, raw in ((SURVIVOR, survivor_participant_id), (MERGED, merged_participant_id)):
            try:
                ids[name] = require_uuid(raw, name)
            except errors.InvalidArgument as exc:
                violations.extend(exc.violations)
        errors.collect(violations)
        survivor_id, merged_id = ids[SURVIVOR], ids[MERGED]
        if survivor_id == merged_id:
            raise errors.InvalidArgument.field(
                MERGED, f"must differ from {SURVIVOR}: a participant cannot be merged into itself")

        def work(session: Session) -> MergeResult:
            rows = storage.lock_participants(session, tenant_id, [survivor_id, merged_id])
            for name, pid in ((SURVIVOR, survivor_id), (MERGED, merged_id)):
                if pid not in rows:
                    raise errors.NotFound(f"{name}: participant {pid} not found",
                                          reason="participant_not_found", metadata={"field": name})
                if rows[pid].status == storage.MERGED:
                    raise errors.FailedPrecondition(
                        f"{name}: participant {pid} was already merged into "
                        f"{rows[pid].merged_into}", reason="participant_merged",
                        violations=[errors.FieldViolation(
                            name, f"was already merged into {rows[pid].merged_into}")],
                        metadata={"field": name, "survivor_participant_id": rows[pid].merged_into or ""})
            merge_id, now = new_id(), utcnow()
            storage.merge_participant_rows(session, tenant_id, survivor=rows[survivor_id],
                                           merged=rows[merged_id], merge_id=merge_id, now=now)
            message = messages_pb2.ParticipantsMerged(
                tenant_id=tenant_id, merge_id=merge_id, merged_participant_id=merged_id,
                survivor_participant_id=survivor_id)
            message.merged_at.FromDatetime(now)
            session.execute(storage.outbox.insert(), [
                outbox_row(contract.MERGE_LEDGERS, message)])
            record = storage.survivors(session, tenant_id, [survivor_id])[survivor_id]
            return MergeResult(merge_id, merged_id, view(session, tenant_id, record), now)

        result = storage.in_transaction(self._db, work)
        self._on_commit()
        return result
