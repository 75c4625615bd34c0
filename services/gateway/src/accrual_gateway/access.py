"""Who is calling and whether the route's scope lets them: known before the body is read.

The services authenticate every call themselves (``accrual_platform.grpc_server``), so a
request the gateway forwards is refused there with its rate-limit headers. The gateway needs
the answer earlier for two things: a request it would refuse itself (a body or query it
cannot decode) is answered 401, then 403, then 400, as the service would order them; and the
access log names the caller's tenant. It asks the same authenticator the services use,
cached as theirs is (API_KEY_CACHE_SECONDS), so a known key costs no network round trip.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from accrual_platform import auth, errors
from accrual_platform.grpc_server import required_scope

#: keys are "sk_" and 43 characters; this leaves room for other spellings
MAX_API_KEY_LENGTH = 256


@dataclass(frozen=True)
class Caller:
    """A request's API key and what authenticating it found: the principal, or the error a
    service would answer (None while it is unknown whether the key is good)."""

    key: str | None
    principal: auth.Principal | None = None
    refusal: errors.AppError | None = None

    @property
    def tenant_id(self) -> str | None:
        return self.principal.tenant_id if self.principal is not None else None

    def refusal_for(self, full_method: str) -> errors.AppError | None:
        """The 401 or 403 a service would answer this caller on ``full_method``, if any."""
        if self.refusal is not None:
            return self.refusal
        scope = required_scope(full_method)
        if self.principal is not None and scope and not self.principal.allows(scope):
            return errors.PermissionDenied(f"API key lacks scope {scope}", reason="permission_denied",
                                           metadata={"required_scope": scope})
        return None


class AccessCheck:
    """Authenticates API keys for the gateway with ``authenticator`` (a blocking call, run in
    a thread unless a CachedAuthenticator already holds the answer)."""

    def __init__(self, authenticator: auth.Authenticator) -> None:
        self._authenticate = authenticator

    async def caller(self, key: str | None) -> Caller:
        if not key:
            return Caller(None, refusal=errors.Unauthenticated(
                "missing API key: send X-API-Key or Authorization: Bearer", reason="unauthenticated"))
        if len(key) > MAX_API_KEY_LENGTH:
            return Caller(key, refusal=_unknown_key())
        found, principal = False, None
        if isinstance(self._authenticate, auth.CachedAuthenticator):
            found, principal = self._authenticate.cached(key)
        if not found:
            try:
                principal = await asyncio.to_thread(self._authenticate, key)
            except errors.AppError as exc:  # identity cannot be asked: the key may be good
                return Caller(key, refusal=exc)
        return Caller(key, principal) if principal is not None else Caller(key, refusal=_unknown_key())


def _unknown_key() -> errors.Unauthenticated:
    return errors.Unauthenticated("unknown or revoked API key", reason="unauthenticated")
