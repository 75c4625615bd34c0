"""Workers resolving the same brand-new person at the same moment end with one participant
and one enrollment (SPEC section 5), on both backends: threads through the real server, and
separate worker processes with their own engines. Merges, links and enrollments racing each
other or resolution leave every row with one live participant."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import sqlalchemy as sa
from accrual.identity.v1 import identity_pb2
from accrual_identity import keys, storage

if TYPE_CHECKING:
    from conftest import Stack

T = TypeVar("T")
CREATED = identity_pb2.ENROLLMENT_CHANGE_CREATED


def at_once(count: int, call: Callable[[int], T]) -> list[T]:
    """Run ``call(i)`` on ``count`` threads released together by a barrier."""
    barrier = threading.Barrier(count)

    def run(index: int) -> T:
        barrier.wait()
        return call(index)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def item(program_id: str, *pairs: tuple[int, str]) -> identity_pb2.ResolveItem:
    return identity_pb2.ResolveItem(
        program_id=program_id,
        on_unknown_participant=identity_pb2.UNKNOWN_PARTICIPANT_POLICY_CREATE,
        identities=[identity_pb2.Identity(type=kind, value=value) for kind, value in pairs])


def test_fifty_concurrent_calls_for_one_new_external_id(stack: Stack) -> None:
    tenant, program = stack.tenant(), str(uuid.uuid4())
    user = (identity_pb2.IDENTITY_TYPE_EXTERNAL, f"new-{uuid.uuid4()}")

    results = at_once(50, lambda _: stack.resolve(tenant, item(program, user))[0])

    assert not [r.error_code for r in results if r.error_code]
    assert len({r.participant_id for r in results}) == 1
    assert sum(r.participant_created for r in results) == 1
    assert sum(r.enrollment_change == CREATED for r in results) == 1
    assert stack.count(storage.participants, tenant) == 1
    assert stack.count(storage.identities, tenant) == 1
    assert stack.count(storage.enrollments, tenant) == 1
    notes = stack.notifications(tenant, 2)
    assert sorted(n.type for n in notes) == ["enrollment.created", "participant.created"]


def test_concurrent_batches_sharing_people_in_any_order(stack: Stack) -> None:
    """Batches that meet the same new people in opposite orders (a deadlock-prone shape)
    and reach one of them through an email as well still agree on who is who."""
    tenant, program = stack.tenant(), str(uuid.uuid4())
    external, email = identity_pb2.IDENTITY_TYPE_EXTERNAL, identity_pb2.IDENTITY_TYPE_EMAIL
    a = item(program, (external, "a-1"), (email, "a@example.com"))
    b = item(program, (external, "b-1"))
    a_by_email = item(program, (email, "A@Example.com"))

    def batch(index: int) -> list[identity_pb2.ResolveResult]:
        order = [a, b, a_by_email] if index % 2 else [a_by_email, b, a]
        results = stack.resolve(tenant, *order)
        return results if index % 2 else [results[2], results[1], results[0]]

    results = at_once(20, batch)

    assert len({r[0].participant_id for r in results} | {r[2].participant_id for r in results}) == 1
    assert len({r[1].participant_id for r in results}) == 1
    assert results[0][0].participant_id != results[0][1].participant_id
    assert stack.count(storage.participants, tenant) == 2
    assert stack.count(storage.enrollments, tenant) == 2


def test_concurrent_tenant_creation_yields_one_tenant(stack: Stack) -> None:
    name = f"tenant-{uuid.uuid4()}"

    ids = at_once(20, lambda _: keys.ensure_tenant(stack.runtime.db, name))

    assert len(set(ids)) == 1
    with stack.runtime.db.transaction() as session:
        assert session.execute(sa.select(sa.func.count()).select_from(storage.tenants).where(
            storage.tenants.c.name == name)).scalar_one() == 1


# -- separate worker processes --------------------------------------------------------------

WORKER = pathlib.Path(__file__).with_name("worker_process.py")


def in_processes(url: str, tenant: str, batches: list[list[dict[str, Any]]],
                 threads: int) -> list[dict[str, Any]]:
    """Each batch of items resolved by its own process on ``threads`` threads, every process
    released at once; the outcomes of all of them."""
    procs = [subprocess.Popen(
        [sys.executable, str(WORKER), json.dumps({"url": url, "tenant": tenant, "items": items,
                                                  "threads": threads})],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for items in batches]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outcomes = []
        for proc in procs:
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0
            outcomes += json.loads(out.strip().splitlines()[-1])
        return outcomes
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


def test_fifty_events_for_one_new_external_id_across_worker_processes(
        stack: Stack, database_url: str) -> None:
    tenant, program = stack.tenant(), str(uuid.uuid4())
    user = {"program_id": program, "identities": [["EXTERNAL", f"new-{uuid.uuid4()}"]]}

    outcomes = in_processes(database_url, tenant, [[user] * n for n in (13, 13, 12, 12)],
                            threads=6)

    assert len(outcomes) == 50 and not [o for o in outcomes if o["error"]]
    assert len({o["participant_id"] for o in outcomes}) == 1
    assert sum(o["created"] for o in outcomes) == 1
    assert sum(o["change"] == "CREATED" for o in outcomes) == 1
    assert stack.count(storage.participants, tenant) == 1
    assert stack.count(storage.identities, tenant) == 1
    assert stack.count(storage.enrollments, tenant) == 1
    notes = stack.notifications(tenant, 2)
    assert sorted(n.type for n in notes) == ["enrollment.created", "participant.created"]


def test_one_email_through_two_paths_across_worker_processes(
        stack: Stack, database_url: str) -> None:
    """The POS names the customer by external id and email, the CRM by email alone (spelled
    its own way): whichever lands first creates the person, the other finds them."""
    tenant, program = stack.tenant(), str(uuid.uuid4())
    email = f"pat-{uuid.uuid4().hex[:8]}@example.com"
    pos = {"program_id": program, "identities": [["EXTERNAL", "pos-42"], ["EMAIL", email]]}
    crm = {"program_id": program, "identities": [["EMAIL", f"  {email.upper()} "]]}

    outcomes = in_processes(database_url, tenant,
                            [[pos, crm] * 5, [crm, pos] * 5, [crm] * 5 + [pos] * 5,
                             [pos] * 5 + [crm] * 5], threads=6)

    assert len(outcomes) == 40 and not [o for o in outcomes if o["error"]]
    assert len({o["participant_id"] for o in outcomes}) == 1
    assert sum(o["created"] for o in outcomes) == 1
    assert stack.count(storage.participants, tenant) == 1
    assert stack.count(storage.enrollments, tenant) == 1
    with stack.runtime.db.transaction() as session:
        rows = session.execute(sa.select(storage.identities.c.type, storage.identities.c.value)
                               .where(storage.identities.c.tenant_id == tenant)).all()
    assert sorted(tuple(r) for r in rows) == [("EMAIL", email), ("EXTERNAL", "pos-42")]


# -- merges, links and enrollments under contention ------------------------------------------

def _participant(stack: Stack, key: str, *identities: identity_pb2.Identity) -> str:
    return str(stack.stub.CreateParticipant(identity_pb2.CreateParticipantRequest(
        identities=list(identities)), metadata=stack.auth(key)).participant_id)


def _ident(kind: int, value: str) -> identity_pb2.Identity:
    return identity_pb2.Identity(type=kind, value=value)


def test_a_merge_racing_resolution_leaves_nothing_on_the_merged_participant(stack: Stack) -> None:
    key, tenant = stack.key("participants:write")
    external, email = identity_pb2.IDENTITY_TYPE_EXTERNAL, identity_pb2.IDENTITY_TYPE_EMAIL
    survivor = _participant(stack, key, _ident(external, f"s-{uuid.uuid4()}"))
    merged_ext = f"m-{uuid.uuid4()}"
    merged = _participant(stack, key, _ident(external, merged_ext))
    programs = [str(uuid.uuid4()) for _ in range(10)]

    def work(index: int) -> str:
        if index == 0:
            return str(stack.stub.MergeParticipants(identity_pb2.MergeParticipantsRequest(
                survivor_participant_id=survivor, merged_participant_id=merged),
                metadata=stack.auth(key)).merge_id)
        # events of the merged person, each bringing a new email and a new program
        return str(stack.resolve(tenant, item(
            programs[index % len(programs)], (external, merged_ext),
            (email, f"m{index}@example.com")))[0].participant_id)

    results = at_once(21, work)

    assert all(r in (survivor, merged) for r in results[1:])
    e, i = storage.enrollments, storage.identities
    with stack.runtime.db.transaction() as session:
        owners = set(session.execute(sa.select(i.c.participant_id).where(
            i.c.tenant_id == tenant)).scalars())
        enrolled = set(session.execute(sa.select(e.c.participant_id).where(
            e.c.tenant_id == tenant)).scalars())
        programs_of_survivor = set(session.execute(sa.select(e.c.program_id).where(
            e.c.tenant_id == tenant)).scalars())
    assert owners == {survivor} and enrolled == {survivor}
    assert programs_of_survivor == set(programs)
    assert stack.count(storage.identities, tenant) == 2 + 20


def test_opposite_merges_at_once_one_wins_the_other_is_refused(stack: Stack) -> None:
    key, tenant = stack.key("participants:write")
    external = identity_pb2.IDENTITY_TYPE_EXTERNAL
    a = _participant(stack, key, _ident(external, f"a-{uuid.uuid4()}"))
    b = _participant(stack, key, _ident(external, f"b-{uuid.uuid4()}"))

    def work(index: int) -> grpc.StatusCode:
        survivor, merged = (a, b) if index % 2 else (b, a)
        try:
            stack.stub.MergeParticipants(identity_pb2.MergeParticipantsRequest(
                survivor_participant_id=survivor, merged_participant_id=merged),
                metadata=stack.auth(key))
        except grpc.RpcError as exc:
            code: grpc.StatusCode = exc.code()
            return code
        return grpc.StatusCode.OK

    codes = at_once(10, work)

    assert codes.count(grpc.StatusCode.OK) == 1
    assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.FAILED_PRECONDITION}
    with stack.runtime.db.transaction() as session:
        assert session.execute(sa.select(sa.func.count()).select_from(storage.merges).where(
            storage.merges.c.tenant_id == tenant)).scalar_one() == 1


def test_one_identity_linked_to_two_participants_at_once_goes_to_one(stack: Stack) -> None:
    key, tenant = stack.key("participants:write")
    external, phone = identity_pb2.IDENTITY_TYPE_EXTERNAL, identity_pb2.IDENTITY_TYPE_PHONE
    people = [_participant(stack, key, _ident(external, f"p-{uuid.uuid4()}")) for _ in range(2)]

    def work(index: int) -> tuple[str, grpc.StatusCode]:
        try:
            stack.stub.LinkIdentity(identity_pb2.LinkIdentityRequest(
                participant_id=people[index % 2], identity=_ident(phone, "+1 415 555 0142")),
                metadata=stack.auth(key))
        except grpc.RpcError as exc:
            return people[index % 2], exc.code()
        return people[index % 2], grpc.StatusCode.OK

    results = at_once(10, work)

    winners = {p for p, code in results if code == grpc.StatusCode.OK}
    assert len(winners) == 1
    assert {code for p, code in results if p not in winners} == {grpc.StatusCode.ALREADY_EXISTS}
    assert stack.count(storage.identities, tenant) == 3


def test_concurrent_enrollment_calls_create_one_enrollment(stack: Stack) -> None:
    key, tenant = stack.key("participants:write")
    person = _participant(stack, key, _ident(identity_pb2.IDENTITY_TYPE_EXTERNAL, f"e-{uuid.uuid4()}"))
    program = stack.program(tenant)

    results = at_once(20, lambda _: stack.stub.CreateEnrollment(identity_pb2.CreateEnrollmentRequest(
        program_id=program, participant_id=person), metadata=stack.auth(key)))

    assert {(r.status, r.enrolled_at.ToJsonString()) for r in results} == {
        (identity_pb2.ENROLLMENT_STATUS_ACTIVE, results[0].enrolled_at.ToJsonString())}
    assert stack.count(storage.enrollments, tenant) == 1
    notes = stack.notifications(tenant, 3, timeout=2)
    assert sorted(n.type for n in notes) == ["enrollment.created", "participant.created"]
