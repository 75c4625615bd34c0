"""Wires the identity service; it also authenticates API keys for its own server."""

from __future__ import annotations

import dramatiq
import grpc

from accrual.identity.v1 import identity_pb2_grpc
from accrual_identity import keys, storage
from accrual_identity.api import IdentityServicer
from accrual_identity.service import IdentityService
from accrual_platform import auth
from accrual_platform.db import Database
from accrual_platform.outbox import OutboxRelay
from accrual_platform.runtime import migrations_dir
from accrual_platform.settings import Settings

MIGRATIONS = migrations_dir(__file__)
SCHEMA = storage.SCHEMA


class IdentityRuntime:
    name = "identity"
    service_full_name = "accrual.identity.v1.IdentityService"
    schema = SCHEMA
    queues: tuple[str, ...] = ()

    def __init__(self, settings: Settings, broker: dramatiq.Broker) -> None:
        self.db = Database(settings.database_url, SCHEMA, pool_size=20)
        self.service = IdentityService(self.db)
        self.relay = OutboxRelay(self.db, storage.outbox, broker)
        self.authenticator = auth.CachedAuthenticator(
            lambda key: keys.authenticate(self.db, key), ttl=settings.api_key_cache_seconds)

    def register(self, server: grpc.Server) -> None:
        identity_pb2_grpc.add_IdentityServiceServicer_to_server(IdentityServicer(self.service), server)

    def declare_actors(self, broker: dramatiq.Broker) -> None:
        pass

    def start(self) -> None:
        self.relay.start()

    def stop(self) -> None:
        self.relay.stop()
        self.db.dispose()


def build(settings: Settings, broker: dramatiq.Broker,
          authenticator: auth.Authenticator | None = None) -> IdentityRuntime:
    return IdentityRuntime(settings, broker)
