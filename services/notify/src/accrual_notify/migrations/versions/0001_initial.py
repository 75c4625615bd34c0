"""initial: endpoints, messages, deliveries, delivery attempts

Revision ID: 0001
Revises:
Create Date: 2026-11-22 14:10:07.296275
"""
from collections.abc import Sequence

import sqlalchemy as sa
from accrual_platform.db import JsonType, UtcDateTime
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "notify"


def upgrade() -> None:
    op.create_table(
        "endpoints",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("enabled_events", JsonType, nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("secret", sa.String(length=128), nullable=False),
        sa.Column("previous_secret", sa.String(length=128), nullable=True),
        sa.Column("previous_secret_expires_at", UtcDateTime(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("disabled_reason", sa.Text(), server_default="", nullable=False),
        sa.Column("disabled_at", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("deleted_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_endpoints")),
        schema=SCHEMA,
    )
    op.create_index(op.f("ix_endpoints_tenant_id_created_at"), "endpoints",
                    ["tenant_id", "created_at"], unique=False, schema=SCHEMA)
    op.create_table(
        "messages",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("fact_id", sa.String(length=512), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.UniqueConstraint("tenant_id", "fact_id", name=op.f("uq_messages_tenant_id_fact_id")),
        schema=SCHEMA,
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("endpoint_id", sa.String(length=36), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_status_code", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_latency_ms", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_response_excerpt", sa.Text(), server_default="", nullable=False),
        sa.Column("last_error", sa.Text(), server_default="", nullable=False),
        sa.Column("last_attempt_at", UtcDateTime(), nullable=True),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=True),
        sa.Column("lease_until", UtcDateTime(), nullable=True),
        sa.Column("completed_at", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["endpoint_id"], [f"{SCHEMA}.endpoints.id"],
                                name=op.f("fk_deliveries_endpoint_id_endpoints")),
        sa.ForeignKeyConstraint(["message_id"], [f"{SCHEMA}.messages.id"],
                                name=op.f("fk_deliveries_message_id_messages")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("endpoint_id", "message_id",
                            name=op.f("uq_deliveries_endpoint_id_message_id")),
        schema=SCHEMA,
    )
    op.create_index(op.f("ix_deliveries_status_next_attempt_at"), "deliveries",
                    ["status", "next_attempt_at"], unique=False, schema=SCHEMA)
    op.create_index(op.f("ix_deliveries_tenant_id_endpoint_id_created_at_id"), "deliveries",
                    ["tenant_id", "endpoint_id", "created_at", "id"], unique=False, schema=SCHEMA)
    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.String(length=36), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("response_excerpt", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["delivery_id"], [f"{SCHEMA}.deliveries.id"],
                                name=op.f("fk_delivery_attempts_delivery_id_deliveries")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempts")),
        schema=SCHEMA,
    )
    op.create_index(op.f("ix_delivery_attempts_delivery_id_attempt"), "delivery_attempts",
                    ["delivery_id", "attempt"], unique=False, schema=SCHEMA)


def downgrade() -> None:
    op.drop_index(op.f("ix_delivery_attempts_delivery_id_attempt"),
                  table_name="delivery_attempts", schema=SCHEMA)
    op.drop_table("delivery_attempts", schema=SCHEMA)
    op.drop_index(op.f("ix_deliveries_tenant_id_endpoint_id_created_at_id"),
                  table_name="deliveries", schema=SCHEMA)
    op.drop_index(op.f("ix_deliveries_status_next_attempt_at"), table_name="deliveries",
                  schema=SCHEMA)
    op.drop_table("deliveries", schema=SCHEMA)
    op.drop_table("messages", schema=SCHEMA)
    op.drop_index(op.f("ix_endpoints_tenant_id_created_at"), table_name="endpoints",
                  schema=SCHEMA)
    op.drop_table("endpoints", schema=SCHEMA)
