"""The suite as processes on PostgreSQL and RabbitMQ, driven over REST: `accrual demo`, events
through the seed rules, a redelivered message after a simulated crash, rule versions,
simulation, adjustments and event types through the generated routes.

Needs PostgreSQL and RabbitMQ; fails (never skips) without them.
"""

from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from accrual.messages.v1 import messages_pb2
from accrual_platform import queue
from accrual_platform.testing import AMQP_URL, PG_URL, SECRETS_KEY
from accrual_platform.testing import free_port as _free_port
from accrual_platform.testing import wait_http as _wait_ready

BIN = pathlib.Path(sys.executable).parent / "accrual"
pytestmark = [pytest.mark.integration, pytest.mark.e2e]


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("suite")
    ports = {name: _free_port() for name in ("identity", "ingest", "rules", "notify", "gateway")}
    env = {**os.environ, "DATABASE_URL": PG_URL, "BROKER_URL": AMQP_URL,
           "INTERNAL_TOKEN": uuid.uuid4().hex, "LOG_FORMAT": "json", "SECRETS_KEY": SECRETS_KEY,
           **{f"{s.upper()}_ADDR": f"127.0.0.1:{ports[s]}" for s in ("identity", "ingest", "rules", "notify")},
           "GATEWAY_PORT": str(ports["gateway"])}
    subprocess.run([str(BIN), "migrate"], env=env, check=True, capture_output=True)
    tenant = f"rules-e2e-{uuid.uuid4().hex[:8]}"
    key = subprocess.run([str(BIN), "keys", "create", "--tenant", tenant, "--scopes", "admin"],
                         env=env, check=True, capture_output=True, text=True).stdout.strip()
    commands: list[tuple[list[str], dict[str, str]]] = [
        (["serve", s], {"GRPC_PORT": str(ports[s])}) for s in ("identity", "ingest", "rules", "notify")]
    commands += [(["worker", q], {}) for q in ("rules", "ingest", "notify")] + [(["gateway"], {})]
    procs, logs = [], []
    for args, extra in commands:
        log = open(tmp / f"{'-'.join(args)}.log", "wb")
        logs.append(log)
        procs.append(subprocess.Popen([str(BIN), *args], env={**env, **extra}, stdout=log,
                                      stderr=subprocess.STDOUT))
    base = f"http://127.0.0.1:{ports['gateway']}"
    try:
        _wait_ready(f"{base}/readyz", procs, timeout=150)
        yield {"base": base, "key": key, "tenant": tenant, "env": env}
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        for log in logs:
            log.close()


