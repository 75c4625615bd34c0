"""API keys and the caller's identity.

Keys are ``sk_`` + 256 random bits, shown once and stored as SHA-256 digests: they are
high-entropy secrets, so a fast unsalted hash is the standard choice (a slow KDF would only
add latency to every request). Scopes are checked against the method's
``(accrual.options.v1.required_scope)`` option, so the contract states who may call what.
"""

from __future__ import annotations

import contextvars
import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

KEY_PREFIX = "sk_"
INTERNAL_SCOPE = "internal"
ADMIN_SCOPE = "admin"
#: what a method any active key may call requires (e.g. asking which scopes the key has)
ANY_KEY_SCOPE = "authenticated"
KNOWN_SCOPES = frozenset({
    "events:write", "events:read", "participants:read", "participants:write",
    "programs:read", "programs:write", "webhooks:read", "webhooks:write", ADMIN_SCOPE,
})


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    key_id: str
    scopes: frozenset[str]
    internal: bool = False

    def allows(self, scope: str) -> bool:
        if not scope or scope == ANY_KEY_SCOPE:
            return True
        if scope == INTERNAL_SCOPE:
            return self.internal
        if self.internal or ADMIN_SCOPE in self.scopes or scope in self.scopes:
            return True
        resource, _, action = scope.partition(":")
        return action == "read" and f"{resource}:write" in self.scopes


    def allowed_scopes(self) -> list[str]:
        """Every known scope this principal's scopes allow, sorted."""
        return sorted(scope for scope in KNOWN_SCOPES if self.allows(scope))


current_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "current_principal", default=None)


def principal() -> Principal:
    """The authenticated caller of the RPC being served."""
    value = current_principal.get()
    if value is None:
        raise RuntimeError("no authenticated principal in this context")
    return value


def tenant_id() -> str:
    return principal().tenant_id


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_scopes(raw: str | list[str]) -> frozenset[str]:
    items = raw.replace(",", " ").split() if isinstance(raw, str) else raw
    scopes = frozenset(s.strip() for s in items if s.strip())
    unknown = scopes - KNOWN_SCOPES
    if unknown:
        raise ValueError(f"unknown scopes: {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(sorted(KNOWN_SCOPES))}")
    if not scopes:
        raise ValueError("at least one scope is required")
    return scopes


Authenticator = Callable[[str], Principal | None]


class CachedAuthenticator:
    """Caches key lookups (hits for ``ttl`` seconds, misses briefly) in front of a slow one.

    A revocation reaches the cache through ``evict`` (see ``accrual_platform.revocations``);
    the TTL only bounds how long a revocation whose announcement was lost can go unseen.
    """

    def __init__(self, inner: Authenticator, *, ttl: float = 5.0, negative_ttl: float = 2.0,
                 max_entries: int = 10_000) -> None:
        self._inner = inner
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._max = max_entries
        self._entries: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()
        #: bumped by every eviction, so a lookup that raced one does not store what it read
        #: before the revocation committed
        self._generation = 0

    def __call__(self, key: str) -> Principal | None:
        digest = hash_api_key(key)
        now = time.monotonic()
        hit = self._entries.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        generation = self._generation
        value = self._inner(key)
        with self._lock:
            if generation != self._generation:
                return value
            if len(self._entries) >= self._max:
                self._entries.clear()
            self._entries[digest] = (now + (self._ttl if value else self._negative_ttl), value)
        return value

    def cached(self, key: str) -> tuple[bool, Principal | None]:
        """(whether the lookup of ``key`` is cached, what it found), never calling the slow
        authenticator: an event loop asks this first and calls in a thread only on a miss."""
        hit = self._entries.get(hash_api_key(key))
        if hit is not None and hit[0] > time.monotonic():
            return True, hit[1]
        return False, None

    def evict(self, key_id: str | None = None) -> None:
        """Forget the cached lookups of one key (of every key when ``key_id`` is None)."""
        with self._lock:
            self._generation += 1
            if key_id is None:
                self._entries = {}
            else:
                self._entries = {digest: entry for digest, entry in self._entries.items()
                                 if entry[1] is None or entry[1].key_id != key_id}
