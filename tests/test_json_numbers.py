"""Numbers partners expect (issue 20, item 4), through the REST gateway in front of the whole
suite: decimal fields take a JSON number or a string and come back as JSON numbers, counts
are JSON numbers, and integers in event data come back as integers on every route."""

from __future__ import annotations

import decimal
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from accrual_platform import auth

from tests.inprocess import in_process_suite


def exact(response: httpx.Response) -> Any:
    """A response's JSON with its numbers as written: ints stay ints, decimals as Decimal."""
    assert response.status_code == 200, response.text
    return json.loads(response.text, parse_float=decimal.Decimal)


class Api:
    def __init__(self, client: Any, key: str) -> None:
        self.c, self.h = client, {"X-API-Key": key}

    def get(self, path: str) -> httpx.Response:
        return self.c.get(path, headers=self.h)  # type: ignore[no-any-return]

    def post(self, path: str, body: Any) -> httpx.Response:
        """POST ``body`` as JSON; an orjson.Fragment in it is written as the number it spells."""
        return self.c.post(path, content=orjson.dumps(body),  # type: ignore[no-any-return]
                           headers={**self.h, "Content-Type": "application/json"})

    def completed(self, event_id: str) -> Any:
        deadline = time.time() + 30
        while (event := exact(self.get(f"/v1/events/{event_id}")))["status"] != "COMPLETED":
            assert time.time() < deadline, event
            time.sleep(0.05)
        return event


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with in_process_suite(tmp_path_factory.mktemp("numbers")) as suite:
        yield Api(suite.client, suite.new_key("numbers", frozenset({auth.ADMIN_SCOPE})))


def test_balance_adjustments_and_event_data_are_json_numbers(api: Api) -> None:
    pid = exact(api.post("/v1/programs", {"name": "Numbers", "tiers": [
        {"name": "base", "min_lifetime_points": 0, "multiplier": "1"},
        {"name": "gold", "min_lifetime_points": 1000, "multiplier": 1.5}]}))["program_id"]
    program = exact(api.get(f"/v1/programs/{pid}"))
    assert [(t["min_lifetime_points"], t["multiplier"]) for t in program["tiers"]] == [
        (0, 1), (1000, decimal.Decimal("1.5"))]
    assert api.post(f"/v1/programs/{pid}/rules", {
        "name": "per dollar", "event_type": "purchase", "formula": "properties.amount * 1",
        "caps": {"max_points_per_event": 500}}).status_code == 200
    answer = exact(api.post("/v1/events", {
        "program_id": pid, "idempotency_key": "o1", "external_id": "u1", "event_type": "purchase",
        "event_data": {"amount": 125, "qty": 2, "price": orjson.Fragment(b"62.5")}}))
    expected = {"amount": 125, "qty": 2, "price": decimal.Decimal("62.5")}
    assert answer["event_data"] == expected and type(answer["event_data"]["amount"]) is int
    event = api.completed(answer["event_id"])
    assert event["event_data"] == expected and type(event["event_data"]["amount"]) is int
    assert event["points_awarded"] == 125 and event["rule_evaluations"][0]["points"] == 125
    listed = exact(api.get(f"/v1/events?program_id={pid}"))["events"]
    assert type(listed[0]["event_data"]["amount"]) is int
    participant = event["participant_id"]
    balance = exact(api.get(f"/v1/programs/{pid}/participants/{participant}/balance"))
    assert balance["available"] == 125 and type(balance["available"]) is int
    assert balance["lifetime_earned"] == 125

    adjustments = f"/v1/programs/{pid}/participants/{participant}/adjustments"
    credited = exact(api.post(adjustments, {"amount": 25, "reason": "goodwill", "idempotency_key": "a1"}))
    assert credited["transaction"]["amount"] == 25 and credited["balance"]["available"] == 150
    # 0.1 + 0.2 is 0.3 exactly: neither amount went through a double.
    for i, amount in enumerate(["0.1", "0.2"]):
        assert api.post(adjustments, {"amount": orjson.Fragment(amount), "reason": "r",
                                      "idempotency_key": f"d{i}"}).status_code == 200
    assert exact(api.get(f"/v1/programs/{pid}/participants/{participant}/balance"))["available"] == \
        decimal.Decimal("150.3")
    debited = exact(api.post(adjustments, {"amount": "-20.5", "reason": "r", "idempotency_key": "a2"}))
    assert debited["balance"]["available"] == decimal.Decimal("129.8")
    bad = api.post(adjustments, {"amount": "lots", "reason": "r", "idempotency_key": "a3"})
    assert bad.status_code == 400 and bad.json()["error"]["details"][0]["field"] == "amount"
    amounts = [t["amount"] for t in exact(api.get(
        f"/v1/programs/{pid}/participants/{participant}/transactions"))["transactions"]]
    assert sorted(map(decimal.Decimal, amounts)) == sorted(map(decimal.Decimal, [
        "125", "25", "0.1", "0.2", "-20.5"]))
    assert {type(a) for a in amounts} == {int, decimal.Decimal}

    simulated = exact(api.post(f"/v1/programs/{pid}/rules:simulate", {
        "event_type": "purchase", "event_data": {"amount": 40}}))
    assert simulated["points_awarded"] == 40 and type(simulated["points_awarded"]) is int

    analytics = exact(api.get(f"/v1/programs/{pid}/analytics"))
    assert analytics["total_events"] == 1 and analytics["active_participants"] == 1
    assert analytics["total_points"] == 125
    assert analytics["events_by_type"][0]["events"] == 1 and analytics["daily"][0]["events"] == 1
    assert all(type(b["participants"]) is int for b in analytics["events_per_participant"])
    segments = exact(api.get(f"/v1/programs/{pid}/segments"))["segments"]
    assert segments and all(type(s["count"]) is int for s in segments)


def test_batch_and_cdp_event_data_keep_integers(api: Api) -> None:
    pid = exact(api.post("/v1/programs", {"name": "Batch"}))["program_id"]
    batch = exact(api.post("/v1/events/batch", {"events": [{
        "program_id": pid, "idempotency_key": "b1", "external_id": "u", "event_type": "x",
        "event_data": {"n": 125}}]}))
    event = exact(api.get(f"/v1/events/{batch['results'][0]['event_id']}"))
    assert event["event_data"] == {"n": 125} and type(event["event_data"]["n"]) is int
    assert api.post("/v1/cdp/event-types", {"name": "buy", "properties": [
        {"name": "amount", "type": "NUMBER", "required": True}]}).status_code == 200
    cdp = exact(api.post("/v1/cdp/events", {"source": "pos", "externalEventId": "c1", "eventType": "buy",
                                            "identity": {"externalUserId": "u1"},
                                            "properties": {"amount": 125}}))
    stored = exact(api.get(f"/v1/events/{cdp['event_id']}"))
    assert stored["event_data"] == {"amount": 125} and type(stored["event_data"]["amount"]) is int
