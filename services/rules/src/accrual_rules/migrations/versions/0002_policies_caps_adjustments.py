"""event-type policy and registry, rule caps, ledger event time and adjustment payloads

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 13:40:00
"""
from collections.abc import Sequence

import accrual_platform.db
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.add_column('programs', sa.Column('event_type_policy', sa.String(length=16), nullable=False,
                                        server_default='OPEN'), schema='rules')
    op.create_table(
        'program_event_types',
        sa.Column('tenant_id', sa.String(length=36), nullable=False),
        sa.Column('program_id', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('properties', JSON, nullable=False),
        sa.Column('created_at', accrual_platform.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('tenant_id', 'program_id', 'name'),
        schema='rules',
    )
    op.add_column('rules', sa.Column('caps', JSON, nullable=True), schema='rules')
    op.add_column('ledger_entries', sa.Column(
        'occurred_at', accrual_platform.db.UtcDateTime(timezone=True), nullable=True), schema='rules')
    op.add_column('ledger_entries', sa.Column('payload_hash', sa.String(length=64), nullable=True),
                  schema='rules')
    op.create_table(
        'outbox',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True,
                  nullable=False),
        sa.Column('queue', sa.String(length=64), nullable=False),
        sa.Column('actor', sa.String(length=128), nullable=False),
        sa.Column('payload', JSON, nullable=False),
        sa.Column('created_at', accrual_platform.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name='pk_outbox'),
        schema='rules',
    )
    op.create_index('ix_ledger_rule_usage', 'ledger_entries',
                    ['tenant_id', 'rule_id', 'participant_id', 'occurred_at'], unique=False,
                    schema='rules')


def downgrade() -> None:
    op.drop_index('ix_ledger_rule_usage', table_name='ledger_entries', schema='rules')
    op.drop_table('outbox', schema='rules')
    with op.batch_alter_table('ledger_entries', schema='rules') as batch:
        batch.drop_column('payload_hash')
        batch.drop_column('occurred_at')
    with op.batch_alter_table('rules', schema='rules') as batch:
        batch.drop_column('caps')
    op.drop_table('program_event_types', schema='rules')
    with op.batch_alter_table('programs', schema='rules') as batch:
        batch.drop_column('event_type_policy')
