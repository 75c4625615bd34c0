"""The Alembic history builds exactly the tables the code uses, and 0002 (origin, CDP) keeps
events written under 0001, on PostgreSQL and SQLite."""

from __future__ import annotations

import datetime as dt
import pathlib
import uuid

import pytest
import sqlalchemy as sa
from accrual_ingest import bootstrap, storage
from accrual_platform import migrations
from accrual_platform.db import make_engine
from accrual_platform.testing import PG_URL


def test_migrated_schema_matches_the_tables(database_url: str) -> None:
    assert migrations.differences(database_url, bootstrap.SCHEMA, storage.metadata) == []


def _migrate(url: str, schema: str, target: str, direction: str = "upgrade") -> None:
    getattr(migrations, direction)(url, schema, bootstrap.MIGRATIONS, target)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def test_0002_keeps_existing_events_and_downgrades(backend: str, tmp_path: pathlib.Path) -> None:
    url = f"sqlite:///{tmp_path}/{{schema}}.db" if backend == "sqlite" else PG_URL
    schema = bootstrap.SCHEMA
    if backend == "postgresql":
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        engine.dispose()
    try:
        _migrate(url, schema, "0001")
        now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        row = {"id": str(uuid.uuid4()), "tenant_id": "t", "program_id": str(uuid.uuid4()), "idempotency_key": "k",
               "payload_digest": "d" * 64, "event_type": "purchase", "event_data": {"amount": 1},
               "event_timestamp": now, "received_at": now, "status": "PENDING"}
        old = sa.Table("events", sa.MetaData(schema=schema),
                       *[sa.Column(c.name, c.type, primary_key=c.primary_key) for c in storage.events.columns
                         if c.name not in ("origin", "cdp_source", "cdp_identities")])
        engine = make_engine(url, schema, pool_size=1)
        with engine.begin() as conn:
            conn.execute(old.insert().values(**row))
        engine.dispose()
        _migrate(url, schema, "head")
        engine = make_engine(url, schema, pool_size=1)
        with engine.begin() as conn:
            kept = conn.execute(sa.select(storage.events)).one()
            assert kept.id == row["id"] and kept.origin == "EXTERNAL" and kept.cdp_source is None
            # The loyalty key is still unique per program...
            with pytest.raises(sa.exc.IntegrityError), conn.begin_nested():
                conn.execute(storage.events.insert().values(**{**row, "id": str(uuid.uuid4())}))
            # ...and CDP rows (empty program) are unique per source instead.
            cdp = {**row, "program_id": "", "cdp_source": "pos"}
            conn.execute(storage.events.insert().values(**{**cdp, "id": str(uuid.uuid4())}))
            conn.execute(storage.events.insert().values(**{**cdp, "id": str(uuid.uuid4()), "cdp_source": "crm"}))
            with pytest.raises(sa.exc.IntegrityError), conn.begin_nested():
                conn.execute(storage.events.insert().values(**{**cdp, "id": str(uuid.uuid4())}))
            conn.execute(sa.delete(storage.events).where(storage.events.c.cdp_source.isnot(None)))
        engine.dispose()
        _migrate(url, schema, "0001", "downgrade")
        _migrate(url, schema, "head")
    finally:
        if backend == "postgresql":  # leave the schema as the session fixture made it
            _migrate(url, schema, "head")
