"""The embedded suite after kill -9 (issue 18, finding 12): its in-process broker's messages
died with it, so at start it announces every unfinished event again instead of leaving them
PENDING until the stale sweep (two minutes). Each completes exactly once."""

from __future__ import annotations

import os
import pathlib
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from typing import Any

import httpx
import pytest
from accrual_platform.testing import free_port, wait_http
from accrual_platform.testing import stop_processes as stop

BIN = pathlib.Path(sys.executable).parent / "accrual"
pytestmark = pytest.mark.e2e
EVENTS, PEOPLE = 1000, 10


def ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    return r.json()


def unfinished(var: pathlib.Path) -> int:
    with sqlite3.connect(var / "ingest.db") as db:
        return int(db.execute("SELECT count(*) FROM events WHERE completed_at IS NULL").fetchone()[0])


def unrelayed(var: pathlib.Path) -> int:
    """Outbox rows not yet handed to the broker (a restart relays these anyway)."""
    with sqlite3.connect(var / "ingest.db") as db:
        return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])


def test_events_left_unfinished_by_kill_9_complete_soon_after_a_restart_exactly_once(
        tmp_path: pathlib.Path) -> None:
    port, grpc_port = free_port(), free_port()
    # The stale sweep keeps its defaults (every 30 s, events older than 120 s): only the
    # sweep at start can finish the events within this test's deadline.
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "BROKER_URL", "STALE_EVENT_AFTER_SECONDS", "STALE_EVENT_SWEEP_SECONDS")}
    env.update(GATEWAY_PORT=str(port), GRPC_PORT=str(grpc_port))

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([str(BIN), "run"], cwd=tmp_path, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(f"http://127.0.0.1:{port}/readyz", [proc])
        return proc

    proc = start()
    try:
        key = (tmp_path / "var" / "admin_key").read_text().strip()
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key}, timeout=60)
        pid = ok(api.post("/v1/programs", json={"name": "restart"}))["program_id"]
        ok(api.post(f"/v1/programs/{pid}/rules", json={"name": "per unit", "formula": "properties.amount * 1"}))
        people = [f"p-{uuid.uuid4().hex[:8]}" for _ in range(PEOPLE)]
        results = ok(api.post("/v1/events/batch", json={"events": [
            {"program_id": pid, "idempotency_key": f"k-{i}", "external_id": people[i % PEOPLE],
             "event_type": "purchase", "event_data": {"amount": 1}} for i in range(EVENTS)]}))["results"]
        # Kill once every announcement is in the in-process broker, none in the outbox: the
        # messages that die with the process are then the only ones there were.
        deadline = time.time() + 10
        while unrelayed(tmp_path / "var") and time.time() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        stop([proc])
    assert [r["status"] for r in results] == ["accepted"] * EVENTS
    event_ids = [r["event_id"] for r in results]
    left = unfinished(tmp_path / "var")
    assert left > 0, "every event finished before the kill: nothing to test"
    assert unrelayed(tmp_path / "var") == 0

    proc = start()
    try:
        started = time.time()
        while unfinished(tmp_path / "var") and time.time() - started < 60:
            time.sleep(0.5)
        assert unfinished(tmp_path / "var") == 0, f"{left} unfinished at the kill, still some after 60 s"
        events = [ok(api.get(f"/v1/events/{e}")) for e in event_ids]
        assert {e["status"] for e in events} == {"COMPLETED"}
        assert {e["points_awarded"] for e in events} == {1}
        participants = {e["participant_id"] for e in events}
        assert len(participants) == PEOPLE
        # exactly once: every participant has one point per event of theirs, no more
        balances = [ok(api.get(f"/v1/programs/{pid}/participants/{p}/balance"))["available"] for p in participants]
        assert balances == [EVENTS // PEOPLE] * PEOPLE
        api.close()
    finally:
        stop([proc])
