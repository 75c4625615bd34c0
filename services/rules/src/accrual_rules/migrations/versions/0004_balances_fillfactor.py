"""balances: room on each page for HOT updates

Every award updates an account's balance row (available, lifetime, tier) and never its key,
so PostgreSQL could update it in place (HOT) and skip the index, were there room on the
page; with the default fillfactor of 100 under one in ten updates was HOT. 70 leaves it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 18:30:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("ALTER TABLE rules.balances SET (fillfactor = 70)")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("ALTER TABLE rules.balances RESET (fillfactor)")
