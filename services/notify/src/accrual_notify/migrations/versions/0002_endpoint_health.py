"""endpoint health: failure streak and last success, for auto-disable

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 13:40:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from accrual_platform.db import UtcDateTime
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "notify"


def upgrade() -> None:
    # Plain nullable ADD COLUMNs: valid on PostgreSQL and on SQLite without a table rebuild.
    op.add_column("endpoints", sa.Column("failing_since", UtcDateTime(), nullable=True),
                  schema=SCHEMA)
    op.add_column("endpoints", sa.Column("last_success_at", UtcDateTime(), nullable=True),
                  schema=SCHEMA)
    op.create_index(op.f("ix_deliveries_endpoint_id_status_created_at"), "deliveries",
                    ["endpoint_id", "status", "created_at"], unique=False, schema=SCHEMA)


def downgrade() -> None:
    op.drop_index(op.f("ix_deliveries_endpoint_id_status_created_at"), table_name="deliveries",
                  schema=SCHEMA)
    op.drop_column("endpoints", "last_success_at", schema=SCHEMA)
    op.drop_column("endpoints", "failing_since", schema=SCHEMA)
