"""How the console answers the API's failures (issue 21, "Bad input and failures"): a 429 is
waited out for Retry-After, a 5xx shows a banner with the request id, a 401 returns to sign-in,
and an answer the page cannot show leaves a message, never a blank page. The failures are
answers of the real suite's routes replaced in the browser (Playwright routing)."""

from __future__ import annotations

import json
import uuid

import pytest
from playwright.sync_api import Page, Route, expect

from tests.console.conftest import Suite

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def error_body(code: str, request_id: str) -> str:
    return json.dumps({"error": {"code": code, "message": f"{code} (test)", "details": [], "request_id": request_id}})


def test_a_429_is_waited_out_then_the_page_loads(signed_in: Page, console_suite: Suite) -> None:
    page = signed_in
    name = f"limited-{uuid.uuid4().hex[:6]}"
    console_suite.ok(console_suite.api.post("/v1/programs", json={"name": name}))
    calls: list[str] = []

    def limited(route: Route) -> None:
        calls.append(route.request.url)
        if len(calls) == 1:
            route.fulfill(status=429, headers={"Retry-After": "1", "Content-Type": "application/json"},
                          body=error_body("rate_limited", "req_limited"))
        else:
            route.continue_()

    page.route(f"{console_suite.base}/v1/programs?*", limited)
    page.reload()
    expect(page.get_by_role("link", name=name)).to_be_visible()
    assert len(calls) == 2
    expect(page.get_by_test_id("failure-banner")).to_have_count(0)


def test_a_server_error_shows_a_banner_with_its_request_id(signed_in: Page, console_suite: Suite) -> None:
    page = signed_in
    page.route(f"{console_suite.base}/v1/events?*", lambda route: route.fulfill(
        status=503, content_type="application/json", body=error_body("unavailable", "req_banner_503")))
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Activity").click()
    banner = page.get_by_test_id("failure-banner")
    expect(banner).to_contain_text("unavailable (test)")
    expect(banner).to_contain_text("req_banner_503")
    # The page itself says what is missing, too: it is never blank.
    expect(page.get_by_role("heading", name="Activity log")).to_be_visible()


def test_a_401_returns_to_sign_in(signed_in: Page, console_suite: Suite) -> None:
    page = signed_in
    page.route(f"{console_suite.base}/v1/events?*", lambda route: route.fulfill(
        status=401, content_type="application/json", body=error_body("unauthenticated", "req_401")))
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Activity").click()
    expect(page.get_by_label("API key")).to_be_visible()
    expect(page.get_by_text("The API refused the key: unauthenticated (test)")).to_be_visible()
    assert page.evaluate("() => sessionStorage.length") == 0


def test_an_answer_the_page_cannot_show_leaves_a_message_not_a_blank_page(
        signed_in: Page, console_suite: Suite) -> None:
    page = signed_in
    event_id = str(uuid.uuid4())
    page.route(f"{console_suite.base}/v1/events/{event_id}", lambda route: route.fulfill(
        status=200, content_type="application/json", body=json.dumps({"event_id": event_id, "status": "COMPLETED"})))
    page.goto(f"{console_suite.base}/console/activity/{event_id}")
    expect(page.get_by_role("heading", name="This page stopped working")).to_be_visible()
    expect(page.get_by_role("navigation", name="Console")).to_be_visible()


def test_pages_fit_a_phone_width(signed_in: Page, console_suite: Suite) -> None:
    page = signed_in
    program_id = str(console_suite.ok(console_suite.api.post("/v1/programs", json={"name": "narrow"}))["program_id"])
    page.set_viewport_size({"width": 390, "height": 844})
    for path in ("programs", f"programs/{program_id}", f"programs/{program_id}/rules",
                 f"programs/{program_id}/event-types", "activity", "event-types"):
        page.goto(f"{console_suite.base}/console/{path}")
        expect(page.locator("main h1").first).to_be_visible()
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 390, f"/console/{path} is {width}px wide at 390px"
