"""Alembic, one migration history per service schema.

Each service keeps its history in ``accrual_<service>/migrations`` with an ``env.py`` that
calls :func:`run_env`. :func:`upgrade` applies it to DATABASE_URL (PostgreSQL schema or the
attached SQLite file), with the version table inside the service's own schema.
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from accrual_platform.db import ensure_schema, make_engine


def _config(script_location: pathlib.Path, schema: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.attributes["schema"] = schema
    return cfg


@contextlib.contextmanager
def _quiet_alembic() -> Iterator[None]:
    """Alembic's per-step lines (context, DDL mode, each revision) held back: the caller
    logs one line per schema with the revisions it went from and to."""
    logger = logging.getLogger("alembic")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _revision(conn: sa.Connection, schema: str) -> str | None:
    from alembic.migration import MigrationContext

    current: str | None = MigrationContext.configure(
        conn, opts={"version_table_schema": schema}).get_current_revision()
    return current


def _run(database_url: str, schema: str, script_location: pathlib.Path, step: Any,
         target: str) -> tuple[str | None, str | None]:
    """Apply ``step`` up or down to ``target``; (revision before, revision after)."""
    engine = make_engine(database_url, schema, pool_size=1)
    try:
        ensure_schema(engine, schema)
        with engine.begin() as conn, _quiet_alembic():
            before = _revision(conn, schema)
            cfg = _config(script_location, schema)
            cfg.attributes["connection"] = conn
            step(cfg, target)
            return before, _revision(conn, schema)
    finally:
        engine.dispose()


def upgrade(database_url: str, schema: str, script_location: pathlib.Path,
            target: str = "head") -> tuple[str | None, str | None]:
    return _run(database_url, schema, script_location, command.upgrade, target)


def downgrade(database_url: str, schema: str, script_location: pathlib.Path,
              target: str) -> tuple[str | None, str | None]:
    return _run(database_url, schema, script_location, command.downgrade, target)


def differences(database_url: str, schema: str, metadata: sa.MetaData) -> list[Any]:
    """What the migrated ``schema`` lacks or has beyond ``metadata`` (alembic's comparison;
    empty when the migrations build exactly the tables the code uses)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = make_engine(database_url, schema, pool_size=1)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={
                "include_schemas": True, "compare_type": True, "version_table_schema": schema,
                "include_name": lambda name, type_, _: type_ != "schema" or name == schema})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def revision(database_url: str, schema: str, script_location: pathlib.Path, message: str) -> None:
    """Autogenerate a new revision against an up-to-date database (a developer tool)."""
    engine = make_engine(database_url, schema, pool_size=1)
    try:
        ensure_schema(engine, schema)
        with engine.begin() as conn:
            cfg = _config(script_location, schema)
            cfg.attributes["connection"] = conn
            command.revision(cfg, message=message, autogenerate=True)
    finally:
        engine.dispose()


def run_env(context: Any, metadata: sa.MetaData) -> None:
    """Body of every service's migrations/env.py."""
    config = context.config
    schema: str = config.attributes["schema"]
    connection: sa.Connection = config.attributes["connection"]

    def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
        if type_ == "schema":
            return name == schema
        return True

    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table_schema=schema,
        include_schemas=True,
        include_name=include_name,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
