"""event origin, CDP events and the CDP event-type registry

CDP events (seed 003) are deduplicated per (tenant, source, externalEventId) and carry an
empty program_id, so the loyalty uniqueness (tenant, program, key) becomes a partial index
over loyalty rows only and CDP rows get their own partial unique index.

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
LOYALTY_ROWS = sa.text('cdp_source IS NULL')
CDP_ROWS = sa.text('cdp_source IS NOT NULL')


def upgrade() -> None:
    with op.batch_alter_table('events', schema='ingest') as batch:
        batch.add_column(sa.Column('origin', sa.String(length=16), server_default='EXTERNAL', nullable=False))
        batch.add_column(sa.Column('cdp_source', sa.String(length=255), nullable=True))
        batch.add_column(sa.Column('cdp_identities', JSON, nullable=True))
        batch.drop_constraint('uq_events_idempotency', type_='unique')
    op.create_index('uq_events_idempotency', 'events', ['tenant_id', 'program_id', 'idempotency_key'],
                    unique=True, schema='ingest', postgresql_where=LOYALTY_ROWS, sqlite_where=LOYALTY_ROWS)
    op.create_index('uq_events_cdp', 'events', ['tenant_id', 'cdp_source', 'idempotency_key'],
                    unique=True, schema='ingest', postgresql_where=CDP_ROWS, sqlite_where=CDP_ROWS)
    op.create_table('cdp_event_types',
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('properties', JSON, nullable=False),
    sa.Column('allow_unknown_properties', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('created_at', accrual_platform.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', accrual_platform.db.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('tenant_id', 'name'),
    schema='ingest'
    )


def downgrade() -> None:
    op.drop_table('cdp_event_types', schema='ingest')
    op.drop_index('uq_events_cdp', table_name='events', schema='ingest')
    op.drop_index('uq_events_idempotency', table_name='events', schema='ingest')
    op.execute("DELETE FROM ingest.events WHERE cdp_source IS NOT NULL")
    with op.batch_alter_table('events', schema='ingest') as batch:
        batch.create_unique_constraint('uq_events_idempotency', ['tenant_id', 'program_id', 'idempotency_key'])
        batch.drop_column('cdp_identities')
        batch.drop_column('cdp_source')
        batch.drop_column('origin')
