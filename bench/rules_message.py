"""What a rules message costs, per 500-event batch: ids and a ClaimEvents round trip (what the
suite does), against the events' snapshots carried in the message.

    uv run python -m bench.rules_message [--batches 20]

In one process, on ingest's schema in a fresh ``accrual_bench`` database of BENCH_ADMIN_URL's
server (so not while `make bench` runs). Each batch is accepted (BatchSubmit), then:

- the claim path: the whole ClaimEvents call on a gRPC server in this process (the real
  servicer, without the deployment's interceptors), and its parts: the UPDATE ... RETURNING,
  the response's encoding, the rules side's decoding;
- the snapshot path: the snapshots built and encoded at accept, the outbox row written, read
  and deleted as the relay does, the relay's merge (decode and encode), the rules side's
  decoding, and the PROCESSING mark the API still shows (an UPDATE without RETURNING). A
  ClaimEventsResponse stands in for the message: it holds what such a message would.

Prints, per batch (mean, and min-max over the batches), wall and CPU milliseconds (this
process's, both ends of the call; and the database's backends', from /proc/<pid>/schedstat),
the WAL written and the sizes.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import pathlib
import statistics
import time
import uuid
from collections.abc import Callable
from concurrent import futures
from typing import TypeVar

import grpc
import orjson
import sqlalchemy as sa
from accrual.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from accrual.messages.v1 import messages_pb2
from accrual_ingest import bootstrap, wire
from accrual_ingest.api import IngestServicer
from accrual_ingest.domain.validation import EventInput
from accrual_ingest.insights import EngagementQueries
from accrual_ingest.service import IngestService
from accrual_ingest.storage import PENDING, PROCESSING, IngestStore, events, outbox
from accrual_platform import queue
from accrual_platform.db import Database, in_values
from accrual_platform.outbox import Merger, merge_messages
from accrual_platform.testing import fresh_schema
from google.protobuf.message import Message

from bench.deploy import fresh_database

BATCH = 500  # CLAIM_CHUNK
T = TypeVar("T")


def backend_seconds(pids: list[int]) -> float:
    """CPU seconds of these processes so far; schedstat counts nanoseconds, stat 10 ms ticks."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):  # a backend that ended
            total += int(pathlib.Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    return total


class Meter:
    def __init__(self, monitor: sa.Engine, dbname: str) -> None:
        self.monitor, self.dbname = monitor, dbname
        self.figures: dict[str, list[float]] = {}

    def add(self, name: str, value: float) -> None:
        self.figures.setdefault(name, []).append(value)

    def _pids(self) -> list[int]:
        with self.monitor.connect() as c:
            return [r[0] for r in c.exec_driver_sql(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (self.dbname,))]

    def _wal(self) -> int:
        with self.monitor.connect() as c:
            return int(c.exec_driver_sql("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").scalar_one())

    def database(self, name: str, fn: Callable[[], T]) -> T:
        """``fn`` once: wall, this process's CPU, the database backends' CPU, WAL."""
        pids, w0 = self._pids(), self._wal()
        t0, c0, b0 = time.perf_counter(), time.process_time(), backend_seconds(pids)
        out = fn()
        t1, c1, b1 = time.perf_counter(), time.process_time(), backend_seconds(pids)
        self.add(f"{name}: wall ms", (t1 - t0) * 1e3)
        self.add(f"{name}: CPU ms here", (c1 - c0) * 1e3)
        self.add(f"{name}: CPU ms of PostgreSQL backends", (b1 - b0) * 1e3)
        self.add(f"{name}: WAL KB", (self._wal() - w0) / 1e3)
        return out

    def cpu(self, name: str, fn: Callable[[], T], reps: int = 5) -> T:
        """``fn`` ``reps`` times: this process's CPU per call."""
        c0 = time.process_time()
        for _ in range(reps):
            out = fn()
        self.add(f"{name}: CPU ms", (time.process_time() - c0) * 1e3 / reps)
        return out


def envelope(payload: str) -> bytes:
    """The Dramatiq message the relay publishes for ``payload``."""
    return orjson.dumps({"queue_name": "rules", "actor_name": "evaluate_events", "args": [payload], "kwargs": {},
                         "options": {}, "message_id": str(uuid.uuid4()), "message_timestamp": 0})


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rules_message")
    parser.add_argument("--batches", type=int, default=20)
    ns = parser.parse_args()
    admin = os.environ.get("BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
    url = fresh_database(admin, "accrual_bench").replace("postgresql://", "postgresql+psycopg://", 1)
    fresh_schema(bootstrap.SCHEMA, bootstrap.MIGRATIONS, url)
    db = Database(url, bootstrap.SCHEMA)
    monitor = sa.create_engine(url, poolclass=sa.pool.NullPool)
    store = IngestStore(db)
    svc = IngestService(store, lambda: None)
    meter = Meter(monitor, "accrual_bench")
    server = grpc.server(futures.ThreadPoolExecutor(4))
    queries = EngagementQueries(store, program_exists=lambda tenant, program: True)
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(IngestServicer(svc, queries), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    stub = ingest_pb2_grpc.IngestServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}", options=[
        ("grpc.max_receive_message_length", 64 << 20)]))
    merge_ids = merge_messages(messages_pb2.EventsAccepted, "event_ids", group_by=("tenant_id",), limit=BATCH)
    merge_snapshots = merge_messages(ingest_pb2.ClaimEventsResponse, "events", limit=BATCH)
    tenant, program = str(uuid.uuid4()), str(uuid.uuid4())
    now = dt.datetime.now(dt.UTC)

    def pending_again(ids: list[str]) -> None:
        with db.transaction() as s:
            s.execute(sa.update(events).where(events.c.id.in_(ids)).values(status=PENDING))

    def one_batch(ids: list[str]) -> None:
        # -- claim path
        claimed = meter.database("claim, whole ClaimEvents call", lambda: stub.ClaimEvents(
            ingest_pb2.ClaimEventsRequest(tenant_id=tenant, event_ids=ids), timeout=30))
        assert len(claimed.events) == BATCH
        pending_again(ids)
        rows = meter.database("claim, UPDATE ... RETURNING (store.claim)", lambda: store.claim(tenant, ids))
        response = meter.cpu("claim, response built and encoded", lambda: ingest_pb2.ClaimEventsResponse(
            events=[wire.event_message(r) for r in rows]).SerializeToString())
        meter.add("claim, response KB", len(response) / 1e3)
        meter.cpu("claim, response decoded", lambda: ingest_pb2.ClaimEventsResponse.FromString(response))

        # -- the message each way; a ClaimEventsResponse holds what a snapshot message would
        pending = [r._replace(status=PENDING) for r in rows]
        ids_payload = meter.cpu("ids, message encoded at accept", lambda: queue.encode(
            messages_pb2.EventsAccepted(tenant_id=tenant, event_ids=ids)))
        snapshots_payload = meter.cpu("snapshots, message built and encoded at accept", lambda: queue.encode(
            ingest_pb2.ClaimEventsResponse(events=[wire.event_message(r) for r in pending])))
        carry("ids", ids_payload, merge_ids, messages_pb2.EventsAccepted)
        carry("snapshots", snapshots_payload, merge_snapshots, ingest_pb2.ClaimEventsResponse)

        # -- the PROCESSING mark a snapshot path still owes the API
        pending_again(ids)

        def mark() -> None:
            with db.transaction() as s:
                s.execute(sa.update(events).where(events.c.tenant_id == tenant, in_values(s, [events.c.id], ids),
                                                  events.c.status == PENDING).values(status=PROCESSING))

        meter.database("snapshots, PROCESSING mark (UPDATE, no RETURNING)", mark)

    def carry(kind: str, payload: str, merger: Merger, cls: type[Message]) -> None:
        """The payload's way from the accept's outbox to the rules worker."""
        meter.add(f"{kind}, queue message KB", len(envelope(payload)) / 1e3)
        row = {"queue": "rules", "actor": "evaluate_events", "payload": payload, "created_at": now}

        def through_outbox() -> None:
            with db.transaction() as s:
                s.execute(outbox.insert(), row)
            with db.transaction() as s:
                got = s.execute(sa.select(outbox.c.id, outbox.c.payload)).all()
                s.execute(sa.delete(outbox).where(outbox.c.id.in_([g.id for g in got])))

        meter.database(f"{kind}, outbox row written, read, deleted", through_outbox)
        meter.cpu(f"{kind}, relay's merge", lambda: merger([payload]))
        message = envelope(payload)
        meter.cpu(f"{kind}, message decoded by the rules worker",
                  lambda: queue.decode(orjson.loads(message)["args"][0], cls))

    for b in range(ns.batches + 2):  # the first two warm the caches and are left out
        raws = [EventInput(program, f"k-{b}-{i}-{uuid.uuid4().hex[:8]}", "purchase", now, f"user-{i % 5000}",
                           None, None, None, {"amount": 10 + i % 90, "sku": "A-1"}) for i in range(BATCH)]
        ids = [o.event_id for o in svc.submit_batch(tenant, raws) if o.event_id is not None]
        with db.transaction() as s:  # the accept's own outbox row, as the relay would delete it
            s.execute(sa.delete(outbox))
        one_batch(ids)
        if b < 2:
            meter.figures.clear()
    server.stop(None)
    svc.close()
    db.dispose()
    monitor.dispose()
    print(f"per {BATCH}-event batch, {ns.batches} batches: mean (min-max)")
    for name, values in meter.figures.items():
        print(f"  {name}: {statistics.mean(values):.2f} ({min(values):.2f}-{max(values):.2f})")


if __name__ == "__main__":
    main()
