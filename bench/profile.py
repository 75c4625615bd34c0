"""Where the time goes: the per-service deployment under load, profiled.

    uv run python -m bench.profile [--events 10000] [--seconds 8]

Three phases on a fresh database, each with py-spy (sampling only the thread holding the
GIL, i.e. Python work) on the busiest processes and CPU seconds of every process from /proc:

1. REST single-event accepts (wrk, 64 connections) with the workers paused (SIGSTOP);
2. 1,000-event batch accepts, workers paused;
3. the pipeline draining that backlog (rules -> ledger -> COMPLETED -> notifications).

With pg_stat_statements loaded (shared_preload_libraries) the drain also lists the costliest
statements. The report goes to stdout and bench/results/profile-<time>.txt, which replaces
the previous report; its headline figures go to the index bench/results/README.md.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import psycopg

from bench import archive, load
from bench.__main__ import RESULTS, cpu_per_event, pending, setup_program, wait_drained
from bench.deploy import Deployment, fresh_database, purge_broker

SPY = pathlib.Path(sys.executable).parent / "py-spy"


def top(path: pathlib.Path, limit: int = 12) -> list[str]:
    """Self and inclusive shares of a py-spy raw (collapsed stacks) file."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    if not path.exists():
        return ["  (no samples)"]
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        frames = stack.split(";")
        total += int(n)
        own[frames[-1]] += int(n)
        for f in set(frames):
            if "threading.py" not in f and "concurrent/futures" not in f:
                incl[f] += int(n)
    if not total:
        return ["  (no samples)"]
    out = [f"  {total} samples with the GIL; self:"]
    out += [f"    {v * 100 / total:5.1f}% {f}" for f, v in own.most_common(limit)]
    out += ["  inclusive:"] + [f"    {v * 100 / total:5.1f}% {f}" for f, v in incl.most_common(limit)]
    return out


class Profiler:
    def __init__(self, dep: Deployment, workdir: pathlib.Path) -> None:
        self.dep = dep
        self.workdir = workdir

    def spy(self, names: list[str], seconds: int, tag: str) -> list[tuple[str, subprocess.Popen[bytes]]]:
        if not SPY.exists():
            return []
        return [(n, subprocess.Popen(
            [str(SPY), "record", "-p", str(self.dep.procs[n].pid), "-r", "50", "-d", str(seconds), "-f", "raw",
             "--gil", "--nonblocking", "-o", str(self.workdir / f"{tag}-{n}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)) for n in names]

    def report(self, spies: list[tuple[str, subprocess.Popen[bytes]]], tag: str) -> list[str]:
        lines = []
        for name, proc in spies:
            proc.wait()
            lines += [f"py-spy {tag} {name}:", *top(self.workdir / f"{tag}-{name}.txt")]
        return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=8)
    ns = parser.parse_args()
    admin = os.environ.get("BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
    broker = os.environ.get("BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    libpq = fresh_database(admin, "accrual_profile")
    purge_broker(broker)
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="accrual-profile-"))
    dep = Deployment(libpq.replace("postgresql://", "postgresql+psycopg://", 1), broker, workdir)
    lines = [f"Accrual profile {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}, {os.cpu_count()} cores "
             "shared by the suite, PostgreSQL, RabbitMQ and the load generators"]

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    dep.start()
    workers = [n for n in dep.procs if n.startswith("worker")]
    prof = Profiler(dep, workdir)
    try:
        pid = setup_program(dep.base_url, dep.api_key)
        load.batches(dep.base_url, dep.api_key, pid, total=2000, run="warm")
        wait_drained(libpq, 120)
        for n in workers:
            dep.signal(n, signal.SIGSTOP)
        try:
            if load.have_wrk():
                spies = prof.spy(["ingest", "gateway"], ns.seconds, "rest")
                cpu0 = dep.cpu_seconds()
                res = load.wrk(dep.base_url, dep.api_key, pid, seconds=ns.seconds + 2, connections=64)
                say(f"\n1. REST single-event accepts, workers paused: {res.rate:,.0f}/s, "
                    f"p50 {res.latencies_ms[0]:.0f} ms, p99 {res.latencies_ms[1]:.0f} ms")
                say(f"   CPU ms per event: {cpu_per_event(cpu0, dep.cpu_seconds(), res.requests - res.errors)}")
                for line in prof.report(spies, "rest"):
                    say(line)
            spies = prof.spy(["ingest", "gateway"], max(2, ns.seconds // 2), "batch")
            cpu0 = dep.cpu_seconds()
            res = load.batches(dep.base_url, dep.api_key, pid, total=ns.events, run="p" + uuid.uuid4().hex[:6])
            say(f"\n2. 1,000-event batch accepts, workers paused: {res.rate:,.0f} events/s")
            say(f"   CPU ms per event: {cpu_per_event(cpu0, dep.cpu_seconds(), ns.events)}")
            for line in prof.report(spies, "batch"):
                say(line)
        finally:
            for n in workers:
                dep.signal(n, signal.SIGCONT)
        backlog = pending(libpq) or ns.events
        pgss = False
        with psycopg.connect(libpq, autocommit=True) as conn:
            try:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                conn.execute("SELECT pg_stat_statements_reset()")
                pgss = True
            except psycopg.Error:
                pass
        spies = prof.spy(workers, ns.seconds, "drain")
        cpu0 = dep.cpu_seconds()
        t0 = time.perf_counter()
        wait_drained(libpq, 900)
        took = time.perf_counter() - t0
        say(f"\n3. pipeline drain of {backlog:,} events: {backlog / took:,.0f} events/s")
        say(f"   CPU ms per event: {cpu_per_event(cpu0, dep.cpu_seconds(), backlog)}")
        for line in prof.report(spies, "drain"):
            say(line)
        if pgss:
            with psycopg.connect(libpq) as conn:
                rows = conn.execute(
                    "SELECT calls, round(total_exec_time::numeric), rows, round(wal_bytes / 1e6, 1), "
                    "left(regexp_replace(query, '\\s+', ' ', 'g'), 110) FROM pg_stat_statements s "
                    "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database() "
                    "ORDER BY total_exec_time DESC LIMIT 20").fetchall()
            say("   pg_stat_statements (calls | total ms | rows | WAL MB | statement), wall time incl. waits:")
            for r in rows:
                say(f"     {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]}")
        else:
            say("   (pg_stat_statements not loaded: no per-statement figures)")
    finally:
        dep.stop()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"profile-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S')}.txt"
    out.write_text("\n".join(lines) + "\n")
    archive.keep_latest_profile(out)
    print(f"\nwritten: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
