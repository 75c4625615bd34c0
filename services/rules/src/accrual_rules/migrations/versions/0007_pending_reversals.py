"""pending points and reversals: program pending policy and monetary field, reversals,
the keys of events whose points wait for an activating event, activations that came first

Reversals of an event are unique by (tenant, event, idempotency key) and keep the exact
share of the event each took; an event's reversals add up to at most the whole.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 23:45:00
"""
from collections.abc import Sequence

import accrual_platform.db
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def _decimal() -> accrual_platform.db.ExactDecimal:
    return accrual_platform.db.ExactDecimal(precision=30, scale=10)


def _time() -> accrual_platform.db.UtcDateTime:
    return accrual_platform.db.UtcDateTime(timezone=True)


def upgrade() -> None:
    op.add_column('programs', sa.Column('pending_policy', JSON, nullable=True), schema='rules')
    op.add_column('programs', sa.Column('monetary_field', sa.String(length=255), nullable=True), schema='rules')
    op.create_table(
        'reversals',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('tenant_id', sa.String(length=36), nullable=False),
        sa.Column('event_id', sa.String(length=36), nullable=False),
        sa.Column('idempotency_key', sa.String(length=255), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('request_hash', sa.String(length=64), nullable=False),
        sa.Column('shares', JSON, nullable=False),
        sa.Column('points', _decimal(), nullable=False),
        sa.Column('unrecovered', _decimal(), nullable=False),
        sa.Column('debt', _decimal(), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('created_at', _time(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('tenant_id', 'event_id', 'idempotency_key', name='uq_reversals_key'),
        schema='rules',
    )
    op.create_table(
        'pending_event_keys',
        sa.Column('tenant_id', sa.String(length=36), nullable=False),
        sa.Column('program_id', sa.String(length=36), nullable=False),
        sa.Column('idempotency_key', sa.String(length=255), nullable=False),
        sa.Column('event_id', sa.String(length=36), nullable=False),
        sa.PrimaryKeyConstraint('tenant_id', 'program_id', 'idempotency_key'),
        schema='rules',
    )
    op.create_table(
        'early_activations',
        sa.Column('tenant_id', sa.String(length=36), nullable=False),
        sa.Column('program_id', sa.String(length=36), nullable=False),
        sa.Column('reference', sa.String(length=300), nullable=False),
        sa.Column('activating_event_id', sa.String(length=36), nullable=False),
        sa.Column('created_at', _time(), nullable=False),
        sa.PrimaryKeyConstraint('tenant_id', 'program_id', 'reference'),
        schema='rules',
    )


def downgrade() -> None:
    op.drop_table('early_activations', schema='rules')
    op.drop_table('pending_event_keys', schema='rules')
    op.drop_table('reversals', schema='rules')
    for column in ('monetary_field', 'pending_policy'):
        with op.batch_alter_table('programs', schema='rules') as batch:
            batch.drop_column(column)
