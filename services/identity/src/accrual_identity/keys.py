"""Tenants and API keys: created by the admin CLI, checked on every call.

Only the SHA-256 of a key is stored (``auth.hash_api_key``): keys are 256-bit random
secrets, so the digest cannot be reversed and lookup stays one indexed read. The first
characters are kept apart so an operator can tell keys apart without seeing them.
"""

from __future__ import annotations

import sqlalchemy as sa
from accrual_platform import auth
from accrual_platform.db import Database, utcnow
from accrual_platform.ids import new_id

from accrual_identity import storage

PREFIX_LENGTH = 10
#: longer input cannot be one of our keys; refuse it before hashing
MAX_KEY_LENGTH = 256


def ensure_tenant(db: Database, name: str) -> str:
    """The id of the tenant called ``name``, created if missing.

    Race-safe: concurrent callers insert with ON CONFLICT DO NOTHING on the unique name and
    then all read the one row that won.
    """
    if not name or not name.strip() or len(name) > 200:
        raise ValueError("tenant name must be 1-200 characters")
    t = storage.tenants
    with db.transaction() as session:
        session.execute(storage.insert_ignoring_conflicts(session, t).values(
            id=new_id(), name=name, created_at=utcnow()))
        return str(session.execute(sa.select(t.c.id).where(t.c.name == name)).scalar_one())


def create_api_key(db: Database, tenant_name: str, scopes: frozenset[str]) -> tuple[str, str]:
    """A new key of the tenant (created if missing): (key_id, the key, to be shown once)."""
    if not scopes:
        raise ValueError("at least one scope is required")
    unknown = scopes - auth.KNOWN_SCOPES
    if unknown:
        raise ValueError(f"unknown scopes: {', '.join(sorted(unknown))}")
    tenant_id = ensure_tenant(db, tenant_name)
    key, key_id = auth.new_api_key(), new_id()
    with db.transaction() as session:
        session.execute(storage.api_keys.insert().values(
            id=key_id, tenant_id=tenant_id, key_hash=auth.hash_api_key(key),
            prefix=key[:PREFIX_LENGTH], scopes=sorted(scopes), created_at=utcnow()))
    return key_id, key


def revoke_api_key(db: Database, key_id: str) -> bool:
    """Revoke a key; False when no such key is active. Cached lookups expire within
    ``API_KEY_CACHE_SECONDS``."""
    k = storage.api_keys
    with db.transaction() as session:
        result = session.execute(sa.update(k).where(
            k.c.id == key_id, k.c.revoked_at.is_(None)).values(revoked_at=utcnow()))
        return bool(result.rowcount)


def authenticate(db: Database, key: str) -> auth.Principal | None:
    """The principal of an active key; None for an unknown, malformed or revoked one."""
    if not key.startswith(auth.KEY_PREFIX) or len(key) > MAX_KEY_LENGTH:
        return None
    k = storage.api_keys
    with db.transaction() as session:
        row = session.execute(sa.select(k.c.id, k.c.tenant_id, k.c.scopes, k.c.revoked_at).where(
            k.c.key_hash == auth.hash_api_key(key))).first()
    if row is None or row.revoked_at is not None:
        return None
    return auth.Principal(tenant_id=row.tenant_id, key_id=row.id, scopes=frozenset(row.scopes))
