"""IdentityService through a real gRPC server, on SQLite and on PostgreSQL: keys, the public
participant RPCs with their error statuses, and resolution as the rules worker uses it."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import grpc
import sqlalchemy as sa
from accrual.identity.v1 import identity_pb2
from accrual_identity import keys, storage
from accrual_platform.facts import data_of

if TYPE_CHECKING:
    from conftest import Stack

CREATE = identity_pb2.UNKNOWN_PARTICIPANT_POLICY_CREATE
REJECT = identity_pb2.UNKNOWN_PARTICIPANT_POLICY_REJECT
UNSPECIFIED = identity_pb2.UNKNOWN_PARTICIPANT_POLICY_UNSPECIFIED
NONE = identity_pb2.ENROLLMENT_CHANGE_NONE
CREATED = identity_pb2.ENROLLMENT_CHANGE_CREATED
REACTIVATED = identity_pb2.ENROLLMENT_CHANGE_REACTIVATED
Code = grpc.StatusCode


def ident(kind: str, value: str) -> identity_pb2.Identity:
    return identity_pb2.Identity(type=identity_pb2.IdentityType.Value(f"IDENTITY_TYPE_{kind}"),
                                 value=value)


def item(program_id: str, *identities: identity_pb2.Identity, participant_id: str = "",
         policy: int = CREATE) -> identity_pb2.ResolveItem:
    return identity_pb2.ResolveItem(program_id=program_id, on_unknown_participant=policy,
                                    participant_id=participant_id, identities=list(identities))


def new_id() -> str:
    return str(uuid.uuid4())


def unique(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def idents(participant: identity_pb2.Participant) -> set[tuple[str, str]]:
    return {(identity_pb2.IdentityType.Name(i.type).removeprefix("IDENTITY_TYPE_"), i.value)
            for i in participant.identities}


def create(stack: Stack, key: str, *identities: identity_pb2.Identity,
           **attributes: object) -> identity_pb2.Participant:
    request = identity_pb2.CreateParticipantRequest(identities=list(identities))
    request.attributes.update(attributes)
    return stack.stub.CreateParticipant(request, metadata=stack.auth(key))


# -- keys and authentication ----------------------------------------------------------------

def test_a_created_key_authenticates_until_revoked(stack: Stack) -> None:
    name = f"tenant-{uuid.uuid4()}"
    key_id, key = keys.create_api_key(stack.runtime.db, name, frozenset({"events:write"}))
    request = identity_pb2.AuthenticateApiKeyRequest(api_key=key)

    got = stack.stub.AuthenticateApiKey(request, metadata=stack.internal())

    assert (got.tenant_id, got.key_id, list(got.scopes)) == (
        keys.ensure_tenant(stack.runtime.db, name), key_id, ["events:write"])
    assert keys.revoke_api_key(stack.runtime.db, key_id)
    revoked = stack.failure(lambda: stack.stub.AuthenticateApiKey(
        request, metadata=stack.internal()))
    assert (revoked.code, revoked.reason) == (Code.UNAUTHENTICATED, "UNAUTHENTICATED")
    unknown = stack.failure(lambda: stack.stub.AuthenticateApiKey(
        identity_pb2.AuthenticateApiKeyRequest(api_key="sk_nobody"), metadata=stack.internal()))
    assert unknown.code == Code.UNAUTHENTICATED


def test_authenticate_api_key_is_internal_only(stack: Stack) -> None:
    key, _ = stack.key("admin")
    denied = stack.failure(lambda: stack.stub.AuthenticateApiKey(
        identity_pb2.AuthenticateApiKeyRequest(api_key=key), metadata=stack.auth(key)))
    assert denied.code == Code.PERMISSION_DENIED


def test_missing_unknown_and_revoked_keys_are_401(stack: Stack) -> None:
    request = identity_pb2.GetParticipantRequest(participant_id=new_id())
    key_id, key = keys.create_api_key(stack.runtime.db, f"tenant-{uuid.uuid4()}",
                                      frozenset({"participants:read"}))
    keys.revoke_api_key(stack.runtime.db, key_id)
    for metadata in ([], [("x-api-key", "sk_unknown")], [("authorization", "Bearer sk_nope")],
                     [("x-api-key", key)]):
        got = stack.failure(lambda md=metadata: stack.stub.GetParticipant(request, metadata=md))
        assert got.code == Code.UNAUTHENTICATED, metadata


def test_a_key_without_the_scope_is_403(stack: Stack) -> None:
    reader, _ = stack.key("participants:read")
    events, _ = stack.key("events:write")

    got = stack.failure(lambda: create(stack, reader, ident("EXTERNAL", unique())))
    assert (got.code, got.reason) == (Code.PERMISSION_DENIED, "PERMISSION_DENIED")
    got = stack.failure(lambda: stack.stub.GetParticipant(
        identity_pb2.GetParticipantRequest(participant_id=new_id()), metadata=stack.auth(events)))
    assert got.code == Code.PERMISSION_DENIED


def test_bearer_authorization_works_like_x_api_key(stack: Stack) -> None:
    key, _ = stack.key("participants:write")
    made = create(stack, key, ident("EXTERNAL", unique()))
    got = stack.stub.GetParticipant(identity_pb2.GetParticipantRequest(
        participant_id=made.participant_id), metadata=[("authorization", f"Bearer {key}")])
    assert got.participant_id == made.participant_id


# -- create and get -------------------------------------------------------------------------

def test_create_normalises_identities_and_get_returns_them(stack: Stack) -> None:
    key, tenant = stack.key("participants:write")
    external = unique()

    made = create(stack, key, ident("EMAIL", "  Jane.Doe@Example.COM "),
                  ident("PHONE", "(415) 555-2671"), ident("EXTERNAL", f"  {external}\t"),
                  ident("DEVICE_KEY", " dev-1 "), birth_date="1990-05-17", tier_hint="gold")

    assert idents(made) == {("EMAIL", "jane.doe@example.com"), ("PHONE", "+14155552671"),
                            ("EXTERNAL", external), ("DEVICE_KEY", "dev-1")}
    assert [i.type for i in made.identities] == [
        identity_pb2.IDENTITY_TYPE_EXTERNAL, identity_pb2.IDENTITY_TYPE_EMAIL,
        identity_pb2.IDENTITY_TYPE_PHONE, identity_pb2.IDENTITY_TYPE_DEVICE_KEY]
    assert dict(made.attributes) == {"birth_date": "1990-05-17", "tier_hint": "gold"}
    got = stack.stub.GetParticipant(identity_pb2.GetParticipantRequest(
        participant_id=made.participant_id.upper()), metadata=stack.auth(key))
    assert got == made
    with stack.runtime.db.transaction() as session:
        birth = session.execute(sa.select(storage.participants.c.birth_date).where(
            storage.participants.c.id == made.participant_id)).scalar_one()
    assert str(birth) == "1990-05-17"
    notes = stack.notifications(tenant, 1)
    assert [(n.type, n.fact_id, data_of(n)) for n in notes] == [
        ("participant.created", f"participant.created:{made.participant_id}",
         {"participant_id": made.participant_id})]


def test_create_validation_names_every_bad_field_and_writes_nothing(stack: Stack) -> None:
    key, tenant = stack.key("participants:write")

    empty = stack.failure(lambda: create(stack, key))
    assert (empty.code, empty.fields) == (Code.INVALID_ARGUMENT, ["identities"])
    bad = stack.failure(lambda: create(
        stack, key, identity_pb2.Identity(value="x"), ident("EMAIL", "not-an-email"),
        ident("PHONE", "12"), ident("EXTERNAL", "   "), ident("DEVICE_KEY", "x" * 256),
        identity_pb2.Identity(type=99, value="y"), ident("EXTERNAL", "a\x00b"),
        birth_date="1990-13-01"))
    assert bad.code == Code.INVALID_ARGUMENT
    assert bad.fields == ["identities[0].type", "identities[1].value", "identities[2].value",
                          "identities[3].value", "identities[4].value", "identities[5].type",
                          "identities[6].value", "attributes.birth_date"]
    for birth in ("17/05/1990", "2999-01-01", 19900517):
        got = stack.failure(lambda b=birth: create(
            stack, key, ident("EXTERNAL", unique()), birth_date=b))
        assert got.fields == ["attributes.birth_date"], birth
    nan = identity_pb2.CreateParticipantRequest(identities=[ident("EXTERNAL", unique())])
    nan.attributes.fields["score"].number_value = float("nan")
    got = stack.failure(lambda: stack.stub.CreateParticipant(nan, metadata=stack.auth(key)))
    assert (got.code, got.fields) == (Code.INVALID_ARGUMENT, ["attributes"])
    assert stack.count(storage.participants, tenant) == 0


def test_an_identity_of_another_participant_is_409_and_nothing_is_written(stack: Stack) -> None:
    key, tenant = stack.key("participants:write")
    first = create(stack, key, ident("EMAIL", "taken@example.com"))
    loose = unique()

    got = stack.failure(lambda: create(stack, key, ident("EXTERNAL", loose),
                                       ident("EMAIL", " TAKEN@example.com")))

    assert (got.code, got.reason) == (Code.ALREADY_EXISTS, "IDENTITY_CONFLICT")
    assert "identities[1].value" in got.message
    assert stack.count(storage.participants, tenant) == 1
    assert stack.count(storage.identities, tenant) == 1
    # the external id of the refused request was not claimed
    other = create(stack, key, ident("EXTERNAL", loose))
    assert other.participant_id != first.participant_id


def test_another_tenants_participant_is_404_and_a_bad_uuid_400(stack: Stack) -> None:
    mine, _ = stack.key("participants:write")
    theirs, _ = stack.key("participants:write")
    made = create(stack, theirs, ident("EXTERNAL", unique()))

    def get(key: str, participant_id: str) -> identity_pb2.Participant:
        return stack.stub.GetParticipant(identity_pb2.GetParticipantRequest(
            participant_id=participant_id), metadata=stack.auth(key))

    assert stack.failure(lambda: get(mine, made.participant_id)).code == Code.NOT_FOUND
    assert stack.failure(lambda: get(mine, new_id())).code == Code.NOT_FOUND
    bad = stack.failure(lambda: get(mine, "not-a-uuid"))
    assert (bad.code, bad.fields) == (Code.INVALID_ARGUMENT, ["participant_id"])


def test_a_merged_participant_resolves_to_its_survivor(stack: Stack) -> None:
    key, tenant = stack.key("participants:write")
    survivor = create(stack, key, ident("EXTERNAL", unique()), level="gold")
    merged = create(stack, key, ident("EXTERNAL", unique()))
    stack.execute(sa.update(storage.participants).where(
        storage.participants.c.id == merged.participant_id).values(
        status="MERGED", merged_into=survivor.participant_id))

    got = stack.stub.GetParticipant(identity_pb2.GetParticipantRequest(
        participant_id=merged.participant_id), metadata=stack.auth(key))
    assert got.participant_id == survivor.participant_id
    program = new_id()
    [by_id, by_identity] = stack.resolve(
        tenant, item(program, participant_id=merged.participant_id),
        item(program, *merged.identities))
    assert by_id.participant_id == by_identity.participant_id == survivor.participant_id
    assert dict(by_id.attributes) == {"level": "gold"}


# -- resolution -----------------------------------------------------------------------------

def test_resolve_creates_and_enrolls_once_and_replays_as_none(stack: Stack) -> None:
    tenant, program, user = stack.tenant(), new_id(), unique()

    [first] = stack.resolve(tenant, item(program, ident("EXTERNAL", user)))
    [again] = stack.resolve(tenant, item(program, ident("EXTERNAL", f" {user} ")))

    assert first.participant_created and first.enrollment_change == CREATED
    assert not first.error_code and uuid.UUID(first.participant_id)
    assert (again.participant_id, again.participant_created, again.enrollment_change) == (
        first.participant_id, False, NONE)
    assert stack.count(storage.participants, tenant) == 1
    assert stack.count(storage.enrollments, tenant) == 1
    notes = stack.notifications(tenant, 2)
    assert [(n.type, n.fact_id) for n in notes] == [
        ("participant.created", f"participant.created:{first.participant_id}"),
        ("enrollment.created", f"enrollment.created:{program}:{first.participant_id}")]
    assert data_of(notes[1]) == {"program_id": program, "participant_id": first.participant_id,
                                   "status": "ACTIVE"}


def test_unspecified_policy_creates_like_create(stack: Stack) -> None:
    tenant = stack.tenant()
    [got] = stack.resolve(tenant, item(new_id(), ident("EMAIL", "New@Example.com"),
                                       policy=UNSPECIFIED))
    assert got.participant_created and got.enrollment_change == CREATED


def test_precedence_decides_and_claimed_identities_are_never_stolen(stack: Stack) -> None:
    key, tenant = stack.key("participants:write")
    by_external = create(stack, key, ident("EXTERNAL", "ext-1"))
    by_email = create(stack, key, ident("EMAIL", "mail@example.com"))
    program = new_id()

    [r1, r2, r3] = stack.resolve(
        tenant,
        # EXTERNAL beats EMAIL; the new phone joins the winner, the email stays put
        item(program, ident("PHONE", "+1 415 555 2671"), ident("EMAIL", "mail@example.com"),
             ident("EXTERNAL", "ext-1")),
        # EMAIL beats the phone the previous item just attached to the other participant
        item(program, ident("PHONE", "4155552671"), ident("EMAIL", "MAIL@example.com")),
        # PHONE beats a new device key, which joins the phone's owner
        item(program, ident("DEVICE_KEY", "dev-9"), ident("PHONE", "(415) 555-2671")))

    assert r1.participant_id == by_external.participant_id
    assert r2.participant_id == by_email.participant_id
    assert r3.participant_id == by_external.participant_id
    assert not any(r.participant_created for r in (r1, r2, r3))
    assert [r.enrollment_change for r in (r1, r2, r3)] == [CREATED, CREATED, NONE]

    def get(participant_id: str) -> set[tuple[str, str]]:
        return idents(stack.stub.GetParticipant(identity_pb2.GetParticipantRequest(
            participant_id=participant_id), metadata=stack.auth(key)))

    assert get(by_external.participant_id) == {
        ("EXTERNAL", "ext-1"), ("PHONE", "+14155552671"), ("DEVICE_KEY", "dev-9")}
    assert get(by_email.participant_id) == {("EMAIL", "mail@example.com")}


def test_an_explicit_participant_id_wins_and_must_exist_in_the_tenant(stack: Stack) -> None:
    key, tenant = stack.key("participants:write")
    owner = create(stack, key, ident("EXTERNAL", "someone"))
    chosen = create(stack, key, ident("EXTERNAL", "chosen"))
    _, other_tenant = stack.key("participants:write")
    program = new_id()

    results = stack.resolve(
        tenant,
        item(program, ident("EXTERNAL", "someone"), ident("EMAIL", "fresh@example.com"),
             participant_id=chosen.participant_id),
        item(program, participant_id=new_id()),
        item(program, participant_id="nope"),
        item(program, ident("EMAIL", "fresh@example.com")))
    foreign = stack.resolve(other_tenant, item(program, participant_id=chosen.participant_id))

    assert results[0].participant_id == chosen.participant_id
    assert [r.error_code for r in results[1:3]] == ["participant_not_found"] * 2
    assert not results[1].participant_id
    assert results[3].participant_id == chosen.participant_id  # the email joined "chosen"
    assert foreign[0].error_code == "participant_not_found"
    assert owner.participant_id != chosen.participant_id


def test_reject_refuses_unknown_people_but_enrolls_known_ones(stack: Stack) -> None:
    key, tenant = stack.key("participants:write")
    known = create(stack, key, ident("EMAIL", "known@example.com"))
    program = new_id()

    unknown, existing = stack.resolve(
        tenant, item(program, ident("EXTERNAL", unique()), policy=REJECT),
        item(program, ident("EMAIL", "Known@Example.com"), ident("EXTERNAL", "joins"),
             policy=REJECT))

    assert unknown.error_code == "participant_not_found" and not unknown.participant_id
    assert (existing.participant_id, existing.enrollment_change) == (known.participant_id,
                                                                     CREATED)
    assert stack.count(storage.participants, tenant) == 1
    assert stack.count(storage.identities, tenant) == 2  # the new external id joined


def test_inactive_enrollments_are_reactivated(stack: Stack) -> None:
    tenant, program, user = stack.tenant(), new_id(), ident("EXTERNAL", unique())
    [first] = stack.resolve(tenant, item(program, user))
    e = storage.enrollments
    for status in ("FROZEN", "LOCKED", "CLOSED"):
        stack.execute(sa.update(e).where(e.c.tenant_id == tenant).values(status=status))

        [got, same] = stack.resolve(tenant, item(program, user), item(program, user))

        assert (got.participant_id, got.enrollment_change, same.enrollment_change) == (
            first.participant_id, REACTIVATED, NONE)
        [after] = stack.resolve(tenant, item(program, user))
        assert after.enrollment_change == NONE
    notes = stack.notifications(tenant, 5)
    reactivations = [n for n in notes if n.type == "enrollment.reactivated"]
    assert [data_of(n)["previous_status"] for n in reactivations] == ["FROZEN", "LOCKED", "CLOSED"]
    assert len({n.fact_id for n in reactivations}) == 3
    assert all(n.fact_id.startswith(f"enrollment.reactivated:{program}:{first.participant_id}:")
               for n in reactivations)


def test_one_email_via_two_items_of_a_batch_is_one_participant(stack: Stack) -> None:
    tenant, program = stack.tenant(), new_id()

    a, b, c = stack.resolve(
        tenant,
        item(program, ident("EXTERNAL", "pos-1"), ident("EMAIL", "Pat@Example.com")),
        item(program, ident("EXTERNAL", "crm-7"), ident("EMAIL", " pat@example.COM")),
        item(program, ident("EMAIL", "pat@example.com")))

    assert a.participant_id == b.participant_id == c.participant_id
    assert [r.participant_created for r in (a, b, c)] == [True, False, False]
    assert [r.enrollment_change for r in (a, b, c)] == [CREATED, NONE, NONE]
    assert stack.count(storage.participants, tenant) == 1
    assert stack.count(storage.identities, tenant) == 3  # pos-1, crm-7 and the email


def test_invalid_items_fail_alone(stack: Stack) -> None:
    tenant, program = stack.tenant(), new_id()

    bad_email, no_type, nothing, no_program, good = stack.resolve(
        tenant, item(program, ident("EMAIL", "nope@")),
        item(program, identity_pb2.Identity(value="x")), item(program),
        item("p" * 37, ident("EXTERNAL", unique())),
        item(program, ident("PHONE", "+44 20 7946 0958")))

    assert bad_email.error_code == "invalid_identity"
    assert "identities[0].value" in bad_email.error_message
    assert no_type.error_code == "invalid_identity"
    assert nothing.error_code == "invalid_identity"
    assert no_program.error_code == "invalid_argument"
    assert good.participant_created and good.enrollment_change == CREATED
    assert stack.count(storage.participants, tenant) == 1


def test_resolve_returns_participant_attributes(stack: Stack) -> None:
    key, tenant = stack.key("participants:write")
    create(stack, key, ident("PHONE", "+1 212 555 0143"), birth_date="1985-02-03", vip=True)
    [got] = stack.resolve(tenant, item(new_id(), ident("PHONE", "212-555-0143")))
    assert dict(got.attributes) == {"birth_date": "1985-02-03", "vip": True}


def test_resolve_requires_a_tenant(stack: Stack) -> None:
    for tenant in ("", "t" * 37):
        got = stack.failure(lambda t=tenant: stack.resolve(
            t, item(new_id(), ident("EXTERNAL", "x"))))
        assert (got.code, got.fields) == (Code.INVALID_ARGUMENT, ["tenant_id"])


def test_a_batch_costs_a_few_statements_not_a_few_per_item(stack: Stack) -> None:
    tenant, program = stack.tenant(), new_id()
    items = [item(program, ident("EXTERNAL", f"bulk-{n}"), ident("EMAIL", f"bulk{n}@example.com"))
             for n in range(300)]
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    sa.event.listen(stack.runtime.db.engine, "before_cursor_execute", count)
    try:
        created = stack.resolve(tenant, *items)
        replayed = stack.resolve(tenant, *items)
    finally:
        sa.event.remove(stack.runtime.db.engine, "before_cursor_execute", count)

    assert all(r.participant_created and r.enrollment_change == CREATED for r in created)
    assert [r.participant_id for r in replayed] == [r.participant_id for r in created]
    assert all(r.enrollment_change == NONE for r in replayed)
    assert len(statements) <= 30, statements
