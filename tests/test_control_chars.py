"""Control characters are refused in every name-like field, with a 400 naming the field
(issue 18, finding 11); descriptions keep tab and newline. Driven through the REST gateway in
front of the whole suite, so each service's validation is the one under test."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from accrual_platform import auth

from tests.inprocess import InProcessSuite, in_process_suite

#: NUL, tab, newline, ESC, DEL and a C1 control (NEL)
CONTROLS = ["\x00", "\t", "\n", "\x1b", "\x7f", "\x85"]


class Ctx:
    def __init__(self, suite: InProcessSuite, key: str) -> None:
        self.c, self.h = suite.client, {"X-API-Key": key}
        self.n = 0
        self.pid = self.post("/v1/programs", {"name": "Controls"}).json()["program_id"]
        self.rid = self.post(f"/v1/programs/{self.pid}/rules", {
            "name": "one", "event_type": "purchase", "formula": "1"}).json()["rule_id"]
        event = self.post("/v1/events", {"program_id": self.pid, "idempotency_key": "first",
                                         "external_id": "someone", "event_type": "purchase",
                                         "event_data": {}}).json()
        deadline = time.time() + 30
        while (got := self.c.get(f"/v1/events/{event['event_id']}", headers=self.h).json())["status"] \
                != "COMPLETED":
            assert time.time() < deadline
            time.sleep(0.05)
        self.participant = got["participant_id"]
        self.eid = self.post("/v1/webhook-endpoints", {
            "url": "http://127.0.0.1:9/hook", "enabled_events": ["event.completed"]}).json()["endpoint_id"]

    def unique(self) -> str:
        self.n += 1
        return f"u{self.n}"

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.c.post(path, headers=self.h, json=body)

    def patch(self, path: str, body: dict[str, Any]) -> Any:
        return self.c.patch(path, headers=self.h, json=body)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ctx]:
    with in_process_suite(tmp_path_factory.mktemp("controls")) as suite:
        yield Ctx(suite, suite.new_key("controls", frozenset({auth.ADMIN_SCOPE})))


def adjustment(ctx: Ctx, reason: str) -> Any:
    return ctx.post(f"/v1/programs/{ctx.pid}/participants/{ctx.participant}/adjustments",
                    {"amount": "5", "reason": reason, "idempotency_key": ctx.unique()})


#: (field named in the answer, request that puts ``value`` in that field)
NAMES: dict[str, tuple[str, Callable[[Ctx, str], Any]]] = {
    "program name": ("name", lambda x, v: x.post("/v1/programs", {"name": f"P{v}x"})),
    "program rename": ("name", lambda x, v: x.patch(f"/v1/programs/{x.pid}", {"name": f"P{v}x"})),
    "tier name": ("tiers[0].name", lambda x, v: x.post("/v1/programs", {
        "name": x.unique(), "tiers": [{"name": f"Gold{v}x", "min_lifetime_points": "10"}]})),
    "rule name": ("name", lambda x, v: x.post(f"/v1/programs/{x.pid}/rules", {
        "name": f"r{v}x", "event_type": "purchase", "formula": "1"})),
    "rule rename": ("name", lambda x, v: x.patch(f"/v1/programs/{x.pid}/rules/{x.rid}", {"name": f"r{v}x"})),
    "rule event type": ("event_type", lambda x, v: x.post(f"/v1/programs/{x.pid}/rules", {
        "name": x.unique(), "event_type": f"buy{v}x", "formula": "1"})),
    "event type name": ("name", lambda x, v: x.post(f"/v1/programs/{x.pid}/event-types", {
        "name": f"t{v}x", "description": "", "properties": []})),
    "event type property": ("properties[0].name", lambda x, v: x.post(
        f"/v1/programs/{x.pid}/event-types", {"name": x.unique(), "properties": [
            {"name": f"p{v}x", "type": "STRING", "required": False}]})),
    "adjustment reason": ("reason", lambda x, v: adjustment(x, f"goodwill{v}x")),
    "event type of an event": ("event_type", lambda x, v: x.post("/v1/events", {
        "program_id": x.pid, "idempotency_key": x.unique(), "external_id": "someone",
        "event_type": f"buy{v}x", "event_data": {}})),
    "idempotency key": ("idempotency_key", lambda x, v: x.post("/v1/events", {
        "program_id": x.pid, "idempotency_key": f"k{v}x", "external_id": "someone",
        "event_type": "purchase", "event_data": {}})),
}

#: descriptions: free text with tab and newline, no other control character
DESCRIPTIONS: dict[str, Callable[[Ctx, str], Any]] = {
    "event type description": lambda x, v: x.post(f"/v1/programs/{x.pid}/event-types", {
        "name": x.unique(), "description": f"d{v}x", "properties": []}),
    "webhook endpoint description": lambda x, v: x.post("/v1/webhook-endpoints", {
        "url": "http://127.0.0.1:9/hook", "enabled_events": ["event.completed"], "description": f"d{v}x"}),
    "webhook endpoint description update": lambda x, v: x.patch(
        f"/v1/webhook-endpoints/{x.eid}", {"description": f"d{v}x"}),
}


@pytest.mark.parametrize("ch", CONTROLS, ids=[f"U+{ord(c):04X}" for c in CONTROLS])
@pytest.mark.parametrize("case", list(NAMES))
def test_names_refuse_control_characters(ctx: Ctx, case: str, ch: str) -> None:
    field, send = NAMES[case]
    r = send(ctx, ch)
    assert r.status_code == 400, r.text
    details = r.json()["error"]["details"]
    assert [d["field"] for d in details] == [field], r.text
    assert "control characters" in details[0]["description"]


@pytest.mark.parametrize("case", list(NAMES))
def test_names_without_control_characters_are_accepted(ctx: Ctx, case: str) -> None:
    _, send = NAMES[case]
    r = send(ctx, f" é {ctx.unique()} ")
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("ch", ["\x00", "\x1b", "\x7f", "\x85"], ids=["NUL", "ESC", "DEL", "NEL"])
@pytest.mark.parametrize("case", list(DESCRIPTIONS))
def test_descriptions_refuse_control_characters(ctx: Ctx, case: str, ch: str) -> None:
    r = DESCRIPTIONS[case](ctx, ch)
    assert r.status_code == 400, r.text
    assert [d["field"] for d in r.json()["error"]["details"]] == ["description"], r.text


@pytest.mark.parametrize("case", list(DESCRIPTIONS))
def test_descriptions_keep_tab_and_newline(ctx: Ctx, case: str) -> None:
    r = DESCRIPTIONS[case](ctx, "\tfirst line\r\nsecond line\n")
    assert r.status_code == 200, r.text
    assert "first line\r\nsecond line" in r.json()["description"]
