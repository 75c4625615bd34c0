"""The enrollment API and program-less resolution through the real gRPC server, on SQLite
and PostgreSQL: enroll (idempotent), get, list in cursor pages, change status, and the
enrollment webhooks each change announces."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import grpc
import sqlalchemy as sa
from accrual.identity.v1 import identity_pb2
from accrual_identity import storage
from accrual_platform.facts import data_of

if TYPE_CHECKING:
    from conftest import Stack

Code = grpc.StatusCode
ACTIVE, FROZEN = identity_pb2.ENROLLMENT_STATUS_ACTIVE, identity_pb2.ENROLLMENT_STATUS_FROZEN
LOCKED, CLOSED = identity_pb2.ENROLLMENT_STATUS_LOCKED, identity_pb2.ENROLLMENT_STATUS_CLOSED
CREATE = identity_pb2.UNKNOWN_PARTICIPANT_POLICY_CREATE
REJECT = identity_pb2.UNKNOWN_PARTICIPANT_POLICY_REJECT
NONE = identity_pb2.ENROLLMENT_CHANGE_NONE
CREATED = identity_pb2.ENROLLMENT_CHANGE_CREATED


def new_id() -> str:
    return str(uuid.uuid4())


def ident(kind: str, value: str) -> identity_pb2.Identity:
    return identity_pb2.Identity(type=identity_pb2.IdentityType.Value(f"IDENTITY_TYPE_{kind}"),
                                 value=value)


def participant(stack: Stack, key: str) -> str:
    made = stack.stub.CreateParticipant(identity_pb2.CreateParticipantRequest(
        identities=[ident("EXTERNAL", f"user-{uuid.uuid4().hex}")]), metadata=stack.auth(key))
    return str(made.participant_id)


def enroll(stack: Stack, key: str, program: str, participant_id: str) -> identity_pb2.Enrollment:
    return stack.stub.CreateEnrollment(identity_pb2.CreateEnrollmentRequest(
        program_id=program, participant_id=participant_id), metadata=stack.auth(key))


def update(stack: Stack, key: str, program: str, participant_id: str,
           status: int) -> identity_pb2.Enrollment:
    return stack.stub.UpdateEnrollment(identity_pb2.UpdateEnrollmentRequest(
        program_id=program, participant_id=participant_id, status=status),
        metadata=stack.auth(key))


def get(stack: Stack, key: str, program: str, participant_id: str) -> identity_pb2.Enrollment:
    return stack.stub.GetEnrollment(identity_pb2.GetEnrollmentRequest(
        program_id=program, participant_id=participant_id), metadata=stack.auth(key))


def types(stack: Stack, tenant: str, count: int) -> list[str]:
    return [n.type for n in stack.notifications(tenant, count, timeout=1.5)]


def test_enroll_creates_once_and_announces_it(stack: Stack) -> None:
    key, tenant = stack.key("participants:write", "participants:read")
    person, program = participant(stack, key), stack.program(tenant)

    first = enroll(stack, key, program, person)
    again = enroll(stack, key, program.upper(), person)

    assert (first.program_id, first.participant_id, first.status) == (program, person, ACTIVE)
    assert again == first == get(stack, key, program, person)
    assert first.enrolled_at.seconds > 0 and first.updated_at == first.enrolled_at
    assert stack.count(storage.enrollments, tenant) == 1
    notes = stack.notifications(tenant, 2)
    assert [(n.type, n.fact_id) for n in notes] == [
        ("participant.created", f"participant.created:{person}"),
        ("enrollment.created", f"enrollment.created:{program}:{person}")]
    assert types(stack, tenant, 3) == ["participant.created", "enrollment.created"]


def test_status_changes_and_reactivation_through_the_api(stack: Stack) -> None:
    key, tenant = stack.key("participants:write", "participants:read")
    person, program = participant(stack, key), stack.program(tenant)
    enroll(stack, key, program, person)

    frozen = update(stack, key, program, person, FROZEN)
    same = update(stack, key, program, person, FROZEN)
    assert frozen.status == FROZEN and same == frozen
    assert get(stack, key, program, person).status == FROZEN
    locked = update(stack, key, program, person, LOCKED)
    assert locked.status == LOCKED
    back = update(stack, key, program, person, ACTIVE)
    assert back.status == ACTIVE and back.enrolled_at == frozen.enrolled_at
    closed = update(stack, key, program, person, CLOSED)
    assert closed.status == CLOSED
    # enrolling again is how a partner re-opens a membership: it reactivates
    reopened = enroll(stack, key, program, person)
    assert reopened.status == ACTIVE

    notes = stack.notifications(tenant, 4)
    reactivated = [n for n in notes if n.type == "enrollment.reactivated"]
    assert [data_of(n)["previous_status"] for n in reactivated] == ["LOCKED", "CLOSED"]
    assert [n.type for n in notes] == ["participant.created", "enrollment.created",
                                       "enrollment.reactivated", "enrollment.reactivated"]


def test_events_reactivate_an_enrollment_frozen_through_the_api(stack: Stack) -> None:
    key, tenant = stack.key("participants:write", "participants:read")
    person, program = participant(stack, key), stack.program(tenant)
    enroll(stack, key, program, person)
    update(stack, key, program, person, FROZEN)

    [got] = stack.resolve(tenant, identity_pb2.ResolveItem(program_id=program,
                                                           participant_id=person))

    assert got.enrollment_change == identity_pb2.ENROLLMENT_CHANGE_REACTIVATED
    assert get(stack, key, program, person).status == ACTIVE


def test_enrollment_bad_input_is_400_naming_the_field_and_changes_nothing(stack: Stack) -> None:
    key, tenant = stack.key("participants:write", "participants:read")
    person, program = participant(stack, key), stack.program(tenant)
    enroll(stack, key, program, person)
    with stack.runtime.db.transaction() as session:
        before = session.execute(sa.select(storage.enrollments)).all()

    for status in (identity_pb2.ENROLLMENT_STATUS_UNSPECIFIED, 9):
        got = stack.failure(lambda s=status: update(stack, key, program, person, s))
        assert (got.code, got.fields) == (Code.INVALID_ARGUMENT, ["status"]), status
        assert "ACTIVE, FROZEN, LOCKED, CLOSED" in got.message
    for program_id, participant_id, field in (("nope", person, "program_id"),
                                              ("", person, "program_id"),
                                              (program, "x", "participant_id")):
        for call in (lambda p=program_id, q=participant_id: enroll(stack, key, p, q),
                     lambda p=program_id, q=participant_id: get(stack, key, p, q),
                     lambda p=program_id, q=participant_id: update(stack, key, p, q, FROZEN)):
            got = stack.failure(call)
            assert (got.code, got.fields) == (Code.INVALID_ARGUMENT, [field])
    missing = stack.failure(lambda: enroll(stack, key, program, new_id()))
    assert (missing.code, missing.reason) == (Code.NOT_FOUND, "PARTICIPANT_NOT_FOUND")
    elsewhere = stack.program(tenant)
    not_member = stack.failure(lambda: update(stack, key, elsewhere, person, FROZEN))
    assert (not_member.code, not_member.reason) == (Code.NOT_FOUND, "ENROLLMENT_NOT_FOUND")
    assert stack.failure(lambda: get(stack, key, elsewhere, person)).code == Code.NOT_FOUND
    with stack.runtime.db.transaction() as session:
        assert session.execute(sa.select(storage.enrollments)).all() == before
    assert stack.count(storage.enrollments, tenant) == 1


def test_another_tenants_enrollments_are_invisible(stack: Stack) -> None:
    mine, _ = stack.key("participants:write", "participants:read")
    theirs, their_tenant = stack.key("participants:write", "participants:read")
    person, program = participant(stack, theirs), stack.program(their_tenant)
    enroll(stack, theirs, program, person)

    assert stack.failure(lambda: get(stack, mine, program, person)).code == Code.NOT_FOUND
    assert stack.failure(lambda: enroll(stack, mine, program, person)).code == Code.NOT_FOUND
    assert stack.failure(lambda: update(stack, mine, program, person, CLOSED)).code == Code.NOT_FOUND
    listed = stack.failure(lambda: stack.stub.ListProgramEnrollments(
        identity_pb2.ListProgramEnrollmentsRequest(program_id=program), metadata=stack.auth(mine)))
    assert (listed.code, listed.reason) == (Code.NOT_FOUND, "PROGRAM_NOT_FOUND")
    assert get(stack, theirs, program, person).status == ACTIVE
    assert stack.count(storage.enrollments, their_tenant) == 1


def test_programs_that_are_not_the_callers_are_404_on_every_route_and_announce_nothing(
        stack: Stack) -> None:
    key, tenant = stack.key("participants:write", "participants:read")
    _, other_tenant = stack.key("participants:write")
    person, theirs = participant(stack, key), stack.program(other_tenant)
    calls = {
        "create": lambda p: enroll(stack, key, p, person),
        "get": lambda p: get(stack, key, p, person),
        "update": lambda p: update(stack, key, p, person, FROZEN),
        "list": lambda p: stack.stub.ListProgramEnrollments(
            identity_pb2.ListProgramEnrollmentsRequest(program_id=p), metadata=stack.auth(key)),
    }
    for program in (theirs, new_id()):
        for name, call in calls.items():
            got = stack.failure(lambda c=call, p=program: c(p))
            assert (got.code, got.reason) == (Code.NOT_FOUND, "PROGRAM_NOT_FOUND"), name
            assert program in got.message

    assert stack.count(storage.enrollments, tenant) == 0
    assert types(stack, tenant, 2) == ["participant.created"]  # no enrollment.created
    # a program of the caller's works on every route
    mine = stack.program(tenant)
    assert calls["create"](mine).status == ACTIVE
    assert calls["get"](mine).status == ACTIVE
    assert calls["update"](mine).status == FROZEN
    assert [e.participant_id for e in calls["list"](mine).enrollments] == [person]
    notes = stack.notifications(tenant, 2)
    assert [(n.type, n.fact_id) for n in notes] == [
        ("participant.created", f"participant.created:{person}"),
        ("enrollment.created", f"enrollment.created:{mine}:{person}")]


def test_enrollment_routes_answer_503_when_programs_cannot_be_checked(stack: Stack) -> None:
    key, tenant = stack.key("participants:write", "participants:read")
    person, program = participant(stack, key), stack.program(tenant)
    stack.programs.down = True
    try:
        got = stack.failure(lambda: enroll(stack, key, program, person))
    finally:
        stack.programs.down = False
    assert (got.code, got.reason) == (Code.UNAVAILABLE, "PROGRAMS_UNAVAILABLE")
    assert stack.count(storage.enrollments, tenant) == 0
    assert enroll(stack, key, program, person).status == ACTIVE


def test_program_enrollments_come_in_cursor_pages(stack: Stack) -> None:
    key, tenant = stack.key("participants:write", "participants:read")
    program = stack.program(tenant)
    people = sorted(participant(stack, key) for _ in range(7))
    for person in people:
        enroll(stack, key, program, person)
    update(stack, key, program, people[2], FROZEN)
    enroll(stack, key, stack.program(tenant), people[0])  # another program: not listed

    seen, token, pages = [], "", 0
    while True:
        page = stack.stub.ListProgramEnrollments(identity_pb2.ListProgramEnrollmentsRequest(
            program_id=program, page_size=3, page_token=token), metadata=stack.auth(key))
        seen += [e.participant_id for e in page.enrollments]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == people and pages == 3
    frozen = stack.stub.ListProgramEnrollments(identity_pb2.ListProgramEnrollmentsRequest(
        program_id=program, status=FROZEN), metadata=stack.auth(key))
    assert [e.participant_id for e in frozen.enrollments] == [people[2]]
    assert not frozen.next_page_token

    for size, token, field in ((201, "", "page_size"), (-1, "", "page_size"),
                               (0, "%%%", "page_token"), (0, "!", "page_token")):
        got = stack.failure(lambda s=size, t=token: stack.stub.ListProgramEnrollments(
            identity_pb2.ListProgramEnrollmentsRequest(program_id=program, page_size=s,
                                                       page_token=t), metadata=stack.auth(key)))
        assert (got.code, got.fields) == (Code.INVALID_ARGUMENT, [field])
    got = stack.failure(lambda: stack.stub.ListProgramEnrollments(
        identity_pb2.ListProgramEnrollmentsRequest(program_id=program, status=77),
        metadata=stack.auth(key)))
    assert (got.code, got.fields) == (Code.INVALID_ARGUMENT, ["status"])


def test_a_participants_enrollments_in_pages(stack: Stack) -> None:
    key, tenant = stack.key("participants:write", "participants:read")
    person = participant(stack, key)
    programs = sorted(stack.program(tenant) for _ in range(5))
    for program in programs:
        enroll(stack, key, program, person)

    first = stack.stub.ListParticipantEnrollments(identity_pb2.ListParticipantEnrollmentsRequest(
        participant_id=person, page_size=4), metadata=stack.auth(key))
    rest = stack.stub.ListParticipantEnrollments(identity_pb2.ListParticipantEnrollmentsRequest(
        participant_id=person, page_size=4, page_token=first.next_page_token),
        metadata=stack.auth(key))

    assert [e.program_id for e in [*first.enrollments, *rest.enrollments]] == programs
    assert not rest.next_page_token
    missing = stack.failure(lambda: stack.stub.ListParticipantEnrollments(
        identity_pb2.ListParticipantEnrollmentsRequest(participant_id=new_id()),
        metadata=stack.auth(key)))
    assert missing.code == Code.NOT_FOUND


def test_enrollment_calls_need_the_participant_scopes(stack: Stack) -> None:
    events, _ = stack.key("events:write")
    got = stack.failure(lambda: get(stack, events, new_id(), new_id()))
    assert got.code == Code.PERMISSION_DENIED
    reader, _ = stack.key("participants:read")
    got = stack.failure(lambda: enroll(stack, reader, new_id(), new_id()))
    assert got.code == Code.PERMISSION_DENIED


# -- resolution without a program (CDP events) ----------------------------------------------

def test_programless_items_resolve_or_create_without_enrolling(stack: Stack) -> None:
    key, tenant = stack.key("participants:write", "participants:read")
    known = participant(stack, key)
    a, b, frozen = (stack.program(tenant) for _ in range(3))
    for program in (a, b, frozen):
        enroll(stack, key, program, known)
    update(stack, key, frozen, known, FROZEN)
    enrollments_before = stack.count(storage.enrollments, tenant)

    fresh, existing, rejected = stack.resolve(
        tenant,
        identity_pb2.ResolveItem(on_unknown_participant=CREATE,
                                 identities=[ident("EMAIL", "Cdp.New@Example.com")]),
        identity_pb2.ResolveItem(participant_id=known,
                                 identities=[ident("DEVICE_KEY", "cdp-device")]),
        identity_pb2.ResolveItem(on_unknown_participant=REJECT,
                                 identities=[ident("EXTERNAL", "nobody-here")]))

    assert fresh.participant_created and not fresh.error_code
    assert (fresh.enrollment_change, list(fresh.active_program_ids)) == (NONE, [])
    assert existing.participant_id == known and existing.enrollment_change == NONE
    assert list(existing.active_program_ids) == sorted([a, b])  # not the FROZEN one
    assert rejected.error_code == "participant_not_found"
    assert stack.count(storage.enrollments, tenant) == enrollments_before
    # the CDP identity joined the known participant, the new email made a new one
    again = stack.resolve(tenant, identity_pb2.ResolveItem(
        identities=[ident("DEVICE_KEY", "cdp-device")]))[0]
    assert again.participant_id == known


def test_programless_item_sees_enrollments_made_earlier_in_its_batch(stack: Stack) -> None:
    tenant, program = stack.tenant(), new_id()
    user = ident("EXTERNAL", f"batch-{uuid.uuid4().hex}")

    loyalty, cdp = stack.resolve(
        tenant, identity_pb2.ResolveItem(program_id=program, on_unknown_participant=CREATE,
                                         identities=[user]),
        identity_pb2.ResolveItem(on_unknown_participant=CREATE, identities=[user]))

    assert loyalty.participant_id == cdp.participant_id
    assert (loyalty.enrollment_change, cdp.enrollment_change) == (CREATED, NONE)
    assert list(cdp.active_program_ids) == [program]
    assert list(loyalty.active_program_ids) == []
