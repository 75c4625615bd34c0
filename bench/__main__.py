"""`make bench`: start the per-service deployment on PostgreSQL + RabbitMQ, measure, and
print each figure beside a baseline of the same run and the SPEC section 9 goal.

Results go to stdout and to bench/results/<timestamp>.{json,md}, which replace the previous
run's files; its headline figures go to the index bench/results/README.md (bench.archive).
Environment: BENCH_ADMIN_URL (libpq URL of a PostgreSQL database the run may use to create
its own database, `accrual_bench` unless BENCH_DATABASE names another), BENCH_BROKER_URL
(RabbitMQ; the suite's queues in it are purged). `--quick` shortens every phase for a smoke run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import pathlib
import platform
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg

from bench import archive, baselines, expiry, load
from bench.deploy import Deployment, fresh_database, purge_broker

RESULTS = pathlib.Path(__file__).with_name("results")
GOAL_HALF_LOAD = 1000.0  # SPEC 9: p99 <= 25 ms at half the 2,000/s single-event goal

SEED_RULES = [
    {"name": "1 point per dollar", "event_type": "purchase", "condition": "properties.amount > 0",
     "formula": "properties.amount * 1", "order": 1},
    {"name": "Big order bonus", "event_type": "purchase", "condition": "properties.amount > 100",
     "formula": "50", "order": 2},
    {"name": "Electronics double", "event_type": "purchase", "condition": 'properties.category == "electronics"',
     "formula": "properties.amount * 2", "order": 3},
]


#: The points bank's policies switched on (issue 22): every earn's lot expires a year after the
#: participant's latest purchase, at the end of a Paris day; each purchase slides the active lots.
BANK_POLICY = {"expiry": {"type": "SLIDING", "period": "P12M", "activity": ["purchase"]},
               "timezone": "Europe/Paris", "negative_balance": "ALLOW"}


def setup_program(base: str, key: str, **fields: Any) -> str:
    h = {"X-API-Key": key}
    r = httpx.post(f"{base}/v1/programs", json={"name": "Bench", **fields}, headers=h, timeout=30)
    r.raise_for_status()
    pid: str = r.json()["program_id"]
    for rule in SEED_RULES:
        httpx.post(f"{base}/v1/programs/{pid}/rules", json=rule, headers=h, timeout=30).raise_for_status()
    return pid


def setup_holds(base: str, key: str, program_id: str, participants: int = 200) -> str:
    """Participants with points enough for any number of one-point holds; the holds target
    (:func:`bench.load.hold_target`)."""
    people = []
    with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30) as client:
        for i in range(participants):
            r = client.post("/v1/participants", json={"identities": [{"type": "EXTERNAL", "value": f"holder-{i}"}]})
            r.raise_for_status()
            people.append(r.json()["participant_id"])
            client.post(f"/v1/programs/{program_id}/participants/{people[-1]}/adjustments", json={
                "amount": "1000000000", "reason": "bench float", "idempotency_key": f"float-{i}"}).raise_for_status()
    return f"{program_id}:{','.join(people)}"


def measure_holds(dep: Deployment, pid: str, secs: int, figures: dict[str, Any]) -> None:
    """Redemption holds (issue 23): the most per second and the p99 at half that, over REST and
    over gRPC (straight to the rules service), and gRPC at SPEC 9's 500/s."""
    target = setup_holds(dep.base_url, dep.api_key, pid)
    rules_address = f"127.0.0.1:{dep.ports['rules']}"
    print(f"REST holds, open loop at 3,000/s offered (the most it takes), {secs}s ...", flush=True)
    res = load.open_loop(dep.base_url, dep.api_key, target, rate=3000, seconds=secs, request=load.hold_request)
    figures["rest_hold"] = {"per_s": res.rate, "p50_ms": res.pct(50), "p99_ms": res.pct(99), "errors": res.errors}
    print(f"  {load.summary(res)}", flush=True)
    half = max(50.0, res.rate / 2)
    print(f"REST holds at half that ({half:,.0f}/s offered, open loop, {secs}s) ...", flush=True)
    res = load.open_loop(dep.base_url, dep.api_key, target, rate=half, seconds=secs, request=load.hold_request)
    figures["rest_hold_half_load"] = {"offered_per_s": half, "per_s": res.rate, "p50_ms": res.pct(50),
                                      "p99_ms": res.pct(99), "errors": res.errors}
    print(f"  {load.summary(res)}", flush=True)
    print(f"gRPC holds, closed loop (2 processes x 32 in flight, {secs}s) ...", flush=True)
    res = load.grpc_closed_loop(rules_address, dep.api_key, target, seconds=secs, kind="hold")
    figures["grpc_hold"] = {"per_s": res.rate, "p50_ms": res.pct(50), "p99_ms": res.pct(99), "errors": res.errors}
    print(f"  {load.summary(res)}", flush=True)
    for name, rate in (("grpc_hold_half_load", max(50.0, res.rate / 2)), ("grpc_hold_500", 500.0)):
        print(f"gRPC holds at {rate:,.0f}/s offered (open loop, {secs}s) ...", flush=True)
        res_at = load.grpc_closed_loop(rules_address, dep.api_key, target, seconds=secs, kind="hold", rate=rate)
        figures[name] = {"offered_per_s": rate, "per_s": res_at.rate, "p50_ms": res_at.pct(50),
                         "p99_ms": res_at.pct(99), "errors": res_at.errors}
        print(f"  {load.summary(res_at)}", flush=True)


