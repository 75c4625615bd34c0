"""Transactional outbox: queue messages committed with the data they announce.

A service writes rows into its own ``outbox`` table in the same transaction as its state
change; a relay publishes them to the broker in batches and deletes them only after the
broker accepted them. A broker outage therefore delays work but never loses it, and a relay
that dies between publish and delete causes a duplicate message, which every consumer
tolerates (consumers are idempotent).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import dramatiq
import sqlalchemy as sa
import structlog
from google.protobuf.message import Message

from accrual_platform import queue
from accrual_platform.db import Database, JsonType, UtcDateTime, utcnow

log = structlog.get_logger("accrual.outbox")

M = TypeVar("M", bound=Message)
Merger = Callable[[list[Any]], list[Any]]


def merge_messages(cls: type[M], repeated: str, *, group_by: Sequence[str] = (), limit: int = 200) -> Merger:
    """A merger for payloads of ``cls``: the ``repeated`` field's items of every payload with
    the same ``group_by`` fields go into messages of at most ``limit`` items each."""

    def merge(payloads: list[Any]) -> list[Any]:
        groups: dict[tuple[Any, ...], list[Any]] = {}
        for payload in payloads:
            message = queue.decode(payload, cls)
            groups.setdefault(tuple(getattr(message, f) for f in group_by), []).extend(getattr(message, repeated))
        out = []
        for key, items in groups.items():
            for start in range(0, len(items), limit):
                message = cls(**dict(zip(group_by, key, strict=True)))
                getattr(message, repeated).extend(items[start:start + limit])
                out.append(queue.encode(message))
        return out

    return merge


def outbox_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "outbox", metadata,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  primary_key=True, autoincrement=True),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("payload", JsonType, nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )


def outbox_row(queue_name: str, actor: str, message: Message) -> dict[str, Any]:
    return {"queue": queue_name, "actor": actor, "payload": queue.encode(message),
            "created_at": utcnow()}


class OutboxRelay:
    """Publishes outbox rows in batches; wake it with ``notify()`` after a commit."""

    def __init__(self, db: Database, table: sa.Table, broker: dramatiq.Broker, *,
                 batch_size: int = 500, idle_seconds: float = 0.5, linger_seconds: float = 0.0,
                 mergers: Mapping[tuple[str, str], Merger] | None = None) -> None:
        """``mergers`` combine the payloads of one (queue, actor) read in one batch into
        fewer messages, and ``linger_seconds`` lets rows gather after a wake-up before the
        batch is read: under a stream of small commits (single-event accepts), consumers
        then get a message per tens of events instead of per few, and pay their per-message
        costs (RPCs, transactions) that much less often."""
        self._db = db
        self._table = table
        self._broker = broker
        self._batch = batch_size
        self._idle = idle_seconds
        self._linger = linger_seconds
        self._mergers = dict(mergers or {})
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def notify(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        backoff = self._idle
        while not self._stop.is_set():
            try:
                sent = self.relay_once()
                backoff = self._idle
            except Exception as exc:
                log.warning("outbox_relay_failed", error=str(exc).splitlines()[0] if str(exc) else repr(exc))
                sent = 0
                backoff = min(backoff * 2, 10.0)
                self._stop.wait(backoff)
                continue
            if sent < self._batch:
                self._wake.wait(self._idle)
                self._wake.clear()
                if self._linger:
                    self._stop.wait(self._linger)

    def _messages(self, rows: Sequence[Any]) -> list[tuple[str, str, Any]]:
        """The messages for ``rows`` in row order; the payloads of a (queue, actor) that has
        a merger become the merger's messages, sent where the first of them stood."""
        slots: list[tuple[str, str, list[Any]]] = []
        groups: dict[tuple[str, str], list[Any]] = {}
        for row in rows:
            key = (row.queue, row.actor)
            if key in self._mergers and key in groups:
                groups[key].append(row.payload)
                continue
            payloads = [row.payload]
            if key in self._mergers:
                groups[key] = payloads
            slots.append((row.queue, row.actor, payloads))
        messages: list[tuple[str, str, Any]] = []
        for queue_name, actor, payloads in slots:
            merger = self._mergers.get((queue_name, actor))
            messages.extend((queue_name, actor, p) for p in (merger(payloads) if merger else payloads))
        return messages

    def relay_once(self) -> int:
        """Publish one batch; returns how many rows were published."""
        t = self._table
        with self._db.transaction() as session:
            query = sa.select(t.c.id, t.c.queue, t.c.actor, t.c.payload).order_by(t.c.id).limit(self._batch)
            if self._db.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows: Sequence[Any] = session.execute(query).all()
            if not rows:
                return 0
            for queue_name, actor, payload in self._messages(rows):
                if queue_name not in self._broker.get_declared_queues():
                    self._broker.declare_queue(queue_name)
                self._broker.enqueue(dramatiq.Message(
                    queue_name=queue_name, actor_name=actor, args=(payload,), kwargs={}, options={}))
            session.execute(sa.delete(t).where(t.c.id.in_([r.id for r in rows])))
        return len(rows)
