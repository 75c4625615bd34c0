"""What a hostile probe of the embedded suite found in input handling (issue 18), over REST:
one page-token check on every list, program ids checked before enrollment and engagement
reads and writes, and long values answered with a short 400 that names the field."""

from __future__ import annotations

import base64
import os
import pathlib
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from accrual_platform.testing import free_port, wait_http
from accrual_platform.testing import stop_processes as stop

BIN = pathlib.Path(sys.executable).parent / "accrual"
pytestmark = pytest.mark.e2e


class Suite:
    def __init__(self, base_url: str, cwd: pathlib.Path, admin_key: str) -> None:
        self.base_url, self.cwd = base_url, cwd
        self.api = httpx.Client(base_url=base_url, headers={"X-API-Key": admin_key}, timeout=30)

    def tenant(self) -> httpx.Client:
        """A client of a new tenant with an admin key."""
        out = subprocess.run([str(BIN), "keys", "create", "--tenant", f"t-{uuid.uuid4().hex[:8]}",
                              "--scopes", "admin"], cwd=self.cwd, capture_output=True, text=True, check=True)
        return httpx.Client(base_url=self.base_url, headers={"X-API-Key": out.stdout.strip()}, timeout=30)


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    tmp = tmp_path_factory.mktemp("embedded")
    port, grpc_port = free_port(), free_port()
    env = {**os.environ, "GATEWAY_PORT": str(port), "GRPC_PORT": str(grpc_port)}
    env.pop("DATABASE_URL", None)
    env.pop("BROKER_URL", None)
    proc = subprocess.Popen([str(BIN), "run"], cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", [proc])
        key = (tmp / "var" / "admin_key").read_text().strip()
        s = Suite(f"http://127.0.0.1:{port}", tmp, key)
        yield s
        s.api.close()
    finally:
        stop([proc])


def ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    return r.json()


def fields(r: httpx.Response) -> list[str]:
    return [d.get("field") for d in r.json()["error"]["details"] if "field" in d]


def program(api: httpx.Client) -> str:
    pid: str = ok(api.post("/v1/programs", json={"name": f"p-{uuid.uuid4().hex[:6]}"}))["program_id"]
    return pid


def wait_event(api: httpx.Client, event_id: str) -> dict[str, Any]:
    deadline = time.time() + 30
    while True:
        event: dict[str, Any] = ok(api.get(f"/v1/events/{event_id}"))
        if event["status"] in ("COMPLETED", "FAILED") or time.time() > deadline:
            return event
        time.sleep(0.1)


@pytest.fixture(scope="module")
def lists(suite: Suite) -> dict[str, str]:
    """One route of every public list, each with more than one page of items, and a real
    token of the programs list (a token of another list for all the others)."""
    api = suite.api
    pid, other = program(api), program(api)
    ok(api.post(f"/v1/programs/{pid}/rules", json={"name": "per dollar", "formula": "properties.amount * 1"}))
    ok(api.post("/v1/cdp/event-types", json={"name": "purchase", "properties": []}))
    endpoint = ok(api.post("/v1/webhook-endpoints", json={
        "url": "http://127.0.0.1:9/hook", "enabled_events": ["*"]}))["endpoint_id"]
    events = [ok(api.post("/v1/events", json={
        "program_id": pid, "idempotency_key": uuid.uuid4().hex, "external_id": f"pager-{i}",
        "event_type": "purchase", "event_data": {"amount": 1 + i}}))["event_id"] for i in range(2)]
    done = [wait_event(api, e) for e in events]
    assert all(e["status"] == "COMPLETED" for e in done), done
    person = done[0]["participant_id"]
    ok(api.post(f"/v1/programs/{other}/enrollments", json={"participant_id": person}))
    ok(api.post(f"/v1/programs/{pid}/participants/{person}/adjustments",
                json={"amount": "+5", "reason": "a second ledger entry", "idempotency_key": uuid.uuid4().hex}))
    for i in range(2):
        ok(api.post(f"/v1/programs/{pid}/rewards", json={"name": f"reward {i}", "cost_points": "1"}))
        ok(api.post(f"/v1/programs/{pid}/participants/{person}/redemptions",
                    json={"idempotency_key": uuid.uuid4().hex, "points": "1"}))
    return {
        "events": "/v1/events",
        "programs": "/v1/programs",
        "transactions": f"/v1/programs/{pid}/participants/{person}/transactions",
        "program enrollments": f"/v1/programs/{pid}/enrollments",
        "participant enrollments": f"/v1/participants/{person}/enrollments",
        "deliveries": f"/v1/webhook-endpoints/{endpoint}/deliveries",
        "segment members": f"/v1/programs/{pid}/segments/purchasers/members",
        "rewards": f"/v1/programs/{pid}/rewards",
        "redemptions": f"/v1/programs/{pid}/participants/{person}/redemptions",
    }


def test_every_list_refuses_a_page_token_it_did_not_make(suite: Suite, lists: dict[str, str]) -> None:
    api = suite.api
    first = ok(api.get("/v1/programs", params={"page_size": 1}))
    assert first["next_page_token"]
    foreign = first["next_page_token"]  # a program id: the wrong shape for every other list
    old_style = base64.urlsafe_b64encode(b"zzzz").decode()  # what the old codecs took as a key
    for name, path in lists.items():
        # a real first page, then a token it made, works
        page = ok(api.get(path, params={"page_size": 1}))
        token = page["next_page_token"]
        if name != "deliveries":  # deliveries of an endpoint nobody answers: one may be all
            assert token, (name, page)
        if token:
            ok(api.get(path, params={"page_size": 1, "page_token": token}))
        bad_tokens = ["!", "garbage", "%%%", old_style, "x" * 2000]
        if name != "programs":
            bad_tokens.append(foreign)
        for bad in bad_tokens:
            r = api.get(path, params={"page_token": bad})
            assert r.status_code == 400, (name, bad[:20], r.status_code, r.text)
            assert r.json()["error"]["code"] == "invalid_argument", (name, r.text)
            assert fields(r) == ["page_token"], (name, r.text)


LONG, MID = "x" * 17_000, "y" * 300


def _short_and_named(r: httpx.Response, status: int, field: str | None) -> None:
    """The answer names the field and quotes at most a short prefix of the value."""
    assert r.status_code == status, (r.status_code, r.text[:300])
    text = r.text
    assert len(text) < 2000, len(text)
    assert "x" * 41 not in text and "y" * 41 not in text, text
    assert "metadata" not in text and "Stream removed" not in text, text
    if field is not None:
        assert field in fields(r) or field in r.json()["error"]["message"], text


def test_long_values_get_a_short_answer_naming_the_field(suite: Suite) -> None:
    api = suite.api
    pid = program(api)
    for value in (LONG, MID):
        cases: list[tuple[httpx.Response, int, str | None]] = [
            (api.post("/v1/cdp/events", json={
                "source": "pos", "externalEventId": uuid.uuid4().hex, "eventType": value,
                "identity": {"email": "a@example.com"}, "properties": {}}), 422, "eventType"),
            (api.post("/v1/cdp/events", json={
                "source": value, "externalEventId": value, "eventType": "purchase",
                "identity": {"email": "a@example.com"}, "properties": {}}), 422, "externalEventId"),
            (api.get(f"/v1/cdp/event-types/{value}"), 404, None),
            (api.get(f"/v1/programs/{pid}/segments/{value}/members"), 404, None),
            (api.post("/v1/webhook-endpoints", json={"url": "http://127.0.0.1:9/", "enabled_events": [value]}),
             400, "enabled_events[0]"),
            (api.post("/v1/events", json={"program_id": pid, "idempotency_key": value, "external_id": "a",
                                          "event_type": "purchase", "event_data": {}}), 400, "idempotency_key"),
            (api.post("/v1/events", json={"program_id": pid, "idempotency_key": uuid.uuid4().hex,
                                          "external_id": "a", "event_type": "purchase",
                                          "event_data": {value: {"deep": "a\x00b"}}}), 400, None),
            (api.post("/v1/programs", json={"name": "p", value: 1}), 400, None),
            (api.get("/v1/events", params={value: "1"}), 400, None),
            (api.post("/v1/programs", json={"name": value}), 400, "name"),
            (api.get(f"/v1/programs/{value}"), 400, "program_id"),
        ]
        for i, (r, status, field) in enumerate(cases):
            try:
                _short_and_named(r, status, field)
            except AssertionError as exc:
                raise AssertionError(f"case {i} ({len(value)} characters): {exc}") from None
    # a key no one could have been given: 401, not a transport error
    for key in ("sk_" + LONG, "sk_" + MID):
        r = httpx.get(f"{suite.base_url}/v1/programs", headers={"X-API-Key": key})
        _short_and_named(r, 401, None)


def test_program_routes_refuse_programs_that_are_not_the_callers(suite: Suite) -> None:
    """Enrollment and engagement routes ask the rules service: another tenant's program and a
    made-up one are 404 program_not_found, and a refused enrollment announces nothing."""
    api = suite.api
    theirs = program(api)
    with suite.tenant() as mine:
        hook = ok(mine.post("/v1/webhook-endpoints", json={
            "url": "http://127.0.0.1:9/hook", "enabled_events": ["enrollment.created"]}))["endpoint_id"]
        person = ok(mine.post("/v1/participants", json={
            "identities": [{"type": "EXTERNAL", "value": f"probe-{uuid.uuid4().hex}"}]}))["participant_id"]
        config = {"high_engagers": {"min_events": 1, "window_days": 60}}
        for pid in (theirs, str(uuid.uuid4())):
            base = f"/v1/programs/{pid}"
            answers = {
                "enroll": mine.post(f"{base}/enrollments", json={"participant_id": person}),
                "list enrollments": mine.get(f"{base}/enrollments"),
                "get enrollment": mine.get(f"{base}/enrollments/{person}"),
                "update enrollment": mine.patch(f"{base}/enrollments/{person}", json={"status": "FROZEN"}),
                "analytics": mine.get(f"{base}/analytics"),
                "segments": mine.get(f"{base}/segments"),
                "segment members": mine.get(f"{base}/segments/purchasers/members"),
                "segment config": mine.get(f"{base}/segment-config"),
                "replace segment config": mine.put(f"{base}/segment-config", json=config),
            }
            for name, r in answers.items():
                assert r.status_code == 404, (name, r.status_code, r.text)
                assert r.json()["error"]["code"] == "program_not_found", (name, r.text)
        assert ok(mine.get(f"/v1/participants/{person}/enrollments"))["enrollments"] == []
        # the caller's own program works, and only its enrollment is announced
        own = program(mine)
        ok(mine.post(f"/v1/programs/{own}/enrollments", json={"participant_id": person}))
        ok(mine.get(f"/v1/programs/{own}/analytics"))
        ok(mine.put(f"/v1/programs/{own}/segment-config", json=config))
        deadline = time.time() + 20
        while True:
            deliveries = ok(mine.get(f"/v1/webhook-endpoints/{hook}/deliveries"))["deliveries"]
            if deliveries or time.time() > deadline:
                break
            time.sleep(0.2)
        # facts go out in order: phantom enrollments, made earlier, would be here by now
        assert [d["type"] for d in deliveries] == ["enrollment.created"], deliveries
    # the owner's program is untouched by the refused calls
    assert ok(api.get(f"/v1/programs/{theirs}/enrollments"))["enrollments"] == []
