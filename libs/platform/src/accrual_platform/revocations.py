"""API-key revocations reach every process's key cache within a second.

Every process that serves gRPC caches key lookups (``auth.CachedAuthenticator``). On
PostgreSQL, the transaction that revokes a key also sends ``pg_notify`` on ``CHANNEL`` with
the key's id; each process keeps one connection that LISTENs and evicts the key from its
cache as the revocation commits. PostgreSQL was chosen over the broker or Redis because it
is the one server every deployment has (the broker may be in-process, Redis is optional),
and a notification is delivered only if the revocation commits. While the listening
connection is down a revocation can be missed, so the cache is emptied on every
(re)connection and its short TTL bounds what remains. On SQLite (the embedded suite, one
process) the revoking call evicts the cache itself and nothing listens.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from accrual_platform import listen

CHANNEL = "accrual_api_key_revoked"


def announce(session: Session, key_id: str) -> None:
    """Tell every process, when this transaction commits, that the key was revoked."""
    listen.notify(session, CHANNEL, key_id)


class RevocationListener(listen.Listener):
    """Calls ``on_revoked(key_id)`` for each announced revocation, and ``on_revoked(None)``
    (forget every key) whenever it (re)connects. Does nothing on SQLite. A process that
    listens to other channels too passes ``{CHANNEL: on_revoked, ...}`` to one
    :class:`accrual_platform.listen.Listener` instead."""

    def __init__(self, database_url: str, on_revoked: Callable[[str | None], None], *,
                 retry_seconds: float = 1.0) -> None:
        super().__init__(database_url, {CHANNEL: on_revoked}, retry_seconds=retry_seconds,
                         name="key-revocations")