def pending(libpq: str) -> int:
    """Events without an outcome yet (PENDING or PROCESSING), counted by ingest's own partial
    index of unfinished events: counting by status scanned the whole table, 40-100 ms of
    PostgreSQL CPU per poll once it held the earlier phases' events (pg_stat_statements)."""
    with psycopg.connect(libpq) as conn:
        row = conn.execute("SELECT count(*) FROM ingest.events WHERE completed_at IS NULL").fetchone()
        return int(row[0]) if row else 0


def any_pending(libpq: str) -> bool:
    """Whether some event has no outcome yet. EXISTS stops at the first unfinished entry of
    the partial index; counting them all cost PostgreSQL 56 ms a poll in a 30,000-event
    drain (pg_stat_statements), CPU charged to the pipeline being measured."""
    with psycopg.connect(libpq) as conn:
        row = conn.execute("SELECT EXISTS (SELECT 1 FROM ingest.events WHERE completed_at IS NULL)").fetchone()
        return bool(row and row[0])


def wait_drained(libpq: str, timeout: float) -> float:
    """Seconds until no event is PENDING or PROCESSING (or the timeout)."""
    t0 = time.perf_counter()
    while any_pending(libpq) and time.perf_counter() - t0 < timeout:
        time.sleep(1.0)
    return time.perf_counter() - t0


def completion_column(libpq: str) -> str:
    with psycopg.connect(libpq) as conn:
        cols = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema='ingest' AND table_name='events'")}
    return "completed_at" if "completed_at" in cols else "processed_at"


def e2e_latencies(libpq: str, run: str) -> tuple[int, int, list[float], float]:
    """(completed, total, accept-to-completed ms of each, span seconds first accept → last completion)."""
    col = completion_column(libpq)
    with psycopg.connect(libpq) as conn:
        rows = conn.execute(
            f"SELECT status, EXTRACT(EPOCH FROM ({col} - received_at)) * 1000, "
            f"EXTRACT(EPOCH FROM received_at), EXTRACT(EPOCH FROM {col}) "
            "FROM ingest.events WHERE idempotency_key LIKE %s", (f"{run}-%",)).fetchall()
    done = [r for r in rows if r[0] == "COMPLETED"]
    lat = [float(r[1]) for r in done if r[1] is not None]
    span = (max(float(r[3]) for r in done) - min(float(r[2]) for r in rows)) if done else 0.0
    return len(done), len(rows), lat, span


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    data = sorted(values)
    return data[min(len(data) - 1, round(p / 100 * (len(data) - 1)))]


