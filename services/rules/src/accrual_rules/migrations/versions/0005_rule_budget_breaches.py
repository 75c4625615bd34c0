"""rules: count the times a rule went over the expression sandbox's budget

A rule that goes over its CPU or memory budget repeatedly is suspended; the count is kept on
the rule and starts again from zero when the rule is saved.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 18:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('rules', sa.Column('budget_breaches', sa.Integer, nullable=False, server_default='0'),
                  schema='rules')


def downgrade() -> None:
    op.drop_column('rules', 'budget_breaches', schema='rules')
