"""The statistics keeper analyzes grown tables when autovacuum does not."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from accrual_platform.db import Database
from accrual_platform.statistics import StatisticsKeeper
from accrual_platform.testing import PG_URL


@pytest.fixture
def db() -> Iterator[Database]:
    database = Database(PG_URL, "stats_test")
    with database.engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA IF EXISTS stats_test CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA stats_test")
        conn.exec_driver_sql("CREATE TABLE stats_test.t (id int primary key, v text)")
    yield database
    database.dispose()


def _last_analyzed(db: Database) -> object:
    with db.engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT greatest(last_analyze, last_autoanalyze) FROM pg_stat_user_tables "
            "WHERE schemaname = 'stats_test' AND relname = 't'")).scalar()


def test_a_table_that_grew_is_analyzed_and_a_quiet_one_is_not(db: Database) -> None:
    keeper = StatisticsKeeper(db, threshold=100, scale=0.1)
    with db.engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO stats_test.t SELECT g, 'x' FROM generate_series(1, 50) g")
    assert keeper.analyze_once() == []
    with db.engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO stats_test.t SELECT g, 'x' FROM generate_series(51, 2000) g")
    analyzed: list[str] = []
    for _ in range(50):  # a backend's counters reach pg_stat_user_tables within about a second
        analyzed = keeper.analyze_once()
        if analyzed:
            break
        time.sleep(0.1)
    assert analyzed == ["t"]
    assert _last_analyzed(db) is not None
    assert keeper.analyze_once() == []


def test_the_keeper_runs_only_where_autovacuum_is_off(db: Database) -> None:
    with db.engine.connect() as conn:
        autovacuum = conn.exec_driver_sql("SHOW autovacuum").scalar()
    assert StatisticsKeeper(db).needed() is (autovacuum != "on")
