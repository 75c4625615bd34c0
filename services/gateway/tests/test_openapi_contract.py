"""The OpenAPI document is good enough to generate clients from: operation ids, required
fields, descriptions from the proto comments, seed examples, named enums, typed errors; and
/docs serves Swagger UI 5 with no inline script."""

from __future__ import annotations

import re
from typing import Any

import pytest
from accrual.identity.v1 import identity_pb2
from accrual.ingest.v1 import ingest_pb2
from accrual.notify.v1 import notify_pb2
from accrual.rules.v1 import rewards_pb2, rules_pb2
from accrual_gateway.app import create_app
from accrual_gateway.openapi import build_openapi
from accrual_gateway.routing import build_routes
from accrual_platform import auth
from starlette.testclient import TestClient

SCHEMAS = "#/components/schemas/"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    files = (identity_pb2.DESCRIPTOR, ingest_pb2.DESCRIPTOR, rules_pb2.DESCRIPTOR,
         rewards_pb2.DESCRIPTOR, notify_pb2.DESCRIPTOR)
    return build_openapi(build_routes(files))


def _ops(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [op for item in doc["paths"].values() for op in item.values()]


def test_operation_ids_are_unique_lower_camel_rpc_names(doc: dict[str, Any]) -> None:
    ids = [op["operationId"] for op in _ops(doc)]
    assert len(ids) == len(set(ids))
    assert doc["paths"]["/v1/events"]["post"]["operationId"] == "submitEvent"
    assert all(i[0].islower() and "_" not in i for i in ids)


def test_every_operation_names_the_scope_the_services_enforce(doc: dict[str, Any]) -> None:
    paths = doc["paths"]
    assert paths["/v1/events"]["post"]["x-required-scope"] == "events:write"
    assert paths["/v1/events"]["get"]["x-required-scope"] == "events:read"
    assert paths["/v1/programs/{program_id}/rules"]["post"]["x-required-scope"] == "programs:write"
    assert paths["/v1/keys"]["get"]["x-required-scope"] == "admin"
    assert paths["/v1/keys/current"]["get"]["x-required-scope"] == "authenticated"
    scopes = {op["x-required-scope"] for op in _ops(doc)}
    assert scopes <= auth.KNOWN_SCOPES | {auth.ANY_KEY_SCOPE}  # never internal nor per_call


def test_every_operation_and_request_schema_is_described(doc: dict[str, Any]) -> None:
    assert all(op.get("description") and op.get("summary") for op in _ops(doc))
    submit = doc["components"]["schemas"]["SubmitEventRequest"]
    assert submit["description"].startswith("Request of SubmitEvent")
    assert "deduplicated" in submit["properties"]["idempotency_key"]["description"]


def test_required_follows_field_behavior_and_answers_require_every_field(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    # program_id may be left out (a tenant event), idempotency_key sent as reference: none required
    assert "required" not in schemas["SubmitEventRequest"]
    assert schemas["CreateRuleRequest_Body"]["required"] == ["name", "formula"]
    event = schemas["Event"]
    assert set(event["required"]) == set(event["properties"])


def test_examples_enums_and_errors(doc: dict[str, Any]) -> None:
    body = doc["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    assert body["example"]["idempotency_key"] == "order-12345-completed"
    answer = doc["paths"]["/v1/events"]["post"]["responses"]["200"]["content"]["application/json"]
    assert answer["example"]["status"] == "PENDING" and answer["example"]["event_data"] == {"amount": 125}
    schemas = doc["components"]["schemas"]
    assert schemas["EventStatus"]["enum"][:1] == ["PENDING"]
    assert schemas["ErrorBody"]["required"] == ["code", "message", "details", "request_id"]
    responses = doc["paths"]["/v1/events"]["post"]["responses"]
    assert responses["409"]["content"]["application/json"]["schema"] == {"$ref": SCHEMAS + "Error"}


def test_docs_page_has_no_inline_script_and_serves_swagger_ui_5() -> None:
    with TestClient(create_app({})) as client:
        page = client.get("/docs").text
        scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
        assert scripts and all('src="' in attrs and not body.strip() for attrs, body in scripts)
        assert client.get("/docs/init.js").status_code == 200
        bundle = client.get("/docs/assets/swagger-ui-bundle.js")
        assert bundle.status_code == 200 and re.search(r'"5\.\d+\.\d+"', bundle.text)
