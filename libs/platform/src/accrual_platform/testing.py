"""Where the test suites find the real servers, and a fresh migrated schema.

Defaults are the servers every machine of this project runs (README). Each can be moved
with an environment variable so that several suites can run side by side on one machine
(for instance one database and one RabbitMQ vhost per git worktree):

- ``ACCRUAL_TEST_DATABASE_URL`` (PostgreSQL, SQLAlchemy URL)
- ``ACCRUAL_TEST_BROKER_URL`` (RabbitMQ, amqp URL)
- ``ACCRUAL_TEST_REDIS_URL`` (Redis)

Tests that need one of them fail, never skip, when it is missing.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

import sqlalchemy as sa

from accrual_platform import migrations

PG_URL = os.environ.get("ACCRUAL_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
AMQP_URL = os.environ.get("ACCRUAL_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
REDIS_URL = os.environ.get("ACCRUAL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def fresh_schema(schema: str, migration_dir: pathlib.Path, url: str = PG_URL) -> str:
    """Drop ``schema`` and migrate it again from nothing; returns the database URL."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        engine.dispose()
    migrations.upgrade(url, schema, migration_dir)
    return url


def drop_schemas(schemas: Sequence[str], url: str = PG_URL) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for schema in schemas:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        engine.dispose()
