"""The identity routes as a partner calls them: REST/JSON through the gateway generated from
the contract's annotations, in front of the real identity gRPC server. Field names, status
codes, unprefixed enums and error bodies are what the wire shows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from accrual.identity.v1 import identity_pb2
from accrual_gateway.app import create_app
from starlette.testclient import TestClient

if TYPE_CHECKING:
    from conftest import Stack


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[TestClient]:
    app = create_app({stack.runtime.service_full_name: stack.address},
                     files=[identity_pb2.DESCRIPTOR])
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def headers(stack: Stack) -> dict[str, str]:
    key, _ = stack.key("participants:write")
    return {"X-API-Key": key}


def fields(response: Any) -> list[str]:
    return [d["field"] for d in response.json()["error"]["details"] if "field" in d]


def create(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = client.post("/v1/participants", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_create_get_and_lookup(client: TestClient, headers: dict[str, str]) -> None:
    external = f"rest-{uuid.uuid4().hex}"
    made = create(client, headers, identities=[
        {"type": "EXTERNAL", "value": external}, {"type": "EMAIL", "value": " Rest@Example.COM"}],
        attributes={"birth_date": "1992-07-08", "plan": "gold"})

    assert made["identities"] == [{"type": "EXTERNAL", "value": external},
                                  {"type": "EMAIL", "value": "rest@example.com"}]
    assert made["attributes"] == {"birth_date": "1992-07-08", "plan": "gold"}
    pid = made["participant_id"]
    assert client.get(f"/v1/participants/{pid}", headers=headers).json() == made
    for query in ({"external_id": external}, {"email": "REST@example.com"}):
        got = client.get("/v1/participants", params=query, headers=headers)
        assert (got.status_code, got.json()) == (200, made), query

    missing = client.get("/v1/participants", params={"phone": "+1 415 555 0100"}, headers=headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "participant_not_found"
    bad = client.get("/v1/participants", params={"email": "nope@"}, headers=headers)
    assert (bad.status_code, fields(bad)) == (400, ["email"])
    unknown = client.get("/v1/participants", params={"fax": "1"}, headers=headers)
    assert (unknown.status_code, fields(unknown)) == (400, ["fax"])
    assert client.get("/v1/participants", params={"email": "a@example.com"}).status_code == 401


def test_create_refuses_bad_input_naming_the_field(client: TestClient,
                                                  headers: dict[str, str]) -> None:
    cases = [
        ({"identities": [{"type": "FAX", "value": "1"}]}, ["identities[0].type"]),
        ({"identities": [{"type": "EMAIL", "value": "x@"}]}, ["identities[0].value"]),
        ({"identities": [{"type": "PHONE", "value": "12"}]}, ["identities[0].value"]),
        ({"identities": [{"type": "EXTERNAL", "value": ""}]}, ["identities[0].value"]),
        ({"identities": [{"type": "EXTERNAL", "value": "v" * 256}]}, ["identities[0].value"]),
        ({"identities": []}, ["identities"]),
        ({"identities": [{"type": "EXTERNAL", "value": "ok"}],
          "attributes": {"birth_date": "1990-02-30"}}, ["attributes.birth_date"]),
    ]
    for body, expected in cases:
        response = client.post("/v1/participants", json=body, headers=headers)
        assert (response.status_code, fields(response)) == (400, expected), body


def test_link_identity_and_conflict(client: TestClient, headers: dict[str, str]) -> None:
    first = create(client, headers, identities=[{"type": "EXTERNAL", "value": f"a-{uuid.uuid4()}"}])
    second = create(client, headers, identities=[{"type": "EXTERNAL", "value": f"b-{uuid.uuid4()}"}])
    device = {"type": "DEVICE_KEY", "value": f"dev-{uuid.uuid4().hex}"}

    linked = client.post(f"/v1/participants/{first['participant_id']}/identities", json=device,
                         headers=headers)
    again = client.post(f"/v1/participants/{first['participant_id']}/identities", json=device,
                        headers=headers)
    taken = client.post(f"/v1/participants/{second['participant_id']}/identities", json=device,
                        headers=headers)
    bad = client.post(f"/v1/participants/{second['participant_id']}/identities",
                      json={"type": "FAX", "value": "1"}, headers=headers)

    assert linked.status_code == again.status_code == 200
    assert device in linked.json()["identities"] and again.json() == linked.json()
    assert (taken.status_code, taken.json()["error"]["code"]) == (409, "identity_conflict")
    assert (bad.status_code, fields(bad)) == (400, ["identity.type"])


def test_merge(client: TestClient, headers: dict[str, str]) -> None:
    survivor = create(client, headers, identities=[{"type": "EXTERNAL", "value": f"s-{uuid.uuid4()}"}])
    merged = create(client, headers, identities=[{"type": "EXTERNAL", "value": f"m-{uuid.uuid4()}"}])
    body = {"survivor_participant_id": survivor["participant_id"],
            "merged_participant_id": merged["participant_id"]}

    done = client.post("/v1/participants:merge", json=body, headers=headers)
    again = client.post("/v1/participants:merge", json=body, headers=headers)
    itself = client.post("/v1/participants:merge", headers=headers, json={
        "survivor_participant_id": survivor["participant_id"],
        "merged_participant_id": survivor["participant_id"]})

    assert done.status_code == 200, done.text
    result = done.json()
    assert set(result) == {"merge_id", "merged_participant_id", "survivor", "merged_at"}
    assert result["survivor"]["participant_id"] == survivor["participant_id"]
    assert len(result["survivor"]["identities"]) == 2
    follows = client.get(f"/v1/participants/{merged['participant_id']}", headers=headers)
    assert follows.json()["participant_id"] == survivor["participant_id"]
    assert (again.status_code, again.json()["error"]["code"]) == (400, "participant_merged")
    assert fields(again) == ["merged_participant_id"]
    assert (itself.status_code, fields(itself)) == (400, ["merged_participant_id"])


def test_enrollment_routes(client: TestClient, stack: Stack) -> None:
    key, tenant = stack.key("participants:write")
    headers = {"X-API-Key": key}
    person = create(client, headers, identities=[{"type": "EXTERNAL", "value": f"e-{uuid.uuid4()}"}])
    pid, program = person["participant_id"], stack.program(tenant)
    base = f"/v1/programs/{program}/enrollments"

    enrolled = client.post(base, json={"participant_id": pid}, headers=headers)
    assert enrolled.status_code == 200, enrolled.text
    assert enrolled.json()["status"] == "ACTIVE"
    assert set(enrolled.json()) == {"program_id", "participant_id", "status", "enrolled_at",
                                    "updated_at"}
    assert client.post(base, json={"participant_id": pid}, headers=headers).json() == enrolled.json()
    assert client.get(f"{base}/{pid}", headers=headers).json() == enrolled.json()

    frozen = client.patch(f"{base}/{pid}", json={"status": "FROZEN"}, headers=headers)
    assert (frozen.status_code, frozen.json()["status"]) == (200, "FROZEN")
    for status in ("PAUSED", "frozen", 2.5):
        bad = client.patch(f"{base}/{pid}", json={"status": status}, headers=headers)
        assert (bad.status_code, fields(bad)) == (400, ["status"]), status
    empty = client.patch(f"{base}/{pid}", json={}, headers=headers)
    assert (empty.status_code, fields(empty)) == (400, ["status"])

    listed = client.get(base, params={"page_size": 10}, headers=headers).json()
    assert [e["status"] for e in listed["enrollments"]] == ["FROZEN"]
    assert listed["next_page_token"] == ""
    mine = client.get(f"/v1/participants/{pid}/enrollments", params={"status": "FROZEN"},
                      headers=headers).json()
    assert [e["program_id"] for e in mine["enrollments"]] == [program]
    none_active = client.get(f"/v1/participants/{pid}/enrollments", params={"status": "ACTIVE"},
                             headers=headers).json()
    assert none_active["enrollments"] == []
    bad_program = client.get("/v1/programs/not-a-uuid/enrollments", headers=headers)
    assert (bad_program.status_code, fields(bad_program)) == (400, ["program_id"])
    missing = client.get(f"{base}/{uuid.uuid4()}", headers=headers)
    assert missing.status_code == 404
    for unknown in (stack.program(stack.tenant()), str(uuid.uuid4())):
        refused = client.post(f"/v1/programs/{unknown}/enrollments", json={"participant_id": pid},
                              headers=headers)
        assert (refused.status_code, refused.json()["error"]["code"]) == (404, "program_not_found")


def test_the_routes_are_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path, verb in (("/v1/participants", "get"), ("/v1/participants/{participant_id}/identities", "post"),
                       ("/v1/participants:merge", "post"),
                       ("/v1/participants/{participant_id}/enrollments", "get"),
                       ("/v1/programs/{program_id}/enrollments", "get"),
                       ("/v1/programs/{program_id}/enrollments", "post"),
                       ("/v1/programs/{program_id}/enrollments/{participant_id}", "get"),
                       ("/v1/programs/{program_id}/enrollments/{participant_id}", "patch")):
        assert verb in paths[path], (path, verb)
