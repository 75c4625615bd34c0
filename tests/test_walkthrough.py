"""End to end: start the suite as the README says, drive the walkthrough over REST and gRPC.

The per-service test needs PostgreSQL and RabbitMQ and fails (never skips) without them.
"""

from __future__ import annotations

import os
import pathlib
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import grpc
import httpx
import pytest
from accrual.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from accrual.rules.v1 import rules_pb2, rules_pb2_grpc
from accrual_platform.testing import AMQP_URL as AMQP
from accrual_platform.testing import PG_URL as PG
from accrual_platform.testing import SECRETS_KEY, assert_no_secrets, free_port, wait_http
from accrual_platform.testing import stop_processes as stop

BIN = pathlib.Path(sys.executable).parent / "accrual"


def walkthrough(base: str, key: str) -> tuple[str, str]:
    h = {"X-API-Key": key}
    program = httpx.post(f"{base}/v1/programs", json={"name": "Demo"}, headers=h).json()
    pid = program["program_id"]
    assert program["on_unknown_participant"] == "CREATE"
    r = httpx.post(f"{base}/v1/programs/{pid}/rules", headers=h, json={
        "name": "1 point per dollar", "event_type": "purchase",
        "condition": "properties.amount > 0", "formula": "properties.amount * 1"})
    assert r.status_code == 200, r.text
    body = {"program_id": pid, "idempotency_key": f"order-{uuid.uuid4()}", "external_id": "user_abc123",
            "event_type": "purchase", "event_data": {"amount": 125}}
    r = httpx.post(f"{base}/v1/events", json=body, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    event = r.json()
    assert event["status"] == "PENDING" and event["deduplicated"] is False
    assert "X-Request-Id" in r.headers
    deadline = time.time() + 30
    while time.time() < deadline:
        event = httpx.get(f"{base}/v1/events/{event['event_id']}", headers=h).json()
        if event["status"] == "COMPLETED":
            break
        time.sleep(0.2)
    assert event["status"] == "COMPLETED", event
    assert event["rule_evaluations"][0]["matched"] is True
    balance = httpx.get(f"{base}/v1/programs/{pid}/participants/{event['participant_id']}/balance",
                        headers=h).json()
    assert balance["available"] == 125 and balance["lifetime_earned"] == 125
    again = httpx.post(f"{base}/v1/events", json={**body, "event_data": {"amount": 125.0}}, headers=h).json()
    assert again["event_id"] == event["event_id"] and again["deduplicated"] is True
    conflict = httpx.post(f"{base}/v1/events", json={**body, "event_data": {"amount": 1}}, headers=h)
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "idempotency_conflict"
    assert httpx.post(f"{base}/v1/events", json=body).status_code == 401
    bad = httpx.post(f"{base}/v1/events", json={**body, "external_id": None, "participant_id": "x"}, headers=h)
    assert bad.status_code == 400 and bad.json()["error"]["details"][0]["field"] == "participant_id"
    assert httpx.get(f"{base}/openapi.json").json()["paths"]["/v1/events"]["post"]
    return pid, event["participant_id"]


def wait_for_outcome(base: str, key: str, pid: str) -> None:
    """Issue 20: the outcome in the answer itself, pushed from the worker that recorded it
    (per service: another process, through PostgreSQL NOTIFY to the ingest server's listener)."""
    body = {"program_id": pid, "idempotency_key": f"wait-{uuid.uuid4()}", "external_id": "user_abc123",
            "event_type": "purchase", "event_data": {"amount": 30}}
    started = time.monotonic()
    waited = httpx.post(f"{base}/v1/events", json=body, headers={"X-API-Key": key, "Prefer": "wait=10"},
                        timeout=30)
    # Woken by the outcome, not by the deadline (after which the event would be read anyway).
    assert time.monotonic() - started < 8
    assert waited.status_code == 200 and waited.headers["Preference-Applied"] == "wait=10", waited.text
    assert waited.json()["status"] == "COMPLETED" and waited.json()["points_awarded"] == 30, waited.text


def grpc_walkthrough(address: str, key: str, pid: str) -> None:
    md = [("x-api-key", key)]
    with grpc.insecure_channel(address) as ch:
        ingest = ingest_pb2_grpc.IngestServiceStub(ch)
        rules = rules_pb2_grpc.RulesServiceStub(ch)
        event = ingest.SubmitEvent(ingest_pb2.SubmitEventRequest(
            program_id=pid, idempotency_key=f"grpc-{uuid.uuid4()}", external_id="grpc_user",
            event_type="purchase", event_data={"amount": 40}), metadata=md)
        assert event.status == ingest_pb2.EVENT_STATUS_PENDING
        deadline = time.time() + 30
        while event.status != ingest_pb2.EVENT_STATUS_COMPLETED and time.time() < deadline:
            time.sleep(0.2)
            event = ingest.GetEvent(ingest_pb2.GetEventRequest(event_id=event.event_id), metadata=md)
        assert event.status == ingest_pb2.EVENT_STATUS_COMPLETED
        balance = rules.GetBalance(rules_pb2.GetBalanceRequest(
            program_id=pid, participant_id=event.participant_id), metadata=md)
        assert balance.available == "40"
        with pytest.raises(grpc.RpcError) as info:
            ingest.GetEvent(ingest_pb2.GetEventRequest(event_id=str(uuid.uuid4())), metadata=md)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


def assert_console_served(base: str) -> None:
    """The gateway serves the operator console's page (any /console/ path) with its headers."""
    r = httpx.get(f"{base}/console/programs")
    assert r.status_code == 200 and "<title>Accrual console</title>" in r.text, r.text[:200]
    assert r.headers["content-security-policy"].startswith("default-src 'self'")
    assert r.headers["x-frame-options"] == "DENY"


@pytest.mark.e2e
def test_embedded_make_run(tmp_path: pathlib.Path) -> None:
    http_port, grpc_port = free_port(), free_port()
    env = {**os.environ, "GATEWAY_PORT": str(http_port), "GRPC_PORT": str(grpc_port)}
    env.pop("DATABASE_URL", None)
    env.pop("BROKER_URL", None)
    log_path = tmp_path / "suite.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([str(BIN), "run"], cwd=tmp_path, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{http_port}/readyz", [proc])
        key = (tmp_path / "var" / "admin_key").read_text().strip()
        pid, _ = walkthrough(f"http://127.0.0.1:{http_port}", key)
        grpc_walkthrough(f"127.0.0.1:{grpc_port}", key, pid)
        wait_for_outcome(f"http://127.0.0.1:{http_port}", key, pid)
        assert_console_served(f"http://127.0.0.1:{http_port}")
        assert (tmp_path / "var" / "ingest.db").exists()
        # var/ holds the internal token, the admin key and the databases: owner-only (SPEC 8)
        var = tmp_path / "var"
        assert stat.S_IMODE(var.stat().st_mode) == 0o700
        for path in var.iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    finally:
        stop([proc])
        log.close()
    # the banner shows the admin key, as make run promises; no log line ever does
    lines = log_path.read_text().splitlines(keepends=True)
    banner = [line for line in lines if line.startswith(("  admin API key", "Try:  curl"))]
    assert len(banner) == 2 and all(key in line for line in banner)
    assert f"  console:  http://127.0.0.1:{http_port}/console/" in "".join(lines)
    logged = tmp_path / "suite-without-banner.log"
    logged.write_text("".join(line for line in lines if line not in banner))
    assert_no_secrets([logged], [key, (tmp_path / "var" / "internal_token").read_text()])


