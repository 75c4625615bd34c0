"""Flows that cross every service, driven over REST against the embedded suite (`make run`):
a CDP event earning in every program its participant is enrolled in, an explicit merge
moving balances, gifting to a recipient, REJECT failing the event, and a tier multiplier."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from accrual_platform.testing import free_port, wait_http
from accrual_platform.testing import stop_processes as stop

BIN = pathlib.Path(sys.executable).parent / "accrual"
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    tmp = tmp_path_factory.mktemp("embedded")
    port, grpc_port = free_port(), free_port()
    env = {**os.environ, "GATEWAY_PORT": str(port), "GRPC_PORT": str(grpc_port)}
    env.pop("DATABASE_URL", None)
    env.pop("BROKER_URL", None)
    proc = subprocess.Popen([str(BIN), "run"], cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", [proc])
        key = (tmp / "var" / "admin_key").read_text().strip()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key}, timeout=30) as client:
            yield client
    finally:
        stop([proc])


def ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    return r.json()


def program(api: httpx.Client, **extra: Any) -> str:
    pid: str = ok(api.post("/v1/programs", json={"name": f"p-{uuid.uuid4().hex[:6]}", **extra}))["program_id"]
    ok(api.post(f"/v1/programs/{pid}/rules", json={"name": "per dollar", "formula": "properties.amount * 1",
                                                   "apply_tier_multiplier": True}))
    return pid


def wait_event(api: httpx.Client, event_id: str) -> dict[str, Any]:
    deadline = time.time() + 30
    while True:
        event: dict[str, Any] = ok(api.get(f"/v1/events/{event_id}"))
        if event["status"] in ("COMPLETED", "FAILED") or time.time() > deadline:
            return event
        time.sleep(0.1)


def submit(api: httpx.Client, pid: str, amount: float, **who: str) -> dict[str, Any]:
    event = ok(api.post("/v1/events", json={"program_id": pid, "idempotency_key": uuid.uuid4().hex,
                                            "event_type": "purchase", "event_data": {"amount": amount}, **who}))
    return wait_event(api, event["event_id"])


def balance(api: httpx.Client, pid: str, participant: str) -> dict[str, Any]:
    return ok(api.get(f"/v1/programs/{pid}/participants/{participant}/balance"))  # type: ignore[no-any-return]


def test_cdp_event_earns_in_every_program_the_participant_is_active_in(api: httpx.Client) -> None:
    first, second, third = program(api), program(api), program(api)
    email = f"Jane.{uuid.uuid4().hex[:6]}@Example.com"
    person = ok(api.post("/v1/participants", json={"identities": [{"type": "EMAIL", "value": email}]}))
    pid = person["participant_id"]
    for prog in (first, second, third):
        ok(api.post(f"/v1/programs/{prog}/enrollments", json={"participant_id": pid}))
    ok(api.patch(f"/v1/programs/{third}/enrollments/{pid}", json={"status": "FROZEN"}))
    ok(api.post("/v1/cdp/event-types", json={"name": "purchase", "properties": [
        {"name": "amount", "type": "NUMBER", "required": True}]}))
    result = ok(api.post("/v1/cdp/events", json={
        "source": "pos", "externalEventId": uuid.uuid4().hex, "eventType": "purchase",
        "identity": {"email": f"  {email.upper()} "}, "properties": {"amount": 42}}))
    assert result["status"] == "accepted"
    event = wait_event(api, result["event_id"])
    assert event["status"] == "COMPLETED", event
    assert event["participant_id"] == pid
    assert balance(api, first, pid)["available"] == 42
    assert balance(api, second, pid)["available"] == 42
    assert balance(api, third, pid)["available"] == 0  # FROZEN: not active, no rules run


def test_merge_moves_balances_to_the_survivor(api: httpx.Client) -> None:
    prog = program(api)
    a = submit(api, prog, 30, external_id=f"a-{uuid.uuid4().hex[:6]}")
    b = submit(api, prog, 12, external_id=f"b-{uuid.uuid4().hex[:6]}")
    assert a["status"] == b["status"] == "COMPLETED"
    ok(api.post("/v1/participants:merge", json={"survivor_participant_id": a["participant_id"],
                                                "merged_participant_id": b["participant_id"]}))
    deadline = time.time() + 30
    while balance(api, prog, a["participant_id"])["available"] != 42 and time.time() < deadline:
        time.sleep(0.1)
    assert balance(api, prog, a["participant_id"])["available"] == 42
    assert balance(api, prog, a["participant_id"])["lifetime_earned"] == 42
    # the merged participant's identity now resolves to the survivor
    again = submit(api, prog, 1, external_id=b["external_id"])
    assert again["participant_id"] == a["participant_id"]


def test_gift_goes_to_the_recipient_and_reject_fails_the_event(api: httpx.Client) -> None:
    prog = program(api)
    gift = submit(api, prog, 25, external_id=f"giver-{uuid.uuid4().hex[:6]}",
                  recipient_external_id=f"friend-{uuid.uuid4().hex[:6]}")
    assert gift["status"] == "COMPLETED", gift
    recipient = gift["rule_evaluations"][0]["recipient_id"]
    assert recipient and recipient != gift["participant_id"]
    assert balance(api, prog, recipient)["available"] == 25
    assert balance(api, prog, gift["participant_id"])["available"] == 0
    strict = program(api, on_unknown_participant="REJECT")
    failed = submit(api, strict, 10, external_id=f"nobody-{uuid.uuid4().hex[:6]}")
    assert failed["status"] == "FAILED" and failed["error_code"] == "participant_not_found"


def test_tier_multiplier_applies_once_the_tier_is_reached(api: httpx.Client) -> None:
    prog = program(api, tiers=[{"name": "base", "min_lifetime_points": "0", "multiplier": "1"},
                               {"name": "silver", "min_lifetime_points": "100", "multiplier": "1.5"}])
    who = f"tier-{uuid.uuid4().hex[:6]}"
    first = submit(api, prog, 100, external_id=who)
    assert first["points_awarded"] == 100
    second = submit(api, prog, 125, external_id=who)
    assert second["points_awarded"] == 187
    assert balance(api, prog, first["participant_id"])["tier"] == "silver"
