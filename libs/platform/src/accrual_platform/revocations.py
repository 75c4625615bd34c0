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

import threading
from collections.abc import Callable

import sqlalchemy as sa
import structlog
from sqlalchemy.orm import Session

CHANNEL = "accrual_api_key_revoked"
#: how often the listening thread looks at its stop flag while no notification comes
POLL_SECONDS = 0.5

log = structlog.get_logger("accrual.revocations")


def announce(session: Session, key_id: str) -> None:
    """Tell every process, when this transaction commits, that the key was revoked."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.select(sa.func.pg_notify(CHANNEL, key_id)))


def _conninfo(database_url: str) -> str:
    """psycopg's connection string of a SQLAlchemy URL (``postgresql+psycopg://…``)."""
    url = sa.engine.make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class RevocationListener:
    """Calls ``on_revoked(key_id)`` for each announced revocation, and ``on_revoked(None)``
    (forget every key) whenever it (re)connects. Does nothing on SQLite."""

    def __init__(self, database_url: str, on_revoked: Callable[[str | None], None], *,
                 retry_seconds: float = 1.0) -> None:
        self._url = database_url
        self._on_revoked = on_revoked
        self._retry = retry_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: set while LISTEN is in force (tests wait for it before revoking)
        self.listening = threading.Event()
        #: the server process of the listening connection, while there is one
        self.backend_pid: int | None = None

    @property
    def enabled(self) -> bool:
        return self._url.startswith("postgresql")

    def start(self) -> RevocationListener:
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="key-revocations", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(_conninfo(self._url), autocommit=True,
                                     connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.backend_pid = conn.info.backend_pid
                    # Revocations made while nobody listened were missed: forget every key.
                    self._on_revoked(None)
                    self.listening.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=POLL_SECONDS):
                            self._on_revoked(note.payload)
            except psycopg.Error as exc:
                log.warning("revocation_listener_disconnected", error=str(exc),
                            retry_in_seconds=self._retry)
            finally:
                self.listening.clear()
            self._stop.wait(self._retry)
