"""rewards and redemptions: the rewards catalogue and redemptions (issue 23)

A hold is a REDEEM ledger entry whose lot allocations say where its points came from; the
redemption row keeps its state, price and the amounts captured, refunded and released.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 00:00:00
"""
from collections.abc import Sequence

import accrual_platform.db
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def _decimal() -> accrual_platform.db.ExactDecimal:
    return accrual_platform.db.ExactDecimal(precision=30, scale=10)


def _time() -> accrual_platform.db.UtcDateTime:
    return accrual_platform.db.UtcDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'rewards',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('tenant_id', sa.String(length=36), nullable=False),
        sa.Column('program_id', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('cost_points', _decimal(), nullable=False),
        sa.Column('stock', sa.BigInteger(), nullable=True),
        sa.Column('limit_count', sa.Integer(), nullable=True),
        sa.Column('limit_period', sa.String(length=32), nullable=True),
        sa.Column('eligible_tiers', JSON, nullable=False),
        sa.Column('active_from', _time(), nullable=True),
        sa.Column('active_to', _time(), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('created_at', _time(), nullable=False),
        sa.Column('updated_at', _time(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        schema='rules',
    )
    op.create_index('ix_rewards_program', 'rewards', ['tenant_id', 'program_id', 'created_at'], schema='rules')
    op.create_table(
        'redemptions',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('tenant_id', sa.String(length=36), nullable=False),
        sa.Column('program_id', sa.String(length=36), nullable=False),
        sa.Column('participant_id', sa.String(length=36), nullable=False),
        sa.Column('idempotency_key', sa.String(length=255), nullable=False),
        sa.Column('payload_hash', sa.String(length=64), nullable=False),
        sa.Column('reward_id', sa.String(length=36), nullable=True),
        sa.Column('state', sa.String(length=24), nullable=False),
        sa.Column('points', _decimal(), nullable=False),
        sa.Column('captured_points', _decimal(), nullable=False),
        sa.Column('refunded_points', _decimal(), nullable=False),
        sa.Column('released_points', _decimal(), nullable=False),
        sa.Column('external_ref', sa.String(length=255), nullable=False),
        sa.Column('hold_entry_id', sa.String(length=36), nullable=False),
        sa.Column('hold_expires_at', _time(), nullable=False),
        sa.Column('created_at', _time(), nullable=False),
        sa.Column('updated_at', _time(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('tenant_id', 'program_id', 'idempotency_key', name='uq_redemptions_key'),
        schema='rules',
    )
    op.create_index('ix_redemptions_participant', 'redemptions',
                    ['tenant_id', 'program_id', 'participant_id', 'created_at'], schema='rules')
    op.create_index('ix_redemptions_reward', 'redemptions', ['reward_id', 'participant_id', 'created_at'],
                    schema='rules')
    op.create_index('ix_redemptions_hold_expiry', 'redemptions', ['hold_expires_at'], schema='rules',
                    postgresql_where=sa.text("state = 'HELD'"), sqlite_where=sa.text("state = 'HELD'"))
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("ALTER TABLE rules.rewards ADD CONSTRAINT ck_rewards_stock CHECK (stock IS NULL OR stock >= 0)")


def downgrade() -> None:
    for index in ('ix_redemptions_hold_expiry', 'ix_redemptions_reward', 'ix_redemptions_participant'):
        op.drop_index(index, table_name='redemptions', schema='rules')
    op.drop_table('redemptions', schema='rules')
    op.drop_index('ix_rewards_program', table_name='rewards', schema='rules')
    op.drop_table('rewards', schema='rules')
