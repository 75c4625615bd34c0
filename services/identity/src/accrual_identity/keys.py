"""Tenants and API keys: created by the admin CLI, checked on every call."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from accrual_identity import storage
from accrual_platform import auth
from accrual_platform.db import Database, utcnow


def ensure_tenant(db: Database, name: str) -> str:
    t = storage.tenants
    for _ in range(2):
        with db.transaction() as session:
            row = session.execute(sa.select(t.c.id).where(t.c.name == name)).first()
            if row:
                return str(row.id)
        try:
            tenant_id = str(uuid.uuid4())
            with db.transaction() as session:
                session.execute(t.insert().values(id=tenant_id, name=name, created_at=utcnow()))
            return tenant_id
        except sa_exc.IntegrityError:
            continue  # created concurrently: read it
    raise RuntimeError(f"could not create tenant {name!r}")


def create_api_key(db: Database, tenant_name: str, scopes: frozenset[str]) -> tuple[str, str]:
    """Create a key for the tenant (created if missing); returns (key_id, key shown once)."""
    tenant_id = ensure_tenant(db, tenant_name)
    key = auth.new_api_key()
    key_id = str(uuid.uuid4())
    with db.transaction() as session:
        session.execute(storage.api_keys.insert().values(
            id=key_id, tenant_id=tenant_id, key_hash=auth.hash_api_key(key), prefix=key[:10],
            scopes=sorted(scopes), created_at=utcnow()))
    return key_id, key


def authenticate(db: Database, key: str) -> auth.Principal | None:
    k = storage.api_keys
    with db.transaction() as session:
        row = session.execute(sa.select(k).where(k.c.key_hash == auth.hash_api_key(key))).first()
    if row is None or row.revoked_at is not None:
        return None
    return auth.Principal(tenant_id=row.tenant_id, key_id=row.id, scopes=frozenset(row.scopes))
