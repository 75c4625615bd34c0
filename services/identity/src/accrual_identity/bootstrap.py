"""The one place that wires the identity service: database, relay, use cases, servicer.

Identity also authenticates API keys: its own server checks them against its database
(cached), and the other services reach the same check through AuthenticateApiKey. Nothing
is created at import time, so tests build a runtime with their own settings and broker.
"""

from __future__ import annotations

import functools
import pathlib

import dramatiq
import grpc
from accrual.identity.v1 import identity_pb2_grpc
from accrual_platform import auth, clients
from accrual_platform.db import Database
from accrual_platform.outbox import OutboxRelay
from accrual_platform.runtime import migrations_dir
from accrual_platform.settings import Settings

from accrual_identity import keys, storage
from accrual_identity.api import IdentityServicer
from accrual_identity.enrollments import Enrollments
from accrual_identity.merges import Merges
from accrual_identity.participants import Participants

MIGRATIONS: pathlib.Path = migrations_dir(__file__)
SCHEMA = storage.SCHEMA  # "identity"


class IdentityRuntime:
    name = "identity"
    service_full_name = "accrual.identity.v1.IdentityService"
    schema = SCHEMA
    queues: tuple[str, ...] = ()

    def __init__(self, settings: Settings, broker: dramatiq.Broker) -> None:
        self.settings = settings
        self.db = Database(settings.database_url, SCHEMA, pool_size=10)
        self.relay = OutboxRelay(self.db, storage.outbox, broker)
        self.participants = Participants(self.db, on_commit=self.relay.notify)
        # Programs belong to the rules service; enrollment routes ask it they exist.
        self.programs = clients.ProgramDirectory(lambda: clients.channel(settings.peer("rules")),
                                                 settings.internal_token)
        self.enrollments = Enrollments(self.db, program_exists=self.programs,
                                       on_commit=self.relay.notify)
        self.merges = Merges(self.db, on_commit=self.relay.notify)
        self.authenticator = auth.CachedAuthenticator(
            functools.partial(keys.authenticate, self.db), ttl=settings.api_key_cache_seconds)

    def register(self, server: grpc.Server) -> None:
        identity_pb2_grpc.add_IdentityServiceServicer_to_server(
            IdentityServicer(self.db, self.participants, self.enrollments, self.merges,
                             on_revoked=self.authenticator.evict), server)

    def declare_actors(self, broker: dramatiq.Broker) -> None:
        """Identity consumes no queue; it only produces notifications (via its outbox)."""

    def start(self) -> None:
        self.relay.start()

    def stop(self) -> None:
        self.relay.stop()
        self.db.dispose()


def build(settings: Settings, broker: dramatiq.Broker) -> IdentityRuntime:
    """The identity runtime; it is the one that checks keys, so the hosting process takes
    ``runtime.authenticator`` for its interceptor."""
    return IdentityRuntime(settings, broker)
