"""birthday column for the birthday scheduler; merges table for explicit merges

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

``participants.birthday`` ("MM-DD" of ``birth_date``) is filled for existing rows with each
backend's own date formatting. ``merges`` records every explicit merge under the merge_id
the rules service uses to move balances once.
"""
from collections.abc import Sequence

import accrual_platform.db
import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "identity"


def upgrade() -> None:
    op.add_column("participants", sa.Column("birthday", sa.String(5), nullable=True),
                  schema=SCHEMA)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"UPDATE {SCHEMA}.participants SET birthday = to_char(birth_date, 'MM-DD') "
                   "WHERE birth_date IS NOT NULL AND status = 'ACTIVE'")
    else:
        op.execute(f"UPDATE {SCHEMA}.participants SET birthday = strftime('%m-%d', birth_date) "
                   "WHERE birth_date IS NOT NULL AND status = 'ACTIVE'")
    op.create_index("ix_participants_birthday", "participants", ["birthday"], schema=SCHEMA)
    op.create_table(
        "merges",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("survivor_participant_id", sa.String(36), nullable=False),
        sa.Column("merged_participant_id", sa.String(36), nullable=False),
        sa.Column("merged_at", accrual_platform.db.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_merges"),
        sa.UniqueConstraint("merged_participant_id", name="uq_merges_merged_participant_id"),
        sa.ForeignKeyConstraint(["survivor_participant_id"], [f"{SCHEMA}.participants.id"],
                                name="fk_merges_survivor_participant_id_participants"),
        sa.ForeignKeyConstraint(["merged_participant_id"], [f"{SCHEMA}.participants.id"],
                                name="fk_merges_merged_participant_id_participants"),
        schema=SCHEMA,
    )
    op.create_index("ix_merges_survivor_participant_id", "merges", ["survivor_participant_id"],
                    schema=SCHEMA)


def downgrade() -> None:
    op.drop_index("ix_merges_survivor_participant_id", table_name="merges", schema=SCHEMA)
    op.drop_table("merges", schema=SCHEMA)
    op.drop_index("ix_participants_birthday", table_name="participants", schema=SCHEMA)
    with op.batch_alter_table("participants", schema=SCHEMA) as batch:
        batch.drop_column("birthday")
