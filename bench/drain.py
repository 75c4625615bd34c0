"""Pipeline A/B: CPU per event of accepting a backlog and draining it, per process.

    uv run python -m bench.drain [--events 30000] [--rounds 2]

On a fresh per-service deployment (PostgreSQL + RabbitMQ, as make bench): each round
batch-accepts ``--events`` events with the workers stopped (SIGSTOP), then lets them drain
(rules -> ledger -> COMPLETED -> notifications) and prints the drain rate and the CPU
milliseconds per event of every process; at the end, every process's peak resident memory.
No profiler runs, so the figures are the code's own; run it on two versions back to back
(a git worktree for the other) and alternate: on this project's machines the speed drifts
by 10-25% within minutes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import pathlib
import signal
import time
import uuid

from bench import load
from bench.__main__ import BANK_POLICY, any_pending, cpu_per_event, setup_program
from bench.deploy import Deployment, fresh_database, purge_broker


def drain(libpq: str, timeout: float = 900) -> float:
    t0 = time.perf_counter()
    while any_pending(libpq) and time.perf_counter() - t0 < timeout:
        time.sleep(0.25)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.drain")
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ingest-replicas", type=int, default=1, help="ingest service processes (round robin)")
    parser.add_argument("--bank", action="store_true", help="the program with the points bank's policies on")
    ns = parser.parse_args()
    admin = os.environ.get("BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
    broker = os.environ.get("BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    libpq = fresh_database(admin, os.environ.get("BENCH_DATABASE", "accrual_bench"))
    purge_broker(broker)
    workdir = pathlib.Path("var/bench") / ("drain-" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S"))
    dep = Deployment(libpq.replace("postgresql://", "postgresql+psycopg://", 1), broker, workdir,
                     ingest_replicas=ns.ingest_replicas)
    dep.start()
    try:
        pid = setup_program(dep.base_url, dep.api_key, **(BANK_POLICY if ns.bank else {}))
        load.batches(dep.base_url, dep.api_key, pid, total=3000, run="warm")
        drain(libpq)
        workers = [n for n in dep.procs if n.startswith("worker")]
        for rnd in range(ns.rounds):
            for n in workers:
                dep.signal(n, signal.SIGSTOP)
            cpu0 = dep.cpu_seconds()
            res = load.batches(dep.base_url, dep.api_key, pid, total=ns.events, run="d" + uuid.uuid4().hex[:6])
            cpu1 = dep.cpu_seconds()
            for n in workers:
                dep.signal(n, signal.SIGCONT)
            took = drain(libpq)
            accept = cpu_per_event(cpu0, cpu1, ns.events)
            processing = cpu_per_event(cpu1, dep.cpu_seconds(), ns.events)
            print(f"round {rnd}: batch accept (workers stopped) {res.rate:,.0f} events/s, "
                  f"CPU {sum(accept.values()):.3f} ms/event; drain {ns.events / took:,.0f} events/s, "
                  f"CPU {sum(processing.values()):.3f} ms/event {processing}", flush=True)
        peak = dep.peak_rss_mb()
        print("peak RSS MB: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(peak.items(), key=lambda kv: -kv[1])),
              flush=True)
    finally:
        dep.stop()


if __name__ == "__main__":
    main()
