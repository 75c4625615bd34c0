"""Workers resolving the same brand-new person at the same moment end with one participant
and one enrollment (SPEC section 5), through the real server, on both backends."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

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
