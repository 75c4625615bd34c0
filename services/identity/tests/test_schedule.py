"""ListScheduledCandidates (issue 7): birthdays and enrollment anniversaries on a day among a
program's ACTIVE enrollments, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING

import grpc
import sqlalchemy as sa
from accrual.identity.v1 import identity_pb2
from accrual_identity import storage
from accrual_identity.schedule import month_days

if TYPE_CHECKING:
    from conftest import Stack

BIRTHDAY = identity_pb2.SCHEDULED_OCCASION_BIRTHDAY
ANNIVERSARY = identity_pb2.SCHEDULED_OCCASION_ANNIVERSARY


def _member(stack: Stack, key: str, program: str, birth_date: str | None = None) -> str:
    req = identity_pb2.CreateParticipantRequest(identities=[identity_pb2.Identity(
        type=identity_pb2.IDENTITY_TYPE_EXTERNAL, value=f"u-{uuid.uuid4().hex}")])
    if birth_date:
        req.attributes.update({"birth_date": birth_date})
    pid: str = stack.stub.CreateParticipant(req, metadata=stack.auth(key), timeout=10).participant_id
    stack.stub.CreateEnrollment(identity_pb2.CreateEnrollmentRequest(program_id=program, participant_id=pid),
                                metadata=stack.auth(key), timeout=10)
    return pid


def _candidates(stack: Stack, tenant: str, program: str, occasion: int, date: str,
                **kw: object) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    token = ""
    while True:
        resp = stack.stub.ListScheduledCandidates(identity_pb2.ListScheduledCandidatesRequest(
            tenant_id=tenant, program_id=program, occasion=occasion, date=date, page_token=token, **kw),
            metadata=stack.internal(), timeout=10)
        out += [(c.participant_id, c.years) for c in resp.candidates]
        token = resp.next_page_token
        if not token:
            return out


def test_birthdays_and_anniversaries_among_active_enrollments(stack: Stack) -> None:
    key, tenant = stack.key("participants:write", "participants:read")
    program, elsewhere = stack.program(tenant), stack.program(tenant)
    may10 = _member(stack, key, program, "1990-05-10")
    leap = _member(stack, key, program, "2000-02-29")
    frozen = _member(stack, key, program, "1985-05-10")
    may11 = _member(stack, key, program, "1990-05-11")
    _member(stack, key, elsewhere, "1990-05-10")
    stack.stub.UpdateEnrollment(identity_pb2.UpdateEnrollmentRequest(
        program_id=program, participant_id=frozen, status=identity_pb2.ENROLLMENT_STATUS_FROZEN),
        metadata=stack.auth(key), timeout=10)

    assert _candidates(stack, tenant, program, BIRTHDAY, "2026-05-10") == [(may10, 36)]
    assert _candidates(stack, tenant, program, BIRTHDAY, "2027-02-28") == [(leap, 27)]  # common year
    assert _candidates(stack, tenant, program, BIRTHDAY, "2028-02-28") == []  # leap year: the 29th
    assert _candidates(stack, tenant, program, BIRTHDAY, "2028-02-29") == [(leap, 28)]
    paged = _candidates(stack, tenant, program, BIRTHDAY, "2026-05-10", page_size=1)
    assert paged == [(may10, 36)]

    # Anniversaries count from the enrollment's creation, in earlier years only.
    e = storage.enrollments
    stack.execute(sa.update(e).where(e.c.tenant_id == tenant, e.c.program_id == program).values(
        created_at=dt.datetime(2023, 3, 15, 23, 30, tzinfo=dt.UTC)))
    found = _candidates(stack, tenant, program, ANNIVERSARY, "2026-03-15")
    assert found == sorted((pid, 3) for pid in (may10, leap, may11))  # not the FROZEN one
    assert _candidates(stack, tenant, program, ANNIVERSARY, "2023-03-15") == []  # the day itself
    assert _candidates(stack, tenant, program, ANNIVERSARY, "2026-03-16") == []

    bad = stack.failure(lambda: stack.stub.ListScheduledCandidates(identity_pb2.ListScheduledCandidatesRequest(
        tenant_id=tenant, program_id="nope", occasion=BIRTHDAY, date="10 May"), metadata=stack.internal(), timeout=10))
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT and bad.fields == ["program_id", "date"]
    denied = stack.failure(lambda: stack.stub.ListScheduledCandidates(identity_pb2.ListScheduledCandidatesRequest(
        tenant_id=tenant, program_id=program, occasion=BIRTHDAY, date="2026-05-10"), metadata=stack.auth(key),
        timeout=10))
    assert denied.code == grpc.StatusCode.PERMISSION_DENIED


def test_feb_29_is_celebrated_on_feb_28_in_common_years_only() -> None:
    assert month_days(dt.date(2027, 2, 28)) == ["02-28", "02-29"]
    assert month_days(dt.date(2028, 2, 28)) == ["02-28"]
    assert month_days(dt.date(2028, 2, 29)) == ["02-29"]
