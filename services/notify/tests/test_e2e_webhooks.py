"""Webhooks end to end, as a partner sees them: the embedded suite started as the README
says (``accrual run``), driven over REST, with the real producers (ingest, rules, identity)
and a loopback receiver that verifies every request with ``standardwebhooks``.

Covers issue 6's "one event producing event.completed and points.awarded" and "an invalid
program_id producing event.failed with the event id" through the real pipeline, and the new
routes (PATCH, :rotate-secret, :recover, deliveries, attempts, retry) through the gateway.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from standardwebhooks import Webhook

if TYPE_CHECKING:
    from conftest import Receiver

pytestmark = pytest.mark.e2e
BIN = pathlib.Path(sys.executable).parent / "accrual"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def suite(tmp_path: pathlib.Path) -> Iterator[tuple[str, str]]:
    http_port, grpc_port = free_port(), free_port()
    env = {**os.environ, "GATEWAY_PORT": str(http_port), "GRPC_PORT": str(grpc_port),
           "WEBHOOK_RETRY_SCHEDULE": "0,0.3,0.3"}
    for var in ("DATABASE_URL", "BROKER_URL"):
        env.pop(var, None)
    proc = subprocess.Popen([str(BIN), "run"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{http_port}"

    def ready() -> bool:
        assert proc.poll() is None, "accrual run exited early"
        try:
            return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, "the embedded suite", timeout=60)
        yield base, (tmp_path / "var" / "admin_key").read_text().strip()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def bodies(receiver: Receiver, path: str) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in receiver.received(path)]


def test_webhooks_over_rest_with_the_real_producers(suite: tuple[str, str],
                                                    receiver: Receiver) -> None:
    base, key = suite
    client = httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=10)

    r = client.post("/v1/webhook-endpoints", json={
        "url": receiver.url("/all"), "enabled_events": ["*"], "description": "everything"})
    assert r.status_code == 200, r.text
    endpoint = r.json()
    assert endpoint["secret"].startswith("whsec_") and endpoint["status"] == "ENABLED"
    receiver.secrets["/all"] = [endpoint["secret"]]
    eid = endpoint["endpoint_id"]
    bad = client.patch(f"/v1/webhook-endpoints/{eid}", json={"enabled_events": ["nope"]})
    assert bad.status_code == 400
    assert bad.json()["error"]["details"][0]["field"] == "enabled_events[0]"

    program = client.post("/v1/programs", json={"name": "Demo"}).json()
    pid = program["program_id"]
    r = client.post(f"/v1/programs/{pid}/rules", json={
        "name": "1 point per dollar", "event_type": "purchase",
        "condition": "properties.amount > 0", "formula": "properties.amount * 1"})
    assert r.status_code == 200, r.text
    r = client.post("/v1/events", json={
        "program_id": pid, "idempotency_key": f"order-{uuid.uuid4()}", "external_id": "u-1",
        "event_type": "purchase", "event_data": {"amount": 125}})
    assert r.status_code == 200, r.text
    event_id = r.json()["event_id"]

    def types_for(event: str) -> set[str]:
        return {b["type"] for b in bodies(receiver, "/all")
                if b["data"].get("event_id") == event}

    wait_until(lambda: {"event.completed", "points.awarded"} <= types_for(event_id),
               "event.completed and points.awarded")
    wait_until(lambda: {"participant.created", "enrollment.created"} <= {
        b["type"] for b in bodies(receiver, "/all")}, "identity's webhooks")
    assert all(r.verified for r in receiver.received("/all")), receiver.received("/all")
    by_type = {b["type"]: b for b in bodies(receiver, "/all")}
    assert by_type["points.awarded"]["data"]["points"] == "125"
    assert by_type["event.completed"]["tenant_id"] == by_type["points.awarded"]["tenant_id"]

    # An unknown program: the event is accepted, then fails, and partners hear about it.
    idem = f"order-{uuid.uuid4()}"
    r = client.post("/v1/events", json={
        "program_id": str(uuid.uuid4()), "idempotency_key": idem, "external_id": "u-1",
        "event_type": "purchase", "event_data": {"amount": 5}})
    assert r.status_code == 200, r.text
    failed_id = r.json()["event_id"]
    wait_until(lambda: "event.failed" in types_for(failed_id), "event.failed")
    [failed] = [b for b in bodies(receiver, "/all") if b["type"] == "event.failed"]
    assert failed["data"]["event_id"] == failed_id
    assert failed["data"]["idempotency_key"] == idem
    assert failed["data"]["error_code"] == "program_not_found"
    assert failed["data"]["error_message"]

    # The delivery log, attempts and a manual retry of a delivered one (409).
    deliveries = client.get(f"/v1/webhook-endpoints/{eid}/deliveries").json()["deliveries"]
    assert deliveries and all(d["status"] in ("SUCCEEDED", "PENDING") for d in deliveries)
    done = next(d for d in deliveries if d["status"] == "SUCCEEDED")
    got = client.get(f"/v1/webhook-deliveries/{done['delivery_id']}").json()
    assert got["message_id"] == done["message_id"] and got["last_status_code"] == 200
    attempts = client.get(f"/v1/webhook-deliveries/{done['delivery_id']}/attempts").json()
    assert [(a["attempt"], a["status_code"], a["error"]) for a in attempts["attempts"]] == [
        (1, 200, "")]
    again = client.post(f"/v1/webhook-deliveries/{done['delivery_id']}/retry", json={})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "delivery_already_succeeded"

    # Rotation: shown once, both secrets sign during the overlap.
    rotated = client.post(f"/v1/webhook-endpoints/{eid}:rotate-secret", json={}).json()
    assert rotated["secret"].startswith("whsec_") and rotated["previous_secret_expires_at"]
    assert client.get(f"/v1/webhook-endpoints/{eid}").json()["secret"] is None
    seen = len(receiver.received("/all"))
    rotated_event = client.post("/v1/events", json={
        "program_id": pid, "idempotency_key": f"order-{uuid.uuid4()}", "external_id": "u-2",
        "event_type": "purchase", "event_data": {"amount": 3}}).json()["event_id"]
    wait_until(lambda: len(receiver.received("/all")) > seen, "a webhook after the rotation")
    latest = receiver.received("/all")[-1]
    for secret in (endpoint["secret"], rotated["secret"]):
        Webhook(secret).verify(latest.body, latest.headers)

    # Every webhook of that event delivered first: one still pending when the endpoint is
    # disabled would fail, and the recovery below would find it.
    wait_until(lambda: "event.completed" in types_for(rotated_event) and all(
        d["status"] == "SUCCEEDED"
        for d in client.get(f"/v1/webhook-endpoints/{eid}/deliveries").json()["deliveries"]),
        "every webhook of the event after the rotation")

    # PATCH: disable, then enable; recovery of an enabled endpoint.
    off = client.patch(f"/v1/webhook-endpoints/{eid}", json={"status": "DISABLED"}).json()
    assert off["status"] == "DISABLED" and off["disabled_reason"]
    on = client.patch(f"/v1/webhook-endpoints/{eid}",
                      json={"status": "ENABLED", "description": "renamed"}).json()
    assert (on["status"], on["disabled_reason"], on["description"]) == ("ENABLED", "", "renamed")
    recovered = client.post(f"/v1/webhook-endpoints/{eid}:recover",
                            json={"since": "2020-01-01T00:00:00Z"})
    assert recovered.status_code == 200, recovered.text
    assert recovered.json()["recovered_count"] == 0  # nothing failed
    no_since = client.post(f"/v1/webhook-endpoints/{eid}:recover", json={})
    assert no_since.status_code == 400
    assert no_since.json()["error"]["details"][0]["field"] == "since"
    paths = httpx.get(f"{base}/openapi.json").json()["paths"]
    for path in ("/v1/webhook-endpoints/{endpoint_id}", "/v1/webhook-endpoints/{endpoint_id}:recover",
                 "/v1/webhook-deliveries/{delivery_id}/retry"):
        assert path in paths, path
    client.close()
