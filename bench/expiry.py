"""The points bank's expiry run over many due lots, beside a COPY baseline of the same rows.

`python -m bench.expiry [--lots N]` (default 1,000,000) seeds N ACTIVE lots whose expiry has
passed (COPY, spread over 10,000 participants of one program), then times
:meth:`accrual_rules.expiry.BankJobs.expire`: per chunk of lots one transaction that locks
the accounts, re-reads the lots, writes an EXPIRE entry and an allocation per lot, the lots
and the balances. The baseline is COPY of the same rows the run writes (one ledger entry and
one allocation per lot) into scratch copies of those tables, in chunks of the same size, a
commit each. `make bench` runs it on its own database; alone it uses BENCH_ADMIN_URL's
server and its own `accrual_bench_expiry` database.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time
import uuid
from decimal import Decimal

import psycopg
from accrual_platform import migrations
from accrual_platform.db import Database
from accrual_platform.ids import new_id
from accrual_rules import bootstrap
from accrual_rules.expiry import EXPIRY_CHUNK, BankJobs, BankReport
from accrual_rules.store import RulesStore

from bench.deploy import fresh_database

SCRATCH = "bench_expiry_baseline"
PARTICIPANTS = 10_000


def seed(libpq: str, lots: int) -> tuple[str, dt.datetime]:
    """``lots`` due lots of one new tenant's program (and their balances); (tenant, a time after they expire)."""
    tenant, program = str(uuid.uuid4()), str(uuid.uuid4())
    now = dt.datetime.now(dt.UTC)
    earned, expires = now - dt.timedelta(days=400), now - dt.timedelta(days=1)
    people = [str(uuid.uuid4()) for _ in range(PARTICIPANTS)]
    per: dict[str, int] = {}
    with psycopg.connect(libpq) as conn:
        for start in range(0, lots, 50_000):
            with conn.cursor() as cur, cur.copy(
                    "COPY rules.lots (id, tenant_id, program_id, participant_id, entry_id, original, remaining,"
                    " status, earned_at, expires_at, created_at, updated_at) FROM STDIN") as cp:
                for i in range(start, min(start + 50_000, lots)):
                    who = people[i % PARTICIPANTS]
                    per[who] = per.get(who, 0) + 10
                    cp.write_row((new_id(), tenant, program, who, new_id(), 10, 10, "ACTIVE", earned, expires,
                                  earned, earned))
            conn.commit()
        with conn.cursor() as cur, cur.copy(
                "COPY rules.balances (tenant_id, program_id, participant_id, available, lifetime_earned, updated_at,"
                " debt, pending) FROM STDIN") as cp:
            for who, points in per.items():
                cp.write_row((tenant, program, who, points, points, now, 0, 0))
        conn.commit()
        conn.execute("ANALYZE rules.lots")
        conn.commit()
    return tenant, now


def expire(sa_url: str, now: dt.datetime) -> tuple[int, float]:
    """Lots expired and seconds taken by the run."""
    db = Database(sa_url, bootstrap.SCHEMA, pool_size=2)
    try:
        report = BankReport()
        t0 = time.perf_counter()
        BankJobs(RulesStore(db)).expire(now, report)
        return report.expired_lots, time.perf_counter() - t0
    finally:
        db.engine.dispose()


def copy_baseline(libpq: str, lots: int, size: int = EXPIRY_CHUNK) -> float:
    """Lots per second if the run's rows (an entry and an allocation per lot) only had to be copied."""
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCRATCH} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCRATCH}")
        conn.execute(f"CREATE TABLE {SCRATCH}.ledger_entries (LIKE rules.ledger_entries INCLUDING ALL)")
        conn.execute(f"CREATE TABLE {SCRATCH}.lot_allocations (LIKE rules.lot_allocations INCLUDING ALL)")
    tenant, now = str(uuid.uuid4()), dt.datetime.now(dt.UTC)
    try:
        with psycopg.connect(libpq) as conn:
            t0 = time.perf_counter()
            for start in range(0, lots, size):
                n = min(size, lots - start)
                ids = [(new_id(), new_id()) for _ in range(n)]
                with conn.cursor() as cur, cur.copy(
                        f"COPY {SCRATCH}.ledger_entries (id, tenant_id, program_id, participant_id, amount, kind,"
                        " source, reason, created_at, occurred_at) FROM STDIN") as cp:
                    for entry, lot in ids:
                        cp.write_row((entry, tenant, "program", "participant", Decimal(-10), "EXPIRE",
                                      f"expire:{lot}", "points expired", now, now))
                with conn.cursor() as cur, cur.copy(
                        f"COPY {SCRATCH}.lot_allocations (entry_id, lot_id, tenant_id, amount, created_at)"
                        " FROM STDIN") as cp:
                    for entry, lot in ids:
                        cp.write_row((entry, lot, tenant, Decimal(10), now))
                conn.commit()
            return lots / (time.perf_counter() - t0)
    finally:
        with psycopg.connect(libpq, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {SCRATCH} CASCADE")


def measure(libpq: str, lots: int) -> dict[str, float]:
    """Seed, expire and the baseline on a database whose rules schema is migrated."""
    sa_url = libpq.replace("postgresql://", "postgresql+psycopg://", 1)
    _, now = seed(libpq, lots)
    expired, seconds = expire(sa_url, now)
    if expired != lots:
        raise RuntimeError(f"expired {expired} of {lots} lots")
    return {"lots": lots, "seconds": seconds, "lots_per_s": lots / seconds,
            "copy_baseline_lots_per_s": copy_baseline(libpq, lots)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.expiry")
    parser.add_argument("--lots", type=int, default=1_000_000)
    ns = parser.parse_args()
    admin = os.environ.get("BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
    libpq = fresh_database(admin, "accrual_bench_expiry")
    migrations.upgrade(libpq.replace("postgresql://", "postgresql+psycopg://", 1), bootstrap.SCHEMA,
                       bootstrap.MIGRATIONS)
    got = measure(libpq, ns.lots)
    print(f"expiry run: {got['lots']:,} lots in {got['seconds']:.1f} s = {got['lots_per_s']:,.0f} lots/s; "
          f"COPY of the same rows {got['copy_baseline_lots_per_s']:,.0f} lots/s "
          f"({got['lots_per_s'] / got['copy_baseline_lots_per_s']:.2f}x)")


if __name__ == "__main__":
    main()
