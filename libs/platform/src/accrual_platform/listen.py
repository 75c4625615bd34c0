"""One PostgreSQL connection per process that LISTENs to the channels its parts care about.

A transaction announces something to every process with ``pg_notify(channel, payload)``;
PostgreSQL delivers it only if that transaction commits. Each process keeps one listening
connection (a daemon thread) and hands each notification to its channel's handler, and
``None`` to every handler whenever it (re)connects, since notifications sent while nobody
listened are lost. Does nothing on SQLite (one process: announcements stay in-process).
Users: API-key revocations (:mod:`accrual_platform.revocations`) and ingest's finished
events (waiting submissions).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

import sqlalchemy as sa
import structlog
from sqlalchemy.orm import Session

#: how often the listening thread looks at its stop flag while no notification comes
POLL_SECONDS = 0.5
#: PostgreSQL refuses a notification payload of 8000 bytes or more
MAX_PAYLOAD_BYTES = 7999

Handler = Callable[[str | None], None]
log = structlog.get_logger("accrual.listen")


def notify(session: Session, channel: str, payload: str) -> None:
    """Send ``payload`` on ``channel`` when this transaction commits (PostgreSQL only)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.select(sa.func.pg_notify(channel, payload)))


def joined(items: list[str], sep: str = ",") -> list[str]:
    """``items`` joined by ``sep`` into as few payloads as fit PostgreSQL's size limit."""
    payloads: list[str] = []
    current: list[str] = []
    size = 0
    for item in items:
        extra = len(item.encode()) + (len(sep) if current else 0)
        if current and size + extra > MAX_PAYLOAD_BYTES:
            payloads.append(sep.join(current))
            current, size, extra = [], 0, len(item.encode())
        current.append(item)
        size += extra
    if current:
        payloads.append(sep.join(current))
    return payloads


def _conninfo(database_url: str) -> str:
    """psycopg's connection string of a SQLAlchemy URL (``postgresql+psycopg://…``)."""
    url = sa.engine.make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class Listener:
    """Calls ``handlers[channel](payload)`` for each notification, and every handler with
    ``None`` whenever it (re)connects. Does nothing on SQLite."""

    def __init__(self, database_url: str, handlers: Mapping[str, Handler], *,
                 retry_seconds: float = 1.0, name: str = "pg-listener") -> None:
        self._url = database_url
        self._handlers = dict(handlers)
        self._retry = retry_seconds
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: set while LISTEN is in force (tests wait for it before announcing)
        self.listening = threading.Event()
        #: the server process of the listening connection, while there is one
        self.backend_pid: int | None = None

    @property
    def enabled(self) -> bool:
        return self._url.startswith("postgresql") and bool(self._handlers)

    def start(self) -> Listener:
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _dispatch(self, channel: str, payload: str | None) -> None:
        try:
            self._handlers[channel](payload)
        except Exception:
            # One handler's bug must not end the listening that every other part relies on.
            log.exception("notification_handler_failed", channel=channel)

    def _run(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(_conninfo(self._url), autocommit=True,
                                     connect_timeout=5) as conn:
                    for channel in self._handlers:
                        conn.execute(f"LISTEN {channel}")
                    self.backend_pid = conn.info.backend_pid
                    for channel in self._handlers:
                        self._dispatch(channel, None)
                    self.listening.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=POLL_SECONDS):
                            if note.channel in self._handlers:
                                self._dispatch(note.channel, note.payload)
            except psycopg.Error as exc:
                log.warning("listener_disconnected", error=str(exc), retry_in_seconds=self._retry)
            finally:
                self.listening.clear()
            self._stop.wait(self._retry)
