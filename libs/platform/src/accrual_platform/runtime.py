"""What every service hands to the process that hosts it.

Each service package exposes ``bootstrap.build(settings, broker) -> Runtime``
(its one wiring point) and ``bootstrap.MIGRATIONS`` (its Alembic history). The suite hosts
one or all runtimes in a process: it registers them on a gRPC server, declares their actors on
the broker, and starts or stops their background threads.
"""

from __future__ import annotations

import pathlib
from typing import Protocol

import dramatiq
import grpc

from accrual_platform.db import Database


class Runtime(Protocol):
    #: short name: ingest, identity, rules, notify
    name: str
    #: full gRPC service name, e.g. accrual.ingest.v1.IngestService
    service_full_name: str
    #: Postgres schema (SQLite attached database) the service owns
    schema: str
    #: queues whose actors this service declares (consumed by its worker)
    queues: tuple[str, ...]
    #: the service's database
    db: Database

    def register(self, server: grpc.Server) -> None: ...

    def declare_actors(self, broker: dramatiq.Broker) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


def migrations_dir(package_file: str) -> pathlib.Path:
    return pathlib.Path(package_file).parent / "migrations"
