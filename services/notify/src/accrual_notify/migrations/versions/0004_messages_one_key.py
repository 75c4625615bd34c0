"""messages: the primary key alone makes a fact unique

A message's id is derived from (tenant_id, fact_id) (domain.events.message_id, SHA-256), so
the primary key already admits one message per fact; the unique (tenant_id, fact_id) index
beside it cost every message one more insert into a wide btree (a tenant id and a fact id of
up to 512 characters, ~2.5 messages per processed event) and guarded nothing the key does not.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 21:40:00.000000
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "notify"


def upgrade() -> None:
    # batch mode: SQLite (the embedded default) rebuilds the table, PostgreSQL just drops it
    with op.batch_alter_table("messages", schema=SCHEMA) as batch:
        batch.drop_constraint("uq_messages_tenant_id_fact_id", type_="unique")


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=SCHEMA) as batch:
        batch.create_unique_constraint("uq_messages_tenant_id_fact_id", ["tenant_id", "fact_id"])
