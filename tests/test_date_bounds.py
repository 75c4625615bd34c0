"""Out-of-range dates answer 400 (422 on CDP routes) naming the field, never 500 (issue 18).

Python's dates end at years 1 and 9999 and the services shift partner dates by windows of up
to ten years, so every route taking a date or an instant is driven here, through the REST
gateway in front of the whole suite, with values near both ends and just inside the range.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from accrual_platform import auth, dates

from tests.inprocess import InProcessSuite, in_process_suite

EDGES = ["0001-01-01T00:00:00Z", "0001-01-07T23:00:00Z", "0999-12-31T23:59:59Z",
         "9000-01-01T00:00:00Z", "9999-12-25T00:00:00Z", "9999-12-31T23:59:59Z"]
DAY_EDGES = ["0001-01-01", "0001-01-02", "0999-12-31", "9000-01-01", "9999-12-31"]
INSIDE = "1000-01-10T00:00:00Z"


class Ctx:
    def __init__(self, suite: InProcessSuite, key: str, program_id: str, rule_id: str,
                 participant_id: str, endpoint_id: str) -> None:
        self.c, self.h = suite.client, {"X-API-Key": key}
        self.pid, self.rid, self.participant, self.eid = program_id, rule_id, participant_id, endpoint_id
        self.n = 0

    def unique(self) -> str:
        self.n += 1
        return f"u{self.n}"


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ctx]:
    with in_process_suite(tmp_path_factory.mktemp("dates")) as suite:
        key = suite.new_key("dates", frozenset({auth.ADMIN_SCOPE}))
        c, h = suite.client, {"X-API-Key": key}
        pid = c.post("/v1/programs", json={"name": "Dates"}, headers=h).json()["program_id"]
        rid = c.post(f"/v1/programs/{pid}/rules", headers=h, json={
            "name": "one", "event_type": "purchase", "formula": "1"}).json()["rule_id"]
        event = c.post("/v1/events", headers=h, json={
            "program_id": pid, "idempotency_key": "first", "external_id": "someone",
            "event_type": "purchase", "event_data": {}}).json()
        deadline = time.time() + 30
        while (got := c.get(f"/v1/events/{event['event_id']}", headers=h).json())["status"] != "COMPLETED":
            assert time.time() < deadline
            time.sleep(0.05)
        assert c.post("/v1/cdp/event-types", headers=h, json={
            "name": "purchase", "properties": [], "allow_unknown_properties": True}).status_code == 200
        eid = c.post("/v1/webhook-endpoints", headers=h, json={
            "url": "http://127.0.0.1:9/hook", "enabled_events": ["event.completed"]}).json()["endpoint_id"]
        yield Ctx(suite, key, pid, rid, got["participant_id"], eid)


def fields_of(r: Any) -> list[str]:
    return [d["field"] for d in r.json()["error"]["details"]]


def refused(r: Any, field: str, status: int = 400) -> None:
    assert r.status_code == status, r.text
    assert fields_of(r) == [field], r.text
    assert dates.RANGE_TEXT in r.text


def event(ctx: Ctx, **extra: Any) -> dict[str, Any]:
    return {"program_id": ctx.pid, "idempotency_key": ctx.unique(), "external_id": "someone",
            "event_type": "purchase", "event_data": {}, **extra}


@pytest.mark.parametrize("at", EDGES)
def test_event_timestamps(ctx: Ctx, at: str) -> None:
    refused(ctx.c.post("/v1/events", headers=ctx.h, json=event(ctx, event_timestamp=at)), "event_timestamp")
    batch = ctx.c.post("/v1/events/batch", headers=ctx.h, json={"events": [event(ctx, event_timestamp=at)]})
    assert batch.status_code == 200
    item = batch.json()["results"][0]
    assert item["status"] == "error", item
    assert item["error"]["message"] == f"events[0].event_timestamp: {dates.RANGE_TEXT}"
    cdp = ctx.c.post("/v1/cdp/events", headers=ctx.h, json={
        "source": "pos", "externalEventId": ctx.unique(), "eventType": "purchase", "occurredAt": at,
        "identity": {"externalUserId": "someone"}, "properties": {}})
    refused(cdp, "occurredAt", 422)


@pytest.mark.parametrize("at", EDGES)
@pytest.mark.parametrize("name", ["received_after", "received_before", "occurred_after", "occurred_before"])
def test_event_list_filters(ctx: Ctx, at: str, name: str) -> None:
    refused(ctx.c.get("/v1/events", headers=ctx.h, params={name: at}), name)


@pytest.mark.parametrize("at", EDGES)
def test_segments_as_of(ctx: Ctx, at: str) -> None:
    refused(ctx.c.get(f"/v1/programs/{ctx.pid}/segments", headers=ctx.h, params={"as_of": at}), "as_of")
    for segment in ("high_engagers", "purchasers", "advocates", "at_risk"):
        refused(ctx.c.get(f"/v1/programs/{ctx.pid}/segments/{segment}/members", headers=ctx.h,
                          params={"as_of": at}), "as_of")


@pytest.mark.parametrize("day", DAY_EDGES)
def test_analytics_days(ctx: Ctx, day: str) -> None:
    url = f"/v1/programs/{ctx.pid}/analytics"
    refused(ctx.c.get(url, headers=ctx.h, params={"to_date": day}), "to_date")
    refused(ctx.c.get(url, headers=ctx.h, params={"from_date": day}), "from_date")


@pytest.mark.parametrize("at", EDGES)
def test_rule_activity_window_and_simulation(ctx: Ctx, at: str) -> None:
    base = f"/v1/programs/{ctx.pid}/rules"
    for name in ("active_from", "active_to"):
        refused(ctx.c.post(base, headers=ctx.h, json={
            "name": ctx.unique(), "event_type": "purchase", "formula": "1", name: at}), name)
        refused(ctx.c.patch(f"{base}/{ctx.rid}", headers=ctx.h, json={name: at}), name)
    refused(ctx.c.post(f"{base}:simulate", headers=ctx.h, json={
        "event_type": "purchase", "event_timestamp": at, "event_data": {},
        "participant_id": ctx.participant}), "event_timestamp")


@pytest.mark.parametrize("at", EDGES)
def test_webhook_recovery_since(ctx: Ctx, at: str) -> None:
    refused(ctx.c.post(f"/v1/webhook-endpoints/{ctx.eid}:recover", headers=ctx.h, json={"since": at}),
            "since")


@pytest.mark.parametrize("day", ["0001-01-01", "0999-12-31"])
def test_birth_date(ctx: Ctx, day: str) -> None:
    refused(ctx.c.post("/v1/participants", headers=ctx.h, json={
        "identities": [{"type": "EXTERNAL", "value": ctx.unique()}], "attributes": {"birth_date": day}}),
        "attributes.birth_date")


def test_dates_just_inside_the_range_are_served(ctx: Ctx) -> None:
    c, h, pid = ctx.c, ctx.h, ctx.pid
    assert c.post("/v1/events", headers=h, json=event(ctx, event_timestamp=INSIDE)).status_code == 200
    assert c.post("/v1/cdp/events", headers=h, json={
        "source": "pos", "externalEventId": ctx.unique(), "eventType": "purchase", "occurredAt": INSIDE,
        "identity": {"externalUserId": "someone"}, "properties": {}}).status_code == 200
    assert c.get("/v1/events", headers=h, params={"occurred_after": INSIDE}).status_code == 200
    assert c.get(f"/v1/programs/{pid}/segments", headers=h, params={"as_of": INSIDE}).status_code == 200
    assert c.get(f"/v1/programs/{pid}/segments/at_risk/members", headers=h,
                 params={"as_of": INSIDE}).status_code == 200
    assert c.get(f"/v1/programs/{pid}/analytics", headers=h,
                 params={"to_date": "1000-01-01"}).status_code == 200
    assert c.get(f"/v1/programs/{pid}/analytics", headers=h,
                 params={"from_date": "8999-12-31"}).status_code == 200
    assert c.post(f"/v1/programs/{pid}/rules:simulate", headers=h, json={
        "event_type": "purchase", "event_timestamp": "8999-12-31T23:59:59Z", "event_data": {},
        "participant_id": ctx.participant}).status_code == 200
    assert c.post(f"/v1/programs/{pid}/rules", headers=h, json={
        "name": "window", "event_type": "purchase", "formula": "1", "active_from": INSIDE,
        "active_to": "8999-12-31T00:00:00Z"}).status_code == 200
    assert c.post("/v1/participants", headers=h, json={
        "identities": [{"type": "EXTERNAL", "value": "old"}], "attributes": {"birth_date": "1000-01-01"}}
                  ).status_code == 200
