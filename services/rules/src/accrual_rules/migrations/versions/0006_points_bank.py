"""points bank: lots, their allocations, debt and pending balances, bank policies

Every credit becomes a lot (issue 22) and every debit records what it took from which lot.
Programs get their bank policy (expiry, timezone, negative balance, expiring lead times),
rules an optional expiry override, balances the debt and pending columns, and ledger
entries the points a CLAMP debit could not recover. On PostgreSQL a check keeps each lot's
remaining between 0 and its original (SQLite stores exact decimals as text). Balances from
before lots get an opening lot (or their debt).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 23:40:00
"""
import uuid
from collections.abc import Sequence

import accrual_platform.db
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def _decimal() -> accrual_platform.db.ExactDecimal:
    return accrual_platform.db.ExactDecimal(precision=30, scale=10)


def _time() -> accrual_platform.db.UtcDateTime:
    return accrual_platform.db.UtcDateTime(timezone=True)


def upgrade() -> None:
    pg = op.get_bind().dialect.name == 'postgresql'
    op.add_column('programs', sa.Column('bank_policy', JSON, nullable=True), schema='rules')
    op.add_column('rules', sa.Column('expiry', JSON, nullable=True), schema='rules')
    op.add_column('ledger_entries', sa.Column('unrecovered', _decimal(), nullable=True), schema='rules')
    op.add_column('balances', sa.Column('debt', _decimal(), nullable=False, server_default='0'), schema='rules')
    op.add_column('balances', sa.Column('pending', _decimal(), nullable=False, server_default='0'),
                  schema='rules')
    op.create_table(
        'lots',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('tenant_id', sa.String(length=36), nullable=False),
        sa.Column('program_id', sa.String(length=36), nullable=False),
        sa.Column('participant_id', sa.String(length=36), nullable=False),
        sa.Column('entry_id', sa.String(length=36), nullable=False),
        sa.Column('event_id', sa.String(length=36), nullable=True),
        sa.Column('original', _decimal(), nullable=False),
        sa.Column('remaining', _decimal(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('earned_at', _time(), nullable=False),
        sa.Column('activates_at', _time(), nullable=True),
        sa.Column('expires_at', _time(), nullable=True),
        sa.Column('created_at', _time(), nullable=False),
        sa.Column('updated_at', _time(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('entry_id', name='uq_lots_entry'),
        schema='rules',
    )
    if pg:
        op.execute("ALTER TABLE rules.lots SET (fillfactor = 80)")
        op.execute("ALTER TABLE rules.lots ADD CONSTRAINT ck_lots_remaining "
                   "CHECK (remaining >= 0 AND remaining <= original)")
    op.create_index('ix_lots_account', 'lots', ['tenant_id', 'program_id', 'participant_id', 'status'],
                    schema='rules')
    op.create_index('ix_lots_event', 'lots', ['tenant_id', 'event_id'], schema='rules')
    op.create_index('ix_lots_expiry', 'lots', ['expires_at'], schema='rules',
                    postgresql_where=sa.text("status = 'ACTIVE'"), sqlite_where=sa.text("status = 'ACTIVE'"))
    op.create_index('ix_lots_activation', 'lots', ['activates_at'], schema='rules',
                    postgresql_where=sa.text("status = 'PENDING'"), sqlite_where=sa.text("status = 'PENDING'"))
    op.create_table(
        'lot_allocations',
        sa.Column('entry_id', sa.String(length=36), nullable=False),
        sa.Column('lot_id', sa.String(length=36), nullable=False),
        sa.Column('tenant_id', sa.String(length=36), nullable=False),
        sa.Column('amount', _decimal(), nullable=False),
        sa.Column('created_at', _time(), nullable=False),
        sa.PrimaryKeyConstraint('entry_id', 'lot_id'),
        schema='rules',
    )
    op.create_index('ix_lot_allocations_lot', 'lot_allocations', ['lot_id'], schema='rules')
    _opening_lots()


def _opening_lots() -> None:
    """Balances from before lots: a positive one becomes one never-expiring ACTIVE lot (its
    entry id is new: it stands for the whole history), a negative one becomes debt, so
    available = the active lots' remaining - debt holds from the start."""
    balances = sa.table('balances', sa.column('tenant_id'), sa.column('program_id'), sa.column('participant_id'),
                        sa.column('available', _decimal()), sa.column('debt', _decimal()),
                        sa.column('updated_at', _time()), schema='rules')
    lots = sa.table('lots', *(sa.column(n) for n in ('id', 'tenant_id', 'program_id', 'participant_id',
                                                     'entry_id', 'status')),
                    sa.column('original', _decimal()), sa.column('remaining', _decimal()),
                    *(sa.column(n, _time()) for n in ('earned_at', 'created_at', 'updated_at')), schema='rules')
    bind = op.get_bind()
    opening = []
    for row in bind.execute(sa.select(balances)):
        if row.available > 0:
            opening.append({'id': str(uuid.uuid4()), 'tenant_id': row.tenant_id, 'program_id': row.program_id,
                            'participant_id': row.participant_id, 'entry_id': str(uuid.uuid4()), 'status': 'ACTIVE',
                            'original': row.available, 'remaining': row.available, 'earned_at': row.updated_at,
                            'created_at': row.updated_at, 'updated_at': row.updated_at})
        elif row.available < 0:
            bind.execute(sa.update(balances).where(
                balances.c.tenant_id == row.tenant_id, balances.c.program_id == row.program_id,
                balances.c.participant_id == row.participant_id).values(debt=-row.available))
    for start in range(0, len(opening), 1000):
        bind.execute(sa.insert(lots), opening[start:start + 1000])


def downgrade() -> None:
    op.drop_index('ix_lot_allocations_lot', table_name='lot_allocations', schema='rules')
    op.drop_table('lot_allocations', schema='rules')
    for index in ('ix_lots_activation', 'ix_lots_expiry', 'ix_lots_event', 'ix_lots_account'):
        op.drop_index(index, table_name='lots', schema='rules')
    op.drop_table('lots', schema='rules')
    for table, column in (('balances', 'pending'), ('balances', 'debt'), ('ledger_entries', 'unrecovered'),
                          ('rules', 'expiry'), ('programs', 'bank_policy')):
        with op.batch_alter_table(table, schema='rules') as batch:
            batch.drop_column(column)
