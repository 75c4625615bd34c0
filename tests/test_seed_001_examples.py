"""Seed 001 (Loyali, "Events & Automation") replayed as printed: its example rules, written
with the multiplication sign, give the points the seed prints; the tier multiplier applies
"automatically based on tier"; and the answer to an event returns "points awarded and rules
applied" when the caller waits for it (``Prefer: wait``)."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
from accrual_platform import auth
from starlette.testclient import TestClient

from tests.inprocess import InProcessSuite, in_process_suite

#: The seed's formulas and condition, character for character.
SIMPLE = "properties.amount \N{MULTIPLICATION SIGN} 1"
TIERED = "properties.amount \N{MULTIPLICATION SIGN} 1 + (properties.amount > 100 ? 50 : 0)"
CATEGORY_CONDITION = 'properties.category == "electronics"'
CATEGORY_FORMULA = "properties.amount \N{MULTIPLICATION SIGN} 2"
ANATOMY_CONDITION, ANATOMY_FORMULA = "properties.amount > 0", "properties.amount * 1"


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessSuite]:
    with in_process_suite(pathlib.Path(tmp_path_factory.mktemp("seed001"))) as s:
        yield s


class Loyali:
    """A partner following the seed: one program per example, events answered with their outcome."""

    def __init__(self, suite: InProcessSuite) -> None:
        self.c: TestClient = suite.client
        self.h = {"X-API-Key": suite.new_key(f"loyali-{id(self)}", frozenset({auth.ADMIN_SCOPE}))}
        self.sent = 0

    def program(self, *rules: dict[str, Any], tiers: list[dict[str, Any]] | None = None) -> str:
        r = self.c.post("/v1/programs", headers=self.h, json={"name": "Loyali", "tiers": tiers or []})
        assert r.status_code == 200, r.text
        pid: str = r.json()["program_id"]
        for rule in rules:
            saved = self.c.post(f"/v1/programs/{pid}/rules", headers=self.h, json=rule)
            assert saved.status_code == 200, saved.text
        return pid

    def purchase(self, pid: str, customer: str, **properties: Any) -> dict[str, Any]:
        self.sent += 1
        r = self.c.post("/v1/events", headers={**self.h, "Prefer": "wait=10"}, json={
            "program_id": pid, "idempotency_key": f"order_{self.sent}", "external_id": customer,
            "event_type": "purchase", "event_data": properties})
        assert r.status_code == 200, r.text
        assert r.headers["Preference-Applied"] == "wait=10"
        event: dict[str, Any] = r.json()
        assert event["status"] == "COMPLETED", event
        return event


@pytest.fixture
def loyali(suite: InProcessSuite) -> Loyali:
    return Loyali(suite)


def test_simple_one_point_per_dollar(loyali: Loyali) -> None:
    pid = loyali.program({"name": "Simple", "event_type": "purchase", "formula": SIMPLE})
    event = loyali.purchase(pid, "c1", amount=125)
    # "$125 purchase = 125 points", answered with the rules applied
    assert event["points_awarded"] == 125
    assert [(e["rule_name"], e["matched"], e["points"]) for e in event["rule_evaluations"]] == [
        ("Simple", True, 125)]


def test_tiered_bonus_for_big_orders(loyali: Loyali) -> None:
    pid = loyali.program({"name": "Tiered", "event_type": "purchase", "formula": TIERED})
    assert loyali.purchase(pid, "c1", amount=50)["points_awarded"] == 50     # "$50 purchase = 50 points"
    assert loyali.purchase(pid, "c2", amount=150)["points_awarded"] == 200   # "150 + 50 bonus = 200 points"


def test_category_bonus_on_electronics(loyali: Loyali) -> None:
    pid = loyali.program({"name": "Category bonus", "event_type": "purchase",
                          "condition": CATEGORY_CONDITION, "formula": CATEGORY_FORMULA})
    assert loyali.purchase(pid, "c1", amount=40, category="electronics")["points_awarded"] == 80
    books = loyali.purchase(pid, "c2", amount=40, category="books")
    assert books["points_awarded"] == 0
    assert books["rule_evaluations"][0]["matched"] is False


def test_rule_anatomy_and_the_saved_notation(loyali: Loyali) -> None:
    pid = loyali.program({"name": "Anatomy", "event_type": "purchase", "condition": ANATOMY_CONDITION,
                          "formula": ANATOMY_FORMULA},
                         {"name": "Tiered", "event_type": "purchase", "formula": TIERED})
    rules = loyali.c.get(f"/v1/programs/{pid}/rules", headers=loyali.h).json()["rules"]
    # The multiplication sign is saved as the engine's "*" (services/rules/README.md).
    assert [r["formula"] for r in rules] == [
        ANATOMY_FORMULA, "properties.amount * 1 + (properties.amount > 100 ? 50 : 0)"]
    assert loyali.purchase(pid, "c1", amount=0)["points_awarded"] == 0  # condition false, 0 + 0


def test_the_tier_multiplier_applies_automatically(loyali: Loyali) -> None:
    silver = {"name": "silver", "min_lifetime_points": 100, "multiplier": 1.5}
    pid = loyali.program({"name": "Simple", "event_type": "purchase", "formula": SIMPLE},
                         {"name": "No multiplier", "event_type": "refer", "formula": "100",
                          "apply_tier_multiplier": False},
                         tiers=[silver])
    assert loyali.purchase(pid, "member", amount=100)["points_awarded"] == 100  # reaches silver
    balance = loyali.c.get(f"/v1/programs/{pid}/participants/"
                           f"{loyali.purchase(pid, 'member', amount=175)['participant_id']}/balance",
                           headers=loyali.h).json()
    # A Silver member's 175-point purchase: 175 x 1.5, floored to whole points = 262.
    assert balance["available"] == 100 + 262 and balance["tier"] == "silver"
    rules = loyali.c.get(f"/v1/programs/{pid}/rules", headers=loyali.h).json()["rules"]
    assert [(r["name"], r["apply_tier_multiplier"]) for r in rules] == [
        ("Simple", True), ("No multiplier", False)]
