"""The gateway checks the API key and its scope before the body (issue 20): 401, then 403,
then 400, on every route family; and it writes one access line per request, never with the
key or the body. Driven through the REST gateway in front of the whole suite in-process."""

from __future__ import annotations

import pathlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import structlog
from accrual_platform import auth
from structlog.testing import capture_logs

from tests.inprocess import InProcessSuite, in_process_suite

PID = str(uuid.uuid4())
BAD_JSON = b'{"name": '


@dataclass(frozen=True)
class Case:
    family: str
    verb: str
    path: str
    #: a scope that does not grant the route's
    other_scope: str
    #: the status of the input error once the key is good (CDP routes answer 422)
    invalid_status: int = 400

    def send(self, suite: InProcessSuite, headers: dict[str, str]) -> Any:
        if self.verb == "GET":  # an unknown query parameter is this route's bad input
            return suite.client.get(self.path, params={"nope": "1"}, headers=headers)
        return suite.client.request(self.verb, self.path, content=BAD_JSON,
                                    headers={**headers, "Content-Type": "application/json"})


CASES = [
    Case("events", "POST", "/v1/events", "events:read"),
    Case("events", "GET", "/v1/events", "programs:read"),
    Case("cdp", "POST", "/v1/cdp/events", "events:read", invalid_status=422),
    Case("participants", "POST", "/v1/participants", "participants:read"),
    Case("participants", "GET", f"/v1/programs/{PID}/enrollments", "events:read"),
    Case("programs", "POST", "/v1/programs", "programs:read"),
    Case("rules", "PATCH", f"/v1/programs/{PID}/rules/{uuid.uuid4()}", "programs:read"),
    Case("rules", "POST", f"/v1/programs/{PID}/rules:reorder", "programs:read"),
    Case("rules", "POST", f"/v1/programs/{PID}/rules:validate", "events:read"),
    Case("webhooks", "POST", "/v1/webhook-endpoints", "webhooks:read"),
    Case("analytics", "GET", f"/v1/programs/{PID}/analytics", "programs:read"),
    Case("keys", "GET", "/v1/keys", "programs:write"),
]


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessSuite]:
    # A configuration an earlier test made caches loggers on first use, and capture_logs
    # cannot reach a cached logger: start from structlog's defaults.
    structlog.reset_defaults()
    with in_process_suite(pathlib.Path(tmp_path_factory.mktemp("access"))) as s:
        yield s


@pytest.fixture(scope="module")
def keys(suite: InProcessSuite) -> dict[str, str]:
    scopes = {c.other_scope for c in CASES} | {auth.ADMIN_SCOPE}
    return {scope: suite.new_key("access", frozenset({scope})) for scope in scopes}


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.family}-{c.verb}")
def test_key_then_scope_then_body(suite: InProcessSuite, keys: dict[str, str], case: Case) -> None:
    missing = case.send(suite, {})
    assert missing.status_code == 401, missing.text
    assert missing.json()["error"]["code"] == "unauthenticated"
    unknown = case.send(suite, {"X-API-Key": "sk_" + "x" * 43})
    assert unknown.status_code == 401, unknown.text

    wrong = case.send(suite, {"X-API-Key": keys[case.other_scope]})
    assert wrong.status_code == 403, wrong.text
    error = wrong.json()["error"]
    assert error["code"] == "permission_denied" and error["request_id"] == wrong.headers["X-Request-Id"]

    right = case.send(suite, {"Authorization": f"Bearer {keys[auth.ADMIN_SCOPE]}"})
    assert right.status_code == case.invalid_status, right.text
    assert right.json()["error"]["code"] in ("invalid_json", "invalid_argument")


def test_any_key_may_ask_for_itself_whatever_its_scopes(suite: InProcessSuite,
                                                       keys: dict[str, str]) -> None:
    for scope in ("events:read", "webhooks:read", auth.ADMIN_SCOPE):
        got = suite.client.get("/v1/keys/current", headers={"X-API-Key": keys[scope]})
        assert got.status_code == 200, got.text
        assert got.json()["key"]["scopes"] == [scope] and scope in got.json()["allowed_scopes"]
    assert suite.client.get("/v1/keys/current").status_code == 401
    assert suite.client.get("/v1/keys/current", headers={"X-API-Key": keys["events:read"]},
                            params={"nope": "1"}).status_code == 400


def test_a_good_body_is_refused_by_the_service_with_rate_limit_headers(suite: InProcessSuite) -> None:
    r = suite.client.post("/v1/programs", json={"name": "no key"})
    assert r.status_code == 401 and "X-RateLimit-Limit" in r.headers


def test_one_access_line_per_request_without_key_or_body(suite: InProcessSuite,
                                                         keys: dict[str, str]) -> None:
    key = keys[auth.ADMIN_SCOPE]
    secret_body = f"body-{uuid.uuid4().hex}"
    with capture_logs() as logs:
        created = suite.client.post("/v1/programs", json={"name": secret_body},
                                    headers={"X-API-Key": key, "X-Request-Id": "access-1"})
        refused = suite.client.get("/v1/programs", headers={"X-Request-Id": "access-2"})
        missing = suite.client.get("/v1/nowhere", headers={"X-Request-Id": "access-3"})
    assert (created.status_code, refused.status_code, missing.status_code) == (200, 401, 404)
    lines = [e for e in logs if e["event"] == "http_request"]
    assert [e["request_id"] for e in lines] == ["access-1", "access-2", "access-3"]
    first, second, third = lines
    assert first["method"] == "POST" and first["route"] == "/v1/programs" and first["status"] == 200
    assert isinstance(first["tenant_id"], str) and first["tenant_id"] and first["latency_ms"] >= 0
    assert second["route"] == "/v1/programs" and second["status"] == 401 and second["tenant_id"] is None
    assert third["route"] is None and third["status"] == 404
    text = repr(logs)
    assert key not in text and key[3:20] not in text and secret_body not in text
