"""API-key administration as the CLI uses it, on both backends."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from accrual_identity import keys, storage
from accrual_platform import auth

if TYPE_CHECKING:
    from conftest import Stack


def test_keys_are_stored_hashed_and_authenticate_to_their_tenant(stack: Stack) -> None:
    db, name = stack.runtime.db, f"tenant-{uuid.uuid4()}"
    scopes = frozenset({"events:write", "participants:read"})

    key_id, key = keys.create_api_key(db, name, scopes)

    assert key.startswith(auth.KEY_PREFIX)
    k = storage.api_keys
    with db.transaction() as session:
        row = session.execute(sa.select(k).where(k.c.id == key_id)).one()
    assert row.key_hash == auth.hash_api_key(key) and row.prefix == key[:10]
    assert key not in {str(v) for v in row}  # the key itself is never stored
    principal = keys.authenticate(db, key)
    assert principal == auth.Principal(tenant_id=keys.ensure_tenant(db, name), key_id=key_id,
                                       scopes=scopes)


def test_a_second_key_of_a_tenant_reuses_the_tenant(stack: Stack) -> None:
    db, name = stack.runtime.db, f"tenant-{uuid.uuid4()}"
    _, first = keys.create_api_key(db, name, frozenset({"admin"}))
    _, second = keys.create_api_key(db, name, frozenset({"admin"}))
    one, two = keys.authenticate(db, first), keys.authenticate(db, second)
    assert one is not None and two is not None and one.tenant_id == two.tenant_id
    assert first != second


def test_unknown_malformed_and_revoked_keys_do_not_authenticate(stack: Stack) -> None:
    db = stack.runtime.db
    key_id, key = keys.create_api_key(db, f"tenant-{uuid.uuid4()}", frozenset({"admin"}))
    assert keys.revoke_api_key(db, key_id)
    assert not keys.revoke_api_key(db, key_id)  # already revoked
    for candidate in (key, auth.new_api_key(), "", "not-a-key", "sk_" + "x" * 1000):
        assert keys.authenticate(db, candidate) is None


def test_scopes_and_tenant_names_are_validated(stack: Stack) -> None:
    db = stack.runtime.db
    with pytest.raises(ValueError, match="unknown scopes"):
        keys.create_api_key(db, "t", frozenset({"events:wrte"}))
    with pytest.raises(ValueError, match="scope"):
        keys.create_api_key(db, "t", frozenset())
    with pytest.raises(ValueError, match="tenant name"):
        keys.ensure_tenant(db, " ")


def test_new_tenants_default_to_the_us_phone_region(stack: Stack) -> None:
    tenant = stack.tenant()
    assert stack.runtime.participants.region(tenant) == "US"
