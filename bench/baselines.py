"""What the building blocks can do on this box in the same run: pgbench running the ingest
insert (event row + outbox row, one commit each), COPY of the same rows, and the rule
micro-benchmark's plain-Python baseline."""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import tempfile
import time
import uuid

import psycopg

SCRATCH = "bench_baseline"

PGBENCH_SCRIPT = """\
BEGIN;
INSERT INTO bench_baseline.events (id, tenant_id, program_id, idempotency_key, payload_digest, event_type,
  external_id, event_data, event_timestamp, received_at, status)
VALUES (gen_random_uuid()::text, 'tenant', 'program', gen_random_uuid()::text,
  md5(random()::text) || md5(random()::text), 'purchase', 'user-' || :client_id,
  '{"amount": 125, "sku": "A-1"}', now(), now(), 'PENDING');
INSERT INTO bench_baseline.outbox (queue, actor, payload, created_at)
VALUES ('rules', 'evaluate_events', '{"tenant_id": "tenant", "event_ids": ["x"]}', now());
COMMIT;
"""


def prepare(libpq_url: str) -> None:
    """Scratch tables with the exact shape (columns, indexes, constraints) of ingest's."""
    with psycopg.connect(libpq_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCRATCH} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCRATCH}")
        conn.execute(f"CREATE TABLE {SCRATCH}.events (LIKE ingest.events INCLUDING ALL)")
        conn.execute(f"CREATE TABLE {SCRATCH}.outbox (LIKE ingest.outbox INCLUDING ALL)")


def pgbench(libpq_url: str, seconds: int = 10, clients: int = 16, threads: int = 2) -> float:
    """Transactions per second of the ingest insert, one commit per event."""
    prepare(libpq_url)
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(PGBENCH_SCRIPT)
        script = f.name
    try:
        out = subprocess.run(["pgbench", "-n", "-c", str(clients), "-j", str(threads), "-T", str(seconds),
                              "-f", script, libpq_url], check=True, capture_output=True, text=True).stdout
    finally:
        pathlib.Path(script).unlink(missing_ok=True)
    m = re.search(r"tps = ([0-9.]+)", out)
    if not m:
        raise RuntimeError(f"unexpected pgbench output:\n{out}")
    return float(m.group(1))


def copy_rows(libpq_url: str, total: int = 100_000, size: int = 1000) -> float:
    """Rows per second of COPY of the same rows in ``size``-row batches, a commit per batch."""
    prepare(libpq_url)
    data = json.dumps({"amount": 125, "sku": "A-1"})
    with psycopg.connect(libpq_url) as conn:
        t0 = time.perf_counter()
        for start in range(0, total, size):
            with conn.cursor() as cur, cur.copy(
                    f"COPY {SCRATCH}.events (id, tenant_id, program_id, idempotency_key, payload_digest, event_type,"
                    " external_id, event_data, event_timestamp, received_at, status) FROM STDIN") as cp:
                for i in range(start, min(start + size, total)):
                    cp.write_row((str(uuid.uuid4()), "tenant", "program", f"k-{i}", "0" * 64, "purchase",
                                  f"user-{i % 200}", data, "now", "now", "PENDING"))
            conn.commit()
        return total / (time.perf_counter() - t0)


def drop(libpq_url: str) -> None:
    with psycopg.connect(libpq_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCRATCH} CASCADE")
