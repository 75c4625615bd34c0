"""The whole suite in this process, as ``accrual run`` hosts it (SQLite, in-process broker),
with the REST gateway in front through a Starlette TestClient."""

from __future__ import annotations

import contextlib
import pathlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from accrual_gateway.app import create_app
from accrual_identity import keys
from accrual_platform import queue
from accrual_platform.db import Database
from accrual_platform.settings import Settings
from accrual_platform.testing import SECRETS_KEY, free_port
from accrual_suite import hosting
from starlette.testclient import TestClient

SERVICE_NAMES = ("accrual.ingest.v1.IngestService", "accrual.identity.v1.IdentityService",
                 "accrual.rules.v1.RulesService", "accrual.rules.v1.RewardsService",
                 "accrual.notify.v1.NotifyService")


@dataclass
class InProcessSuite:
    settings: Settings
    client: TestClient
    address: str

    def new_key(self, tenant: str, scopes: frozenset[str]) -> str:
        db = Database(self.settings.database_url, "identity", pool_size=1)
        try:
            return keys.create_api_key(db, tenant, scopes)[1]
        finally:
            db.dispose()


@contextlib.contextmanager
def in_process_suite(var: pathlib.Path, log_format: str = "console",
                     internal_token: str | None = None) -> Iterator[InProcessSuite]:
    port = free_port()
    address = f"127.0.0.1:{port}"
    settings = Settings(database_url=f"sqlite:///{var}/{{schema}}.db", broker_url="stub://",
                        redis_url=None, internal_token=internal_token or f"itok-{uuid.uuid4().hex}",
                        peers={n: address for n in hosting.SERVICES}, grpc_port=port,
                        webhook_allow_private=True, log_format=log_format, secrets_keys=(SECRETS_KEY,))
    hosting.migrate(settings)
    broker = hosting.prepare_broker(queue.make_broker(settings.broker_url))
    runtimes, authenticator = hosting.build_runtimes(settings, broker, hosting.SERVICES)
    server, _, listener = hosting.start_server(settings, runtimes, authenticator)
    worker = hosting.start_worker(settings, broker, runtimes)
    for r in runtimes:
        r.start()
    app = create_app({name: address for name in SERVICE_NAMES}, authenticator=authenticator)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield InProcessSuite(settings, client, address)
    finally:
        server.stop(5).wait()
        listener.stop()
        worker.stop()
        for r in runtimes:
            r.stop()
        broker.close()
