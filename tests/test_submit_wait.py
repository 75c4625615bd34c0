"""Issue 20, item 1: ``Prefer: wait=N`` on POST /v1/events answers the outcome of the event
(points awarded, rules applied) once the whole suite (rules worker, ingest worker) has
processed it, pushed to the waiting call rather than polled."""

from __future__ import annotations

import pathlib
import time
import uuid

from accrual_platform import auth

from tests.inprocess import in_process_suite


def test_prefer_wait_returns_points_and_rules(tmp_path: pathlib.Path) -> None:
    with in_process_suite(tmp_path) as suite:
        key = suite.new_key("waiting", frozenset({auth.ADMIN_SCOPE}))
        c, h = suite.client, {"X-API-Key": key}
        pid = c.post("/v1/programs", json={"name": "Wait"}, headers=h).json()["program_id"]
        assert c.post(f"/v1/programs/{pid}/rules", headers=h, json={
            "name": "1 point per dollar", "event_type": "purchase", "condition": "properties.amount > 0",
            "formula": "properties.amount * 1"}).status_code == 200
        sent = {"program_id": pid, "idempotency_key": f"order-{uuid.uuid4()}", "external_id": "someone",
                "event_type": "purchase", "event_data": {"amount": 125}}
        # The first evaluation starts the rule sandboxes: let it pass before timing one.
        c.post("/v1/events", json={**sent, "idempotency_key": "warm-up"}, headers={**h, "Prefer": "wait=10"})
        started = time.monotonic()
        r = c.post("/v1/events", json=sent, headers={**h, "Prefer": "wait=5"})
        assert r.status_code == 200, r.text
        event = r.json()
        elapsed = time.monotonic() - started
        assert event["status"] == "COMPLETED", (event, elapsed)
        # Woken by the outcome, not by the deadline (after which the event would be read anyway).
        assert elapsed < 4.5, elapsed
        assert event["points_awarded"] == 125
        assert event["rule_evaluations"][0]["matched"] is True
        assert r.headers["Preference-Applied"] == "wait=5"
