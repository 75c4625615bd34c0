"""Analytics, segments and SYSTEM events (issue 7) for a known set of events, over REST and the
internal gRPC methods, on SQLite and PostgreSQL. Outcomes are recorded as the rules worker
records them, one of them twice (a redelivery)."""

from __future__ import annotations

import collections
import datetime as dt
import decimal
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import grpc
from accrual.ingest.v1 import ingest_pb2
from accrual.messages.v1 import messages_pb2
from accrual_ingest import storage
from accrual_platform.grpc_server import internal_metadata

if TYPE_CHECKING:
    from conftest import Stack

TOKEN = "test-internal-token"
R1, R2, R3 = (str(uuid.uuid4()) for _ in range(3))


class Scenario:
    """One tenant and program with participants A (10 purchases), B (a review and a login
    in February, then a SYSTEM birthday) and C (one big purchase, and one FAILED event)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.key, self.tenant = stack.tenant(frozenset({"events:write", "events:read", "programs:write"}))
        self.program = stack.program(self.tenant)
        self.a, self.b, self.c = sorted(str(uuid.uuid4()) for _ in range(3))
        self.outcomes: dict[str, messages_pb2.EventOutcome] = {}

    def event(self, participant: str, event_type: str, at: str,
              rules: list[tuple[str, str, str]] | None = None, *, failed: bool = False) -> str:
        with self.stack.http(self.key) as c:
            r = c.post("/v1/events", json={
                "program_id": self.program, "idempotency_key": str(uuid.uuid4()), "participant_id": participant,
                "event_type": event_type, "event_timestamp": at, "event_data": {}})
        assert r.status_code == 200, r.text
        event_id: str = r.json()["event_id"]
        self.complete(event_id, participant, rules or [], failed=failed)
        return event_id

    def complete(self, event_id: str, participant: str, rules: list[tuple[str, str, str]], *,
                 failed: bool = False) -> None:
        status = messages_pb2.OUTCOME_STATUS_FAILED if failed else messages_pb2.OUTCOME_STATUS_COMPLETED
        outcome = messages_pb2.EventOutcome(tenant_id=self.tenant, event_id=event_id, status=status,
                                            participant_id=participant)
        for rule_id, name, points in rules:
            outcome.rule_evaluations.add(rule_id=rule_id, rule_version=1, rule_name=name, matched=points != "0",
                                         points=points, recipient_id=participant, program_id=self.program)
        outcome.points_awarded = str(sum(int(p) for _, _, p in rules))
        assert self.stack.runtime.service.record_outcomes([outcome]) == 1
        self.outcomes[event_id] = outcome

    def load(self) -> None:
        for day in range(5, 15):
            self.event(self.a, "purchase", f"2024-03-{day:02d}T09:00:00Z", [(R1, "1 point per dollar", "10")])
        self.event(self.b, "review", "2024-02-20T10:00:00Z", [(R2, "review bonus", "25")])
        self.event(self.b, "login", "2024-02-25T10:00:00Z", [(R1, "1 point per dollar", "0")])
        self.event(self.c, "purchase", "2024-03-31T12:00:00Z", [(R1, "1 point per dollar", "50")])
        self.event(self.c, "purchase", "2024-03-31T13:00:00Z", failed=True)
        # A SYSTEM birthday for B: points count, activity does not (B stays at risk).
        req = ingest_pb2.SubmitSystemEventsRequest(tenant_id=self.tenant)
        item = req.events.add(program_id=self.program, idempotency_key=f"birthday:{self.b}:2024-03-20",
                              event_type="birthday", participant_id=self.b)
        item.event_timestamp.FromDatetime(dt.datetime(2024, 3, 20, tzinfo=dt.UTC))
        md = internal_metadata(TOKEN)
        first = self.stack.stub.SubmitSystemEvents(req, metadata=md, timeout=10).results[0]
        again = self.stack.stub.SubmitSystemEvents(req, metadata=md, timeout=10).results[0]
        assert first.status == "accepted" and again.status == "duplicate" and again.event_id == first.event_id
        self.complete(first.event_id, self.b, [(R3, "birthday bonus", "100")])
        self.birthday_event = first.event_id

    def get(self, path: str, **params: Any) -> Any:
        with self.stack.http(self.key) as c:
            r = c.get(f"/v1/programs/{self.program}{path}", params=params)
        assert r.status_code == 200, r.text
        return r.json()


def test_analytics_of_a_known_set_of_events_ignores_a_redelivered_outcome(stack: Stack) -> None:
    s = Scenario(stack)
    s.load()
    redelivered = next(iter(s.outcomes.values()))
    assert stack.runtime.service.record_outcomes([redelivered]) == 0

    a = s.get("/analytics", from_date="2024-02-01", to_date="2024-03-31")
    assert a["total_events"] == 14 and a["total_points"] == 275
    assert a["active_participants"] == 3 and a["average_events_per_participant"] == 4.33
    buckets = {b["label"]: int(b["participants"]) for b in a["events_per_participant"]}
    assert buckets == {"1": 1, "2": 1, "3-5": 0, "6-10": 1, "11-20": 0, "21+": 0}
    assert [(t["event_type"], t["events"], t["points"]) for t in a["events_by_type"]] == [
        ("birthday", 1, 100), ("login", 1, 0), ("purchase", 11, 150), ("review", 1, 25)]
    assert [(r["rule_id"], r["rule_name"], r["matches"], r["points"]) for r in a["points_by_rule"]] == [
        (R1, "1 point per dollar", 11, 150), (R3, "birthday bonus", 1, 100), (R2, "review bonus", 1, 25)]
    daily = {d["date"]: (d["events"], d["points"]) for d in a["daily"]}
    assert len(daily) == 14 and daily["2024-03-05"] == (1, 10) and daily["2024-03-31"] == (1, 50)
    assert [(p["participant_id"], p["events"], p["points"]) for p in a["top_participants"]] == [
        (s.b, 2, 125), (s.a, 10, 100), (s.c, 1, 50)]

    # The range is in whole UTC days; the default ends on the day of the latest event.
    march = s.get("/analytics", from_date="2024-03-01")
    assert march["to_date"] == "2024-03-31" and march["total_events"] == 12
    assert march["active_participants"] == 2
    assert s.get("/analytics")["from_date"] == "2024-03-02"
    with stack.http(s.key) as c:
        for params, field in [({"from_date": "March"}, "from_date"), ({"to_date": "2024-13-01"}, "to_date"),
                              ({"from_date": "2024-03-02", "to_date": "2024-03-01"}, "to_date"),
                              ({"top": "500"}, "top")]:
            bad = c.get(f"/v1/programs/{s.program}/analytics", params=params)
            assert bad.status_code == 400, (params, bad.text)
            assert bad.json()["error"]["details"][0]["field"] == field
        assert c.get("/v1/programs/not-a-uuid/analytics").status_code == 400
    # To another tenant, this program does not exist.
    other, _ = stack.tenant(frozenset({"events:read"}))
    with stack.http(other) as c:
        refused = c.get(f"/v1/programs/{s.program}/analytics")
        assert (refused.status_code, refused.json()["error"]["code"]) == (404, "program_not_found")


def test_segments_follow_the_event_clock_and_the_program_config(stack: Stack) -> None:
    s = Scenario(stack)
    s.load()
    seg = s.get("/segments")
    assert seg["as_of"] == "2024-03-31T12:00:00Z"  # the latest event, not the server clock
    assert {x["name"]: int(x["count"]) for x in seg["segments"]} == {
        "high_engagers": 1, "purchasers": 2, "advocates": 1, "at_risk": 1}

    def members(name: str, **params: Any) -> list[str]:
        return [m["participant_id"] for m in s.get(f"/segments/{name}/members", **params)["members"]]

    assert members("high_engagers") == [s.a]
    assert members("purchasers") == [s.a, s.c]
    assert members("advocates") == [s.b] and members("at_risk") == [s.b]
    first = s.get("/segments/purchasers/members", page_size=1)
    assert [m["participant_id"] for m in first["members"]] == [s.a] and first["next_page_token"]
    second = s.get("/segments/purchasers/members", page_size=1, page_token=first["next_page_token"])
    assert [m["participant_id"] for m in second["members"]] == [s.c] and second["next_page_token"] == ""

    # Three weeks later on the event clock: A's purchases left the 30-day window.
    later = s.get("/segments", as_of="2024-04-20T00:00:00Z")
    assert {x["name"]: int(x["count"]) for x in later["segments"]} == {
        "high_engagers": 0, "purchasers": 2, "advocates": 1, "at_risk": 2}
    # Before C's purchase, C was no purchaser.
    assert members("purchasers", as_of="2024-03-20T00:00:00Z") == [s.a]

    with stack.http(s.key) as c:
        assert c.get(f"/v1/programs/{s.program}/segment-config").json()["high_engagers"] == {
            "min_events": 10, "window_days": 30}
        put = c.put(f"/v1/programs/{s.program}/segment-config", json={
            "high_engagers": {"min_events": 1, "window_days": 60}, "advocates": {"event_types": ["login"]}})
        assert put.status_code == 200, put.text
        config = put.json()
        assert config["high_engagers"] == {"min_events": 1, "window_days": 60}
        assert config["advocates"] == {"event_types": ["login"], "min_events": 1}
        assert config["purchasers"] == {"event_types": ["purchase"], "min_events": 1} and config["updated_at"]
        for body, field in [({"high_engagers": {"min_events": -1}}, "high_engagers.min_events"),
                            ({"at_risk": {"inactive_days": 100000}}, "at_risk.inactive_days"),
                            ({"purchasers": {"event_types": [" purchase"]}}, "purchasers.event_types[0]"),
                            ({"at_risk": {"inactive_days": "soon"}}, "at_risk.inactive_days")]:
            bad = c.put(f"/v1/programs/{s.program}/segment-config", json=body)
            assert bad.status_code == 400, (body, bad.text)
            assert bad.json()["error"]["details"][0]["field"] == field
        # A replacing PUT that sets nothing is refused, naming the sections, and resets nothing.
        sections = ["high_engagers", "purchasers", "advocates", "at_risk"]
        for raw in (b"", b"{}", b'{"high_engagers": null}'):
            empty = c.put(f"/v1/programs/{s.program}/segment-config", content=raw)
            assert empty.status_code == 400, (raw, empty.text)
            assert [d["field"] for d in empty.json()["error"]["details"]] == sections
        failure = stack.failure(lambda: stack.stub.UpdateSegmentConfig(
            ingest_pb2.UpdateSegmentConfigRequest(program_id=s.program), metadata=stack.md(s.key), timeout=10))
        assert failure.code == grpc.StatusCode.INVALID_ARGUMENT and failure.fields == sections
        assert c.get(f"/v1/programs/{s.program}/segment-config").json()["high_engagers"] == {
            "min_events": 1, "window_days": 60}
        missing = c.get(f"/v1/programs/{s.program}/segments/whales/members")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "segment_not_found"
    assert members("high_engagers") == sorted([s.a, s.b, s.c])
    assert members("advocates") == [s.b]


def test_programs_that_are_not_the_callers_are_404_on_every_engagement_route(stack: Stack) -> None:
    s = Scenario(stack)
    s.event(s.a, "purchase", "2024-03-05T09:00:00Z", [(R1, "1 point per dollar", "10")])
    key, tenant = stack.tenant(frozenset({"events:read", "programs:write"}))
    body = {"high_engagers": {"min_events": 1, "window_days": 60}}
    with stack.http(key) as c:
        for program in (s.program, str(uuid.uuid4())):  # another tenant's, and nobody's
            base = f"/v1/programs/{program}"
            for answer in (c.get(f"{base}/analytics"), c.get(f"{base}/segments"),
                           c.get(f"{base}/segments/purchasers/members"), c.get(f"{base}/segment-config"),
                           c.put(f"{base}/segment-config", json=body)):
                assert answer.status_code == 404, (answer.request.method, answer.request.url, answer.text)
                assert answer.json()["error"]["code"] == "program_not_found"
        assert stack.count(tenant, storage.segment_configs) == 0
        # the caller's own program works on every route
        mine = f"/v1/programs/{stack.program(tenant)}"
        for answer in (c.get(f"{mine}/analytics"), c.get(f"{mine}/segments"),
                       c.get(f"{mine}/segments/purchasers/members"), c.get(f"{mine}/segment-config"),
                       c.put(f"{mine}/segment-config", json=body)):
            assert answer.status_code == 200, (answer.request.url, answer.text)
        assert stack.count(tenant, storage.segment_configs) == 1
        # a rules service that cannot answer is a 503, and nothing is written
        stack.programs.down = True
        try:
            down = c.put(f"/v1/programs/{stack.program(tenant)}/segment-config", json=body)
        finally:
            stack.programs.down = False
        assert (down.status_code, down.json()["error"]["code"]) == (503, "programs_unavailable")
        assert stack.count(tenant, storage.segment_configs) == 1
    # the owner still sees its program
    assert s.get("/analytics")["total_events"] == 1


def test_system_events_are_listed_by_origin_and_inactive_participants_by_last_event(stack: Stack) -> None:
    s = Scenario(stack)
    s.load()
    with stack.http(s.key) as c:
        system = c.get("/v1/events", params={"program_id": s.program, "origin": "SYSTEM"}).json()["events"]
        external = c.get("/v1/events", params={"program_id": s.program, "origin": "EXTERNAL"}).json()["events"]
    assert [e["event_id"] for e in system] == [s.birthday_event]
    assert system[0]["origin"] == "SYSTEM" and system[0]["status"] == "COMPLETED"
    assert len(external) == 14 and all(e["origin"] == "EXTERNAL" for e in external)

    md = internal_metadata(TOKEN)

    def inactive(day: str, **kw: Any) -> ingest_pb2.ListInactiveParticipantsResponse:
        return stack.stub.ListInactiveParticipants(ingest_pb2.ListInactiveParticipantsRequest(
            tenant_id=s.tenant, program_id=s.program, last_event_on_or_before=day, **kw), metadata=md, timeout=10)

    assert [(p.participant_id, p.last_event_date) for p in inactive("2024-03-01").participants] == [
        (s.b, "2024-02-25")]
    assert len(inactive("2024-03-30").participants) == 2
    page = inactive("2024-04-30", page_size=2)
    rest = inactive("2024-04-30", page_size=2, page_token=page.next_page_token)
    assert [p.participant_id for p in [*page.participants, *rest.participants]] == [s.a, s.b, s.c]
    # The internal methods refuse partner keys; bad items are answered per item, naming the field.
    failure = stack.failure(lambda: stack.stub.ListInactiveParticipants(
        ingest_pb2.ListInactiveParticipantsRequest(tenant_id=s.tenant, program_id=s.program,
                                                   last_event_on_or_before="2024-03-01"),
        metadata=stack.md(s.key), timeout=10))
    assert failure.code == grpc.StatusCode.PERMISSION_DENIED
    bad = stack.stub.SubmitSystemEvents(ingest_pb2.SubmitSystemEventsRequest(tenant_id=s.tenant, events=[
        ingest_pb2.SystemEvent(program_id=s.program, idempotency_key="k", event_type="birthday")]),
        metadata=md, timeout=10).results[0]
    assert bad.status == "error" and bad.error.field in ("events[0].event_timestamp", "events[0].participant_id")


def test_concurrent_outcome_batches_add_up_exactly(stack: Stack) -> None:
    """Workers recording outcomes of the same program and day at once (the same aggregate
    rows), with every batch also delivered twice: each event counts exactly once."""
    s = Scenario(stack)
    participants = sorted(str(uuid.uuid4()) for _ in range(4))
    batches: list[list[messages_pb2.EventOutcome]] = []
    with stack.http(s.key) as c:
        for b in range(6):
            batch = []
            for i in range(10):
                who = participants[(b + i) % 4]
                r = c.post("/v1/events", json={
                    "program_id": s.program, "idempotency_key": str(uuid.uuid4()), "participant_id": who,
                    "event_type": "purchase", "event_timestamp": "2024-06-01T10:00:00Z", "event_data": {}})
                outcome = messages_pb2.EventOutcome(tenant_id=s.tenant, event_id=r.json()["event_id"],
                                                    status=messages_pb2.OUTCOME_STATUS_COMPLETED, participant_id=who)
                outcome.rule_evaluations.add(rule_id=R1, rule_version=1, rule_name="r", matched=True, points="1.5",
                                             recipient_id=who, program_id=s.program)
                batch.append(outcome)
            batches.append(batch)
    work = [list(reversed(b)) if i % 2 else b for i, b in enumerate(batches + batches)]
    with ThreadPoolExecutor(6) as pool:
        recorded = sum(pool.map(stack.runtime.service.record_outcomes, work))
    assert recorded == 60
    a = s.get("/analytics", from_date="2024-06-01", to_date="2024-06-01")
    assert a["total_events"] == 60 and a["total_points"] == 90
    per = collections.Counter(o.participant_id for b in batches for o in b)
    assert {p["participant_id"]: (p["events"], p["points"]) for p in a["top_participants"]} == {
        who: (n, decimal.Decimal("1.5") * n) for who, n in per.items()}
