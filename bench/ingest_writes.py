"""PostgreSQL's cost of ingest's three writes per event, in process and without a deployment.

    uv run python -m bench.ingest_writes [--events 20000]

Drops and migrates the ``ingest`` schema of ACCRUAL_TEST_DATABASE_URL (default: the local
``test`` database), then for 500-event batches: BatchSubmit (accept), claim (PENDING ->
PROCESSING) and record_outcomes (three matched rules per event, 200 participants). Prints,
per event and phase, PostgreSQL's CPU (all its processes, from /proc: backends, WAL writer,
checkpointer) and the wall time, and the WAL written. One client and nothing else running,
so a schema or statement change can be compared in a few seconds, alternating versions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

from accrual.messages.v1 import messages_pb2
from accrual_ingest import bootstrap
from accrual_ingest.domain.validation import EventInput
from accrual_ingest.service import IngestService
from accrual_ingest.storage import IngestStore
from accrual_platform.db import Database
from accrual_platform.testing import PG_URL, fresh_schema

from bench.deploy import server_cpu_seconds


def postgres_cpu() -> float:
    return server_cpu_seconds()["postgres"]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_writes")
    parser.add_argument("--events", type=int, default=20_000)
    ns = parser.parse_args()
    fresh_schema(bootstrap.SCHEMA, bootstrap.MIGRATIONS, PG_URL)
    db = Database(PG_URL, bootstrap.SCHEMA)
    svc = IngestService(IngestStore(db), lambda: None)
    tenant, program = str(uuid.uuid4()), str(uuid.uuid4())
    participants = [str(uuid.uuid4()) for _ in range(200)]
    rules = [str(uuid.uuid4()) for _ in range(3)]
    now = dt.datetime.now(dt.UTC)
    phases = {"accept": [0.0, 0.0], "claim": [0.0, 0.0], "outcome": [0.0, 0.0]}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        c0, t0 = postgres_cpu(), time.perf_counter()
        out = fn()
        phases[name][0] += postgres_cpu() - c0
        phases[name][1] += time.perf_counter() - t0
        return out

    def wal_mb() -> float:
        with db.engine.connect() as c:
            return float(c.exec_driver_sql("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").scalar_one()) / 1e6

    wal0 = wal_mb()
    for b in range(ns.events // 500):
        raws = [EventInput(program, f"k-{b}-{i}-{uuid.uuid4().hex[:8]}", "purchase", now,
                           f"user_{random.randrange(200)}", None, None, None,
                           {"amount": 125, "category": "electronics", "sku": "X-1"}) for i in range(500)]
        ids = [r.event_id for r in timed("accept", functools.partial(svc.submit_batch, tenant, raws))]
        timed("claim", functools.partial(svc.claim, tenant, ids))
        outcomes = []
        for event_id in ids:
            o = messages_pb2.EventOutcome(tenant_id=tenant, event_id=event_id,
                                          participant_id=random.choice(participants),
                                          status=messages_pb2.OUTCOME_STATUS_COMPLETED, points_awarded="175")
            for rule in rules:
                o.rule_evaluations.add(rule_id=rule, rule_version=1, rule_name="1 point per dollar", matched=True,
                                       points="125", program_id=program)
            outcomes.append(o)
        timed("outcome", functools.partial(svc.record_outcomes, outcomes))
    wal = wal_mb() - wal0
    svc.close()
    db.engine.dispose()
    n = ns.events // 500 * 500
    print("; ".join(f"{k}: PostgreSQL {v[0] * 1e6 / n:.1f} us, wall {v[1] * 1e6 / n:.1f} us" for k, v in phases.items())
          + f"; PostgreSQL total {sum(v[0] for v in phases.values()) * 1e6 / n:.1f} us/event, "
          f"WAL {wal * 1e6 / n:,.0f} B/event")


if __name__ == "__main__":
    main()
