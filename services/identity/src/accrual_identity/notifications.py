"""Webhook facts identity announces, written to its outbox with the change they describe.

Each fact carries a deterministic ``fact_id``, so a retried or replayed transaction that
announces the same fact again yields the same webhook id and partners can deduplicate.
"""

from __future__ import annotations

import datetime as dt

from accrual.messages.v1 import messages_pb2
from accrual_platform import contract, facts
from accrual_platform.contract import outbox_row
from sqlalchemy.orm import Session

from accrual_identity import storage


def participant_created(tenant_id: str, participant_id: str,
                        now: dt.datetime) -> messages_pb2.Notification:
    return facts.notification(tenant_id, "participant.created", f"participant.created:{participant_id}", now,
                              {"participant_id": participant_id})


def enrollment_created(tenant_id: str, program_id: str, participant_id: str,
                       now: dt.datetime) -> messages_pb2.Notification:
    return facts.notification(tenant_id, "enrollment.created",
                              f"enrollment.created:{program_id}:{participant_id}", now,
                              {"program_id": program_id, "participant_id": participant_id, "status": "ACTIVE"})


def enrollment_reactivated(tenant_id: str, program_id: str, participant_id: str,
                           previous_status: str | None,
                           now: dt.datetime) -> messages_pb2.Notification:
    data = {"program_id": program_id, "participant_id": participant_id, "status": "ACTIVE"}
    if previous_status:
        data["previous_status"] = previous_status
    return facts.notification(tenant_id, "enrollment.reactivated",
                              f"enrollment.reactivated:{program_id}:{participant_id}:{now.isoformat()}", now,
                              data)


def write(session: Session, notes: list[messages_pb2.Notification]) -> bool:
    """One outbox row for all of a transaction's facts; True when there was anything."""
    if not notes:
        return False
    session.execute(storage.outbox.insert(), [outbox_row(
        contract.PUBLISH_NOTIFICATIONS, messages_pb2.Notifications(notifications=notes))])
    return True
