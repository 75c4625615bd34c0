"""engagement: analytics aggregates and segment configuration

Per-day aggregates of processed events (by type, by rule, by participant) and per-participant
totals, written in the transaction that records an event's outcome; and the per-program
segment configuration.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 14:30:00
"""
from collections.abc import Sequence

import accrual_platform.db
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('analytics_daily',
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('program_id', sa.String(length=36), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('event_type', sa.String(length=255), nullable=False),
    sa.Column('events', sa.BigInteger(), nullable=False),
    sa.Column('points_micros', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('tenant_id', 'program_id', 'day', 'event_type'),
    schema='ingest'
    )
    op.create_table('analytics_rules',
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('program_id', sa.String(length=36), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('rule_id', sa.String(length=36), nullable=False),
    sa.Column('rule_name', sa.String(length=255), nullable=False),
    sa.Column('matches', sa.BigInteger(), nullable=False),
    sa.Column('points_micros', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('tenant_id', 'program_id', 'day', 'rule_id'),
    schema='ingest'
    )
    op.create_table('analytics_participant_days',
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('program_id', sa.String(length=36), nullable=False),
    sa.Column('participant_id', sa.String(length=36), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('event_type', sa.String(length=255), nullable=False),
    sa.Column('events', sa.BigInteger(), nullable=False),
    sa.Column('points_micros', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('tenant_id', 'program_id', 'participant_id', 'day', 'event_type'),
    schema='ingest'
    )
    op.create_index('ix_analytics_participant_days_day', 'analytics_participant_days',
                    ['tenant_id', 'program_id', 'day'], unique=False, schema='ingest')
    op.create_table('analytics_participants',
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('program_id', sa.String(length=36), nullable=False),
    sa.Column('participant_id', sa.String(length=36), nullable=False),
    sa.Column('events', sa.BigInteger(), nullable=False),
    sa.Column('points_micros', sa.BigInteger(), nullable=False),
    sa.Column('first_event_at', accrual_platform.db.UtcDateTime(timezone=True), nullable=True),
    sa.Column('last_event_at', accrual_platform.db.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('tenant_id', 'program_id', 'participant_id'),
    schema='ingest'
    )
    op.create_index('ix_analytics_participants_last', 'analytics_participants',
                    ['tenant_id', 'program_id', 'last_event_at'], unique=False, schema='ingest')
    op.create_table('segment_configs',
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('program_id', sa.String(length=36), nullable=False),
    sa.Column('config', JSON, nullable=False),
    sa.Column('updated_at', accrual_platform.db.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('tenant_id', 'program_id'),
    schema='ingest'
    )


def downgrade() -> None:
    op.drop_table('segment_configs', schema='ingest')
    op.drop_index('ix_analytics_participants_last', table_name='analytics_participants', schema='ingest')
    op.drop_table('analytics_participants', schema='ingest')
    op.drop_index('ix_analytics_participant_days_day', table_name='analytics_participant_days', schema='ingest')
    op.drop_table('analytics_participant_days', schema='ingest')
    op.drop_table('analytics_rules', schema='ingest')
    op.drop_table('analytics_daily', schema='ingest')
