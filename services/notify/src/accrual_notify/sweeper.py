"""Re-sends ``deliver_webhook`` for deliveries whose message was lost.

Deliveries are committed before their message is enqueued, and a retry is scheduled after
the attempt is recorded; a process that dies in between (or a broker that refuses the
message) leaves a pending delivery nobody will attempt. This thread finds deliveries that
have been due for a long time and are not leased, and enqueues them again. A duplicate of a
message that was merely slow is harmless: attempts are claimed, so it is dropped.
"""

from __future__ import annotations

import datetime as dt
import threading

import structlog
from accrual_platform.db import utcnow

from accrual_notify.delivery import Clock, Scheduler
from accrual_notify.storage import NotifyStore

log = structlog.get_logger("accrual.notify")


class StalledDeliverySweeper:
    def __init__(self, store: NotifyStore, scheduler: Scheduler, *, interval: float = 30.0,
                 stall_after: float = 300.0, batch: int = 500, clock: Clock = utcnow) -> None:
        self._store = store
        self._scheduler = scheduler
        self._interval = interval
        self._stall_after = stall_after
        self._batch = batch
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep_once(self) -> int:
        """Re-enqueue one batch of stalled deliveries; returns how many."""
        now = self._clock()
        stalled = self._store.requeue_stalled(
            now, now - dt.timedelta(seconds=self._stall_after), self._batch)
        self._scheduler.schedule(stalled)
        if stalled:
            log.warning("stalled_deliveries_requeued", count=len(stalled))
        return len(stalled)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="notify-sweeper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                while self.sweep_once() >= self._batch and not self._stop.is_set():
                    pass
            except Exception as exc:  # a database or broker outage: try again next round
                log.warning("sweep_failed", error=(str(exc) or repr(exc)).splitlines()[0])
