"""Tables of the identity schema."""

from __future__ import annotations

import sqlalchemy as sa

from accrual_platform.db import JsonType, UtcDateTime
from accrual_platform.outbox import outbox_table

SCHEMA = "identity"
metadata = sa.MetaData(schema=SCHEMA)

tenants = sa.Table(
    "tenants", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("default_phone_region", sa.String(2), nullable=False, server_default="US"),
    sa.Column("created_at", UtcDateTime(), nullable=False),
)

api_keys = sa.Table(
    "api_keys", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(36), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("scopes", JsonType, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("revoked_at", UtcDateTime()),
)

participants = sa.Table(
    "participants", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(36), nullable=False),
    sa.Column("attributes", JsonType, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("merged_into", sa.String(36)),
    sa.Column("created_at", UtcDateTime(), nullable=False),
)

identities = sa.Table(
    "identities", metadata,
    sa.Column("tenant_id", sa.String(36), primary_key=True),
    sa.Column("type", sa.String(16), primary_key=True),
    sa.Column("value", sa.String(255), primary_key=True),
    sa.Column("participant_id", sa.String(36), nullable=False, index=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
)

enrollments = sa.Table(
    "enrollments", metadata,
    sa.Column("tenant_id", sa.String(36), primary_key=True),
    sa.Column("program_id", sa.String(36), primary_key=True),
    sa.Column("participant_id", sa.String(36), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

outbox = outbox_table(metadata)