@pytest.fixture
def per_service(tmp_path: pathlib.Path) -> Iterator[tuple[str, str, str, dict[str, str], str]]:
    """The suite as processes; on teardown, none of their logs may hold the key or token."""
    ports = {name: free_port() for name in ("identity", "ingest", "rules", "notify", "gateway")}
    env = {**os.environ, "DATABASE_URL": PG, "BROKER_URL": AMQP,
           "INTERNAL_TOKEN": uuid.uuid4().hex, "LOG_FORMAT": "json", "SECRETS_KEY": SECRETS_KEY,
           "IDENTITY_ADDR": f"127.0.0.1:{ports['identity']}", "INGEST_ADDR": f"127.0.0.1:{ports['ingest']}",
           "RULES_ADDR": f"127.0.0.1:{ports['rules']}", "NOTIFY_ADDR": f"127.0.0.1:{ports['notify']}",
           "GATEWAY_PORT": str(ports["gateway"])}
    subprocess.run([str(BIN), "migrate"], env=env, check=True)
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    key = subprocess.run([str(BIN), "keys", "create", "--tenant", tenant, "--scopes", "admin"],
                         env=env, check=True, capture_output=True, text=True).stdout.strip()
    procs = []
    logs = []
    commands: list[tuple[list[str], dict[str, str]]] = [
        (["serve", s], {"GRPC_PORT": str(ports[s])}) for s in ("identity", "ingest", "rules", "notify")]
    commands += [(["worker", q], {}) for q in ("rules", "ingest", "notify")]
    commands += [(["gateway"], {})]
    for args, extra in commands:
        log = open(tmp_path / f"{'-'.join(args)}.log", "wb")
        logs.append(log)
        procs.append(subprocess.Popen([str(BIN), *args], env={**env, **extra}, stdout=log,
                                      stderr=subprocess.STDOUT))
    try:
        wait_http(f"http://127.0.0.1:{ports['gateway']}/readyz", procs)
        yield f"http://127.0.0.1:{ports['gateway']}", key, f"127.0.0.1:{ports['ingest']}", env, tenant
    finally:
        stop(procs)
        for log in logs:
            log.close()
    assert_no_secrets([pathlib.Path(log.name) for log in logs], [key, env["INTERNAL_TOKEN"]])


