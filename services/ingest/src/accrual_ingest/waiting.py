"""Submissions waiting for their event's outcome (``Prefer: wait=N``, issue 20).

The outcome is pushed, never polled: the transaction that records outcomes announces the
ids of the events it finished on ``CHANNEL`` (PostgreSQL ``pg_notify``, so any process
hears it, through the one :class:`accrual_platform.listen.Listener` of each gRPC process),
and the recording process also wakes its own waiters directly (SQLite: everything runs in
one process). A waiter is a ``threading.Event`` in a dict: waiting holds no database
connection and no worker thread, only the gRPC thread of the call.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

#: its payloads: finished event ids, comma-separated (``accrual_platform.listen.joined``)
CHANNEL = "accrual_ingest_events_finished"
#: the longest wait a caller may ask for (issue 20: N <= 10 seconds)
MAX_WAIT_SECONDS = 10


class Waiters:
    """Event id -> the waiting calls' events, at most ``max_calls`` at once per process."""

    def __init__(self, max_calls: int) -> None:
        self._max = max_calls
        self._lock = threading.Lock()
        self._waiting: dict[str, list[threading.Event]] = {}
        self._count = 0

    @property
    def count(self) -> int:
        return self._count

    @contextmanager
    def waiter(self, event_id: str) -> Iterator[threading.Event | None]:
        """A ``threading.Event`` set when ``event_id`` finishes, registered for the block;
        None when ``max_calls`` calls already wait (the caller answers at once)."""
        done = threading.Event()
        with self._lock:
            if self._count >= self._max:
                done_or_none: threading.Event | None = None
            else:
                self._waiting.setdefault(event_id, []).append(done)
                self._count += 1
                done_or_none = done
        try:
            yield done_or_none
        finally:
            if done_or_none is not None:
                with self._lock:
                    waiting = self._waiting.get(event_id, [])
                    waiting.remove(done)
                    if not waiting:
                        self._waiting.pop(event_id, None)
                    self._count -= 1

    def wake(self, event_ids: Iterable[str]) -> None:
        if not self._count:
            return
        with self._lock:
            woken = [done for i in event_ids for done in self._waiting.get(i, ())]
        for done in woken:
            done.set()

    def on_notice(self, payload: str | None) -> None:
        """The listener's handler of ``CHANNEL``. A (re)connection (None) changes nothing: a
        waiter whose notification was lost answers with the event's state at its deadline."""
        if payload:
            self.wake(payload.split(","))
