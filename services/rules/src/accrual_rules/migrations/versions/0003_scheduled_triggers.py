"""scheduled triggers of programs and the scheduler's watermarks

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 14:40:00
"""
from collections.abc import Sequence

import accrual_platform.db
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.add_column('programs', sa.Column('scheduled_triggers', JSON, nullable=True), schema='rules')
    op.create_table(
        'scheduler_watermarks',
        sa.Column('tenant_id', sa.String(length=36), nullable=False),
        sa.Column('program_id', sa.String(length=36), nullable=False),
        sa.Column('trigger', sa.String(length=32), nullable=False),
        sa.Column('last_date', sa.Date(), nullable=False),
        sa.Column('updated_at', accrual_platform.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('tenant_id', 'program_id', 'trigger'),
        schema='rules',
    )


def downgrade() -> None:
    op.drop_table('scheduler_watermarks', schema='rules')
    with op.batch_alter_table('programs', schema='rules') as batch:
        batch.drop_column('scheduled_triggers')
