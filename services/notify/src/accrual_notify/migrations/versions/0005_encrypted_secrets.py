"""endpoints: room for encrypted signing secrets

The secret columns hold Fernet tokens of the secrets from now on (secretbox): about 164
characters for a 50-character secret, beyond the 128 the plain secrets had. Rows written
before keep their plain secrets here; notify reads both forms and encrypts the plain ones
when it starts, since only the running service is sure to have SECRETS_KEY (``accrual
migrate`` needs only DATABASE_URL).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 18:40:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "notify"


def upgrade() -> None:
    # batch mode: SQLite (the embedded default) rebuilds the table, PostgreSQL alters it
    with op.batch_alter_table("endpoints", schema=SCHEMA) as batch:
        batch.alter_column("secret", type_=sa.String(512), existing_type=sa.String(128),
                           existing_nullable=False)
        batch.alter_column("previous_secret", type_=sa.String(512), existing_type=sa.String(128),
                           existing_nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("endpoints", schema=SCHEMA) as batch:
        batch.alter_column("secret", type_=sa.String(128), existing_type=sa.String(512),
                           existing_nullable=False)
        batch.alter_column("previous_secret", type_=sa.String(128), existing_type=sa.String(512),
                           existing_nullable=True)
