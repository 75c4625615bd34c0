"""`accrual run` migrates four schemas at every start: one line per service, not Alembic's
context, DDL mode and every revision (issue 20)."""

from __future__ import annotations

import logging
import pathlib

import pytest
from accrual_platform.settings import Settings
from accrual_suite import hosting


def test_alembic_is_quiet_and_each_upgrade_names_its_revisions(
        tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/{{schema}}.db", broker_url="stub://",
                        redis_url=None, internal_token="t")
    caplog.set_level(logging.INFO)
    hosting.migrate(settings)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("alembic")] == []

    from accrual_platform import migrations

    module = hosting.bootstrap_module("identity")
    before, after = migrations.upgrade(settings.database_url, module.SCHEMA, module.MIGRATIONS)
    assert before == after and after is not None  # already at head: nothing applied
