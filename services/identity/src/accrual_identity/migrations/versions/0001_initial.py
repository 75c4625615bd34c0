"""initial: tenants, API keys, participants, identities, enrollments, outbox

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Written by hand to match ``accrual_identity.storage`` (a test compares them on PostgreSQL
and SQLite). Constraint names follow the metadata's naming convention.
"""
from collections.abc import Sequence

import accrual_platform.db
import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "identity"
JSON = accrual_platform.db.JsonType


def _time() -> accrual_platform.db.UtcDateTime:
    return accrual_platform.db.UtcDateTime()


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("default_phone_region", sa.String(2), server_default="US", nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tenants"),
        sa.UniqueConstraint("name", name="uq_tenants_name"),
        schema=SCHEMA,
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("scopes", JSON, nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("revoked_at", _time(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
        sa.ForeignKeyConstraint(["tenant_id"], [f"{SCHEMA}.tenants.id"],
                                name="fk_api_keys_tenant_id_tenants"),
        schema=SCHEMA,
    )
    op.create_index("ix_api_keys_tenant_id", "api_keys", ["tenant_id"], schema=SCHEMA)
    op.create_table(
        "participants",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("attributes", JSON, nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("merged_into", sa.String(36), nullable=True),
        sa.Column("created_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_participants"),
        sa.CheckConstraint("status IN ('ACTIVE', 'MERGED')", name="ck_participants_status"),
        schema=SCHEMA,
    )
    op.create_table(
        "identities",
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("value", sa.String(255), nullable=False),
        sa.Column("participant_id", sa.String(36), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "type", "value", name="pk_identities"),
        sa.ForeignKeyConstraint(["participant_id"], [f"{SCHEMA}.participants.id"],
                                name="fk_identities_participant_id_participants"),
        sa.CheckConstraint("type IN ('DEVICE_KEY', 'EMAIL', 'EXTERNAL', 'PHONE')",
                           name="ck_identities_type"),
        schema=SCHEMA,
    )
    op.create_index("ix_identities_participant_id", "identities", ["participant_id"],
                    schema=SCHEMA)
    op.create_table(
        "enrollments",
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("program_id", sa.String(36), nullable=False),
        sa.Column("participant_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "program_id", "participant_id",
                                name="pk_enrollments"),
        sa.ForeignKeyConstraint(["participant_id"], [f"{SCHEMA}.participants.id"],
                                name="fk_enrollments_participant_id_participants"),
        sa.CheckConstraint("status IN ('ACTIVE', 'CLOSED', 'FROZEN', 'LOCKED')",
                           name="ck_enrollments_status"),
        schema=SCHEMA,
    )
    op.create_index("ix_enrollments_tenant_id_participant_id", "enrollments",
                    ["tenant_id", "participant_id"], schema=SCHEMA)
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  autoincrement=True, nullable=False),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("outbox", schema=SCHEMA)
    op.drop_index("ix_enrollments_tenant_id_participant_id", table_name="enrollments",
                  schema=SCHEMA)
    op.drop_table("enrollments", schema=SCHEMA)
    op.drop_index("ix_identities_participant_id", table_name="identities", schema=SCHEMA)
    op.drop_table("identities", schema=SCHEMA)
    op.drop_table("participants", schema=SCHEMA)
    op.drop_index("ix_api_keys_tenant_id", table_name="api_keys", schema=SCHEMA)
    op.drop_table("api_keys", schema=SCHEMA)
    op.drop_table("tenants", schema=SCHEMA)
