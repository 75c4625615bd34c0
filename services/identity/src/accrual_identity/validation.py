"""Checks of request values every identity use case shares: ids, page sizes, and the
participant an id names (page tokens are accrual_platform.pages').

Each failure names the request field, so a client sees which value to fix, and nothing
malformed reaches a query.
"""

from __future__ import annotations

from accrual_platform import errors
from sqlalchemy.orm import Session

from accrual_identity import storage

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
#: ids are UUIDs; program ids of internal callers are at most this long too
MAX_ID_LENGTH = 36


def page_size(requested: int) -> int:
    if not 0 <= requested <= MAX_PAGE_SIZE:
        raise errors.InvalidArgument.field("page_size", f"must be between 1 and {MAX_PAGE_SIZE}")
    return requested or DEFAULT_PAGE_SIZE


def existing_participant(session: Session, tenant_id: str, participant_id: str, *,
                         field: str = "participant_id", lock: bool = False,
                         ) -> storage.ParticipantRecord:
    """The participant a (canonical) id of the request stands for, its survivor when it was
    merged; NOT_FOUND naming the field when the tenant has nobody by that id (another
    tenant's participant is nobody, as for every object of another tenant)."""
    record = storage.survivors(session, tenant_id, [participant_id], lock=lock).get(participant_id)
    if record is None:
        raise errors.NotFound(f"{field}: participant {participant_id} not found",
                              reason="participant_not_found", metadata={"field": field})
    return record
