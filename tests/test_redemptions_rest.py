"""Rewards and redemptions over REST through the gateway in front of the whole suite: the
JSON a partner sees (unprefixed enums, points as JSON numbers, hold_ttl as a duration), the 409
bodies with their details, and the balance's held points."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from accrual_platform import auth

from tests.inprocess import InProcessSuite, in_process_suite


class Api:
    def __init__(self, suite: InProcessSuite) -> None:
        self.c = suite.client
        self.h = {"X-API-Key": suite.new_key("redeem", frozenset({auth.ADMIN_SCOPE}))}

    def post(self, path: str, body: dict[str, Any], status: int = 200) -> Any:
        r = self.c.post(path, json=body, headers=self.h)
        assert r.status_code == status, r.text
        return r.json()

    def get(self, path: str, **params: Any) -> Any:
        r = self.c.get(path, params=params, headers=self.h)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with in_process_suite(tmp_path_factory.mktemp("redeem")) as suite:
        yield Api(suite)


def test_a_checkout_over_rest(api: Api) -> None:
    pid = api.post("/v1/programs", {"name": "Cafe"})["program_id"]
    person = api.post("/v1/participants", {"identities": [
        {"type": "EXTERNAL", "value": f"guest-{uuid.uuid4()}"}]})["participant_id"]
    base = f"/v1/programs/{pid}/participants/{person}"
    api.post(f"{base}/adjustments", {"amount": "500", "reason": "welcome", "idempotency_key": "welcome"})
    reward = api.post(f"/v1/programs/{pid}/rewards", {
        "name": "Latte", "cost_points": "150", "stock": 2, "status": "ACTIVE",
        "per_participant_limit": {"count": 5, "period": "P1D"}})
    assert (reward["status"], reward["cost_points"], reward["stock"]) == ("ACTIVE", 150, 2)
    bad = api.post(f"/v1/programs/{pid}/rewards", {"name": "Free", "cost_points": "-1"}, status=400)
    assert [d["field"] for d in bad["error"]["details"] if "field" in d] == ["cost_points"]

    examined = api.get(f"{base}/rewards:examine")
    assert [(r["reward"]["reward_id"], r["availability"], r["reasons"]) for r in examined["rewards"]] == [
        (reward["reward_id"], "AVAILABLE", [])]

    hold = api.post(f"{base}/redemptions", {"idempotency_key": "cart-1", "reward_id": reward["reward_id"],
                                            "hold_ttl": "120s", "external_ref": "order-77"})
    assert (hold["state"], hold["points"], hold["external_ref"], hold["deduplicated"]) == (
        "HELD", 150, "order-77", False)
    balance = api.get(f"{base}/balance")
    assert (balance["available"], balance["held"]) == (350, 150)
    again = api.post(f"{base}/redemptions", {"idempotency_key": "cart-1", "reward_id": reward["reward_id"],
                                             "hold_ttl": "120s", "external_ref": "order-77"})
    assert again["redemption_id"] == hold["redemption_id"] and again["deduplicated"]
    clash = api.post(f"{base}/redemptions", {"idempotency_key": "cart-1", "points": "10"}, status=409)
    assert clash["error"]["code"] == "idempotency_conflict"

    short = api.post(f"{base}/redemptions", {"idempotency_key": "cart-2", "points": "400"}, status=409)
    assert short["error"]["code"] == "insufficient_points"
    info = next(d for d in short["error"]["details"] if d.get("metadata"))
    assert info["metadata"] == {"available": "350", "required": "400", "shortfall": "50"}

    rid = hold["redemption_id"]
    captured = api.post(f"/v1/redemptions/{rid}:capture", {})
    assert (captured["state"], captured["captured_points"]) == ("CAPTURED", 150)
    assert api.post(f"/v1/redemptions/{rid}:cancel", {}, status=409)["error"]["code"] == "invalid_state"
    refunded = api.post(f"/v1/redemptions/{rid}:refund", {"idempotency_key": "rf-1", "points": "50"})
    assert (refunded["state"], refunded["refunded_points"]) == ("PARTIALLY_REFUNDED", 50)
    assert api.get(f"/v1/redemptions/{rid}")["state"] == "PARTIALLY_REFUNDED"
    listed = api.get(f"{base}/redemptions", state="PARTIALLY_REFUNDED")
    assert [r["redemption_id"] for r in listed["redemptions"]] == [rid]
    assert api.get(f"{base}/balance")["available"] == 400
