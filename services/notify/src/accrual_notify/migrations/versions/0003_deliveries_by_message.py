"""deliveries by message: a redelivered fact batch finds its unattempted deliveries by index

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 16:40:00.000000
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "notify"


def upgrade() -> None:
    op.create_index(op.f("ix_deliveries_message_id"), "deliveries", ["message_id"], unique=False, schema=SCHEMA)


def downgrade() -> None:
    op.drop_index(op.f("ix_deliveries_message_id"), table_name="deliveries", schema=SCHEMA)
