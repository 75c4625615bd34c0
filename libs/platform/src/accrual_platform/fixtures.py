"""Pytest fixtures and helpers the services' test suites share (imported by their
``conftest.py``; see :mod:`accrual_platform.testing` for where the real servers are).

A service's tests run each scenario on SQLite and on PostgreSQL: ``backend_fixtures`` makes
the ``pg_url``, ``sqlite_url`` and module-scoped ``database_url`` fixtures for its schema.
PostgreSQL tests are marked ``integration`` and fail (never skip) when it is not there.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from accrual_platform import migrations
from accrual_platform.testing import fresh_schema

BACKENDS = [pytest.param("sqlite", id="sqlite"),
            pytest.param("postgresql", id="postgresql", marks=pytest.mark.integration)]


def postgres_schema(schema: str, migration_dir: pathlib.Path, *, name: str = "pg_url") -> Any:
    """A session fixture ``name``: the test database URL, with ``schema`` dropped and
    migrated again from nothing."""

    @pytest.fixture(scope="session", name=name)
    def fixture() -> str:
        return fresh_schema(schema, migration_dir)

    return fixture


def backend_fixtures(schema: str, migration_dir: pathlib.Path) -> tuple[Any, Any, Any]:
    """The ``pg_url``, ``sqlite_url`` and ``database_url`` fixtures of one service's schema;
    assign them to those names in its conftest. ``database_url`` runs a test module once per
    backend (:data:`BACKENDS`)."""

    @pytest.fixture(scope="session", name="sqlite_url")
    def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
        url = f"sqlite:///{tmp_path_factory.mktemp(schema)}/{{schema}}.db"
        migrations.upgrade(url, schema, migration_dir)
        return url

    @pytest.fixture(scope="module", params=BACKENDS, name="database_url")
    def database_url(request: pytest.FixtureRequest) -> str:
        url: str = request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url")
        return url

    return postgres_schema(schema, migration_dir), sqlite_url, database_url


@dataclass(frozen=True)
class RpcFailure:
    """What a failed gRPC call told its caller."""

    code: grpc.StatusCode
    reason: str  # the ErrorInfo reason ("" without one)
    fields: list[str]  # the fields the BadRequest names
    message: str
    trailing: dict[str, str] = field(default_factory=dict)  # text trailing metadata
    metadata: dict[str, str] = field(default_factory=dict)  # the ErrorInfo's metadata


def rpc_failure(call: Callable[[], Any]) -> RpcFailure:
    """Run a call that must fail; what its status says."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    exc: Any = info.value
    status = rpc_status.from_call(exc)
    reason, fields, metadata = "", [], {}
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            error_info = error_details_pb2.ErrorInfo()
            detail.Unpack(error_info)
            reason, metadata = error_info.reason, dict(error_info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = [v.field for v in bad.field_violations]
    trailing = {k: v for k, v in exc.trailing_metadata() or () if isinstance(v, str)}
    return RpcFailure(exc.code(), reason, fields, exc.details(), trailing, metadata)
