"""Threads per worker process: fewer for the CPU-bound workers, more where webhooks wait."""

from __future__ import annotations

import dataclasses

from accrual_platform import queue
from accrual_platform.settings import Settings
from accrual_suite import hosting

BASE = Settings(database_url="sqlite:///x.db", broker_url="stub://", redis_url=None, internal_token="t")


def test_cpu_bound_workers_get_fewer_threads_than_webhook_delivery() -> None:
    assert hosting.worker_threads(BASE, {queue.RULES_QUEUE}) == hosting.CPU_BOUND_THREADS
    # the ingest worker holds a batch of outcomes per thread: fewer still, for its memory
    assert hosting.worker_threads(BASE, {queue.INGEST_QUEUE}) == hosting.OUTCOME_THREADS
    assert hosting.OUTCOME_THREADS < hosting.CPU_BOUND_THREADS
    assert hosting.worker_threads(BASE, {queue.NOTIFY_QUEUE}) == hosting.IO_BOUND_THREADS
    # one process for every queue (the embedded default) delivers webhooks too
    assert hosting.worker_threads(BASE, {queue.RULES_QUEUE, queue.INGEST_QUEUE, queue.NOTIFY_QUEUE}) == \
        hosting.IO_BOUND_THREADS
    assert hosting.CPU_BOUND_THREADS < hosting.IO_BOUND_THREADS


def test_worker_threads_setting_wins() -> None:
    assert hosting.worker_threads(dataclasses.replace(BASE, worker_threads=12), {queue.RULES_QUEUE}) == 12
