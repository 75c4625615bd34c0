"""The event-type CRUD operations (seed 001's "CRUD endpoints") are in the OpenAPI document
with lower-camel operation ids and described bodies."""

from __future__ import annotations

from typing import Any

import pytest
from accrual.ingest.v1 import ingest_pb2
from accrual.rules.v1 import rules_pb2
from accrual_gateway.openapi import build_openapi
from accrual_gateway.routing import build_routes

PROGRAM_TYPE = "/v1/programs/{program_id}/event-types/{name}"
CDP_TYPE = "/v1/cdp/event-types/{name}"


@pytest.fixture(scope="module")
def paths() -> dict[str, Any]:
    found: dict[str, Any] = build_openapi(build_routes((ingest_pb2.DESCRIPTOR, rules_pb2.DESCRIPTOR)))["paths"]
    return found


@pytest.mark.parametrize(("path", "method", "operation_id"), [
    ("/v1/programs/{program_id}/event-types", "post", "createEventType"),
    ("/v1/programs/{program_id}/event-types", "get", "listEventTypes"),
    (PROGRAM_TYPE, "get", "getEventType"),
    (PROGRAM_TYPE, "patch", "updateEventType"),
    (PROGRAM_TYPE, "delete", "deleteEventType"),
    ("/v1/cdp/event-types", "post", "createCdpEventType"),
    ("/v1/cdp/event-types", "get", "listCdpEventTypes"),
    (CDP_TYPE, "get", "getCdpEventType"),
    (CDP_TYPE, "patch", "updateCdpEventType"),
    (CDP_TYPE, "delete", "deleteCdpEventType"),
])
def test_event_type_crud_operations(paths: dict[str, Any], path: str, method: str, operation_id: str) -> None:
    op = paths[path][method]
    assert op["operationId"] == operation_id
    assert op["description"] and op["summary"]
    if method == "patch":
        body = op["requestBody"]["content"]["application/json"]
        assert body["schema"]
