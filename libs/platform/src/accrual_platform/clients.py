"""Clients of peer services over gRPC, with the internal token attached."""

from __future__ import annotations

import grpc
from accrual.identity.v1 import identity_pb2, identity_pb2_grpc

from accrual_platform import auth, errors
from accrual_platform.grpc_server import internal_metadata


def channel(address: str) -> grpc.Channel:
    return grpc.insecure_channel(address, options=[
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ("grpc.enable_retries", 1),
    ])


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
