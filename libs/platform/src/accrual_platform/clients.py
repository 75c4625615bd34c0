"""Clients of peer services over gRPC, with the internal token attached."""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
from accrual.identity.v1 import identity_pb2, identity_pb2_grpc
from accrual.rules.v1 import rules_pb2, rules_pb2_grpc

from accrual_platform import auth, errors
from accrual_platform.grpc_server import internal_metadata

#: Options of every channel to a peer: answers up to 64 MB (a 1,000-event batch with its
#: results), and gRPC's transparent retries.
CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.enable_retries", 1),
]


def target(address: str) -> tuple[str, list[tuple[str, Any]]]:
    """gRPC target and extra channel options for a peer address: ``host:port``, or several
    replicas of a service as ``ip:port,ip:port`` (IPv4 literals), among which calls are
    spread round robin (a replica that is down is left out until it answers again)."""
    parts = [p.strip() for p in address.split(",") if p.strip()]
    if len(parts) <= 1:
        return address.strip(), []
    for part in parts:
        host, _, port = part.rpartition(":")
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"replica address {part!r}: a list of replicas takes IPv4 host:port entries") from None
        if not port.isdigit():
            raise ValueError(f"replica address {part!r} has no port")
    return "ipv4:" + ",".join(parts), [("grpc.lb_policy_name", "round_robin")]


def channel(address: str) -> grpc.Channel:
    where, options = target(address)
    return grpc.insecure_channel(where, options=CHANNEL_OPTIONS + options)


class IdentityAuthenticator:
    """Authenticates API keys through IdentityService (wrap in CachedAuthenticator)."""

    def __init__(self, ch: grpc.Channel, internal_token: str) -> None:
        self._stub = identity_pb2_grpc.IdentityServiceStub(ch)
        self._token = internal_token

    def __call__(self, key: str) -> auth.Principal | None:
        try:
            resp = self._stub.AuthenticateApiKey(
                identity_pb2.AuthenticateApiKeyRequest(api_key=key),
                metadata=internal_metadata(self._token), timeout=5)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                return None
            # Identity (or its database) is down: the caller can retry, so this is a 503,
            # never the 500 an unmapped RpcError would become.
            raise errors.Unavailable("API keys cannot be checked right now, retry",
                                     reason="auth_unavailable") from exc
        return auth.Principal(tenant_id=resp.tenant_id, key_id=resp.key_id,
                              scopes=frozenset(resp.scopes))


#: Whether a program exists and is the tenant's: ``program_exists(tenant_id, program_id)``.
ProgramExists = Callable[[str, str], bool]


class ProgramDirectory:
    """Answers whether a program exists and belongs to a tenant by asking the rules service,
    which owns programs, through GetProgram with the tenant in the internal metadata.

    A program found is remembered for ``ttl`` seconds (programs are never deleted, so the
    answer cannot go stale), a missing one for ``negative_ttl`` (it may be created in a
    moment). A rules service that cannot answer is a 503, never a silent pass.
    """

    def __init__(self, connect: Callable[[], grpc.Channel], internal_token: str, *,
                 ttl: float = 300.0, negative_ttl: float = 2.0, max_entries: int = 10_000,
                 timeout: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        """``connect`` opens the channel to rules on first use, so a process whose program
        routes are never called needs no rules address."""
        self._connect = connect
        self._stub: rules_pb2_grpc.RulesServiceStub | None = None
        self._token = internal_token
        self._ttl, self._negative_ttl, self._max = ttl, negative_ttl, max_entries
        self._timeout = timeout
        self._clock = clock
        self._entries: dict[tuple[str, str], tuple[float, bool]] = {}
        self._lock = threading.Lock()

    def __call__(self, tenant_id: str, program_id: str) -> bool:
        key = (tenant_id, program_id)
        now = self._clock()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        found = self._ask(tenant_id, program_id)
        with self._lock:
            if len(self._entries) >= self._max:
                self._entries.clear()
            self._entries[key] = (now + (self._ttl if found else self._negative_ttl), found)
        return found

    def _ask(self, tenant_id: str, program_id: str) -> bool:
        if self._stub is None:
            with self._lock:
                if self._stub is None:
                    self._stub = rules_pb2_grpc.RulesServiceStub(self._connect())
        try:
            self._stub.GetProgram(rules_pb2.GetProgramRequest(program_id=program_id),
                                  metadata=internal_metadata(self._token, tenant_id), timeout=self._timeout)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return False
            # Answering "exists" here would let writes to unchecked programs through.
            raise errors.Unavailable("programs cannot be checked right now, retry",
                                     reason="programs_unavailable") from exc
        return True


def require_program(program_exists: ProgramExists, tenant_id: str, program_id: str) -> None:
    """Raise the rules service's own 404 unless the program exists and is the tenant's."""
    if not program_exists(tenant_id, program_id):
        raise errors.NotFound(f"program {program_id} not found", reason="program_not_found")
