"""The Alembic history builds exactly the tables the code uses, and 0004 (one key per
message) keeps the messages and deliveries written before it, on PostgreSQL and SQLite."""

from __future__ import annotations

import datetime as dt
import pathlib
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from accrual_notify import bootstrap, storage
from accrual_notify.domain import events
from accrual_platform.db import ensure_schema, make_engine
from accrual_platform.testing import PG_URL
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext

SCHEMA = bootstrap.SCHEMA
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/{{schema}}.db"
        return
    # The migrations name their schema, as the ingest and identity tests do theirs: start it
    # afresh (every test ends with it migrated to head again).
    engine = sa.create_engine(PG_URL)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
    engine.dispose()
    yield PG_URL


def _migrate(url: str, target: str, direction: str = "upgrade") -> None:
    engine = make_engine(url, SCHEMA, pool_size=1)
    try:
        ensure_schema(engine, SCHEMA)
        with engine.begin() as conn:
            cfg = Config()
            cfg.set_main_option("script_location", str(bootstrap.MIGRATIONS))
            cfg.attributes.update(schema=SCHEMA, connection=conn)
            getattr(command, direction)(cfg, target)
    finally:
        engine.dispose()


def _engine(url: str) -> sa.Engine:
    return make_engine(url, SCHEMA, pool_size=1)


def test_migrated_schema_matches_the_tables(url: str) -> None:
    _migrate(url, "head")
    engine = make_engine(url, SCHEMA, pool_size=1)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={
                "include_schemas": True, "compare_type": True, "version_table_schema": SCHEMA,
                "include_name": lambda name, type_, _: type_ != "schema" or name == SCHEMA})
            assert list(compare_metadata(context, storage.metadata)) == []
    finally:
        engine.dispose()


def test_0004_keeps_messages_and_one_message_per_fact_still_holds(url: str) -> None:
    _migrate(url, "0003")
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    m, e, d = storage.messages, storage.endpoints, storage.deliveries
    message = {"id": events.message_id("t", "event.completed:e1:1"), "tenant_id": "t",
               "fact_id": "event.completed:e1:1", "type": "event.completed", "payload": "{}", "created_at": now}
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(m.insert(), message)
            conn.execute(e.insert(), {"id": "ep1", "tenant_id": "t", "url": "https://example.com/h",
                                      "secret": "whsec_x", "status": "ENABLED", "enabled_events": [],
                                      "created_at": now, "updated_at": now})
            conn.execute(d.insert(), {"id": "d1", "tenant_id": "t", "endpoint_id": "ep1",
                                      "message_id": message["id"], "status": "PENDING", "attempts": 0,
                                      "next_attempt_at": now, "created_at": now})
    finally:
        engine.dispose()
    _migrate(url, "head")
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            assert conn.execute(sa.select(m.c.fact_id)).scalars().all() == ["event.completed:e1:1"]
            assert conn.execute(sa.select(d.c.message_id)).scalars().all() == [message["id"]]
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:  # the same fact again
            conn.execute(m.insert(), message)
    finally:
        engine.dispose()
    _migrate(url, "0003", "downgrade")
    _migrate(url, "head")
