"""The CDP event-type registry's get-one, PATCH and DELETE over REST and gRPC, on SQLite and
PostgreSQL: partial updates validated as on create, 404 naming the type, and a deleted
type refusing new events while stored ones stay."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import grpc
from accrual.ingest.v1 import ingest_pb2

if TYPE_CHECKING:
    from conftest import Stack

VISIT = {"name": "page_viewed", "properties": [{"name": "url", "type": "STRING", "required": True}]}


def visit(**properties: Any) -> dict[str, Any]:
    return {"source": "web", "externalEventId": f"v_{uuid.uuid4().hex}", "eventType": "page_viewed",
            "occurredAt": "2026-05-20T12:45:00Z", "identity": {"externalUserId": "L-1"},
            "properties": properties or {"url": "/"}}


def test_patch_and_delete_over_rest(stack: Stack) -> None:
    key, tenant = stack.tenant()
    with stack.http(key) as c:
        created = c.post("/v1/cdp/event-types", json=VISIT).json()
        opened = c.patch("/v1/cdp/event-types/page_viewed", json={"allowUnknownProperties": True})
        assert opened.status_code == 200, opened.text
        assert opened.json()["allow_unknown_properties"] is True
        assert opened.json()["properties"] == VISIT["properties"]  # absent: kept
        assert opened.json()["created_at"] == created["created_at"]
        assert c.post("/v1/cdp/events", json=visit(url="/", ref="x")).json()["status"] == "accepted"
        retyped = c.patch("/v1/cdp/event-types/page_viewed", json={"properties": [
            {"name": "path", "type": "STRING"}]}).json()
        assert (retyped["properties"], retyped["allow_unknown_properties"]) == (
            [{"name": "path", "type": "STRING", "required": False}], True)
        cleared = c.patch("/v1/cdp/event-types/page_viewed", json={"clearProperties": True,
                                                                    "allowUnknownProperties": False})
        assert (cleared.json()["properties"], cleared.json()["allow_unknown_properties"]) == ([], False)

        deleted = c.delete("/v1/cdp/event-types/page_viewed")
        assert deleted.status_code == 200 and deleted.json()["name"] == "page_viewed"
        again = c.delete("/v1/cdp/event-types/page_viewed")
        assert again.status_code == 404 and "page_viewed" in again.json()["error"]["message"]
        assert c.get("/v1/cdp/event-types/page_viewed").status_code == 404
        assert c.patch("/v1/cdp/event-types/page_viewed", json={"allowUnknownProperties": True}).status_code == 404
        # New events of the deleted type are refused like an unregistered type; the stored one stays.
        refused = c.post("/v1/cdp/events", json=visit())
        assert refused.status_code == 422
        assert [d["field"] for d in refused.json()["error"]["details"]] == ["eventType"]
        assert c.get("/v1/cdp/event-types").json()["event_types"] in ([], None)
    assert stack.count(tenant) == 1


def test_patch_validates_like_create(stack: Stack) -> None:
    key, _ = stack.tenant()
    with stack.http(key) as c:
        c.post("/v1/cdp/event-types", json=VISIT)
        for bad, field in [({"properties": [{"name": "a", "type": "DATE"}]}, "properties[0].type"),
                           ({"properties": [{"name": "a"}]}, "properties[0].type"),
                           ({"properties": [{"name": "a", "type": "STRING"}, {"name": "a", "type": "NUMBER"}]},
                            "properties[1].name"),
                           ({"properties": [{"name": "a", "type": "STRING"}], "clearProperties": True},
                            "clear_properties")]:
            r = c.patch("/v1/cdp/event-types/page_viewed", json=bad)
            assert r.status_code == 422, (bad, r.text)
            assert field in [d["field"] for d in r.json()["error"]["details"]], r.text
        assert c.get("/v1/cdp/event-types/page_viewed").json()["properties"] == VISIT["properties"]


def test_scopes_and_tenants(stack: Stack) -> None:
    key, _ = stack.tenant()
    other, _ = stack.tenant()
    reader, _ = stack.tenant(frozenset({"events:read"}))
    with stack.http(key) as c:
        c.post("/v1/cdp/event-types", json=VISIT)
    with stack.http(other) as o:
        assert o.get("/v1/cdp/event-types/page_viewed").status_code == 404
        assert o.patch("/v1/cdp/event-types/page_viewed", json={"allowUnknownProperties": True}).status_code == 404
        assert o.delete("/v1/cdp/event-types/page_viewed").status_code == 404
    with stack.http(reader) as r:
        assert r.patch("/v1/cdp/event-types/page_viewed", json={}).status_code == 403
        assert r.delete("/v1/cdp/event-types/page_viewed").status_code == 403
    with stack.http(key) as c:
        assert c.get("/v1/cdp/event-types/page_viewed").status_code == 200


def test_update_and_delete_over_grpc(stack: Stack) -> None:
    key, _ = stack.tenant()
    md = stack.md(key)
    stack.stub.CreateCdpEventType(ingest_pb2.CreateCdpEventTypeRequest(name="signup"), metadata=md)
    updated = stack.stub.UpdateCdpEventType(ingest_pb2.UpdateCdpEventTypeRequest(
        name="signup", properties=[ingest_pb2.CdpPropertySpec(
            name="plan", type=ingest_pb2.CDP_PROPERTY_TYPE_STRING, required=True)]), metadata=md)
    assert [p.name for p in updated.properties] == ["plan"] and not updated.allow_unknown_properties
    bad = stack.failure(lambda: stack.stub.UpdateCdpEventType(ingest_pb2.UpdateCdpEventTypeRequest(
        name="signup", properties=[ingest_pb2.CdpPropertySpec(name="plan", type=99)]),
        metadata=md))
    assert (bad.code, bad.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["properties[0].type"])
    assert stack.stub.DeleteCdpEventType(ingest_pb2.DeleteCdpEventTypeRequest(name="signup"),
                                         metadata=md).name == "signup"
    gone = stack.failure(lambda: stack.stub.DeleteCdpEventType(ingest_pb2.DeleteCdpEventTypeRequest(
        name="signup"), metadata=md))
    assert (gone.code, gone.reason) == (grpc.StatusCode.NOT_FOUND, "EVENT_TYPE_NOT_FOUND")