def _submit_and_wait(base: str, h: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(f"{base}/v1/events", json=body, headers=h)
    assert r.status_code == 200, r.text
    return _wait_done(base, h, r.json()["event_id"])


def _wait_done(base: str, h: dict[str, str], event_id: str) -> dict[str, Any]:
    deadline = time.time() + 30
    while time.time() < deadline:
        event: dict[str, Any] = httpx.get(f"{base}/v1/events/{event_id}", headers=h).json()
        if event["status"] in ("COMPLETED", "FAILED"):
            return event
        time.sleep(0.2)
    raise AssertionError(f"event {event_id} never finished: {event}")


def test_demo_events_redelivery_and_the_rest_routes(suite: dict[str, Any]) -> None:
    base, key = suite["base"], suite["key"]
    h = {"X-API-Key": key}
    demo = subprocess.run([str(BIN), "demo", "--base-url", base, "--api-key", key], env=suite["env"],
                          check=True, capture_output=True, text=True).stdout
    pid = re.search(r"Demo program ([0-9a-f-]{36})", demo).group(1)  # type: ignore[union-attr]
    assert "/v1/events" in demo and "rules:simulate" in demo
    rules = httpx.get(f"{base}/v1/programs/{pid}/rules", headers=h).json()["rules"]
    assert [r["name"] for r in rules] == ["1 point per dollar", "Big-order bonus", "2x on electronics"]

    user = f"user-{uuid.uuid4().hex[:8]}"
    first = _submit_and_wait(base, h, {"program_id": pid, "idempotency_key": f"o-{uuid.uuid4()}",
                                       "external_id": user, "event_type": "purchase",
                                       "event_data": {"amount": 125}})
    assert first["status"] == "COMPLETED" and first["points_awarded"] == 175
    assert [(e["matched"], e["points"], e["rule_version"]) for e in first["rule_evaluations"]] == [
        (True, 125, 1), (True, 50, 1), (False, 0, 1)]
    assert first["rule_evaluations"][2]["skip_reason"] == "condition_false"
    participant = first["participant_id"]
    second = _submit_and_wait(base, h, {"program_id": pid, "idempotency_key": f"o-{uuid.uuid4()}",
                                        "external_id": user, "event_type": "purchase",
                                        "event_data": {"amount": 200, "category": "electronics"}})
    assert second["points_awarded"] == 650
    balance_url = f"{base}/v1/programs/{pid}/participants/{participant}/balance"
    balance = httpx.get(balance_url, headers=h).json()
    # the demo program's points expire at the end of the month a year on
    assert [e["points"] for e in balance.pop("expiring")] == [825]
    assert balance == {
        "program_id": pid, "participant_id": participant, "available": 825,
        "lifetime_earned": 825, "tier": "silver", "pending": 0, "held": 0, "debt": 0}

    # A worker that died after writing the ledger but before ingest heard back: the event is
    # PROCESSING again and its message is delivered a second time. Nothing is awarded twice.
    engine = sa.create_engine(PG_URL)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE ingest.events SET status = 'PROCESSING' WHERE id = :id"),
                         {"id": first["event_id"]})
            tenant_id = conn.execute(sa.text("SELECT id FROM identity.tenants WHERE name = :n"),
                                     {"n": suite["tenant"]}).scalar_one()
    finally:
        engine.dispose()
    broker = queue.make_broker(AMQP_URL)
    try:
        queue.enqueue(broker, queue.RULES_QUEUE, "evaluate_events",
                      messages_pb2.EventsAccepted(tenant_id=tenant_id, event_ids=[first["event_id"]]))
    finally:
        broker.close()
    again = _wait_done(base, h, first["event_id"])
    assert again["status"] == "COMPLETED" and again["points_awarded"] == 175
    assert httpx.get(balance_url, headers=h).json()["available"] == 825
    txs = httpx.get(f"{base}/v1/programs/{pid}/participants/{participant}/transactions", headers=h).json()
    assert sorted(t["amount"] for t in txs["transactions"]) == [50, 50, 125, 200, 400]
    assert {t["kind"] for t in txs["transactions"]} == {"EARN"}

    # Rules: PATCH makes version 2, DELETE archives (version 3), old versions stay readable.
    rule_id = rules[1]["rule_id"]
    patched = httpx.patch(f"{base}/v1/programs/{pid}/rules/{rule_id}", headers=h,
                          json={"formula": "75", "caps": {"per_participant_daily": "100"}})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["version"], patched.json()["caps"]["per_participant_daily"]) == (2, 100)
    assert patched.json()["caps"]["total_budget"] is None
    bad = httpx.patch(f"{base}/v1/programs/{pid}/rules/{rule_id}", headers=h, json={"formula": "1 +"})
    assert bad.status_code == 400 and bad.json()["error"]["details"][-1]["field"] == "formula"
    deleted = httpx.delete(f"{base}/v1/programs/{pid}/rules/{rule_id}", headers=h).json()
    assert (deleted["version"], deleted["status"]) == (3, "ARCHIVED")
    v1 = httpx.get(f"{base}/v1/programs/{pid}/rules/{rule_id}/versions/1", headers=h).json()
    assert v1["formula"] == "50"
    versions = httpx.get(f"{base}/v1/programs/{pid}/rules/{rule_id}/versions", headers=h).json()["versions"]
    assert [v["status"] for v in versions] == ["ACTIVE", "ACTIVE", "ARCHIVED"]

    # Simulation writes nothing; the archived bonus no longer applies; silver multiplies.
    sim = httpx.post(f"{base}/v1/programs/{pid}/rules:simulate", headers=h, json={
        "event_type": "purchase", "event_data": {"amount": 150}, "participant_id": participant}).json()
    assert (sim["points_awarded"], sim["tier"]) == (225, "silver")
    assert httpx.get(balance_url, headers=h).json()["available"] == 825

    # Adjustments: idempotent, conflicts and overdrafts are 409.
    adj_url = f"{base}/v1/programs/{pid}/participants/{participant}/adjustments"
    body = {"amount": "-25", "reason": "refund", "idempotency_key": "refund-1"}
    first_adj = httpx.post(adj_url, headers=h, json=body).json()
    assert first_adj["balance"]["available"] == 800 and first_adj["transaction"]["kind"] == "ADJUSTMENT"
    assert httpx.post(adj_url, headers=h, json=body).json()["deduplicated"] is True
    conflict = httpx.post(adj_url, headers=h, json={**body, "amount": "-26"})
    assert (conflict.status_code, conflict.json()["error"]["code"]) == (409, "idempotency_conflict")
    overdraft = httpx.post(adj_url, headers=h, json={"amount": "-5000", "reason": "x", "idempotency_key": "o"})
    assert (overdraft.status_code, overdraft.json()["error"]["code"]) == (409, "insufficient_points")

    # Programs: PATCH, tiers validation naming the field, event types.
    tiers = httpx.patch(f"{base}/v1/programs/{pid}", headers=h, json={"tiers": [
        {"name": "silver", "min_lifetime_points": "500", "multiplier": "1.5"},
        {"name": "gold", "min_lifetime_points": "400", "multiplier": "2"}]})
    assert tiers.status_code == 400
    assert tiers.json()["error"]["details"][-1]["field"] == "tiers[1].min_lifetime_points"
    renamed = httpx.patch(f"{base}/v1/programs/{pid}", headers=h,
                          json={"name": "Demo store (renamed)", "event_type_policy": "REGISTERED"}).json()
    assert (renamed["name"], renamed["event_type_policy"], renamed["tiers"][0]["name"]) == (
        "Demo store (renamed)", "REGISTERED", "silver")
    created = httpx.post(f"{base}/v1/programs/{pid}/event-types", headers=h, json={
        "name": "purchase", "properties": [{"name": "amount", "type": "NUMBER", "required": True}]})
    assert created.status_code == 200, created.text
    listed = httpx.get(f"{base}/v1/programs/{pid}/event-types", headers=h).json()["event_types"]
    assert [(t["name"], t["properties"][0]["type"]) for t in listed] == [("purchase", "NUMBER")]
    review = _submit_and_wait(base, h, {"program_id": pid, "idempotency_key": f"r-{uuid.uuid4()}",
                                        "external_id": user, "event_type": "review", "event_data": {}})
    assert (review["status"], review["error_code"]) == ("FAILED", "event_type_not_registered")


