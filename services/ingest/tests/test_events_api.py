"""POST/GET /v1/events over REST (through the gateway) and gRPC, as SPEC section 3 and issue 3
describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import grpc
import httpx
import pytest
from accrual.ingest.v1 import ingest_pb2
from accrual.messages.v1 import messages_pb2
from accrual_ingest.service import StaleEventSweeper

if TYPE_CHECKING:
    from conftest import Stack

PROGRAM = "550e8400-e29b-41d4-a716-446655440000"


def body(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"program_id": PROGRAM, "idempotency_key": f"order-{uuid.uuid4()}-completed",
                            "external_id": "user_abc123", "event_type": "purchase",
                            "event_timestamp": "2024-01-15T10:30:00Z", "event_data": {"amount": 125}}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not ...}


def test_submit_answers_pending_event_with_every_documented_field(stack: Stack) -> None:
    key, tenant = stack.tenant()
    sent = body()
    with stack.http(key) as c:
        r = c.post("/v1/events", json=sent)
    assert r.status_code == 200, r.text
    event = r.json()
    assert event["status"] == "PENDING" and event["deduplicated"] is False
    assert uuid.UUID(event["event_id"])
    assert event["idempotency_key"] == sent["idempotency_key"] and event["program_id"] == PROGRAM
    assert event["external_id"] == "user_abc123" and event["participant_id"] is None
    assert event["event_timestamp"] == "2024-01-15T10:30:00Z" and event["received_at"]
    assert event["event_data"] == {"amount": 125} and event["origin"] == "EXTERNAL"
    assert r.headers["X-Request-Id"]
    assert stack.accepted_messages(tenant) == [event["event_id"]]


def test_timestamp_defaults_to_receipt_time(stack: Stack) -> None:
    key, _ = stack.tenant()
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    with stack.http(key) as c:
        event = c.post("/v1/events", json=body(event_timestamp=...)).json()
    stamp = dt.datetime.fromisoformat(event["event_timestamp"].replace("Z", "+00:00"))
    assert before <= stamp <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    assert event["event_timestamp"] == event["received_at"]


def test_identical_retry_returns_original_and_different_payload_conflicts(stack: Stack) -> None:
    key, tenant = stack.tenant()
    first = body(event_data={"amount": 125, "items": [{"sku": "a", "qty": 1}]})
    with stack.http(key) as c:
        original = c.post("/v1/events", json=first).json()
        # Key order, 125 vs 125.0, and another spelling of the same instant: the same payload.
        again = c.post("/v1/events", content=(
            '{ "event_data": {"items": [{"qty": 1.0, "sku": "a"}], "amount": 125.0},'
            f'  "external_id": "user_abc123", "idempotency_key": "{first["idempotency_key"]}",'
            f'  "event_timestamp": "2024-01-15T12:30:00+02:00", "event_type": "purchase", "program_id": "{PROGRAM}"}}'),
            headers={"Content-Type": "application/json"})
        assert again.status_code == 200, again.text
        assert again.json()["event_id"] == original["event_id"] and again.json()["deduplicated"] is True
        conflict = c.post("/v1/events", json={**first, "event_data": {"amount": 126}})
    assert conflict.status_code == 409
    error = conflict.json()["error"]
    assert error["code"] == "idempotency_conflict" and error["request_id"] == conflict.headers["X-Request-Id"]
    assert stack.count(tenant) == 1
    assert stack.accepted_messages(tenant) == [original["event_id"]]  # nothing reprocessed


def test_same_key_in_two_programs_is_two_events(stack: Stack) -> None:
    key, tenant = stack.tenant()
    sent = body()
    other = str(uuid.uuid4())
    with stack.http(key) as c:
        a = c.post("/v1/events", json=sent).json()
        b = c.post("/v1/events", json={**sent, "program_id": other}).json()
    assert a["event_id"] != b["event_id"] and not b["deduplicated"]
    assert stack.count(tenant) == 2


def test_the_same_key_in_another_tenant_is_another_event(stack: Stack) -> None:
    key_a, _ = stack.tenant()
    key_b, _ = stack.tenant()
    sent = body()
    with stack.http(key_a) as a, stack.http(key_b) as b:
        ea = a.post("/v1/events", json=sent).json()
        eb = b.post("/v1/events", json=sent).json()
        assert ea["event_id"] != eb["event_id"] and eb["deduplicated"] is False
        assert b.get(f"/v1/events/{ea['event_id']}").status_code == 404


BAD_INPUT: list[tuple[str, Any, str]] = [
    ("malformed JSON", '{"program_id": ', "body"),
    ("not an object", "[1, 2]", "body"),
    ("event_data not an object", body(event_data=[1, 2]), "event_data"),
    ("event_data a string", body(event_data="amount=1"), "event_data"),
    ("wrong type", body(idempotency_key=12345), "idempotency_key"),
    ("number as string id", body(external_id=42), "external_id"),
    ("unknown field", body(amount=125), "amount"),
    ("neither identity", body(external_id=...), "external_id"),
    ("both identities", body(participant_id=str(uuid.uuid4())), "external_id"),
    ("both recipients", body(recipient_id=str(uuid.uuid4()), recipient_external_id="friend"), "recipient_id"),
    ("bad participant UUID", body(external_id=..., participant_id="not-a-uuid"), "participant_id"),
    ("bad recipient UUID", body(recipient_id="123"), "recipient_id"),
    ("bad program UUID", body(program_id="prog_1"), "program_id"),
    ("bad timestamp", body(event_timestamp="2024-13-45T10:00:00Z"), "event_timestamp"),
    ("timestamp without zone", body(event_timestamp="2024-01-15T10:30:00"), "event_timestamp"),
    ("timestamp as number", body(event_timestamp=1705314600), "event_timestamp"),
    ("far-future timestamp", body(event_timestamp=(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10))
                                  .isoformat().replace("+00:00", "Z")), "event_timestamp"),
    ("empty key", body(idempotency_key=""), "idempotency_key"),
    ("missing key", body(idempotency_key=...), "idempotency_key"),
    ("256-character key", body(idempotency_key="k" * 256), "idempotency_key"),
    ("newline in key", body(idempotency_key="order\n1"), "idempotency_key"),
    ("NUL in key", body(idempotency_key="order\u00001"), "idempotency_key"),
    ("escape in external_id", body(external_id="user\u001b[31m"), "external_id"),
    ("256-character external_id", body(external_id="u" * 256), "external_id"),
    ("empty external_id", body(external_id=""), "external_id"),
    ("NUL inside event_data", body(event_data={"note": "a\u0000b"}), "event_data.note"),
    ("event_data over 32 KiB", body(event_data={"blob": "x" * (33 * 1024)}), "event_data"),
    ("null key", body(idempotency_key=None), "idempotency_key"),
    ("both key spellings", body(reference="order-1"), "reference"),
    ("both timestamp spellings", body(occurred_at="2024-01-15T10:30:00Z"), "occurred_at"),
    ("both data spellings", body(data={"amount": 125}), "data"),
    ("recipient of a tenant event", body(program_id=..., recipient_external_id="friend"), "recipient_id"),
]


@pytest.mark.parametrize(("case", "payload", "field"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_400_naming_the_field_and_stores_nothing(stack: Stack, case: str, payload: Any,
                                                              field: str) -> None:
    key, tenant = stack.tenant()
    with stack.http(key) as c:
        if isinstance(payload, str):
            r = c.post("/v1/events", content=payload, headers={"Content-Type": "application/json"})
        else:
            r = c.post("/v1/events", json=payload)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert field in [d.get("field") for d in error["details"]], error
    assert error["request_id"] == r.headers["X-Request-Id"]
    assert stack.count(tenant) == 0


def test_aliases_and_tenant_events_dedup_per_tenant_and_list(stack: Stack) -> None:
    """Seeds 001 and 002: reference, occurred_at and data stand for their fields (data's numbers
    exact); an event without program_id is deduplicated per tenant and listed."""
    key, tenant = stack.tenant()
    aliased = {"program_id": PROGRAM, "reference": "order_123", "external_id": "u1",
               "occurred_at": "2024-01-15T10:30:00Z", "data": {"amount": 9007199254740993}}
    tenant_event = {"event_type": "user.created", "idempotency_key": "k-1", "data": {"plan": "pro"}}
    with stack.http(key) as c:
        first = c.post("/v1/events", json=aliased).json()
        again = c.post("/v1/events", json={**aliased, "reference": None, "idempotency_key": "order_123",
                                           "occurred_at": None, "event_timestamp": "2024-01-15T10:30:00Z"}).json()
        t1 = c.post("/v1/events", json=tenant_event)
        t2 = c.post("/v1/events", json=tenant_event).json()
        other = c.post("/v1/events", json={**tenant_event, "data": {"plan": "free"}})
        batch = c.post("/v1/events/batch", json={"events": [tenant_event, {**tenant_event, "event_data": {}}]}).json()
        listed = c.get("/v1/events").json()["events"]
        in_program = c.get("/v1/events", params={"program_id": PROGRAM}).json()["events"]
    assert first["idempotency_key"] == "order_123" and first["event_data"] == {"amount": 9007199254740993}
    assert first["event_timestamp"] == "2024-01-15T10:30:00Z"
    assert again["deduplicated"] is True and again["event_id"] == first["event_id"]
    assert t1.status_code == 200, t1.text
    stored = t1.json()
    assert stored["program_id"] == "" and stored["external_id"] is None and stored["event_data"] == {"plan": "pro"}
    assert (t2["deduplicated"], t2["event_id"], t2["received_at"]) == (True, stored["event_id"], stored["received_at"])
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"
    assert "by a tenant event" in other.json()["error"]["message"]
    assert [r["status"] for r in batch["results"]] == ["duplicate", "error"]
    assert batch["results"][1]["error"]["field"] == "events[1].data"
    assert {e["event_id"] for e in listed} == {first["event_id"], stored["event_id"]}
    assert [e["event_id"] for e in in_program] == [first["event_id"]]
    assert stack.count(tenant) == 2


def test_oversized_body_is_refused_before_anything_is_stored(stack: Stack) -> None:
    key, tenant = stack.tenant()
    huge = {"events": [body(event_data={"blob": "x" * 30_000}) for _ in range(200)]}
    with stack.http(key) as c:
        r = c.post("/v1/events/batch", json=huge)
    assert r.status_code == 400 and r.json()["error"]["code"] == "body_too_large"
    assert stack.count(tenant) == 0


def test_batch_answers_each_item_in_request_order(stack: Stack) -> None:
    key, tenant = stack.tenant()
    existing = body()
    repeated = body()
    with stack.http(key) as c:
        earlier = c.post("/v1/events", json=existing).json()
        r = c.post("/v1/events/batch", json={"events": [
            body(), existing, body(external_id=...), repeated, repeated,
            {**repeated, "event_data": {"amount": 1}}, {**existing, "event_data": {"amount": 2}},
        ]})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["index"] for x in results] == list(range(7))
    assert [x["status"] for x in results] == ["accepted", "duplicate", "error", "accepted", "duplicate",
                                              "error", "error"]
    assert results[1]["event_id"] == earlier["event_id"]
    assert results[2]["error"]["field"] == "events[2].external_id" and results[2]["event_id"] is None
    assert results[4]["event_id"] == results[3]["event_id"]
    assert results[5]["error"]["code"] == "idempotency_conflict"
    assert results[6]["error"]["code"] == "idempotency_conflict"
    assert stack.count(tenant) == 3
    assert sorted(stack.accepted_messages(tenant)) == sorted(
        [earlier["event_id"], results[0]["event_id"], results[3]["event_id"]])


@pytest.mark.parametrize(("payload", "field"), [
    ({"events": []}, "events"),
    ({"events": {"program_id": PROGRAM}}, "events"),
    ({"events": "x"}, "events"),
    ({}, "events"),
])
def test_empty_or_non_list_batch_is_400_for_the_whole_request(stack: Stack, payload: Any, field: str) -> None:
    key, tenant = stack.tenant()
    with stack.http(key) as c:
        r = c.post("/v1/events/batch", json=payload)
    assert r.status_code == 400, r.text
    assert [d["field"] for d in r.json()["error"]["details"]] == [field]
    assert stack.count(tenant) == 0


def test_batch_of_1000_is_accepted_and_1001_refused_whole(stack: Stack) -> None:
    key, tenant = stack.tenant()
    with stack.http(key) as c:
        too_many = c.post("/v1/events/batch", json={"events": [body() for _ in range(1001)]})
        assert too_many.status_code == 400 and too_many.json()["error"]["details"][0]["field"] == "events"
        assert stack.count(tenant) == 0
        ok = c.post("/v1/events/batch", json={"events": [body() for _ in range(1000)]})
    assert ok.status_code == 200
    assert {x["status"] for x in ok.json()["results"]} == {"accepted"}
    assert stack.count(tenant) == 1000


def test_get_event_and_tenant_isolation(stack: Stack) -> None:
    key, _ = stack.tenant()
    other, _ = stack.tenant()
    with stack.http(key) as c, stack.http(other) as o:
        event = c.post("/v1/events", json=body()).json()
        got = c.get(f"/v1/events/{event['event_id']}")
        assert got.status_code == 200 and got.json()["event_id"] == event["event_id"]
        assert got.json()["rule_evaluations"] == []
        assert o.get(f"/v1/events/{event['event_id']}").status_code == 404
        bad = c.get("/v1/events/not-a-uuid")
        assert bad.status_code == 400 and bad.json()["error"]["details"][0]["field"] == "event_id"


def test_list_filters_and_cursor_pages(stack: Stack) -> None:
    key, tenant = stack.tenant()
    other_program = str(uuid.uuid4())
    participant = str(uuid.uuid4())
    with stack.http(key) as c:
        r = c.post("/v1/events/batch", json={"events": [
            body(event_timestamp=f"2024-01-{day:02d}T00:00:00Z") for day in range(1, 29)]
            + [body(program_id=other_program, event_timestamp="2023-06-01T00:00:00Z") for _ in range(30)]
            + [body(external_id=..., participant_id=participant, event_timestamp="2023-06-01T00:00:00Z",
                    event_type="referral")]})
        assert r.status_code == 200
        page = c.get("/v1/events").json()
        assert len(page["events"]) == 50 and page["next_page_token"]
        seen = [e["event_id"] for e in page["events"]]
        rest = c.get("/v1/events", params={"page_token": page["next_page_token"]}).json()
        assert len(rest["events"]) == 9 and rest["next_page_token"] == ""
        seen += [e["event_id"] for e in rest["events"]]
        assert len(set(seen)) == 59
        assert len(c.get("/v1/events", params={"page_size": 1000}).json()["events"]) == 59  # max 200
        assert len(c.get("/v1/events", params={"program_id": other_program}).json()["events"]) == 30
        only = c.get("/v1/events", params={"participant_id": participant}).json()["events"]
        assert [e["participant_id"] for e in only] == [participant]
        referrals = c.get("/v1/events", params={"event_type": "referral"}).json()["events"]
        assert [e["participant_id"] for e in referrals] == [participant]
        assert len(c.get("/v1/events", params={"event_type": "purchase", "program_id": other_program}
                         ).json()["events"]) == 30
        assert c.get("/v1/events", params={"event_type": "Referral"}).json()["events"] == []
        assert len(c.get("/v1/events", params={"external_id": "user_abc123", "page_size": 200}).json()["events"]) == 58
        january = c.get("/v1/events", params={"occurred_after": "2024-01-10T00:00:00Z",
                                              "occurred_before": "2024-01-20T00:00:00Z"}).json()["events"]
        assert len(january) == 10
        assert len(c.get("/v1/events", params={"status": "PENDING", "origin": "EXTERNAL",
                                               "page_size": 200}).json()["events"]) == 59
        assert c.get("/v1/events", params={"status": "FAILED"}).json()["events"] == []
        assert c.get("/v1/events", params={"origin": "SYSTEM"}).json()["events"] == []
        later = c.get("/v1/events", params={"received_after": "2999-01-01T00:00:00Z"}).json()["events"]
        assert later == []
        for params, field in [({"status": "DONE"}, "status"), ({"page_size": "x"}, "page_size"),
                              ({"program_id": "nope"}, "program_id"), ({"page_token": "garbage"}, "page_token"),
                              ({"occurred_after": "yesterday"}, "occurred_after"), ({"colour": "red"}, "colour"),
                              ({"event_type": "x" * 256}, "event_type"),
                              ({"external_id": "a\u0007b"}, "external_id")]:
            bad = c.get("/v1/events", params=params)
            assert bad.status_code == 400, (params, bad.text)
            assert bad.json()["error"]["details"][0]["field"] == field
    assert stack.count(tenant) == 59


def test_retry_requeues_only_failed_events(stack: Stack) -> None:
    key, tenant = stack.tenant()
    with stack.http(key) as c:
        event = c.post("/v1/events", json=body()).json()
        pending = c.post(f"/v1/events/{event['event_id']}/retry", json={})
        assert pending.status_code == 409 and pending.json()["error"]["code"] == "event_not_retryable"
        outcome = messages_pb2.EventOutcome(tenant_id=tenant, event_id=event["event_id"],
                                            status=messages_pb2.OUTCOME_STATUS_FAILED,
                                            error_code="program_not_found", error_message="no such program")
        assert stack.runtime.service.record_outcomes([outcome]) == 1
        failed = c.get(f"/v1/events/{event['event_id']}").json()
        assert failed["status"] == "FAILED" and failed["error_code"] == "program_not_found"
        retried = c.post(f"/v1/events/{event['event_id']}/retry", json={})
        assert retried.status_code == 200 and retried.json()["status"] == "PENDING"
        assert retried.json()["error_code"] is None
    assert stack.accepted_messages(tenant).count(event["event_id"]) == 2


def test_auth_on_every_route(stack: Stack) -> None:
    key, _ = stack.tenant()
    reader, _ = stack.tenant(frozenset({"events:read"}))
    with stack.http() as anon:
        assert anon.post("/v1/events", json=body()).status_code == 401
        assert anon.get("/v1/events").status_code == 401
        unknown = anon.get("/v1/events", headers={"X-API-Key": "sk_nope"})
        assert unknown.status_code == 401 and unknown.json()["error"]["code"] == "unauthenticated"
        bearer = anon.post("/v1/events", json=body(), headers={"Authorization": f"Bearer {key}"})
        assert bearer.status_code == 200
        forbidden = anon.post("/v1/events", json=body(), headers={"X-API-Key": reader})
        assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "permission_denied"
        assert anon.get("/v1/events", headers={"X-API-Key": reader}).status_code == 200


def test_grpc_has_the_same_semantics(stack: Stack) -> None:
    key, tenant = stack.tenant()
    md = stack.md(key)
    req = ingest_pb2.SubmitEventRequest(program_id=PROGRAM, idempotency_key="grpc-1", external_id="u1",
                                        event_data={"amount": 5})
    first = stack.stub.SubmitEvent(req, metadata=md)
    again = stack.stub.SubmitEvent(req, metadata=md)
    assert again.event_id == first.event_id and again.deduplicated and first.status == ingest_pb2.EVENT_STATUS_PENDING
    changed = ingest_pb2.SubmitEventRequest()
    changed.CopyFrom(req)
    changed.event_data.update({"amount": 6})
    conflict = stack.failure(lambda: stack.stub.SubmitEvent(changed, metadata=md))
    assert conflict.code == grpc.StatusCode.ABORTED and conflict.reason == "IDEMPOTENCY_CONFLICT"
    bad = ingest_pb2.SubmitEventRequest(program_id="x", idempotency_key="k" * 256, participant_id="nope",
                                        external_id="u1", event_data={"n": float("nan")})
    failure = stack.failure(lambda: stack.stub.SubmitEvent(bad, metadata=md))
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(failure.fields) == {"program_id", "idempotency_key", "external_id", "participant_id", "event_data.n"}
    far = ingest_pb2.SubmitEventRequest()
    far.CopyFrom(req)
    far.event_timestamp.seconds = 10**13  # outside what RFC 3339 can spell
    failure = stack.failure(lambda: stack.stub.SubmitEvent(far, metadata=md))
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT and failure.fields == ["event_timestamp"]
    empty = stack.failure(lambda: stack.stub.BatchSubmitEvents(ingest_pb2.BatchSubmitEventsRequest(), metadata=md))
    assert empty.code == grpc.StatusCode.INVALID_ARGUMENT and empty.fields == ["events"]
    missing = stack.failure(lambda: stack.stub.GetEvent(ingest_pb2.GetEventRequest(event_id=str(uuid.uuid4())),
                                                         metadata=md))
    assert missing.code == grpc.StatusCode.NOT_FOUND
    unauth = stack.failure(lambda: stack.stub.GetEvent(ingest_pb2.GetEventRequest(event_id=first.event_id)))
    assert unauth.code == grpc.StatusCode.UNAUTHENTICATED
    assert stack.count(tenant) == 1
    claimed = stack.claim(tenant, [first.event_id])
    assert [e.origin for e in claimed] == [ingest_pb2.EVENT_ORIGIN_EXTERNAL]
    assert claimed[0].status == ingest_pb2.EVENT_STATUS_PROCESSING and claimed[0].event_data["amount"] == 5


@pytest.mark.integration
def test_twenty_concurrent_identical_submissions_make_one_event(pg_stack: Stack) -> None:
    key, tenant = pg_stack.tenant()
    sent = body()
    gate = threading.Barrier(20)

    def submit(_: int) -> httpx.Response:
        with pg_stack.http(key) as c:
            gate.wait()
            return c.post("/v1/events", json=sent)

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(submit, range(20)))
    assert [r.status_code for r in answers] == [200] * 20, [r.text for r in answers if r.status_code != 200]
    ids = {r.json()["event_id"] for r in answers}
    assert len(ids) == 1
    assert sum(not r.json()["deduplicated"] for r in answers) == 1
    assert pg_stack.count(tenant) == 1
    assert pg_stack.accepted_messages(tenant) == list(ids)


@pytest.mark.integration
def test_concurrent_batches_with_overlapping_keys_store_each_key_once(pg_stack: Stack) -> None:
    key, tenant = pg_stack.tenant()
    events = [body() for _ in range(50)]
    gate = threading.Barrier(8)

    def submit(i: int) -> httpx.Response:
        mine = events[i * 5:] + events[:i * 5]
        with pg_stack.http(key) as c:
            gate.wait()
            return c.post("/v1/events/batch", json={"events": mine})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(submit, range(8)))
    assert [r.status_code for r in answers] == [200] * 8
    by_key: dict[str, set[str]] = {}
    for i, r in enumerate(answers):
        mine = events[i * 5:] + events[:i * 5]
        for sent, result in zip(mine, r.json()["results"], strict=True):
            assert result["status"] in ("accepted", "duplicate")
            by_key.setdefault(sent["idempotency_key"], set()).add(result["event_id"])
    assert all(len(ids) == 1 for ids in by_key.values())
    assert pg_stack.count(tenant) == 50


def test_stale_sweep_announces_unfinished_events_again_and_only_those(stack: Stack) -> None:
    key, tenant = stack.tenant()
    with stack.http(key) as c:
        stuck = c.post("/v1/events", json=body()).json()
        done = c.post("/v1/events", json=body()).json()
    outcome = messages_pb2.EventOutcome(tenant_id=tenant, event_id=done["event_id"],
                                        status=messages_pb2.OUTCOME_STATUS_COMPLETED, points_awarded="1")
    assert stack.runtime.service.record_outcomes([outcome]) == 1
    # nothing is old enough yet
    assert stack.runtime.service.sweep_stale(dt.timedelta(hours=1)) == 0
    before = stack.accepted_messages(tenant)
    time.sleep(0.05)
    swept = stack.runtime.service.sweep_stale(dt.timedelta(milliseconds=20), limit=1_000_000)
    assert swept >= 1
    assert stack.runtime.service.sweep_stale(dt.timedelta(minutes=1)) == 0  # just announced
    after = stack.accepted_messages(tenant)
    assert after.count(stuck["event_id"]) == before.count(stuck["event_id"]) + 1
    assert after.count(done["event_id"]) == before.count(done["event_id"])
    with stack.http(key) as c:
        completed = c.get(f"/v1/events/{done['event_id']}").json()
    assert completed["status"] == "COMPLETED"


def test_a_sweeper_started_after_a_restart_announces_every_unfinished_event_once(stack: Stack) -> None:
    """The embedded suite's sweep at start: unfinished events however recent, each once."""
    key, tenant = stack.tenant()
    with stack.http(key) as c:
        stuck = [c.post("/v1/events", json=body()).json()["event_id"] for _ in range(3)]
        done = c.post("/v1/events", json=body()).json()["event_id"]
    stack.runtime.service.record_outcomes([messages_pb2.EventOutcome(
        tenant_id=tenant, event_id=done, status=messages_pb2.OUTCOME_STATUS_COMPLETED, points_awarded="1")])
    before = stack.accepted_messages(tenant)
    sweeper = StaleEventSweeper(stack.runtime.service, interval=3600, older_than=3600, at_start=True)
    sweeper.start()
    try:
        deadline = time.time() + 10
        while time.time() < deadline and any(
                stack.accepted_messages(tenant).count(e) == before.count(e) for e in stuck):
            time.sleep(0.05)
        time.sleep(0.3)  # room for a second, wrong, announcement
        after = stack.accepted_messages(tenant)
    finally:
        sweeper.stop()
    assert [after.count(e) - before.count(e) for e in stuck] == [1, 1, 1]
    assert after.count(done) == before.count(done)
    # without at_start, events this recent wait for the stale sweep
    idle = StaleEventSweeper(stack.runtime.service, interval=3600, older_than=3600)
    idle.start()
    time.sleep(0.3)
    idle.stop()
    assert stack.accepted_messages(tenant) == after
