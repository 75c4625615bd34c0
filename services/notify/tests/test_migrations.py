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
from accrual_platform import migrations
from accrual_platform.db import make_engine
from accrual_platform.testing import PG_URL

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
    getattr(migrations, direction)(url, SCHEMA, bootstrap.MIGRATIONS, target)


def _engine(url: str) -> sa.Engine:
    return make_engine(url, SCHEMA, pool_size=1)


def test_migrated_schema_matches_the_tables(url: str) -> None:
    _migrate(url, "head")
    assert migrations.differences(url, SCHEMA, storage.metadata) == []


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