def test_event_type_crud_over_rest(suite: dict[str, Any]) -> None:
    base, h = suite["base"], {"X-API-Key": suite["key"]}
    pid = httpx.post(f"{base}/v1/programs", headers=h, json={"name": "Event types"}).json()["program_id"]
    url = f"{base}/v1/programs/{pid}/event-types"
    assert httpx.post(url, headers=h, json={"name": "signup", "description": "joined"}).status_code == 200
    got = httpx.get(f"{url}/signup", headers=h)
    assert (got.status_code, got.json()["description"]) == (200, "joined")
    patched = httpx.patch(f"{url}/signup", headers=h, json={
        "properties": [{"name": "plan", "type": "STRING", "required": True}]})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["description"], patched.json()["properties"][0]["name"]) == ("joined", "plan")
    bad = httpx.patch(f"{url}/signup", headers=h, json={"properties": [{"name": "plan"}]})
    assert bad.status_code == 400 and bad.json()["error"]["details"][-1]["field"] == "properties[0].type"
    assert httpx.delete(f"{url}/signup", headers=h).status_code == 200
    gone = httpx.delete(f"{url}/signup", headers=h)
    assert (gone.status_code, gone.json()["error"]["code"]) == (404, "event_type_not_found")
    assert "signup" in gone.json()["error"]["message"]
    assert httpx.get(f"{url}/signup", headers=h).status_code == 404
