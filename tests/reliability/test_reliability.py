"""What the suite must withstand (SPEC section 8), proven against the per-service deployment:
every service, worker and the gateway a separate OS process on PostgreSQL + RabbitMQ.

- rules workers SIGKILLed over and over while 5,000 events flow, with an expiry policy on:
  every event COMPLETED once, every balance exactly the sum the rule dictates, one lot per
  earn and the active lots adding up to each balance;
- RabbitMQ stopped while partners keep submitting: accepts still 200, everything completes
  once the broker is back, nothing twice;
- PostgreSQL stopped: accepts answer 503 (never 200 for an event not stored) and the suite
  recovers by itself when it is back;
- the webhook receiver down for a while: every notification delivered, each webhook-id once;
- SIGTERM on every process under load: in-flight work finishes, nothing is lost;
- redemptions (holds, captures, cancels, refunds) retried while the rules service is
  SIGKILLed: every one moves its points exactly once.
- pending points on, rules workers killed while they award and the rules service killed while
  it answers refunds retried with their keys: nothing awarded or taken back twice.

These tests fail (never skip) when PostgreSQL or RabbitMQ are missing. Stopping and starting
the servers uses the commands of the README (run as the machine's administrator, as CI does).
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import http.server
import pathlib
import random
import signal
import socketserver
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import psycopg
import pytest
from accrual_platform.testing import AMQP_URL, PG_URL, free_port

from bench.deploy import Deployment, fresh_database, purge_broker

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(900)]

ADMIN_URL = PG_URL.replace("postgresql+psycopg://", "postgresql://", 1)
FAST_RETRIES = "0,0.5,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1"


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Deployment, str]]:
    # named after the URL's database, so suites of different databases on one server never collide
    libpq = fresh_database(ADMIN_URL, f"{ADMIN_URL.rsplit('/', 1)[1].split('?')[0]}_reliability")
    purge_broker(AMQP_URL)
    sa_url = libpq.replace("postgresql://", "postgresql+psycopg://", 1)
    dep = Deployment(sa_url, AMQP_URL, tmp_path_factory.mktemp("suite"), rules_workers=2,
                     extra_env={"WEBHOOK_ALLOW_PRIVATE": "1", "WEBHOOK_RETRY_SCHEDULE": FAST_RETRIES,
                                "WEBHOOK_TIMEOUT_SECONDS": "2", "LOG_LEVEL": "INFO"})
    try:
        dep.start()
    except BaseException:
        dep.stop()  # a process that failed to start (e.g. a port taken meanwhile) must not orphan the others
        raise
    try:
        yield dep, libpq
    finally:
        dep.stop()


#: The points bank switched on: every earn is a lot that expires a year on, at the end of a Paris day.
EXPIRY = {"expiry": {"type": "ROLLING", "period": "P12M", "rounding": "END_OF_MONTH"}, "timezone": "Europe/Paris"}


def program(dep: Deployment, **bank: object) -> str:
    h = {"X-API-Key": dep.api_key}
    r = httpx.post(f"{dep.base_url}/v1/programs", json={"name": f"p-{uuid.uuid4().hex[:6]}", **bank}, headers=h,
                   timeout=30)
    assert r.status_code == 200, r.text
    pid: str = r.json()["program_id"]
    r = httpx.post(f"{dep.base_url}/v1/programs/{pid}/rules", headers=h, timeout=30, json={
        "name": "1 point per dollar", "event_type": "purchase", "formula": "properties.amount * 1"})
    assert r.status_code == 200, r.text
    return pid


def events(pid: str, run: str, n: int, participants: int) -> list[dict[str, object]]:
    return [{"program_id": pid, "idempotency_key": f"{run}-{i}", "external_id": f"{run}-user-{i % participants}",
             "event_type": "purchase", "event_data": {"amount": 1 + i % 97}} for i in range(n)]


def submit_batches(dep: Deployment, items: list[dict[str, object]], size: int = 500) -> None:
    h = {"X-API-Key": dep.api_key}
    for start in range(0, len(items), size):
        chunk = items[start:start + size]
        r = httpx.post(f"{dep.base_url}/v1/events/batch", json={"events": chunk}, headers=h, timeout=120)
        assert r.status_code == 200, r.text
        statuses = collections.Counter(x["status"] for x in r.json()["results"])
        assert statuses["error"] == 0, r.text


def wait_terminal(libpq: str, run: str, n: int, timeout: float) -> dict[str, int]:
    deadline = time.time() + timeout
    counts: dict[str, int] = {}
    while time.time() < deadline:
        with psycopg.connect(libpq) as conn:
            counts = dict(conn.execute("SELECT status, count(*) FROM ingest.events WHERE idempotency_key LIKE %s "
                                       "GROUP BY status", (f"{run}-%",)).fetchall())
        if counts.get("COMPLETED", 0) + counts.get("FAILED", 0) >= n:
            return counts
        time.sleep(0.5)
    return counts


def assert_exact_ledger(libpq: str, pid: str, items: list[dict[str, object]]) -> None:
    """One earn entry per event, and every balance equal to the sum the rule dictates."""
    expected: dict[str, Decimal] = collections.defaultdict(Decimal)
    for e in items:
        expected[str(e["external_id"])] += Decimal(e["event_data"]["amount"])  # type: ignore[index]
    keys = [str(e["idempotency_key"]) for e in items]
    with psycopg.connect(libpq) as conn:
        owners = dict(conn.execute(
            "SELECT external_id, participant_id FROM ingest.events WHERE program_id = %s AND idempotency_key = ANY(%s)"
            " GROUP BY external_id, participant_id", (pid, keys)).fetchall())
        per_event = conn.execute(
            "SELECT l.event_id, count(*) FROM rules.ledger_entries l JOIN ingest.events e ON e.id = l.event_id "
            "WHERE l.program_id = %s AND e.idempotency_key = ANY(%s) GROUP BY l.event_id", (pid, keys)).fetchall()
        balances = {r[0]: Decimal(str(r[1])) for r in conn.execute(
            "SELECT participant_id, available FROM rules.balances WHERE program_id = %s", (pid,)).fetchall()}
        sums = {r[0]: Decimal(str(r[1])) for r in conn.execute(
            "SELECT participant_id, sum(amount) FROM rules.ledger_entries WHERE program_id = %s GROUP BY 1",
            (pid,)).fetchall()}
    assert len(owners) == len(expected), "each external_id resolves to exactly one participant"
    assert len(per_event) == len(items), "every event has ledger entries"
    assert all(c == 1 for _, c in per_event), "no event awarded twice"
    for external_id, points in expected.items():
        participant = owners[external_id]
        assert balances[participant] == points, external_id
        assert sums[participant] == points, external_id


def assert_exact_lots(libpq: str, pid: str, n: int) -> None:
    """One expiring lot per earn entry, none twice, and the active lots adding up to each balance."""
    with psycopg.connect(libpq) as conn:
        lots, entries, unexpiring = conn.execute(
            "SELECT (SELECT count(*) FROM rules.lots WHERE program_id = %(p)s), "
            "(SELECT count(*) FROM rules.ledger_entries WHERE program_id = %(p)s AND kind = 'EARN'), "
            "(SELECT count(*) FROM rules.lots WHERE program_id = %(p)s AND expires_at IS NULL)", {"p": pid}).fetchone()
        mismatched = conn.execute(
            "SELECT b.participant_id FROM rules.balances b LEFT JOIN (SELECT participant_id, sum(remaining) AS s "
            "FROM rules.lots WHERE program_id = %(p)s AND status = 'ACTIVE' GROUP BY 1) l "
            "ON l.participant_id = b.participant_id WHERE b.program_id = %(p)s "
            "AND b.available <> coalesce(l.s, 0) - b.debt", {"p": pid}).fetchall()
    assert lots == entries == n and unexpiring == 0
    assert mismatched == []


class WorkerKiller:
    """Every 1-2 s, SIGKILL a rules worker that has been consuming for at least a second (one
    still importing has nothing in flight to lose) and start a new one in its place."""

    def __init__(self, dep: Deployment) -> None:
        self.dep = dep
        self.kills = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WorkerKiller:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        rng = random.Random(7)
        names = ("worker-rules-0", "worker-rules-1")
        launches = dict.fromkeys(names, 1)
        consuming_since: dict[str, float] = {}
        while not self._stop.is_set():
            time.sleep(rng.uniform(1.0, 2.0))
            for n in names:
                log = (self.dep.workdir / f"{n}.log").read_text(errors="replace")
                if n not in consuming_since and log.count("worker_started") >= launches[n]:
                    consuming_since[n] = time.monotonic()
            ready = [n for n, t in consuming_since.items() if time.monotonic() - t >= 1.0]
            if not ready:
                continue
            name = rng.choice(ready)
            self.dep.signal(name, signal.SIGKILL, wait=10)
            self.kills += 1
            launches[name] += 1
            del consuming_since[name]
            self.dep.launch(name)

    def submit_paced(self, items: list[dict[str, object]], size: int = 500) -> None:
        """Submit in waves paced by the kills, so the kills land while events are in flight
        however fast the pipeline drains: the last waves go in only after the third kill."""
        for wave, start in enumerate(range(0, len(items), size)):
            deadline = time.monotonic() + 60
            while self.kills < wave // 3 and time.monotonic() < deadline:
                time.sleep(0.1)
            submit_batches(self.dep, items[start:start + size], size)


def test_rules_workers_killed_repeatedly_lose_and_double_nothing(suite: tuple[Deployment, str]) -> None:
    dep, libpq = suite
    pid = program(dep, **EXPIRY)
    run = f"crash{uuid.uuid4().hex[:6]}"
    items = events(pid, run, 5000, 200)
    with WorkerKiller(dep) as killer:
        killer.submit_paced(items)
        counts = wait_terminal(libpq, run, len(items), timeout=420)
    assert killer.kills >= 3
    assert counts.get("COMPLETED") == len(items), counts
    assert_exact_ledger(libpq, pid, items)
    assert_exact_lots(libpq, pid, len(items))


#: Pending points on: a purchase's points wait 30 days from its event time.
PENDING = {"pending": {"type": "DURATION", "duration": "P30D"}}


def test_pending_points_and_reversals_stay_exact_when_processes_die(suite: tuple[Deployment, str]) -> None:
    """Half the purchases are recent (pending), half 40 days old (active at once); rules
    workers are killed while they are processed, then the rules service is killed while
    refunds (two half reversals per event, each request sent twice) are answered; every
    refund is retried with its key until answered. Nothing is awarded or taken twice."""
    dep, libpq = suite
    pid = program(dep, **EXPIRY, **PENDING)
    run = f"pend{uuid.uuid4().hex[:6]}"
    items = events(pid, run, 1500, 60)
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(days=40)).isoformat()
    for i, item in enumerate(items):
        if i % 2:
            item["event_timestamp"] = old
    with WorkerKiller(dep) as killer:
        killer.submit_paced(items, size=150)  # ten waves: the last ones wait for the third kill
        counts = wait_terminal(libpq, run, len(items), timeout=420)
    assert killer.kills >= 3
    assert counts.get("COMPLETED") == len(items), counts
    with psycopg.connect(libpq) as conn:
        ids = dict(conn.execute("SELECT idempotency_key, id FROM ingest.events WHERE program_id = %s",
                                (pid,)).fetchall())
    refunded = items[:300]
    calls = [(str(ids[e["idempotency_key"]]), key) for e in refunded for key in ("a", "b", "a", "b")]
    random.Random(3).shuffle(calls)
    answered: dict[tuple[str, str], str] = {}

    def refund(event_id: str, key: str) -> None:
        h = {"X-API-Key": dep.api_key}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                r = httpx.post(f"{dep.base_url}/v1/events/{event_id}/reversals", headers=h, timeout=30,
                               json={"idempotency_key": key, "ratio": "0.5", "reason": "refund"})
            except httpx.HTTPError:
                r = None
            if r is not None and r.status_code == 200:
                previous = answered.setdefault((event_id, key), r.json()["reversal_id"])
                assert previous == r.json()["reversal_id"], "a retried key answers the same reversal"
                return
            assert r is None or r.status_code in (502, 503, 504), r.text
            time.sleep(0.2)
        raise AssertionError(f"refund {event_id}/{key} never answered")

    def kill_rules_service() -> None:
        time.sleep(1.0)
        dep.signal("rules", signal.SIGKILL, wait=10)
        dep.launch("rules")

    killer_thread = threading.Thread(target=kill_rules_service)
    killer_thread.start()
    def refund_all(part: list[tuple[str, str]]) -> None:
        for event_id, key in part:
            refund(event_id, key)

    workers = [threading.Thread(target=refund_all, args=(calls[i::8],)) for i in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    killer_thread.join()
    assert len(answered) == 2 * len(refunded)
    assert_exact_bank(libpq, pid, items, {str(e["idempotency_key"]) for e in refunded})


def assert_exact_bank(libpq: str, pid: str, items: list[dict[str, object]], refunded: set[str]) -> None:
    """Each participant's available + pending = what its unrefunded purchases earned; pending =
    the recent unrefunded purchases; one EARN per event, a refunded event reversed to 0
    exactly once per key; lots never below 0 and adding up to the balances."""
    expected: dict[str, Decimal] = collections.defaultdict(Decimal)
    waiting: dict[str, Decimal] = collections.defaultdict(Decimal)
    halves: list[Decimal] = []
    for e in items:
        data = e["event_data"]
        assert isinstance(data, dict)
        points = Decimal(data["amount"])
        if e["idempotency_key"] in refunded:
            halves.append(points // 2)
            continue
        expected[str(e["external_id"])] += points
        if "event_timestamp" not in e:
            waiting[str(e["external_id"])] += points
    with psycopg.connect(libpq) as conn:
        owners = dict(conn.execute("SELECT external_id, participant_id FROM ingest.events WHERE program_id = %s "
                                   "GROUP BY 1, 2", (pid,)).fetchall())
        balances = {r[0]: (Decimal(str(r[1])), Decimal(str(r[2])), Decimal(str(r[3]))) for r in conn.execute(
            "SELECT participant_id, available, pending, debt FROM rules.balances WHERE program_id = %s",
            (pid,)).fetchall()}
        kinds = dict(conn.execute("SELECT kind, count(*) FROM rules.ledger_entries WHERE program_id = %s GROUP BY 1",
                                  (pid,)).fetchall())
        per_event = conn.execute(
            "SELECT event_id, sum(amount) FROM rules.ledger_entries WHERE program_id = %s GROUP BY 1",
            (pid,)).fetchall()
        reversals = conn.execute("SELECT count(*) FROM rules.reversals r JOIN ingest.events e ON e.id = r.event_id "
                                 "WHERE e.program_id = %s", (pid,)).fetchone()
        lots = conn.execute(
            "SELECT participant_id, status, sum(remaining), min(remaining), count(*) FROM rules.lots "
            "WHERE program_id = %s GROUP BY 1, 2", (pid,)).fetchall()
    assert kinds["EARN"] == len(items), kinds
    # a half of 1 point rounds to 0 the first time: no entry; the second takes the remainder
    assert kinds["REVERSAL"] == sum(2 if h else 1 for h in halves), kinds
    assert reversals is not None and reversals[0] == 2 * len(refunded)
    assert sum(1 for _, total in per_event if total == 0) == len(refunded)
    by_status = {(r[0], r[1]): Decimal(str(r[2])) for r in lots}
    assert all(Decimal(str(r[3])) >= 0 for r in lots)
    for external_id, points in expected.items():
        available, pending, debt = balances[owners[external_id]]
        assert (available + pending, pending, debt) == (points, waiting[external_id], 0), external_id
        assert by_status.get((owners[external_id], "ACTIVE"), Decimal(0)) == available, external_id
        assert by_status.get((owners[external_id], "PENDING"), Decimal(0)) == pending, external_id


def rabbit(action: str) -> None:
    subprocess.run(["rabbitmqctl", action], check=True, capture_output=True, timeout=120)


def test_broker_outage_does_not_block_acceptance(suite: tuple[Deployment, str]) -> None:
    dep, libpq = suite
    pid = program(dep)
    run = f"broker{uuid.uuid4().hex[:6]}"
    items = events(pid, run, 300, 30)
    h = {"X-API-Key": dep.api_key}
    rabbit("stop_app")
    try:
        for e in items:
            r = httpx.post(f"{dep.base_url}/v1/events", json=e, headers=h, timeout=30)
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "PENDING"
    finally:
        rabbit("start_app")
    counts = wait_terminal(libpq, run, len(items), timeout=180)
    assert counts.get("COMPLETED") == len(items), counts
    assert_exact_ledger(libpq, pid, items)


def postgres(action: str) -> None:
    version = next(p.name for p in pathlib.Path("/etc/postgresql").iterdir())
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
                   check=True, capture_output=True, timeout=120)


def test_database_outage_answers_503_and_recovers(suite: tuple[Deployment, str]) -> None:
    dep, libpq = suite
    pid = program(dep)
    run = f"db{uuid.uuid4().hex[:6]}"
    items = events(pid, run, 100, 10)
    h = {"X-API-Key": dep.api_key}
    accepted: list[str] = []
    statuses: collections.Counter[int] = collections.Counter()
    postgres("stop")
    try:
        for e in items[:50]:
            r = httpx.post(f"{dep.base_url}/v1/events", json=e, headers=h, timeout=30)
            statuses[r.status_code] += 1
            if r.status_code == 200:
                accepted.append(str(e["idempotency_key"]))
            else:
                assert r.status_code == 503, r.text
                assert r.json()["error"]["code"]
    finally:
        postgres("start")
    assert statuses[503] > 0, statuses
    # Whatever was answered 200 must be stored; the rest is retried by the partner, as a
    # partner would on 503, and the suite must accept it without a restart of its own.
    deadline = time.time() + 60
    for e in items:
        while True:
            r = httpx.post(f"{dep.base_url}/v1/events", json=e, headers=h, timeout=30)
            if r.status_code == 200 or time.time() > deadline:
                break
            assert r.status_code == 503, r.text
            time.sleep(0.5)
        assert r.status_code == 200, r.text
    counts = wait_terminal(libpq, run, len(items), timeout=180)
    assert counts.get("COMPLETED") == len(items), counts
    with psycopg.connect(libpq) as conn:
        stored = {r[0] for r in conn.execute(
            "SELECT idempotency_key FROM ingest.events WHERE idempotency_key = ANY(%s)", (accepted,)).fetchall()}
    assert stored == set(accepted)
    assert_exact_ledger(libpq, pid, items)


class _Receiver(http.server.BaseHTTPRequestHandler):
    seen: collections.Counter[str] = collections.Counter()

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        self.rfile.read(length)
        type(self).seen[self.headers["webhook-id"]] += 1
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def test_webhook_receiver_down_then_up_gets_everything_once(suite: tuple[Deployment, str]) -> None:
    dep, libpq = suite
    pid = program(dep)
    h = {"X-API-Key": dep.api_key}
    # Below the ephemeral range: while the receiver is down, the notify worker's connection
    # attempts to a closed ephemeral port can take it as their own source port (a TCP
    # self-connect), and the receiver then failed to bind it again ("Address already in use").
    port = free_port()
    # After the database outage of the previous test, a service whose pooled connections died
    # answers its next request 503 (by design: no pre-ping) and reconnects; retry as a partner would.
    for _ in range(10):
        r = httpx.post(f"{dep.base_url}/v1/webhook-endpoints", headers=h, timeout=30, json={
            "url": f"http://127.0.0.1:{port}/hook", "enabled_events": ["event.completed", "points.awarded"]})
        if r.status_code != 503:
            break
        time.sleep(0.5)
    assert r.status_code == 200, r.text
    run = f"hook{uuid.uuid4().hex[:6]}"
    items = events(pid, run, 40, 5)
    submit_batches(dep, items)
    assert wait_terminal(libpq, run, len(items), timeout=120).get("COMPLETED") == len(items)
    time.sleep(3)  # several attempts fail against the closed port
    _Receiver.seen.clear()
    server = socketserver.ThreadingTCPServer(("127.0.0.1", port), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        deadline = time.time() + 120
        while len(_Receiver.seen) < 2 * len(items) and time.time() < deadline:
            time.sleep(0.5)
        time.sleep(2)
    finally:
        server.shutdown()
        server.server_close()
    assert len(_Receiver.seen) == 2 * len(items), len(_Receiver.seen)
    assert max(_Receiver.seen.values()) == 1


def test_sigterm_on_every_process_under_load_loses_nothing(suite: tuple[Deployment, str]) -> None:
    dep, libpq = suite
    pid = program(dep)
    run = f"term{uuid.uuid4().hex[:6]}"
    items = events(pid, run, 2000, 100)
    submit_batches(dep, items[:1000])
    order = ["worker-rules-0", "worker-rules-1", "worker-ingest", "worker-notify", "rules", "identity", "ingest",
             "notify", "gateway"]
    for name in order:
        code = dep.signal(name, signal.SIGTERM, wait=60)
        if name == "gateway":
            # uvicorn drains its connections, then re-raises the signal it caught (so the
            # exit status says SIGTERM); its log tells a graceful stop from a kill.
            assert code in (0, -signal.SIGTERM)
            assert "Finished server process" in (dep.workdir / "gateway.log").read_text(errors="replace")
        else:
            assert code == 0, f"{name} did not stop cleanly on SIGTERM"
        dep.launch(name)
    dep.wait_ready()
    submit_batches(dep, items[1000:])
    counts = wait_terminal(libpq, run, len(items), timeout=300)
    assert counts.get("COMPLETED") == len(items), counts
    assert_exact_ledger(libpq, pid, items)


# -- a hostile tenant -----------------------------------------------------------------------

#: Rule expressions a hostile tenant tries on save and in simulations: each is a 400.
REFUSED_ON_SAVE = {
    "deep nesting": "[" * 20000 + "1" + "]" * 20000,
    "nesting past the limit": "[" * 40 + "1" + "]" * 40,
    "huge range": "len(map([1..100000000], #))",
    "quadratic map": "sum(map([1..10000], sum(map([1..10000], #))))",
    "hidden in a branch": "properties.amount > 0 ? 1 : sum(map([1..10000], sum(map([1..10000], #))))",
    "huge string": "len('" + "a" * 5000 + "')",
}
#: Rules that pass every save-time check (a sample event has n = 1) and blow up on real data.
COSTLY_ON_DATA = {
    "data-driven quadratic": "sum(map([1..properties.n], sum(map([1..properties.n], #))))",
    "data-driven allocation": "len(map([1..properties.n], map([1..properties.n], #)))",
}


def latest_bench_accept_p99_ms() -> float:
    """The REST accept p99 of the latest make bench, measured while the pipeline works."""
    import json

    results = sorted((pathlib.Path(__file__).parents[2] / "bench" / "results").glob("2*.json"))
    assert results, "make bench has no committed results"
    return float(json.loads(results[-1].read_text())["rest_half_load"]["p99_ms"])


class Prober:
    """The well-behaved tenant's single accepts, one after another with a short pause, for as
    long as it runs; their latencies in milliseconds."""

    def __init__(self, dep: Deployment, pid: str, run: str) -> None:
        self.dep, self.pid, self.run = dep, pid, run
        self.latencies: list[float] = []
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._probe, daemon=True)

    def __enter__(self) -> Prober:
        self._stop.clear()
        self.latencies = []
        self._thread = threading.Thread(target=self._probe, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _probe(self) -> None:
        h = {"X-API-Key": self.dep.api_key}
        while not self._stop.is_set():
            t = time.monotonic()
            r = httpx.post(f"{self.dep.base_url}/v1/events", headers=h, timeout=30, json={
                "program_id": self.pid, "idempotency_key": f"{self.run}-probe-{self.sent}", "external_id": "probe",
                "event_type": "purchase", "event_data": {"amount": 1}})
            self.latencies.append((time.monotonic() - t) * 1000)
            assert r.status_code == 200, r.text
            self.sent += 1
            time.sleep(0.02)

    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[max(0, int(len(ordered) * 0.99) - 1)]


def test_a_hostile_tenant_costs_another_tenant_nothing(suite: tuple[Deployment, str]) -> None:
    dep, libpq = suite
    good = program(dep)
    hostile_key = dep.create_key(f"hostile-{uuid.uuid4().hex[:6]}")
    hk = {"X-API-Key": hostile_key}
    base = dep.base_url
    r = httpx.post(f"{base}/v1/programs", json={"name": "hostile"}, headers=hk, timeout=30)
    assert r.status_code == 200, r.text
    bad = r.json()["program_id"]
    run = f"calm{uuid.uuid4().hex[:6]}"
    items = events(good, run, 5000, 200)
    half = len(items) // 2
    refusals: list[tuple[str, int, str]] = []
    costly_ids: list[str] = []
    hostile_events = 40

    def attack() -> None:
        for name, formula in REFUSED_ON_SAVE.items():
            r = httpx.post(f"{base}/v1/programs/{bad}/rules", headers=hk, timeout=60,
                           json={"name": name, "formula": formula})
            refusals.append((name, r.status_code, r.text[:200]))
            r = httpx.post(f"{base}/v1/programs/{bad}/rules:simulate", headers=hk, timeout=60, json={
                "event_type": "purchase", "event_data": {"n": 1}, "draft_rules": [{"name": name, "formula": formula}]})
            refusals.append((f"simulate {name}", r.status_code, r.text[:200]))
        for name, formula in COSTLY_ON_DATA.items():
            r = httpx.post(f"{base}/v1/programs/{bad}/rules", headers=hk, timeout=60,
                           json={"name": name, "formula": formula})
            assert r.status_code == 200, r.text
            costly_ids.append(r.json()["rule_id"])
        for i in range(hostile_events):
            httpx.post(f"{base}/v1/events", headers=hk, timeout=60, json={
                "program_id": bad, "idempotency_key": f"{run}-hostile-{i}", "external_id": f"h-{i % 3}",
                "event_type": "purchase", "event_data": {"n": 12000}})
            time.sleep(0.1)

    prober = Prober(dep, good, run)
    # The same load twice, the second time with the hostile tenant at work: its accepts'
    # p99 is compared with the first's, of the same run (this machine's speed drifts).
    with prober:
        submit_batches(dep, items[:half])
        wait_terminal(libpq, run, half, timeout=300)
    calm_p99, calm_count = prober.p99(), len(prober.latencies)
    attacker = threading.Thread(target=attack, daemon=True)
    with prober:
        attacker.start()
        submit_batches(dep, items[half:])
        attacker.join(300)
    hostile_p99 = prober.p99()
    assert not attacker.is_alive()
    assert all(code == 400 for _, code, _ in refusals), refusals
    probes = [{"program_id": good, "event_type": "purchase", "external_id": "probe", "event_data": {"amount": 1},
               "idempotency_key": f"{run}-probe-{i}"} for i in range(prober.sent)]
    counts = wait_terminal(libpq, run, len(items) + len(probes) + hostile_events, timeout=300)
    with psycopg.connect(libpq) as conn:
        mine = dict(conn.execute("SELECT status, count(*) FROM ingest.events WHERE program_id = %s "
                                 "GROUP BY status", (good,)).fetchall())
        theirs = dict(conn.execute("SELECT status, count(*) FROM ingest.events WHERE program_id = %s "
                                   "GROUP BY status", (bad,)).fetchall())
        suspended = conn.execute("SELECT count(*) FROM rules.rules WHERE id = ANY(%s) AND status = 'SUSPENDED'",
                                 (costly_ids,)).fetchone()
    assert mine == {"COMPLETED": len(items) + len(probes)}, (mine, counts)
    assert sum(theirs.values()) == hostile_events and set(theirs) <= {"COMPLETED", "FAILED"}, theirs
    assert suspended is not None and suspended[0] == len(costly_ids)
    assert_exact_ledger(libpq, good, [*items, *probes])
    assert calm_count >= 20 and len(prober.latencies) >= 20
    print(f"accept p99: {calm_p99:.0f} ms calm ({calm_count} accepts), {hostile_p99:.0f} ms under attack "
          f"({len(prober.latencies)})")
    # Within the bench's figure for accepts while the pipeline works, or at worst twice what
    # the same load gave without the hostile tenant a moment before.
    assert hostile_p99 <= max(latest_bench_accept_p99_ms(), 2 * calm_p99), (hostile_p99, calm_p99)


def _until_answered(client: httpx.Client, path: str, body: dict[str, object], deadline: float) -> httpx.Response:
    """POST until the service answers for itself (2xx or 4xx): while the rules service is
    down the gateway answers 503, or the call dies with the connection; the same body and
    idempotency key make every retry safe."""
    while True:
        try:
            r = client.post(path, json=body)
            if r.status_code < 500:
                return r
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{path} never answered"
        time.sleep(0.2)


def test_redemptions_while_the_rules_service_is_killed_move_points_once(suite: tuple[Deployment, str]) -> None:
    """Holds, captures, cancels and refunds, each retried with its key until answered, while
    the rules service process (which serves them) is SIGKILLed and restarted over and over:
    in the end every redemption moved its points exactly once."""
    dep, libpq = suite
    pid = program(dep)
    deadline = time.monotonic() + 600
    with httpx.Client(base_url=dep.base_url, headers={"X-API-Key": dep.api_key}, timeout=30) as client:
        people = []
        for i in range(6):
            r = client.post("/v1/participants", json={"identities": [
                {"type": "EXTERNAL", "value": f"r-{uuid.uuid4()}"}]})
            assert r.status_code == 200, r.text
            people.append(r.json()["participant_id"])
            r = _until_answered(client, f"/v1/programs/{pid}/participants/{people[-1]}/adjustments",
                                {"amount": "1000", "reason": "float", "idempotency_key": f"float-{i}"}, deadline)
            assert r.status_code == 200, r.text
        stop = threading.Event()
        kills = 0

        def killer() -> None:
            # SIGKILL the rules service once it has served again for a moment (one still
            # starting serves nothing to lose), five times, then let the shoppers finish.
            nonlocal kills
            rng = random.Random(23)
            while not stop.is_set() and kills < 5:
                while not stop.is_set():
                    with contextlib.suppress(httpx.HTTPError):
                        if client.get(f"/v1/programs/{pid}/rewards").status_code == 200:
                            break
                    time.sleep(0.2)
                time.sleep(rng.uniform(0.5, 1.5))
                dep.signal("rules", signal.SIGKILL, wait=10)
                kills += 1
                dep.launch("rules")

        def shopper(person: str, seed: int) -> list[tuple[str, str]]:
            rng = random.Random(seed)
            done = []
            for n in range(10):
                # Paced by the kills, so that the kills land while redemptions are in flight
                # however fast the shoppers are on the day.
                while kills < min(5, n // 2) and time.monotonic() < deadline:
                    time.sleep(0.05)
                key = f"{person}-{n}"
                r = _until_answered(client, f"/v1/programs/{pid}/participants/{person}/redemptions",
                                    {"idempotency_key": key, "points": str(rng.randint(5, 40))}, deadline)
                assert r.status_code == 200, r.text
                rid = r.json()["redemption_id"]
                step = rng.choice(("capture", "cancel", "refund"))
                path = f"/v1/redemptions/{rid}:{'cancel' if step == 'cancel' else 'capture'}"
                r = _until_answered(client, path, {}, deadline)
                assert r.status_code == 200, r.text
                if step == "refund":
                    r = _until_answered(client, f"/v1/redemptions/{rid}:refund",
                                        {"idempotency_key": f"{key}-refund", "points": "3"}, deadline)
                    assert r.status_code == 200, r.text
                done.append((rid, r.json()["state"]))
            return done

        t = threading.Thread(target=killer, daemon=True)
        t.start()
        try:
            with ThreadPoolExecutor(len(people)) as pool:
                outcomes = [o for found in pool.map(shopper, people, range(len(people))) for o in found]
        finally:
            stop.set()
            t.join(30)
        dep.wait_ready()
    assert kills >= 3
    with psycopg.connect(libpq) as conn:
        states = dict(conn.execute("SELECT id, state FROM rules.redemptions WHERE program_id = %s", (pid,)).fetchall())
        assert states == dict(outcomes)
        for person in people:
            available, = conn.execute("SELECT available FROM rules.balances WHERE program_id = %s AND "
                                      "participant_id = %s", (pid, person)).fetchone()
            held, spent, refunded = conn.execute(
                "SELECT coalesce(sum(points) FILTER (WHERE state = 'HELD'), 0), coalesce(sum(captured_points), 0), "
                "coalesce(sum(refunded_points), 0) FROM rules.redemptions WHERE program_id = %s AND "
                "participant_id = %s", (pid, person)).fetchone()
            assert Decimal(available) + held + spent - refunded == 1000, person
            lots, = conn.execute("SELECT coalesce(sum(remaining), 0) FROM rules.lots WHERE program_id = %s AND "
                                 "participant_id = %s AND status = 'ACTIVE'", (pid, person)).fetchone()
            assert Decimal(lots) == Decimal(available), person
        # each hold, release and refund is one ledger entry: none is written twice by a retry
        twice = conn.execute("SELECT source FROM rules.ledger_entries WHERE program_id = %s GROUP BY source "
                             "HAVING count(*) > 1", (pid,)).fetchall()
        assert twice == []
        entries, = conn.execute("SELECT count(*) FROM rules.ledger_entries WHERE program_id = %s AND kind = "
                                "'REDEEM'", (pid,)).fetchone()
        assert entries == len(outcomes)
