"""events: room for HOT updates, and an unfinished-events index that ignores status

The claim (PENDING -> PROCESSING) changes only ``status``. While ``status`` appeared in the
predicate of ``ix_events_unfinished``, PostgreSQL could not update the row in place (HOT):
every claim wrote a new entry into each of the table's seven indexes. The index now selects
unfinished events by ``completed_at IS NULL`` (the same rows: an outcome sets completed_at, a
retry clears it), so no index mentions ``status``; and a fillfactor of 50 leaves room on
each page for the claimed version of its rows, which a HOT update needs.

The per-participant-day aggregate is updated in place on every event of that participant
and day, without touching its indexed columns; fillfactor 70 leaves room for HOT there too.

Events finished before 0003 may lack completed_at; they get their processed (or received)
time, so the new predicate does not count them as unfinished.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 18:20:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNFINISHED = sa.text("completed_at IS NULL")
UNFINISHED_BY_STATUS = sa.text("status IN ('PENDING', 'PROCESSING')")
FILLFACTOR = 50
AGGREGATE_FILLFACTOR = 70


def upgrade() -> None:
    op.execute("UPDATE ingest.events SET completed_at = coalesce(processed_at, received_at) "
               "WHERE completed_at IS NULL AND status NOT IN ('PENDING', 'PROCESSING')")
    op.drop_index('ix_events_unfinished', table_name='events', schema='ingest')
    op.create_index('ix_events_unfinished', 'events', ['announced_at'], unique=False, schema='ingest',
                    postgresql_where=UNFINISHED, sqlite_where=UNFINISHED)
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(f"ALTER TABLE ingest.events SET (fillfactor = {FILLFACTOR})")
        op.execute(f"ALTER TABLE ingest.analytics_participant_days SET (fillfactor = {AGGREGATE_FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("ALTER TABLE ingest.events RESET (fillfactor)")
        op.execute("ALTER TABLE ingest.analytics_participant_days RESET (fillfactor)")
    op.drop_index('ix_events_unfinished', table_name='events', schema='ingest')
    op.create_index('ix_events_unfinished', 'events', ['announced_at'], unique=False, schema='ingest',
                    postgresql_where=UNFINISHED_BY_STATUS, sqlite_where=UNFINISHED_BY_STATUS)
