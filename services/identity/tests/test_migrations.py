"""The Alembic history builds exactly the tables the code uses, on PostgreSQL and SQLite."""

from __future__ import annotations

import pathlib

import pytest
import sqlalchemy as sa
from accrual_identity import bootstrap, storage
from accrual_platform import migrations
from accrual_platform.db import make_engine


def test_migrated_schema_matches_the_tables(database_url: str) -> None:
    assert migrations.differences(database_url, bootstrap.SCHEMA, storage.metadata) == []


def test_upgrade_is_repeatable(database_url: str) -> None:
    migrations.upgrade(database_url, bootstrap.SCHEMA, bootstrap.MIGRATIONS)
    engine = make_engine(database_url, bootstrap.SCHEMA, pool_size=1)
    try:
        with engine.connect() as conn:
            version = conn.execute(sa.text(
                f"SELECT version_num FROM {bootstrap.SCHEMA}.alembic_version")).scalar_one()
    finally:
        engine.dispose()
    assert version == "0002"


def test_downgrade_and_upgrade_on_a_fresh_sqlite_file(tmp_path: pathlib.Path) -> None:
    from alembic import command
    from alembic.config import Config

    url = f"sqlite:///{tmp_path}/{{schema}}.db"
    migrations.upgrade(url, bootstrap.SCHEMA, bootstrap.MIGRATIONS)
    engine = make_engine(url, bootstrap.SCHEMA, pool_size=1)
    try:
        with engine.begin() as conn:
            cfg = Config()
            cfg.set_main_option("script_location", str(bootstrap.MIGRATIONS))
            cfg.attributes.update(schema=bootstrap.SCHEMA, connection=conn)
            command.downgrade(cfg, "base")
            tables = sa.inspect(conn).get_table_names(schema=bootstrap.SCHEMA)
        assert tables == ["alembic_version"]
    finally:
        engine.dispose()
    migrations.upgrade(url, bootstrap.SCHEMA, bootstrap.MIGRATIONS)
    assert migrations.differences(url, bootstrap.SCHEMA, storage.metadata) == []


@pytest.mark.parametrize("name", ["tenants", "api_keys", "participants", "identities", "merges",
                                  "enrollments", "outbox"])
def test_every_table_lives_in_the_identity_schema(name: str) -> None:
    assert storage.metadata.tables[f"identity.{name}"].schema == "identity"


def _alembic(url: str, action: str, target: str) -> None:
    from alembic import command
    from alembic.config import Config

    engine = make_engine(url, bootstrap.SCHEMA, pool_size=1)
    try:
        with engine.begin() as conn:
            cfg = Config()
            cfg.set_main_option("script_location", str(bootstrap.MIGRATIONS))
            cfg.attributes.update(schema=bootstrap.SCHEMA, connection=conn)
            getattr(command, action)(cfg, target)
    finally:
        engine.dispose()


def test_0002_fills_the_birthday_of_existing_participants(database_url: str) -> None:
    """Upgrading a database that already holds participants gives each live one with a
    birth date its "MM-DD" birthday, so the scheduler finds people created before 0002."""
    import datetime as dt
    import uuid

    _alembic(database_url, "downgrade", "0001")
    ids = [str(uuid.uuid4()) for _ in range(3)]
    now = dt.datetime.now(dt.UTC)
    engine = make_engine(database_url, bootstrap.SCHEMA, pool_size=1)
    try:
        p = sa.table("participants", sa.column("id"), sa.column("tenant_id"),
                     sa.column("attributes", sa.JSON), sa.column("birth_date", sa.Date),
                     sa.column("status"), sa.column("merged_into"),
                     sa.column("created_at", storage.participants.c.created_at.type),
                     schema=bootstrap.SCHEMA)
        with engine.begin() as conn:
            conn.execute(p.insert(), [
                {"id": ids[0], "tenant_id": "t", "attributes": {}, "birth_date": dt.date(1990, 2, 28),
                 "status": "ACTIVE", "merged_into": None, "created_at": now},
                {"id": ids[1], "tenant_id": "t", "attributes": {}, "birth_date": None,
                 "status": "ACTIVE", "merged_into": None, "created_at": now},
                {"id": ids[2], "tenant_id": "t", "attributes": {}, "birth_date": dt.date(1970, 12, 1),
                 "status": "MERGED", "merged_into": ids[0], "created_at": now}])
    finally:
        engine.dispose()

    migrations.upgrade(database_url, bootstrap.SCHEMA, bootstrap.MIGRATIONS)

    engine = make_engine(database_url, bootstrap.SCHEMA, pool_size=1)
    try:
        with engine.connect() as conn:
            rows = dict(conn.execute(sa.select(storage.participants.c.id,
                                               storage.participants.c.birthday).where(
                storage.participants.c.id.in_(ids))).all())
    finally:
        engine.dispose()
    assert rows == {ids[0]: "02-28", ids[1]: None, ids[2]: None}
    assert migrations.differences(database_url, bootstrap.SCHEMA, storage.metadata) == []