def cpu_per_event(before: dict[str, float], after: dict[str, float], events: int) -> dict[str, float]:
    """CPU milliseconds per event spent by each process between two snapshots."""
    if events <= 0:
        return {}
    out = {k: round((after.get(k, 0.0) - v) * 1000 / events, 3) for k, v in before.items()}
    return {k: v for k, v in sorted(out.items(), key=lambda kv: -kv[1]) if v > 0.001}


def rule_micro() -> dict[str, Any] | None:
    try:
        from accrual_rules import bench as rules_bench
    except ImportError:
        return None
    result: dict[str, Any] = rules_bench.measure(n_rules=100)
    return result


@contextlib.contextmanager
def paused_workers(dep: Deployment) -> Iterator[None]:
    """The queue workers stopped (SIGSTOP) for the block, and continued after it."""
    workers = [n for n in dep.procs if n.startswith("worker")]
    for n in workers:
        dep.signal(n, signal.SIGSTOP)
    try:
        yield
    finally:
        for n in workers:
            dep.signal(n, signal.SIGCONT)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="short phases (smoke run)")
    parser.add_argument("--rules-workers", type=int, default=int(os.environ.get("BENCH_RULES_WORKERS", "1")))
    # Two ingest processes by default, as the Procfile runs them: one process's GIL holds
    # batch accept near SPEC 9's 20,000 events/s (bench/README.md, "Ingest replicas").
    # --ingest-replicas 1 measures one process.
    parser.add_argument("--ingest-replicas", type=int, default=int(os.environ.get("BENCH_INGEST_REPLICAS", "2")),
                        help="ingest service processes, reached round robin; with more than one, rate-limit "
                             "buckets are shared in Redis (BENCH_REDIS_URL) as a deployment of replicas needs")
    ns = parser.parse_args()
    secs = 3 if ns.quick else 10
    admin = os.environ.get("BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
    broker = os.environ.get("BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    libpq = fresh_database(admin, os.environ.get("BENCH_DATABASE", "accrual_bench"))
    purge_broker(broker)
    sa_url = libpq.replace("postgresql://", "postgresql+psycopg://", 1)
    workdir = pathlib.Path("var/bench") / dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    redis = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    extra = {"REDIS_URL": redis} if ns.ingest_replicas > 1 else {}
    dep = Deployment(sa_url, broker, workdir, rules_workers=ns.rules_workers, ingest_replicas=ns.ingest_replicas,
                     extra_env=extra)
    figures: dict[str, Any] = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "participants": load.PARTICIPANTS,
        "ingest_replicas": ns.ingest_replicas,
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                    "note": "suite, PostgreSQL, RabbitMQ and load generators share the same cores"},
    }
    print(f"cores: {os.cpu_count()} (suite, PostgreSQL, RabbitMQ and the load generators share them)", flush=True)
    try:
        dep.start()
    except BaseException:
        dep.stop()  # a deployment that never became ready must not leave its processes running
        raise
    try:
        pid = setup_program(dep.base_url, dep.api_key)
        print("baseline: pgbench, ingest insert (event + outbox row, one commit each), 16 clients ...", flush=True)
        figures["pgbench_tps"] = baselines.pgbench(libpq, seconds=secs)
        print(f"  {figures['pgbench_tps']:,.0f} tx/s", flush=True)
        print("baseline: COPY of the same rows, 1,000-row batches ...", flush=True)
        figures["copy_rows_per_s"] = baselines.copy_rows(libpq, total=20_000 if ns.quick else 100_000)
        print(f"  {figures['copy_rows_per_s']:,.0f} rows/s", flush=True)
        baselines.drop(libpq)

        load.open_loop(dep.base_url, dep.api_key, pid, rate=200, seconds=1, processes=1)  # warm-up
        wait_drained(libpq, 60)

        cpu0 = dep.cpu_seconds()
        if load.have_wrk():
            print(f"REST single-event accept, closed loop (wrk, 64 connections, {secs}s) ...", flush=True)
            res = load.wrk(dep.base_url, dep.api_key, pid, seconds=secs, connections=64)
            figures["rest_accept"] = {"per_s": res.rate, "p50_ms": res.latencies_ms[0],
                                      "p99_ms": res.latencies_ms[1], "errors": res.errors, "generator": "wrk"}
        else:
            print("REST single-event accept, wrk not installed: open-loop Python generator at 3,000/s ...", flush=True)
            res = load.open_loop(dep.base_url, dep.api_key, pid, rate=3000, seconds=secs)
            figures["rest_accept"] = {"per_s": res.rate, "p50_ms": res.pct(50), "p99_ms": res.pct(99),
                                      "errors": res.errors, "generator": "python-open-loop"}
        print(f"  {figures['rest_accept']['per_s']:,.0f}/s, p99 {figures['rest_accept']['p99_ms']:.1f} ms, "
              f"errors {figures['rest_accept']['errors']}", flush=True)
        figures["cpu_ms_per_accept"] = cpu_per_event(cpu0, dep.cpu_seconds(), res.requests - res.errors)
        print(f"  CPU ms per accepted event: {figures['cpu_ms_per_accept']}", flush=True)
        drain = wait_drained(libpq, 600)
        print(f"  (rules drained the backlog in {drain:.1f}s)", flush=True)

        if load.have_wrk():
            # As for batches below: the same load with the workers stopped, the accept path's
            # own capacity (how fast a burst is absorbed) without the pipeline's share of the cores.
            print(f"REST single-event accept with the pipeline paused (wrk, 64 connections, {secs}s) ...", flush=True)
            with paused_workers(dep):
                cpu0 = dep.cpu_seconds()
                res = load.wrk(dep.base_url, dep.api_key, pid, seconds=secs, connections=64)
                figures["cpu_ms_per_accept_paused"] = cpu_per_event(cpu0, dep.cpu_seconds(), res.requests - res.errors)
            figures["rest_accept_paused"] = {"per_s": res.rate, "p50_ms": res.latencies_ms[0],
                                             "p99_ms": res.latencies_ms[1], "errors": res.errors}
            print(f"  {res.rate:,.0f}/s, p99 {res.latencies_ms[1]:.1f} ms, errors {res.errors}; "
                  f"CPU ms per event {figures['cpu_ms_per_accept_paused']}", flush=True)
            paused_half = max(50.0, res.rate / 2)
            print(f"REST latency at half that load, pipeline paused ({paused_half:,.0f}/s offered, open loop, "
                  f"{secs}s) ...", flush=True)
            with paused_workers(dep):
                res = load.open_loop(dep.base_url, dep.api_key, pid, rate=paused_half, seconds=secs)
            figures["rest_half_load_paused"] = {"offered_per_s": paused_half, "per_s": res.rate,
                                                "p50_ms": res.pct(50), "p99_ms": res.pct(99), "errors": res.errors}
            print(f"  {load.summary(res)}", flush=True)
            # SPEC 9's own half load: half of the 2,000/s goal, whatever this run reached.
            print(f"REST latency at {GOAL_HALF_LOAD:,.0f}/s (half the goal), pipeline paused (open loop, "
                  f"{secs}s) ...", flush=True)
            with paused_workers(dep):
                res = load.open_loop(dep.base_url, dep.api_key, pid, rate=GOAL_HALF_LOAD, seconds=secs)
            figures["rest_goal_half_load_paused"] = {"offered_per_s": GOAL_HALF_LOAD, "per_s": res.rate,
                                                     "p50_ms": res.pct(50), "p99_ms": res.pct(99),
                                                     "errors": res.errors}
            print(f"  {load.summary(res)}", flush=True)
            wait_drained(libpq, 600)

        half = max(50.0, figures["rest_accept"]["per_s"] / 2)
        print(f"REST latency at half that load ({half:,.0f}/s offered, open loop, {secs}s) ...", flush=True)
        run = "half" + uuid.uuid4().hex[:6]
        res = load.open_loop(dep.base_url, dep.api_key, pid, rate=half, seconds=secs, run=run)
        figures["rest_half_load"] = {"offered_per_s": half, "per_s": res.rate, "p50_ms": res.pct(50),
                                     "p99_ms": res.pct(99), "errors": res.errors}
        print(f"  {load.summary(res)}", flush=True)
        wait_drained(libpq, 600)
        done, n, lat, _ = e2e_latencies(libpq, run)
        figures["e2e_latency_half_load"] = {"offered_per_s": half, "completed": done, "events": n,
                                            "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99)}
        print(f"  accept-to-completed at that load: p50 {pct(lat, 50):.0f} ms, p99 {pct(lat, 99):.0f} ms", flush=True)

        print(f"gRPC single-event accept, closed loop (2 processes x 32 in flight, {secs}s) ...", flush=True)
        res = load.grpc_closed_loop(dep.ingest_address, dep.api_key, pid, seconds=secs)
        figures["grpc_accept"] = {"per_s": res.rate, "p50_ms": res.pct(50), "p99_ms": res.pct(99), "errors": res.errors}
        print(f"  {load.summary(res)}", flush=True)
        wait_drained(libpq, 600)
        measure_holds(dep, pid, secs, figures)

        total = 20_000 if ns.quick else 30_000
        run = "e2eb" + uuid.uuid4().hex[:6]
        print(f"batch accept: {total:,} events in 1,000-event batches, 4 in flight ...", flush=True)
        cpu_start = dep.cpu_seconds()
        res = load.batches(dep.base_url, dep.api_key, pid, total=total, run=run)
        figures["batch_accept"] = {"per_s": res.rate, "p50_batch_ms": res.pct(50), "errors": res.errors}
        print(f"  {res.rate:,.0f} events/s, batch p50 {res.pct(50):.0f} ms, errors {res.errors}", flush=True)
        print("end to end: the batch backlog through rules → ledger → COMPLETED ...", flush=True)
        wait_drained(libpq, 900)
        done, n, _, span = e2e_latencies(libpq, run)
        figures["e2e_throughput"] = {"per_s": done / span if span else 0.0, "completed": done, "events": n}
        # From before the first batch: the pipeline processes events while the batches are
        # still arriving (a snapshot taken after the accepts missed that CPU and divided the
        # rest by every event, the cpu_ms_per_processed of earlier results).
        figures["cpu_ms_per_e2e_event"] = cpu_per_event(cpu_start, dep.cpu_seconds(), n)
        print(f"  CPU ms per event, batch accept + processing: {figures['cpu_ms_per_e2e_event']}", flush=True)
        print(f"  {figures['e2e_throughput']['per_s']:,.0f} events/s ({done:,}/{n:,} completed)", flush=True)

        # The same backlog into a program with the bank's policies on (SLIDING expiry: every
        # event also moves the participant's active lots), beside the run above (every earn
        # is a lot there too, without expiry).
        bank_pid = setup_program(dep.base_url, dep.api_key, **BANK_POLICY)
        run = "e2ek" + uuid.uuid4().hex[:6]
        print(f"end to end with an expiry policy: {total:,} events ...", flush=True)
        cpu_start = dep.cpu_seconds()
        load.batches(dep.base_url, dep.api_key, bank_pid, total=total, run=run)
        wait_drained(libpq, 900)
        done, n, _, span = e2e_latencies(libpq, run)
        figures["e2e_throughput_bank"] = {"per_s": done / span if span else 0.0, "completed": done, "events": n,
                                          "cpu_ms_per_event": cpu_per_event(cpu_start, dep.cpu_seconds(), n)}
        print(f"  {figures['e2e_throughput_bank']['per_s']:,.0f} events/s ({done:,}/{n:,} completed)", flush=True)

        # The figures above share 2 cores between accepting and the pipeline processing what
        # was accepted. This one stops the workers (SIGSTOP) while batches arrive, so it shows
        # the accept path's own capacity (how fast a burst is absorbed); the workers then drain
        # the backlog.
        # Three seconds at the goal's rate: 20,000 events (one second) weighed the start of
        # the run (first connections, first batches) as much as the sustained rate.
        paused = 10_000 if ns.quick else 60_000
        print(f"batch accept with the pipeline paused: {paused:,} events ...", flush=True)
        with paused_workers(dep):
            cpu0 = dep.cpu_seconds()
            res = load.batches(dep.base_url, dep.api_key, pid, total=paused, run="e2ep" + uuid.uuid4().hex[:6])
            figures["batch_accept_paused"] = {"per_s": res.rate, "p50_batch_ms": res.pct(50), "errors": res.errors}
            figures["cpu_ms_per_batch_accept_paused"] = cpu_per_event(cpu0, dep.cpu_seconds(), paused)
        print(f"  {res.rate:,.0f} events/s, CPU ms per event {figures['cpu_ms_per_batch_accept_paused']}", flush=True)
        wait_drained(libpq, 900)

        run = "e2el" + uuid.uuid4().hex[:6]
        rate = 1000.0
        print(f"end to end latency at {rate:,.0f} events/s offered for {secs * 2}s ...", flush=True)
        res = load.open_loop(dep.base_url, dep.api_key, pid, rate=rate, seconds=secs * 2, run=run)
        wait_drained(libpq, 900)
        done, n, lat, _ = e2e_latencies(libpq, run)
        figures["e2e_latency"] = {"offered_per_s": rate, "accept_per_s": res.rate, "accept_p99_ms": res.pct(99),
                                  "completed": done, "events": n, "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99),
                                  "measured_to": completion_column(libpq)}
        print(f"  accept-to-completed p50 {pct(lat, 50):.0f} ms, p99 {pct(lat, 99):.0f} ms ({done:,}/{n:,})",
              flush=True)

        figures["rules"] = rule_micro()
        figures["peak_rss_mb"] = dep.peak_rss_mb()
        lots = 50_000 if ns.quick else 1_000_000
        print(f"expiry run over {lots:,} due lots, beside COPY of the same rows ...", flush=True)
        figures["expiry_run"] = expiry.measure(libpq, lots)
        print(f"  {figures['expiry_run']['lots_per_s']:,.0f} lots/s, COPY "
              f"{figures['expiry_run']['copy_baseline_lots_per_s']:,.0f}", flush=True)
    finally:
        figures.setdefault("peak_rss_mb", dep.peak_rss_mb())
        dep.stop()
    report(figures)


def ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "n/a"
    return f"{a / b:.2f}x"


def report(f: dict[str, Any]) -> None:
    rows: list[tuple[str, str, str, str]] = []

    def fmt(v: float | None, unit: str = "") -> str:
        return "n/a" if v is None or v != v else f"{v:,.1f}{unit}" if v < 100 else f"{v:,.0f}{unit}"

    def p99_p50(d: dict[str, Any]) -> str:
        return f"{fmt(d.get('p99_ms'))} ms (p50 {fmt(d.get('p50_ms'))})"

    ra, half, g = f.get("rest_accept", {}), f.get("rest_half_load", {}), f.get("grpc_accept", {})
    pg = f.get("pgbench_tps")
    rows.append(("REST accept (single event)", fmt(ra.get("per_s"), "/s"),
                 f"pgbench same insert {fmt(pg, '/s')} → {ratio(ra.get('per_s'), pg)}", "≥ 2,000/s"))
    rows.append(("REST accept p50 / p99 at max load", f"{fmt(ra.get('p50_ms'))} / {fmt(ra.get('p99_ms'))} ms", "", ""))
    rp = f.get("rest_accept_paused", {})
    if rp:
        rows.append(("REST accept, pipeline paused (accept path alone)", fmt(rp.get("per_s"), "/s"),
                     f"pgbench → {ratio(rp.get('per_s'), pg)}; p50 / p99 {fmt(rp.get('p50_ms'))} / "
                     f"{fmt(rp.get('p99_ms'))} ms", "≥ 2,000/s"))
    rows.append((f"REST accept p99 at half load ({fmt(half.get('offered_per_s'), '/s')})",
                 p99_p50(half), "", "≤ 25 ms"))
    hp = f.get("rest_half_load_paused")
    if hp:
        rows.append((f"REST accept p99 at half load, pipeline paused ({fmt(hp.get('offered_per_s'), '/s')})",
                     p99_p50(hp), "", "≤ 25 ms"))
    gp = f.get("rest_goal_half_load_paused")
    if gp:
        rows.append((f"REST accept p99 at {fmt(gp.get('offered_per_s'), '/s')} (half the goal), pipeline paused",
                     p99_p50(gp), "", "≤ 25 ms"))
    el = f.get("e2e_latency", {})
    if el.get("accept_p99_ms") is not None:
        rows.append((f"REST accept p99 at {fmt(el.get('offered_per_s'), '/s')} (half the goal), pipeline running",
                     f"{fmt(el.get('accept_p99_ms'))} ms", "", "≤ 25 ms"))
    rows.append(("gRPC accept (single event)", fmt(g.get("per_s"), "/s"),
                 f"REST {ratio(g.get('per_s'), ra.get('per_s'))}", ""))
    rh, gh = f.get("rest_hold", {}), f.get("grpc_hold", {})
    if rh:
        rh_half, gh_half, g500 = (f.get("rest_hold_half_load", {}), f.get("grpc_hold_half_load", {}),
                                  f.get("grpc_hold_500", {}))
        rows.append(("REST redemption hold", fmt(rh.get("per_s"), "/s"),
                     f"REST event accept {ratio(rh.get('per_s'), ra.get('per_s'))}", "≥ event accept"))
        rows.append((f"REST hold p99 at half load ({fmt(rh_half.get('offered_per_s'), '/s')})", p99_p50(rh_half),
                     f"event accept at half load {fmt(half.get('p99_ms'))} ms", ""))
        rows.append(("gRPC redemption hold", fmt(gh.get("per_s"), "/s"),
                     f"gRPC event accept {ratio(gh.get('per_s'), g.get('per_s'))}", "≥ event accept"))
        rows.append((f"gRPC hold p99 at half load ({fmt(gh_half.get('offered_per_s'), '/s')})", p99_p50(gh_half),
                     f"gRPC event accept p99 (max load) {fmt(g.get('p99_ms'))} ms", ""))
        rows.append((f"gRPC hold p99 at {fmt(g500.get('offered_per_s'), '/s')}", p99_p50(g500), "", "≤ 20 ms"))
    b = f.get("batch_accept", {})
    rows.append(("Batch accept (1,000-event batches)", fmt(b.get("per_s"), " events/s"),
                 f"COPY {fmt(f.get('copy_rows_per_s'), ' rows/s')} → {ratio(b.get('per_s'), f.get('copy_rows_per_s'))}",
                 "≥ 20,000/s"))
    bp = f.get("batch_accept_paused", {})
    if bp:
        rows.append(("Batch accept, pipeline paused (accept path alone)", fmt(bp.get("per_s"), " events/s"),
                     f"COPY → {ratio(bp.get('per_s'), f.get('copy_rows_per_s'))}", "≥ 20,000/s"))
    e = f.get("e2e_throughput", {})
    rows.append(("End to end accept → COMPLETED", fmt(e.get("per_s"), " events/s"),
                 f"REST accept {ratio(e.get('per_s'), ra.get('per_s'))}", "≥ 3,000/s"))
    eb = f.get("e2e_throughput_bank")
    if eb:
        rows.append(("End to end with an expiry policy (SLIDING, lots slide per event)",
                     fmt(eb.get("per_s"), " events/s"),
                     f"without {ratio(eb.get('per_s'), e.get('per_s'))}", "≥ 3,000/s"))
    ex = f.get("expiry_run")
    if ex:
        rows.append((f"Expiry run over {ex['lots']:,} due lots", fmt(ex.get("lots_per_s"), " lots/s"),
                     f"COPY of its rows {fmt(ex.get('copy_baseline_lots_per_s'), ' lots/s')} → "
                     f"{ratio(ex.get('lots_per_s'), ex.get('copy_baseline_lots_per_s'))}", ""))
    rows.append((f"Accept → COMPLETED p99 at {fmt(el.get('offered_per_s'), '/s')}",
                 p99_p50(el), "", "≤ 1,000 ms"))
    eh = f.get("e2e_latency_half_load")
    if eh:
        rows.append((f"Accept → COMPLETED p99 at {fmt(eh.get('offered_per_s'), '/s')} (REST half load)",
                     p99_p50(eh), "", ""))
    r = f.get("rules")
    if r:
        rows.append(("Rule evaluation, per compiled rule", fmt(r.get("us_per_rule"), " µs"),
                     f"plain Python {fmt(r.get('us_per_rule_plain_python'), ' µs')}", "≤ 10 µs"))
        rows.append(("Rule evaluation, per event with 100 rules", fmt(r.get("us_per_event"), " µs"),
                     f"plain Python {fmt(r.get('us_per_event_plain_python'), ' µs')}", "≤ 1,000 µs"))
        if r.get("us_per_event_sandboxed") is not None:
            rows.append(("Rule evaluation in the sandbox, per rule (500-event batches)",
                         fmt(r.get("us_per_rule_sandboxed"), " µs"),
                         f"in process {ratio(r.get('us_per_rule_sandboxed'), r.get('us_per_event', 0) / 100)}",
                         "≤ 10 µs"))
            rows.append(("Rule evaluation in the sandbox, per event with 100 rules",
                         fmt(r.get("us_per_event_sandboxed"), " µs"),
                         f"in process {ratio(r.get('us_per_event_sandboxed'), r.get('us_per_event'))}",
                         "≤ 1,000 µs"))
    else:
        rows.append(("Rule evaluation", "not measured (accrual_rules.bench missing)", "", "≤ 10 µs"))
    for label, key in (("CPU ms per REST accept", "cpu_ms_per_accept"),
                       ("CPU ms per REST accept, pipeline paused", "cpu_ms_per_accept_paused"),
                       ("CPU ms per batch-accepted event, pipeline paused", "cpu_ms_per_batch_accept_paused"),
                       ("CPU ms per event end to end (batch accept + processing)", "cpu_ms_per_e2e_event")):
        per = f.get(key) or {}
        if per:
            top = ", ".join(f"{k} {v:.2f}" for k, v in list(per.items())[:5])
            rows.append((label, f"{sum(per.values()):.2f} ms", top, "2 cores = 1 ms/event at 2,000/s"))
    for name, mb in sorted(f.get("peak_rss_mb", {}).items()):
        rows.append((f"Peak RSS {name}", fmt(mb, " MB"), "", "≤ 150 MB"))
    head = ("figure", "measured", "baseline (same run)", "goal")
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(4)]
    lines = [" | ".join(c.ljust(widths[i]) for i, c in enumerate(row)) for row in [head, *rows]]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    text = "\n".join(lines)
    print()
    replicas = f.get("ingest_replicas", 1)
    deployment = (f"{replicas} ingest processes (round robin, rate limits shared in Redis)" if replicas > 1
                  else "one process per service")
    print(f"Accrual bench, {f['when']}, {f['machine']['cores']} cores ({f['machine']['note']}); "
          f"{deployment}; load spread over {f.get('participants')} participants")
    print(text)
    RESULTS.mkdir(exist_ok=True)
    stamp = f["when"].replace(":", "").replace("-", "")
    md = [f"# Accrual bench {f['when']}", "", f"{f['machine']['cores']} cores; {f['machine']['note']}; {deployment}.",
          "",
          "| " + " | ".join(head) + " |", "|" + "---|" * 4]
    md += ["| " + " | ".join(row) + " |" for row in rows]
    (RESULTS / f"{stamp}.json").write_text(json.dumps(f, indent=2, default=str) + "\n")
    (RESULTS / f"{stamp}.md").write_text("\n".join(md) + "\n")
    archive.keep_latest_bench(RESULTS / f"{stamp}.json")
    print(f"\nwritten: {RESULTS}/{stamp}.json and .md (earlier runs: {RESULTS}/README.md)", file=sys.stderr)


if __name__ == "__main__":
    main()
