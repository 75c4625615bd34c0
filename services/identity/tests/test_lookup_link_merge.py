"""Looking participants up by identity, linking identities and merging participants, through
the real gRPC server on SQLite and PostgreSQL: what a partner sees, and that a refused call
leaves every row as it was."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import dramatiq
import grpc
import sqlalchemy as sa
from accrual.identity.v1 import identity_pb2
from accrual.messages.v1 import messages_pb2
from accrual_identity import storage
from accrual_platform import queue
from hypothesis import given, settings
from hypothesis import strategies as st

if TYPE_CHECKING:
    from conftest import Stack

Code = grpc.StatusCode
CREATE = identity_pb2.UNKNOWN_PARTICIPANT_POLICY_CREATE
NONE = identity_pb2.ENROLLMENT_CHANGE_NONE
CREATED = identity_pb2.ENROLLMENT_CHANGE_CREATED


def ident(kind: str, value: str) -> identity_pb2.Identity:
    return identity_pb2.Identity(type=identity_pb2.IdentityType.Value(f"IDENTITY_TYPE_{kind}"),
                                 value=value)


def unique(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def new_id() -> str:
    return str(uuid.uuid4())


def idents(participant: identity_pb2.Participant) -> set[tuple[str, str]]:
    return {(identity_pb2.IdentityType.Name(i.type).removeprefix("IDENTITY_TYPE_"), i.value)
            for i in participant.identities}


def create(stack: Stack, key: str, *identities: identity_pb2.Identity,
           **attributes: object) -> identity_pb2.Participant:
    request = identity_pb2.CreateParticipantRequest(identities=list(identities))
    request.attributes.update(attributes)
    return stack.stub.CreateParticipant(request, metadata=stack.auth(key))


def lookup(stack: Stack, key: str, **query: str) -> identity_pb2.Participant:
    return stack.stub.LookupParticipant(identity_pb2.LookupParticipantRequest(**query),
                                        metadata=stack.auth(key))


def link(stack: Stack, key: str, participant_id: str,
         identity: identity_pb2.Identity | None) -> identity_pb2.Participant:
    request = identity_pb2.LinkIdentityRequest(participant_id=participant_id)
    if identity is not None:
        request.identity.CopyFrom(identity)
    return stack.stub.LinkIdentity(request, metadata=stack.auth(key))


def merge(stack: Stack, key: str, survivor: str,
          merged: str) -> identity_pb2.MergeParticipantsResponse:
    return stack.stub.MergeParticipants(identity_pb2.MergeParticipantsRequest(
        survivor_participant_id=survivor, merged_participant_id=merged), metadata=stack.auth(key))


def get(stack: Stack, key: str, participant_id: str) -> identity_pb2.Participant:
    return stack.stub.GetParticipant(identity_pb2.GetParticipantRequest(
        participant_id=participant_id), metadata=stack.auth(key))


def enroll(stack: Stack, key: str, program: str, participant_id: str) -> identity_pb2.Enrollment:
    return stack.stub.CreateEnrollment(identity_pb2.CreateEnrollmentRequest(
        program_id=program, participant_id=participant_id), metadata=stack.auth(key))


def snapshot(stack: Stack, tenant: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every identity-schema row of the tenant, to show a refused call changed nothing."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with stack.runtime.db.transaction() as session:
        for table in (storage.participants, storage.identities, storage.enrollments,
                      storage.merges):
            out[table.name] = sorted(tuple(r) for r in session.execute(
                sa.select(table).where(table.c.tenant_id == tenant)))
    return out


def merge_messages(stack: Stack) -> list[messages_pb2.ParticipantsMerged]:
    """ParticipantsMerged messages the relay published to the rules queue so far."""
    found = []
    q = stack.broker.queues.get(queue.RULES_QUEUE)
    while q is not None and not q.empty():
        message = dramatiq.Message.decode(q.get_nowait())
        assert (message.queue_name, message.actor_name) == ("rules", "merge_ledgers")
        found.append(queue.decode(message.args[0], messages_pb2.ParticipantsMerged))
    return found


def wait_for_merge(stack: Stack, merge_id: str, seen: list[messages_pb2.ParticipantsMerged]
                   ) -> messages_pb2.ParticipantsMerged:
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        seen.extend(merge_messages(stack))
        hits = [m for m in seen if m.merge_id == merge_id]
        if hits:
            assert len(hits) == 1
            return hits[0]
        time.sleep(0.02)
    raise AssertionError(f"no ParticipantsMerged for {merge_id}")


# -- lookup ---------------------------------------------------------------------------------

def test_lookup_by_each_identity_normalises_before_matching(stack: Stack) -> None:
    key, _ = stack.key("participants:write", "participants:read")
    external = unique()
    made = create(stack, key, ident("EXTERNAL", external), ident("EMAIL", "Look.Up@Example.com"),
                  ident("PHONE", "+1 (415) 555-0199"), ident("DEVICE_KEY", "dev-look"),
                  birth_date="1991-01-02")

    for query in ({"external_id": f"  {external} "}, {"email": " LOOK.UP@example.COM"},
                  {"phone": "415.555.0199"}, {"device_key": "dev-look\t"}):
        got = lookup(stack, key, **query)
        assert got == made, query


@settings(max_examples=25, deadline=None)
@given(flips=st.lists(st.booleans(), min_size=40, max_size=40),
       before=st.text(alphabet=" \t", max_size=2), after=st.text(alphabet=" \t", max_size=2),
       phone_style=st.sampled_from(["({a}) {b}-{c}", "{a}.{b}.{c}", "+1 {a} {b} {c}", "1{a}{b}{c}"]))
def test_any_spelling_of_a_stored_email_or_phone_finds_the_participant(
        stack: Stack, flips: list[bool], before: str, after: str, phone_style: str) -> None:
    key, _ = stack.key("participants:write")
    local = uuid.uuid4().hex[:10]
    area, line = 212, f"{uuid.uuid4().int % 10000:04d}"
    made = create(stack, key, ident("EMAIL", f"{local}@example.com"),
                  ident("PHONE", f"+1{area}555{line}"))
    email = "".join(ch.upper() if flip else ch for ch, flip in zip(f"{local}@Example.com", flips,
                                                                    strict=False))

    assert lookup(stack, key, email=before + email + after) == made
    phone = phone_style.format(a=area, b="555", c=line)
    assert lookup(stack, key, phone=before + phone + after) == made


def test_lookup_of_an_unknown_identity_is_404_and_bad_input_400(stack: Stack) -> None:
    key, _ = stack.key("participants:read")

    missing = stack.failure(lambda: lookup(stack, key, email="nobody@example.com"))
    assert (missing.code, missing.reason) == (Code.NOT_FOUND, "PARTICIPANT_NOT_FOUND")
    bad = stack.failure(lambda: lookup(stack, key, email="not-an-email"))
    assert (bad.code, bad.fields) == (Code.INVALID_ARGUMENT, ["email"])
    bad = stack.failure(lambda: lookup(stack, key, phone="12"))
    assert (bad.code, bad.fields) == (Code.INVALID_ARGUMENT, ["phone"])
    bad = stack.failure(lambda: lookup(stack, key, external_id="x" * 256))
    assert (bad.code, bad.fields) == (Code.INVALID_ARGUMENT, ["external_id"])
    bad = stack.failure(lambda: lookup(stack, key, external_id="   "))
    assert (bad.code, bad.fields) == (Code.INVALID_ARGUMENT, ["external_id"])
    none = stack.failure(lambda: lookup(stack, key))
    assert none.code == Code.INVALID_ARGUMENT
    assert none.fields == ["external_id", "email", "phone", "device_key"]
    two = stack.failure(lambda: lookup(stack, key, external_id="a", email="a@example.com"))
    assert (two.code, two.fields) == (Code.INVALID_ARGUMENT, ["external_id", "email"])


def test_lookup_does_not_see_another_tenants_participant(stack: Stack) -> None:
    mine, _ = stack.key("participants:read")
    theirs, _ = stack.key("participants:write")
    create(stack, theirs, ident("EMAIL", "shared@example.com"))
    got = stack.failure(lambda: lookup(stack, mine, email="shared@example.com"))
    assert got.code == Code.NOT_FOUND


# -- link -----------------------------------------------------------------------------------

def test_link_adds_a_normalised_identity_and_is_idempotent(stack: Stack) -> None:
    key, tenant = stack.key("participants:write", "participants:read")
    made = create(stack, key, ident("EXTERNAL", unique()))

    linked = link(stack, key, made.participant_id, ident("EMAIL", " New.Mail@Example.com "))
    again = link(stack, key, made.participant_id, ident("EMAIL", "new.mail@example.com"))

    assert ("EMAIL", "new.mail@example.com") in idents(linked)
    assert again == linked == get(stack, key, made.participant_id)
    assert lookup(stack, key, email="NEW.MAIL@example.com").participant_id == made.participant_id
    assert stack.count(storage.identities, tenant) == 2


def test_linking_another_participants_identity_is_409_and_changes_nothing(stack: Stack) -> None:
    key, tenant = stack.key("participants:write")
    owner = create(stack, key, ident("PHONE", "+1 415 555 0101"))
    other = create(stack, key, ident("EXTERNAL", unique()))
    before = snapshot(stack, tenant)

    got = stack.failure(lambda: link(stack, key, other.participant_id,
                                     ident("PHONE", "(415) 555-0101")))

    assert (got.code, got.reason) == (Code.ALREADY_EXISTS, "IDENTITY_CONFLICT")
    assert "identity.value" in got.message
    assert snapshot(stack, tenant) == before
    assert idents(get(stack, key, owner.participant_id)) == {("PHONE", "+14155550101")}


def test_link_refuses_bad_input_naming_the_field(stack: Stack) -> None:
    key, tenant = stack.key("participants:write")
    made = create(stack, key, ident("EXTERNAL", unique()))
    before = snapshot(stack, tenant)

    cases = [
        (made.participant_id, ident("EMAIL", "two@@example.com"), ["identity.value"]),
        (made.participant_id, ident("PHONE", "call me"), ["identity.value"]),
        (made.participant_id, ident("DEVICE_KEY", ""), ["identity.value"]),
        (made.participant_id, ident("EXTERNAL", "y" * 256), ["identity.value"]),
        (made.participant_id, identity_pb2.Identity(type=42, value="x"), ["identity.type"]),
        (made.participant_id, identity_pb2.Identity(value="x"), ["identity.type"]),
        (made.participant_id, None, ["identity"]),
        ("not-a-uuid", ident("EXTERNAL", "z"), ["participant_id"]),
    ]
    for participant_id, identity, fields in cases:
        got = stack.failure(lambda p=participant_id, i=identity: link(stack, key, p, i))
        assert (got.code, got.fields) == (Code.INVALID_ARGUMENT, fields), (identity, fields)
    missing = stack.failure(lambda: link(stack, key, new_id(), ident("EXTERNAL", "z")))
    assert (missing.code, missing.reason) == (Code.NOT_FOUND, "PARTICIPANT_NOT_FOUND")
    assert snapshot(stack, tenant) == before


def test_link_to_another_tenants_participant_is_404(stack: Stack) -> None:
    mine, _ = stack.key("participants:write")
    theirs, their_tenant = stack.key("participants:write")
    made = create(stack, theirs, ident("EXTERNAL", unique()))
    got = stack.failure(lambda: link(stack, mine, made.participant_id, ident("EXTERNAL", "z")))
    assert got.code == Code.NOT_FOUND
    assert stack.count(storage.identities, their_tenant) == 1


# -- merge ----------------------------------------------------------------------------------

def test_merge_moves_identities_and_enrollments_and_the_old_id_follows(stack: Stack) -> None:
    key, tenant = stack.key("participants:write", "participants:read")
    survivor = create(stack, key, ident("EXTERNAL", unique()), level="gold")
    merged = create(stack, key, ident("EMAIL", "old@example.com"), ident("PHONE", "+14155550177"),
                    birth_date="1980-04-05", level="silver")
    shared, only_merged, only_survivor = (stack.program(tenant) for _ in range(3))
    enroll(stack, key, shared, merged.participant_id)  # earlier: this enrolled_at survives
    enroll(stack, key, only_merged, merged.participant_id)
    enroll(stack, key, shared, survivor.participant_id)
    enroll(stack, key, only_survivor, survivor.participant_id)
    earliest = stack.stub.GetEnrollment(identity_pb2.GetEnrollmentRequest(
        program_id=shared, participant_id=merged.participant_id), metadata=stack.auth(key))
    stack.execute(sa.update(storage.enrollments).where(
        storage.enrollments.c.tenant_id == tenant, storage.enrollments.c.program_id == shared,
        storage.enrollments.c.participant_id == survivor.participant_id).values(status="FROZEN"))

    result = merge(stack, key, survivor.participant_id, merged.participant_id)

    assert uuid.UUID(result.merge_id) and result.merged_participant_id == merged.participant_id
    assert result.survivor.participant_id == survivor.participant_id
    assert idents(result.survivor) == idents(survivor) | idents(merged)
    # the survivor keeps its attributes and gains those it lacked
    assert dict(result.survivor.attributes) == {"level": "gold", "birth_date": "1980-04-05"}
    # the merged id resolves to the survivor everywhere
    assert get(stack, key, merged.participant_id) == result.survivor
    assert lookup(stack, key, email="old@example.com") == result.survivor
    [by_id, by_identity] = stack.resolve(
        tenant, identity_pb2.ResolveItem(program_id=only_merged, participant_id=merged.participant_id),
        identity_pb2.ResolveItem(program_id=only_merged, on_unknown_participant=CREATE,
                                 identities=[ident("PHONE", "415-555-0177")]))
    assert by_id.participant_id == by_identity.participant_id == survivor.participant_id
    assert by_id.enrollment_change == NONE  # the merged enrollment moved, still ACTIVE
    # enrollments: one per program, the shared one is the survivor's (FROZEN) with the
    # earliest enrolment time
    listed = stack.stub.ListParticipantEnrollments(identity_pb2.ListParticipantEnrollmentsRequest(
        participant_id=merged.participant_id), metadata=stack.auth(key)).enrollments
    by_program = {e.program_id: e for e in listed}
    assert set(by_program) == {shared, only_merged, only_survivor}
    assert all(e.participant_id == survivor.participant_id for e in listed)
    assert by_program[shared].status == identity_pb2.ENROLLMENT_STATUS_FROZEN
    assert by_program[shared].enrolled_at == earliest.enrolled_at
    assert stack.count(storage.enrollments, tenant) == 3
    # the rules service is told once, with the ids it needs to move the balances
    message = wait_for_merge(stack, result.merge_id, [])
    assert (message.tenant_id, message.merged_participant_id, message.survivor_participant_id) == (
        tenant, merged.participant_id, survivor.participant_id)
    assert message.merged_at == result.merged_at
    with stack.runtime.db.transaction() as session:
        p = storage.participants
        rows = dict(session.execute(sa.select(p.c.id, p.c.birthday).where(p.c.tenant_id == tenant)).all())
    assert rows == {survivor.participant_id: "04-05", merged.participant_id: None}


def test_merge_refusals_change_nothing(stack: Stack) -> None:
    key, tenant = stack.key("participants:write")
    theirs, _ = stack.key("participants:write")
    a = create(stack, key, ident("EXTERNAL", unique()))
    b = create(stack, key, ident("EXTERNAL", unique()))
    c = create(stack, key, ident("EXTERNAL", unique()))
    foreign = create(stack, theirs, ident("EXTERNAL", unique()))
    merge(stack, key, a.participant_id, c.participant_id)  # c is merged now
    before = snapshot(stack, tenant)

    itself = stack.failure(lambda: merge(stack, key, a.participant_id, a.participant_id.upper()))
    assert (itself.code, itself.fields) == (Code.INVALID_ARGUMENT, ["merged_participant_id"])
    bad = stack.failure(lambda: merge(stack, key, "nope", ""))
    assert (bad.code, bad.fields) == (Code.INVALID_ARGUMENT,
                                      ["survivor_participant_id", "merged_participant_id"])
    other_tenant = stack.failure(lambda: merge(stack, key, foreign.participant_id, b.participant_id))
    assert (other_tenant.code, other_tenant.reason) == (Code.NOT_FOUND, "PARTICIPANT_NOT_FOUND")
    assert "survivor_participant_id" in other_tenant.message
    other_tenant = stack.failure(lambda: merge(stack, key, b.participant_id, foreign.participant_id))
    assert other_tenant.code == Code.NOT_FOUND and "merged_participant_id" in other_tenant.message
    again = stack.failure(lambda: merge(stack, key, b.participant_id, c.participant_id))
    assert (again.code, again.reason, again.fields) == (
        Code.FAILED_PRECONDITION, "PARTICIPANT_MERGED", ["merged_participant_id"])
    into_merged = stack.failure(lambda: merge(stack, key, c.participant_id, b.participant_id))
    assert (into_merged.code, into_merged.fields) == (
        Code.FAILED_PRECONDITION, ["survivor_participant_id"])
    assert snapshot(stack, tenant) == before


def test_merging_a_survivor_away_repoints_earlier_merges(stack: Stack) -> None:
    key, _ = stack.key("participants:write", "participants:read")
    a, b, c = (create(stack, key, ident("EXTERNAL", unique())) for _ in range(3))

    merge(stack, key, b.participant_id, a.participant_id)  # a -> b
    merge(stack, key, c.participant_id, b.participant_id)  # b -> c, so a -> c

    assert get(stack, key, a.participant_id).participant_id == c.participant_id
    with stack.runtime.db.transaction() as session:
        p = storage.participants
        into = session.execute(sa.select(p.c.merged_into).where(
            p.c.id == a.participant_id)).scalar_one()
    assert into == c.participant_id
    assert idents(get(stack, key, c.participant_id)) == idents(a) | idents(b) | idents(c)


def test_merge_needs_the_write_scope(stack: Stack) -> None:
    reader, _ = stack.key("participants:read")
    got = stack.failure(lambda: merge(stack, reader, new_id(), new_id()))
    assert got.code == Code.PERMISSION_DENIED
