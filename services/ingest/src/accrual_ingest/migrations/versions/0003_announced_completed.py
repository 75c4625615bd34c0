"""events: announced_at (stale-event sweep) and completed_at (accept-to-completed latency)

An event is announced to the rules queue when it is accepted (through the outbox). If that
message is lost for good (dead-lettered after its retries, a purged queue), the event would
stay PENDING or PROCESSING forever; the sweep announces such events again, and announced_at
says when it last did. completed_at is when ingest recorded the outcome.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 14:00:00
"""
from collections.abc import Sequence

import accrual_platform.db
import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNFINISHED = sa.text("status IN ('PENDING', 'PROCESSING')")


def upgrade() -> None:
    with op.batch_alter_table('events', schema='ingest') as batch:
        batch.add_column(sa.Column('announced_at', accrual_platform.db.UtcDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('completed_at', accrual_platform.db.UtcDateTime(timezone=True), nullable=True))
    op.execute("UPDATE ingest.events SET announced_at = received_at")
    op.create_index('ix_events_unfinished', 'events', ['announced_at'], unique=False, schema='ingest',
                    postgresql_where=UNFINISHED, sqlite_where=UNFINISHED)


def downgrade() -> None:
    op.drop_index('ix_events_unfinished', table_name='events', schema='ingest')
    with op.batch_alter_table('events', schema='ingest') as batch:
        batch.drop_column('completed_at')
        batch.drop_column('announced_at')
