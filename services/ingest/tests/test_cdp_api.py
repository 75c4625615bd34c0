"""CDP ingest (seed 003) over REST and gRPC: the registry, the seed's examples replayed
literally, 422 validation naming each field, dedup on (tenant, source, externalEventId)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import TYPE_CHECKING, Any

import grpc
import httpx
import pytest
from accrual.ingest.v1 import ingest_pb2

if TYPE_CHECKING:
    from conftest import Stack

# The seed's request body, byte for byte.
SEED_REQUEST = """{
"source": "brand.pos",
"externalEventId": "txn_987654321",
"eventType": "purchase_completed",
"occurredAt": "2026-05-20T12:45:00Z",
"identity": {
"externalUserId": "L-123456789",
"email": "customer@example.com"
},
"properties": {
"order_id": "order_42",
"amount": 120.50,
"currency": "USD",
"store_id": "store_42"
}
}"""

PURCHASE_TYPE = {"name": "purchase_completed", "properties": [
    {"name": "order_id", "type": "STRING", "required": True},
    {"name": "amount", "type": "NUMBER", "required": True},
    {"name": "currency", "type": "STRING"},
    {"name": "store_id", "type": "STRING"},
]}
ACCEPTED_KEYS = {"status", "event_id"}


def post_raw(c: httpx.Client, path: str, text: str) -> httpx.Response:
    return c.post(path, content=text, headers={"Content-Type": "application/json"})


def seed_event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(SEED_REQUEST)
    event["externalEventId"] = f"txn_{uuid.uuid4().hex}"
    for k, v in changes.items():
        if v is ...:
            event.pop(k, None)
        else:
            event[k] = v
    return event


def significant(result: dict[str, Any]) -> dict[str, Any]:
    """The fields the seed documents; the shim prints the others as null."""
    return {k: v for k, v in result.items() if v not in (None, [])}


@pytest.fixture
def cdp(stack: Stack) -> tuple[Stack, str, str]:
    key, tenant = stack.tenant()
    with stack.http(key) as c:
        r = c.post("/v1/cdp/event-types", json=PURCHASE_TYPE)
        assert r.status_code == 200, r.text
    return stack, key, tenant


def test_seed_request_is_accepted_then_duplicate(cdp: tuple[Stack, str, str]) -> None:
    stack, key, tenant = cdp
    with stack.http(key) as c:
        first = post_raw(c, "/v1/cdp/events", SEED_REQUEST)
        assert first.status_code == 200, first.text
        accepted = significant(first.json())
        assert set(accepted) == ACCEPTED_KEYS and accepted["status"] == "accepted"
        again = post_raw(c, "/v1/cdp/events", SEED_REQUEST)
        assert again.status_code == 200
        assert significant(again.json()) == {"status": "duplicate", "original_event_id": accepted["event_id"]}
        # Whitespace, key order and 120.50 vs 120.5 do not make it a different payload.
        compact = json.dumps(dict(reversed(list(json.loads(SEED_REQUEST).items()))), separators=(",", ":"))
        assert post_raw(c, "/v1/cdp/events", compact).json()["original_event_id"] == accepted["event_id"]
        conflict = c.post("/v1/cdp/events", json={**json.loads(SEED_REQUEST),
                                                   "properties": {"order_id": "order_42", "amount": 99}})
        assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "idempotency_conflict"
        stored = c.get(f"/v1/events/{accepted['event_id']}").json()
    assert stored["program_id"] == "" and stored["idempotency_key"] == "txn_987654321"
    assert stored["cdp_source"] == "brand.pos" and stored["event_type"] == "purchase_completed"
    assert stored["event_timestamp"] == "2026-05-20T12:45:00Z" and stored["status"] == "PENDING"
    assert stored["event_data"] == {"order_id": "order_42", "amount": 120.5, "currency": "USD", "store_id": "store_42"}
    assert stored["cdp_identities"] == [{"type": "EXTERNAL", "value": "L-123456789"},
                                        {"type": "EMAIL", "value": "customer@example.com"}]
    assert stack.count(tenant) == 1
    # On the same outbox -> rules queue path as loyalty events; the worker's claim carries the CDP fields.
    assert stack.accepted_messages(tenant) == [accepted["event_id"]]
    claimed = stack.claim(tenant, [accepted["event_id"]])
    assert claimed[0].cdp_source == "brand.pos" and claimed[0].program_id == ""
    assert [(i.type, i.value) for i in claimed[0].cdp_identities] == [
        ("EXTERNAL", "L-123456789"), ("EMAIL", "customer@example.com")]


def test_seed_batch_example_produces_the_documented_results(cdp: tuple[Stack, str, str]) -> None:
    stack, key, tenant = cdp
    earlier = seed_event()
    with stack.http(key) as c:
        original = c.post("/v1/cdp/events", json=earlier).json()
        r = c.post("/v1/cdp/events/batch", json={"items": [
            seed_event(), earlier, seed_event(identity={})]})
    assert r.status_code == 200, r.text
    results = [significant(x) for x in r.json()["results"]]
    assert results[0]["status"] == "accepted" and set(results[0]) == ACCEPTED_KEYS
    assert results[1] == {"status": "duplicate", "original_event_id": original["event_id"]}
    assert results[2]["status"] == "error" and results[2]["error_code"] == "validation_failed"
    assert results[2]["message"] == ("items[2].identity: identity.externalUserId, identity.email, "
                                     "identity.phone, or identity.deviceKey is required")
    assert [d["field"] for d in results[2]["details"]] == ["items[2].identity"]
    assert stack.count(tenant) == 2


def test_batch_items_are_independent_and_repeats_inside_a_batch_are_duplicates(cdp: tuple[Stack, str, str]) -> None:
    stack, key, tenant = cdp
    item = seed_event()
    with stack.http(key) as c:
        r = c.post("/v1/cdp/events/batch", json={"items": [
            item, item, {**item, "properties": {"order_id": "x", "amount": 1}},
            seed_event(eventType="nope"), seed_event(properties={"order_id": 1, "amount": "1"})]})
        results = [significant(x) for x in r.json()["results"]]
        assert [x["status"] for x in results] == ["accepted", "duplicate", "error", "error", "error"]
        assert results[1]["original_event_id"] == results[0]["event_id"]
        assert results[2]["error_code"] == "idempotency_conflict"
        assert [d["field"] for d in results[4]["details"]] == ["items[4].properties.order_id",
                                                               "items[4].properties.amount"]
        for bad in ({"items": []}, {"items": [item] * 1001}, {"items": item}):
            whole = c.post("/v1/cdp/events/batch", json=bad)
            assert whole.status_code == 422, whole.text
            assert whole.json()["error"]["details"][0]["field"] == "items"
    assert stack.count(tenant) == 1


INVALID: list[tuple[str, dict[str, Any], list[str]]] = [
    ("unregistered type", {"eventType": "refund_issued"}, ["eventType"]),
    ("missing required property", {"properties": {"amount": 120.5}}, ["properties.order_id"]),
    ("required property null", {"properties": {"order_id": None, "amount": 1}}, ["properties.order_id"]),
    ("wrong types", {"properties": {"order_id": 42, "amount": "120.50"}}, ["properties.order_id", "properties.amount"]),
    ("unknown property", {"properties": {"order_id": "o", "amount": 1, "coupon": "X"}}, ["properties.coupon"]),
    ("empty identity", {"identity": {}}, ["identity"]),
    ("no identity", {"identity": ...}, ["identity"]),
    ("only null identities", {"identity": {"email": None}}, ["identity"]),
    ("malformed email", {"identity": {"email": "not-an-email"}}, ["identity.email"]),
    ("malformed phone", {"identity": {"phone": "12"}}, ["identity.phone"]),
    ("empty device key", {"identity": {"deviceKey": "  "}}, ["identity.deviceKey"]),
    ("identity field of wrong type", {"identity": {"email": 5}}, ["identity.email"]),
    ("unknown identity field", {"identity": {"userId": "u1"}}, ["identity.userId"]),
    ("missing source", {"source": ...}, ["source"]),
    ("missing externalEventId", {"externalEventId": ""}, ["externalEventId"]),
    ("control characters", {"externalEventId": "txn\t1", "source": "pos\n"}, ["source", "externalEventId"]),
    ("256-character externalEventId", {"externalEventId": "t" * 256}, ["externalEventId"]),
    ("far-future occurredAt", {"occurredAt": "2999-01-01T00:00:00Z"}, ["occurredAt"]),
    ("bad occurredAt", {"occurredAt": "20 May 2026"}, ["occurredAt"]),
    ("properties not an object", {"properties": ["order_42"]}, ["properties"]),
    ("unknown top-level field", {"userId": "u1"}, ["userId"]),
]


@pytest.mark.parametrize(("case", "changes", "fields"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_cdp_event_is_422_validation_failed_naming_each_field(
        cdp: tuple[Stack, str, str], case: str, changes: dict[str, Any], fields: list[str]) -> None:
    stack, key, tenant = cdp
    with stack.http(key) as c:
        r = c.post("/v1/cdp/events", json=seed_event(**changes))
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "validation_failed"
    assert [d["field"] for d in error["details"] if "field" in d] == fields
    assert stack.count(tenant) == 0


def test_malformed_json_on_cdp_route_is_422(cdp: tuple[Stack, str, str]) -> None:
    stack, key, tenant = cdp
    with stack.http(key) as c:
        r = post_raw(c, "/v1/cdp/events", '{"source": "brand.pos",')
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "body"
    assert stack.count(tenant) == 0


def test_identities_are_normalised_and_occurred_at_defaults_to_receipt(cdp: tuple[Stack, str, str]) -> None:
    stack, key, _ = cdp
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    with stack.http(key) as c:
        r = c.post("/v1/cdp/events", json=seed_event(occurredAt=..., identity={
            "email": "  Customer@Example.COM ", "phone": "+1 (415) 555-2671", "deviceKey": "dev-1"}))
        assert r.status_code == 200, r.text
        stored = c.get(f"/v1/events/{r.json()['event_id']}").json()
    assert stored["cdp_identities"] == [{"type": "EMAIL", "value": "customer@example.com"},
                                        {"type": "PHONE", "value": "+14155552671"},
                                        {"type": "DEVICE_KEY", "value": "dev-1"}]
    assert stored["external_id"] is None
    assert stored["event_timestamp"] == stored["received_at"]
    assert dt.datetime.fromisoformat(stored["received_at"].replace("Z", "+00:00")) >= before


def test_dedup_is_per_source_and_never_collides_with_loyalty_keys(cdp: tuple[Stack, str, str]) -> None:
    stack, key, tenant = cdp
    event = seed_event()
    with stack.http(key) as c:
        a = c.post("/v1/cdp/events", json=event).json()
        b = c.post("/v1/cdp/events", json={**event, "source": "brand.crm"}).json()
        assert a["status"] == b["status"] == "accepted" and a["event_id"] != b["event_id"]
        loyalty = c.post("/v1/events", json={"program_id": str(uuid.uuid4()), "external_id": "L-123456789",
                                             "idempotency_key": event["externalEventId"]})
        assert loyalty.status_code == 200 and loyalty.json()["deduplicated"] is False
        listed = c.get("/v1/events", params={"cdp_source": "brand.crm"}).json()["events"]
        assert [e["event_id"] for e in listed] == [b["event_id"]]
    assert stack.count(tenant) == 3


def test_event_type_registry(stack: Stack) -> None:
    key, tenant = stack.tenant()
    reader, _ = stack.tenant(frozenset({"events:read"}))
    with stack.http(key) as c:
        created = c.post("/v1/cdp/event-types", json={"name": "page_viewed", "allowUnknownProperties": True,
                                                      "properties": [{"name": "url", "type": "STRING",
                                                                      "required": True}]})
        assert created.status_code == 200, created.text
        assert created.json()["allow_unknown_properties"] is True
        assert created.json()["properties"] == [{"name": "url", "type": "STRING", "required": True}]
        ok = c.post("/v1/cdp/events", json=seed_event(eventType="page_viewed", properties={"url": "/", "ref": "x"}))
        assert ok.status_code == 200 and ok.json()["status"] == "accepted"
        # Re-registering replaces the definition for later events.
        c.post("/v1/cdp/event-types", json={"name": "page_viewed", "properties": [
            {"name": "url", "type": "STRING", "required": True}]})
        refused = c.post("/v1/cdp/events",
                         json=seed_event(eventType="page_viewed", properties={"url": "/", "ref": "x"}))
        assert refused.status_code == 422
        assert [t["name"] for t in c.get("/v1/cdp/event-types").json()["event_types"]] == ["page_viewed"]
        assert c.get("/v1/cdp/event-types/page_viewed").json()["allow_unknown_properties"] is False
        assert c.get("/v1/cdp/event-types/nope").status_code == 404
        for bad, field in [({"name": "", "properties": []}, "name"),
                           ({"name": "x", "properties": [{"name": "a", "type": "DATE"}]}, "properties[0].type"),
                           ({"name": "x", "properties": [{"name": "a"}]}, "properties[0].type"),
                           ({"name": "x", "properties": [{"name": "a", "type": "STRING"},
                                                         {"name": "a", "type": "NUMBER"}]}, "properties[1].name")]:
            r = c.post("/v1/cdp/event-types", json=bad)
            assert r.status_code == 422, (bad, r.text)
            assert field in [d["field"] for d in r.json()["error"]["details"]]
    with stack.http(reader) as r:
        assert r.get("/v1/cdp/event-types").status_code == 200
        assert r.post("/v1/cdp/event-types", json=PURCHASE_TYPE).status_code == 403
        assert r.post("/v1/cdp/events", json=seed_event()).status_code == 403
    assert stack.count(tenant) == 1


def test_every_property_type(stack: Stack) -> None:
    key, _ = stack.tenant()
    types = ["STRING", "NUMBER", "INTEGER", "BOOLEAN", "OBJECT", "ARRAY", "TIMESTAMP"]
    good = ["s", 1.5, 3, True, {"a": 1}, [1], "2026-05-20T12:45:00Z"]
    bad = [1, "1.5", 3.5, "true", [1], {"a": 1}, "20 May"]
    with stack.http(key) as c:
        c.post("/v1/cdp/event-types", json={"name": "typed", "properties": [
            {"name": t.lower(), "type": t} for t in types]})
        ok = c.post("/v1/cdp/events", json=seed_event(eventType="typed", properties={
            t.lower(): v for t, v in zip(types, good, strict=True)}))
        assert ok.status_code == 200, ok.text
        refused = c.post("/v1/cdp/events", json=seed_event(eventType="typed", properties={
            t.lower(): v for t, v in zip(types, bad, strict=True)}))
    assert refused.status_code == 422
    assert [d["field"] for d in refused.json()["error"]["details"]] == [f"properties.{t.lower()}" for t in types]


def test_cdp_over_grpc(cdp: tuple[Stack, str, str]) -> None:
    stack, key, tenant = cdp
    md = stack.md(key)
    req = ingest_pb2.SubmitCdpEventRequest(
        source="brand.app", external_event_id="grpc-1", event_type="purchase_completed",
        identity=ingest_pb2.CdpIdentity(device_key="dev-9"), properties={"order_id": "o1", "amount": 3})
    first = stack.stub.SubmitCdpEvent(req, metadata=md)
    again = stack.stub.SubmitCdpEvent(req, metadata=md)
    assert first.status == "accepted" and again.status == "duplicate"
    assert again.original_event_id == first.event_id
    bad = ingest_pb2.SubmitCdpEventRequest(source="brand.app", external_event_id="grpc-2",
                                           event_type="purchase_completed", identity=ingest_pb2.CdpIdentity())
    failure = stack.failure(lambda: stack.stub.SubmitCdpEvent(bad, metadata=md))
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT and failure.reason == "VALIDATION_FAILED"
    assert failure.fields == ["identity", "properties.order_id", "properties.amount"]
    batch = stack.stub.BatchSubmitCdpEvents(ingest_pb2.BatchSubmitCdpEventsRequest(items=[req, bad]), metadata=md)
    assert [r.status for r in batch.results] == ["duplicate", "error"]
    assert stack.count(tenant) == 1
