"""The seeds' examples replayed as printed (issue 20, item 1), through the REST gateway in front
of the whole suite: seed 002's curl request (a tenant event, with its `occurred_at` and `data`
spelling) and seed 001's `reference` ("First call / Second call")."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from accrual_platform import auth
from starlette.testclient import TestClient

from tests.inprocess import in_process_suite

#: Seed 002, step 2: the body of the curl request, character for character.
SEED_002_BODY = """{
    "event_type": "user.created",
    "occurred_at": "2025-12-22T10:30:00Z",
    "idempotency_key": "0f3f6f9b-9f0b-4c8d-9f18-5b6a9d9d2d41",
    "data": {
      "user_id": "u_12345",
      "plan": "pro"
    }
  }"""


@dataclass
class Api:
    client: TestClient
    key: str

    def send(self, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
        return self.client.request(method, path, headers={"Authorization": f"Bearer {self.key}", **(headers or {})},
                                   **kw)

    def ok(self, method: str, path: str, **kw: Any) -> Any:
        r = self.send(method, path, **kw)
        assert r.status_code == 200, r.text
        return r.json()

    def program(self, formula: str) -> str:
        pid: str = self.ok("POST", "/v1/programs", json={"name": f"p-{uuid.uuid4().hex[:6]}"})["program_id"]
        self.ok("POST", f"/v1/programs/{pid}/rules", json={"name": "rule", "formula": formula})
        return pid

    def finished(self, event_id: str) -> dict[str, Any]:
        deadline = time.time() + 30
        while True:
            event: dict[str, Any] = self.ok("GET", f"/v1/events/{event_id}")
            if event["status"] in ("COMPLETED", "FAILED") or time.time() > deadline:
                return event
            time.sleep(0.05)

    def available(self, pid: str, participant: str) -> Any:
        return self.ok("GET", f"/v1/programs/{pid}/participants/{participant}/balance")["available"]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with in_process_suite(tmp_path_factory.mktemp("seeds")) as suite:
        yield Api(suite.client, suite.new_key("seeds", frozenset({auth.ADMIN_SCOPE})))


def test_seed_002_curl_request_is_a_tenant_event_deduplicated_and_completed_without_points(api: Api) -> None:
    api.program("10")  # a program with a rule: the tenant event names nobody, so none applies
    headers = {"Content-Type": "application/json"}
    first = api.send("POST", "/v1/events", content=SEED_002_BODY, headers=headers)
    assert first.status_code == 200, first.text
    event = first.json()
    assert event["event_id"] and event["received_at"] and event["deduplicated"] is False
    assert event["event_type"] == "user.created" and event["event_timestamp"] == "2025-12-22T10:30:00Z"
    assert event["event_data"] == {"user_id": "u_12345", "plan": "pro"} and event["program_id"] == ""
    retry = api.send("POST", "/v1/events", content=SEED_002_BODY, headers=headers)
    assert retry.status_code == 200, retry.text
    again = retry.json()
    assert again["deduplicated"] is True
    assert (again["event_id"], again["received_at"]) == (event["event_id"], event["received_at"])
    listed = api.ok("GET", "/v1/events")["events"]
    assert [e["event_id"] for e in listed].count(event["event_id"]) == 1
    done = api.finished(event["event_id"])
    assert done["status"] == "COMPLETED", done
    assert done["points_awarded"] in (None, 0) and done["rule_evaluations"] == []


def test_a_tenant_event_naming_a_participant_earns_where_it_is_active(api: Api) -> None:
    active, frozen, elsewhere = api.program("properties.amount * 2"), api.program("7"), api.program("5")
    external = f"member-{uuid.uuid4().hex[:8]}"
    person = api.ok("POST", "/v1/participants", json={"identities": [{"type": "EXTERNAL", "value": external}]})
    pid = person["participant_id"]
    for prog in (active, frozen):
        api.ok("POST", f"/v1/programs/{prog}/enrollments", json={"participant_id": pid})
    api.ok("PATCH", f"/v1/programs/{frozen}/enrollments/{pid}", json={"status": "FROZEN"})
    event = api.ok("POST", "/v1/events", json={
        "event_type": "purchase", "occurred_at": "2025-12-22T10:30:00Z", "idempotency_key": uuid.uuid4().hex,
        "external_id": external, "data": {"amount": 21}})
    done = api.finished(event["event_id"])
    assert done["status"] == "COMPLETED", done
    assert done["participant_id"] == pid and done["points_awarded"] == 42
    assert (api.available(active, pid), api.available(frozen, pid), api.available(elsewhere, pid)) == (42, 0, 0)


@pytest.mark.parametrize(("field", "alias", "value"), [
    ("idempotency_key", "reference", "order-x"),
    ("event_timestamp", "occurred_at", "2025-12-22T10:30:00Z"),
    ("event_data", "data", {"plan": "pro"}),
])
def test_both_spellings_of_a_field_are_400_naming_the_alias(api: Api, field: str, alias: str, value: Any) -> None:
    body = {"event_type": "user.created", "idempotency_key": uuid.uuid4().hex, field: value, alias: value}
    r = api.send("POST", "/v1/events", json=body)
    assert r.status_code == 400, r.text
    assert [d["field"] for d in r.json()["error"]["details"]] == [alias]


def test_seed_001_reference_first_call_awards_second_call_returns_the_existing_event(api: Api) -> None:
    pid = api.program("100")
    reference = f"order_{uuid.uuid4().hex[:6]}"
    body = {"program_id": pid, "external_id": "customer-1", "event_type": "purchase", "reference": reference}
    first = api.ok("POST", "/v1/events", json=body)
    assert first["idempotency_key"] == reference
    done = api.finished(first["event_id"])
    assert done["status"] == "COMPLETED" and done["points_awarded"] == 100, done
    second = api.ok("POST", "/v1/events", json=body)
    assert second["deduplicated"] is True and second["event_id"] == first["event_id"]
    assert second["status"] == "COMPLETED"
    assert api.available(pid, done["participant_id"]) == 100
