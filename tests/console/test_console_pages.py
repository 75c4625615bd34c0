"""The operator console's pages 1-4 in Chromium against the real embedded suite (issue 21):
sign in, programs, the rule builder, event types and the activity log."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.console.conftest import Suite, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def new_program(suite: Suite, **fields: object) -> str:
    body = suite.ok(suite.api.post("/v1/programs", json={"name": f"p-{uuid.uuid4().hex[:6]}", **fields}))
    return str(body["program_id"])


def test_sign_in_keeps_the_key_in_the_tab_only(page: Page, console_suite: Suite) -> None:
    sign_in(page, console_suite)
    expect(page.get_by_role("heading", name="Programs", exact=True)).to_be_visible()
    storage = page.evaluate("() => [JSON.stringify(sessionStorage), JSON.stringify(localStorage), location.href]")
    assert console_suite.admin_key in storage[0]
    assert console_suite.admin_key not in storage[1]
    assert console_suite.admin_key not in storage[2]
    # A reload keeps the session; signing out forgets it.
    page.reload()
    expect(page.get_by_role("heading", name="Programs", exact=True)).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    assert page.evaluate("() => sessionStorage.length") == 0


def test_a_wrong_key_is_refused_on_the_sign_in_form(page: Page, console_suite: Suite) -> None:
    sign_in(page, console_suite, key="sk_not_a_key_at_all_0000000000000000000")
    expect(page.get_by_text("The API refused the key")).to_be_visible()
    expect(page.get_by_label("API key")).to_be_visible()
    assert page.evaluate("() => sessionStorage.length") == 0


def test_create_a_program_with_a_silver_tier(signed_in: Page, console_suite: Suite) -> None:
    page = signed_in
    name = f"Coffee club {uuid.uuid4().hex[:4]}"
    form = page.get_by_role("form", name="Create program")
    form.get_by_label("Name").fill(name)
    form.get_by_role("button", name="Add tier").click()
    form.get_by_role("button", name="Add tier").click()
    form.get_by_label("Tier 1 name").fill("base")
    form.get_by_label("Tier 2 name").fill("silver")
    form.get_by_label("Tier 2 lifetime points from").fill("1000")
    form.get_by_label("Tier 2 multiplier").fill("1.5")
    form.get_by_role("button", name="Create program").click()
    expect(page.get_by_role("heading", name=name)).to_be_visible()
    program_id = page.url.rsplit("/", 1)[1]
    program = console_suite.ok(console_suite.api.get(f"/v1/programs/{program_id}"))
    assert [(t["name"], t["min_lifetime_points"], t["multiplier"]) for t in program["tiers"]] == [
        ("base", 0, 1), ("silver", 1000, 1.5)]
