"""The REST shim on its own: request ids, error bodies, body limit, malformed JSON, typed
input errors, nulls and unprefixed enums. No service runs behind it: every case here is
answered by the gateway itself (or is the gateway's answer to an unreachable service)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from accrual.ingest.v1 import ingest_pb2
from accrual_gateway import codec as shim
from accrual_gateway.app import create_app
from starlette.testclient import TestClient

UNREACHABLE = "127.0.0.1:1"


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = create_app({"accrual.ingest.v1.IngestService": UNREACHABLE}, (ingest_pb2.DESCRIPTOR,),
                     call_timeout=3, max_body_bytes=1024)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def error_of(r: object) -> dict[str, object]:
    body = r.json()  # type: ignore[attr-defined]
    error: dict[str, object] = body["error"]
    assert error["request_id"] == r.headers["X-Request-Id"]  # type: ignore[attr-defined]
    return error


@pytest.mark.parametrize("path", ["/healthz", "/openapi.json", "/metrics", "/docs", "/nowhere"])
def test_every_response_has_a_request_id(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.headers["X-Request-Id"].startswith("req_")
    assert client.get(path, headers={"X-Request-Id": "abc-123"}).headers["X-Request-Id"] == "abc-123"
    assert client.get(path, headers={"X-Request-Id": "bad id\t!"}).headers["X-Request-Id"].startswith("req_")


def test_unknown_route_and_method(client: TestClient) -> None:
    missing = client.get("/v2/nothing")
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"
    wrong = client.delete("/v1/events")
    assert wrong.status_code == 405 and error_of(wrong)["code"] == "method_not_allowed"


def test_malformed_json_names_the_body(client: TestClient) -> None:
    for raw in (b'{"program_id": ', b"[1]", b"\xff\xfe"):
        r = client.post("/v1/events", content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, raw
        error = error_of(r)
        assert error["code"] == "invalid_json" and error["details"] == [  # type: ignore[comparison-overlap]
            {"field": "body", "description": error["details"][0]["description"]}]  # type: ignore[index]


def test_body_over_the_limit_is_refused_with_or_without_content_length(client: TestClient) -> None:
    big = b'{"event_data": {"x": "' + b"y" * 2000 + b'"}}'
    r = client.post("/v1/events", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and error_of(r)["code"] == "body_too_large"
    chunked = client.post("/v1/events", content=iter([big[:600], big[600:]]),
                          headers={"Content-Type": "application/json"})
    assert chunked.status_code == 400 and error_of(chunked)["code"] == "body_too_large"


@pytest.mark.parametrize(("payload", "field", "text"), [
    ({"idempotency_key": 1}, "idempotency_key", "must be a string"),
    ({"event_data": [1]}, "event_data", "must be a JSON object"),
    ({"event_timestamp": "2024-01-15 10:30"}, "event_timestamp", "RFC 3339"),
    ({"colour": "red"}, "colour", "unknown field"),
    ({"events": [{"idempotency_key": True}]}, "events", "unknown field"),
])
def test_typed_input_errors_name_the_field(client: TestClient, payload: dict[str, object], field: str,
                                           text: str) -> None:
    r = client.post("/v1/events", json=payload)
    assert r.status_code == 400
    error = error_of(r)
    assert error["code"] == "invalid_argument"
    detail = error["details"][0]  # type: ignore[index]
    assert detail["field"] == field and text in detail["description"]


def test_batch_item_errors_carry_their_path(client: TestClient) -> None:
    r = client.post("/v1/events/batch", json={"events": [{}, {"idempotency_key": True}]})
    assert r.status_code == 400
    assert error_of(r)["details"] == [{"field": "events[1].idempotency_key",  # type: ignore[comparison-overlap]
                                       "description": "must be a string"}]


def test_query_enums_and_integers_are_checked(client: TestClient) -> None:
    r = client.get("/v1/events", params={"status": "DONE"})
    assert r.status_code == 400
    detail = error_of(r)["details"][0]  # type: ignore[index]
    assert detail["field"] == "status" and "PENDING" in detail["description"]
    assert client.get("/v1/events", params={"page_size": "ten"}).status_code == 400


def test_cdp_routes_answer_input_errors_with_422(client: TestClient) -> None:
    r = client.post("/v1/cdp/events", json={"identity": {"email": 5}})
    assert r.status_code == 422
    error = error_of(r)
    assert error["code"] == "validation_failed"
    assert error["details"] == [{"field": "identity.email",  # type: ignore[comparison-overlap]
                                 "description": "must be a string"}]
    malformed = client.post("/v1/cdp/events/batch", content=b"{", headers={"Content-Type": "application/json"})
    assert malformed.status_code == 422 and error_of(malformed)["code"] == "invalid_json"


def test_unreachable_service_is_503_with_a_json_error(client: TestClient) -> None:
    r = client.get("/v1/events")
    assert r.status_code == 503
    assert error_of(r)["code"] == "unavailable"


def test_output_has_every_field_with_nulls_and_unprefixed_enums() -> None:
    event = ingest_pb2.Event(event_id="e1", status=ingest_pb2.EVENT_STATUS_PENDING)
    out = shim.to_json(event)
    assert out["status"] == "PENDING" and out["origin"] is None
    assert out["participant_id"] is None and out["rule_evaluations"] == [] and out["deduplicated"] is False
    assert out["event_timestamp"] is None and out["cdp_identities"] == []
    typed = shim.to_json(ingest_pb2.CdpEventType(properties=[ingest_pb2.CdpPropertySpec(
        name="a", type=ingest_pb2.CDP_PROPERTY_TYPE_NUMBER)]))
    assert typed["properties"] == [{"name": "a", "type": "NUMBER", "required": False}]


def test_enum_input_takes_short_or_full_names() -> None:
    for spelling in ("FAILED", "EVENT_STATUS_FAILED"):
        msg = ingest_pb2.ListEventsRequest()
        shim.parse_into(msg, {"status": spelling})
        assert msg.status == ingest_pb2.EVENT_STATUS_FAILED
    with pytest.raises(shim.ShimError) as info:
        shim.parse_into(ingest_pb2.ListEventsRequest(), {"status": "UNSPECIFIED"})
    assert info.value.violations[0][0] == "status"


def test_openapi_lists_the_generated_routes(client: TestClient) -> None:
    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    for path in ("/v1/events", "/v1/events/batch", "/v1/events/{event_id}", "/v1/events/{event_id}/retry",
                 "/v1/cdp/events", "/v1/cdp/events/batch", "/v1/cdp/event-types", "/v1/cdp/event-types/{name}"):
        assert path in paths, path