@pytest.mark.integration
def test_per_service_on_postgres_and_rabbitmq(
        per_service: tuple[str, str, str, dict[str, str], str]) -> None:
    base, key, ingest_address, env, tenant = per_service
    pid, _ = walkthrough(base, key)
    md = [("x-api-key", key)]
    with grpc.insecure_channel(ingest_address) as ch:
        events = ingest_pb2_grpc.IngestServiceStub(ch).ListEvents(
            ingest_pb2.ListEventsRequest(program_id=pid), metadata=md)
        assert len(events.events) == 1 and events.events[0].status == ingest_pb2.EVENT_STATUS_COMPLETED
    wait_for_outcome(base, key, pid)
    assert_console_served(base)
    revoke_with_the_cli(base, key, env, tenant, pid)


def revoke_with_the_cli(base: str, key: str, env: dict[str, str], tenant: str, pid: str) -> None:
    """`accrual keys list` shows the key by id and prefix only; `accrual keys revoke` makes
    every process (gateway, ingest, rules, each with its own key cache) refuse it within a
    second."""
    listed = subprocess.run([str(BIN), "keys", "list", "--tenant", tenant], env=env, check=True,
                            capture_output=True, text=True).stdout
    assert key not in listed and key[:10] in listed
    key_id = next(line.split()[0] for line in listed.splitlines() if key[:10] in line)
    h = {"X-API-Key": key}
    routes = [f"{base}/v1/events?program_id={pid}", f"{base}/v1/programs/{pid}", f"{base}/v1/keys"]
    assert [httpx.get(url, headers=h).status_code for url in routes] == [200, 200, 200]

    done = subprocess.run([str(BIN), "keys", "revoke", key_id], env=env, check=True,
                          capture_output=True, text=True).stdout
    revoked_at = time.monotonic()

    assert f"key {key_id}" in done and "revoked" in done
    for url in routes:
        while (code := httpx.get(url, headers=h).status_code) != 401:
            assert code == 200 and time.monotonic() - revoked_at < 1.0, (url, code)
            time.sleep(0.02)
    again = subprocess.run([str(BIN), "keys", "revoke", key_id], env=env, check=True,
                           capture_output=True, text=True).stdout
    assert "already revoked" in again
    unknown = subprocess.run([str(BIN), "keys", "revoke", str(uuid.uuid4())], env=env,
                             capture_output=True, text=True)
    assert unknown.returncode != 0 and "no API key" in unknown.stderr
