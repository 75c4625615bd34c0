"""Tenants and API keys: created by the admin CLI, checked on every call.

Only the SHA-256 of a key is stored (``auth.hash_api_key``): keys are 256-bit random
secrets, so the digest cannot be reversed and lookup stays one indexed read. The first
characters are kept apart so an operator can tell keys apart without seeing them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
from accrual_platform import auth, errors, pages, revocations
from accrual_platform.db import Database, utcnow
from accrual_platform.ids import new_id, require_uuid

from accrual_identity import storage
from accrual_identity.validation import page_size

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


@dataclass(frozen=True)
class ApiKeyRecord:
    """A key as its admins see it: never its secret, only its first characters."""

    id: str
    tenant_id: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: dt.datetime
    revoked_at: dt.datetime | None


def _record(row: sa.Row) -> ApiKeyRecord:  # type: ignore[type-arg]
    return ApiKeyRecord(id=row.id, tenant_id=row.tenant_id, prefix=row.prefix,
                        scopes=tuple(sorted(row.scopes)), created_at=row.created_at,
                        revoked_at=row.revoked_at)


def _columns() -> list[sa.Column]:  # type: ignore[type-arg]
    k = storage.api_keys
    return [k.c.id, k.c.tenant_id, k.c.prefix, k.c.scopes, k.c.created_at, k.c.revoked_at]


def tenant_by_name(db: Database, name: str) -> str | None:
    t = storage.tenants
    with db.transaction() as session:
        found = session.execute(sa.select(t.c.id).where(t.c.name == name)).scalar_one_or_none()
    return str(found) if found is not None else None


KEY_PAGES = pages.Codec("api_keys", pages.uuid_key)


def list_api_keys(db: Database, tenant_id: str, size: int = 0,
                  token: str = "") -> tuple[list[ApiKeyRecord], str]:
    """A page of the tenant's keys, revoked ones too, by id (ids are time-ordered)."""
    limit = page_size(size)
    last = KEY_PAGES.decode_optional(token)
    after = last[0] if last else None
    k = storage.api_keys
    query = sa.select(*_columns()).where(k.c.tenant_id == tenant_id).order_by(k.c.id)
    if after is not None:
        query = query.where(k.c.id > after)
    with db.transaction() as session:
        rows = [_record(r) for r in session.execute(query.limit(limit + 1))]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, KEY_PAGES.encode(rows[-1].id) if more else ""


def own_key(db: Database, tenant_id: str, key_id: str) -> tuple[ApiKeyRecord, str]:
    """The calling key and its tenant's name. UNAUTHENTICATED when the key was revoked since
    a cache let the call in (or the caller has no key, as an internal caller)."""
    k, t = storage.api_keys, storage.tenants
    with db.transaction() as session:
        row = session.execute(sa.select(*_columns(), t.c.name.label("tenant_name"))
                              .join(t, t.c.id == k.c.tenant_id)
                              .where(k.c.id == key_id, k.c.tenant_id == tenant_id)).first()
    if row is None or row.revoked_at is not None:
        raise errors.Unauthenticated("unknown or revoked API key")
    return _record(row), str(row.tenant_name)


def revoke(db: Database, key_id: str, *,
           tenant_id: str | None = None) -> tuple[ApiKeyRecord, bool]:
    """Revoke a key (of ``tenant_id`` when given) and announce it to every process's cache:
    the key and whether this call revoked it.

    Idempotent: a revoked key keeps its first revocation time. NOT_FOUND for an unknown key
    and for another tenant's, which a tenant must not be able to tell apart."""
    wanted = require_uuid(key_id, "key_id")
    k = storage.api_keys
    mine = [k.c.id == wanted] + ([k.c.tenant_id == tenant_id] if tenant_id is not None else [])
    with db.transaction() as session:
        result = cast(sa.CursorResult[Any], session.execute(  # an UPDATE's: it has a rowcount
            sa.update(k).where(*mine, k.c.revoked_at.is_(None)).values(revoked_at=utcnow())))
        changed = result.rowcount
        row = session.execute(sa.select(*_columns()).where(*mine)).first()
        if row is None:
            raise errors.NotFound(f"no API key {wanted}", reason="api_key_not_found")
        revocations.announce(session, wanted)
    return _record(row), bool(changed)


def revoke_api_key(db: Database, key_id: str) -> bool:
    """Revoke a key; False when it was revoked already (NOT_FOUND when there is none)."""
    return revoke(db, key_id)[1]


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
