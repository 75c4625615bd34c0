"""Clients of peer services over gRPC, with the internal token attached."""

from __future__ import annotations

import ipaddress
from typing import Any

import grpc
from accrual.identity.v1 import identity_pb2, identity_pb2_grpc

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
