"""The operator console's pages 1-4 in Chromium against the real embedded suite (issue 21):
sign in, programs, the rule builder, event types and the activity log."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.console.conftest import Suite, keep_screenshot, sign_in

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

    # Edited on its own page: a bad tier is refused at its field, then a good edit is saved.
    form = page.get_by_role("form", name="Save program")
    form.get_by_label("Tier 2 lifetime points from").fill("0")
    form.get_by_role("button", name="Save program").click()
    expect(form.get_by_role("group", name="Tier 2").locator(".field-invalid")).to_be_visible()
    form.get_by_label("Tier 2 lifetime points from").fill("500")
    form.get_by_label("Rounding").select_option("HALF_UP")
    form.get_by_role("group", name="inactivity trigger").get_by_role("checkbox").check()
    form.get_by_label("inactive for days").fill("60")
    form.get_by_role("button", name="Save program").click()
    expect(page.get_by_text("Saved.")).to_be_visible()
    program = console_suite.ok(console_suite.api.get(f"/v1/programs/{program_id}"))
    assert program["tiers"][1]["min_lifetime_points"] == 500 and program["rounding_mode"] == "HALF_UP"
    assert program["scheduled_triggers"]["inactivity"] == {"enabled": True, "event_type": "inactivity", "days": 60}


@pytest.mark.readme_screenshot
def test_write_a_rule_with_a_syntax_error_see_where_fix_it_and_simulate(signed_in: Page, console_suite: Suite) -> None:
    page = signed_in
    program_id = new_program(console_suite, tiers=[{"name": "base", "min_lifetime_points": 0, "multiplier": 1},
                                                   {"name": "silver", "min_lifetime_points": 1000, "multiplier": 1.5}])
    page.goto(f"{console_suite.base}/console/programs/{program_id}/rules")
    editor = page.get_by_role("form", name="Create rule")
    editor.get_by_label("Rule name").fill("Two points a euro")
    editor.get_by_label("Event type").fill("purchase")
    editor.get_by_label("Formula").fill("properties.amount * 2")
    editor.get_by_label("Condition").fill("properties.amount >= * 10")
    position = page.get_by_test_id("expression-error-position")
    expect(position).to_contain_text("Line 1, column 22")
    expect(position).to_contain_text("^")
    expect(editor.get_by_label("Condition")).to_have_attribute("aria-invalid", "true")
    editor.get_by_label("Condition").fill("properties.amount >= 10")
    expect(page.get_by_test_id("validation-state")).to_contain_text("The API accepts this rule")
    expect(position).to_have_count(0)
    editor.get_by_role("button", name="Create rule").click()
    expect(page).to_have_url(re.compile(r"/rules/[0-9a-f-]{36}$"))
    expect(page.get_by_role("heading", name="Edit “Two points a euro” (v1)")).to_be_visible()

    sim = page.get_by_role("form", name="Simulate")
    sim.get_by_label("Sample event type").fill("purchase")
    sim.get_by_label("Sample event data (JSON)").fill('{"amount": 25}')
    sim.get_by_role("button", name="Simulate").click()
    expect(page.get_by_test_id("simulated-total")).to_have_text("50")
    expect(page.get_by_test_id("simulation-result")).to_contain_text("Two points a euro")

    # A second version, compared with the first.
    editor = page.get_by_role("form", name="Save as a new version")
    editor.get_by_label("Formula").fill("properties.amount * 3")
    expect(page.get_by_test_id("validation-state")).to_contain_text("The API accepts this rule")
    editor.get_by_role("button", name="Save as a new version").click()
    expect(page.get_by_role("heading", name="Edit “Two points a euro” (v2)")).to_be_visible()
    compare = page.get_by_role("table", name="Version 1 against version 2")
    expect(compare.get_by_role("row", name=re.compile("Formula"))).to_contain_text("(changed)")
    expect(compare.get_by_role("row", name=re.compile("Condition"))).not_to_contain_text("(changed)")
    sim.get_by_role("button", name="Simulate").click()
    expect(page.get_by_test_id("simulated-total")).to_have_text("75")
    page.get_by_role("heading", name="Rule builder").scroll_into_view_if_needed()
    keep_screenshot(page, "rule-builder")


def test_a_rule_the_api_refuses_shows_its_error_at_the_field_and_saves_nothing(
        signed_in: Page, console_suite: Suite) -> None:
    page = signed_in
    program_id = new_program(console_suite)
    page.goto(f"{console_suite.base}/console/programs/{program_id}/rules")
    editor = page.get_by_role("form", name="Create rule")
    editor.get_by_label("Rule name").fill("Words, not points")
    editor.get_by_label("Formula").fill('"ten"')
    formula_error = editor.locator(".field-error", has_text="must give a number")
    expect(formula_error).to_be_visible()
    editor.get_by_role("button", name="Create rule").click()
    expect(formula_error).to_be_visible()
    expect(page).to_have_url(re.compile(r"/rules$"))
    assert console_suite.ok(console_suite.api.get(f"/v1/programs/{program_id}/rules"))["rules"] == []


def submit(suite: Suite, program_id: str, external_id: str, amount: int) -> str:
    body = suite.ok(suite.api.post("/v1/events", json={
        "program_id": program_id, "idempotency_key": uuid.uuid4().hex, "external_id": external_id,
        "event_type": "purchase", "event_data": {"amount": amount}}))
    return str(body["event_id"])


def test_events_appear_completed_in_the_activity_log_with_their_detail(signed_in: Page, console_suite: Suite) -> None:
    page = signed_in
    program_id = new_program(console_suite)
    rule = console_suite.ok(console_suite.api.post(f"/v1/programs/{program_id}/rules", json={
        "name": "Two a euro", "event_type": "purchase", "formula": "properties.amount * 2"}))
    page.goto(f"{console_suite.base}/console/activity?program_id={program_id}")
    expect(page.get_by_text("No event matches these filters.")).to_be_visible()
    # Sent after the page was opened: they appear without a reload.
    ids = [submit(console_suite, program_id, f"ann-{i}", 10 + i) for i in range(3)]
    rows = page.get_by_role("table", name="Events").locator("tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.filter(has_text="COMPLETED")).to_have_count(3)
    page.get_by_label("Status").select_option("FAILED")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.get_by_text("No event matches these filters.")).to_be_visible()
    assert "status=FAILED" in page.url
    page.get_by_label("Status").select_option("COMPLETED")
    page.get_by_label("Event type").fill("refund")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.get_by_text("No event matches these filters.")).to_be_visible()
    page.get_by_label("Event type").fill("purchase")
    page.get_by_label("External id").fill("ann-2")
    page.get_by_role("button", name="Apply filters").click()
    expect(rows).to_have_count(1)
    rows.first.get_by_role("link").click()
    expect(page).to_have_url(re.compile(f"/activity/{ids[2]}$"))
    expect(page.get_by_test_id("event-status")).to_have_text("COMPLETED")
    expect(page.get_by_test_id("event-points")).to_have_text("24")
    expect(page.get_by_test_id("event-payload")).to_contain_text('"amount": 12')
    evaluation = page.get_by_role("table", name="Rule evaluations").locator("tbody tr")
    expect(evaluation).to_have_count(1)
    expect(evaluation).to_contain_text("Two a euro")
    expect(evaluation).to_contain_text("v1")
    expect(evaluation).to_contain_text("24")
    participant = console_suite.ok(console_suite.api.get(f"/v1/events/{ids[2]}"))["participant_id"]
    expect(page.get_by_text(participant)).to_be_visible()
    evaluation.get_by_role("link", name="Two a euro").click()
    expect(page).to_have_url(re.compile(f"/programs/{program_id}/rules/{rule['rule_id']}"))


def test_a_failed_event_shows_its_error_and_is_retried(signed_in: Page, console_suite: Suite) -> None:
    page = signed_in
    program_id = new_program(console_suite, on_unknown_participant="REJECT")
    console_suite.ok(console_suite.api.post(f"/v1/programs/{program_id}/rules", json={
        "name": "One a euro", "formula": "properties.amount"}))
    event_id = submit(console_suite, program_id, "walk-in", 7)
    page.goto(f"{console_suite.base}/console/activity?program_id={program_id}&status=FAILED")
    rows = page.get_by_role("table", name="Events").locator("tbody tr")
    expect(rows).to_have_count(1)
    rows.first.get_by_role("link").click()
    expect(page.get_by_test_id("event-status")).to_have_text("FAILED")
    expect(page.get_by_test_id("event-error")).to_contain_text("participant_not_found")
    console_suite.ok(console_suite.api.post("/v1/participants", json={
        "identities": [{"type": "EXTERNAL", "value": "walk-in"}]}))
    page.get_by_role("button", name="Retry the event").click()
    expect(page.get_by_test_id("event-status")).to_have_text("COMPLETED")
    expect(page.get_by_test_id("event-points")).to_have_text("7")
    assert console_suite.ok(console_suite.api.get(f"/v1/events/{event_id}"))["status"] == "COMPLETED"


def test_event_types_of_a_program_and_of_the_cdp_registry(signed_in: Page, console_suite: Suite) -> None:
    page = signed_in
    program_id = new_program(console_suite)
    page.goto(f"{console_suite.base}/console/programs/{program_id}/event-types")
    form = page.get_by_role("form", name="New event type")
    form.get_by_label("Event type name").fill("purchase")
    form.get_by_label("Description").fill("A till receipt")
    form.get_by_role("button", name="Add property").click()
    form.get_by_label("Property 1 name").fill("amount")
    form.get_by_label("Property 1 type").select_option("NUMBER")
    form.get_by_label("required").check()
    form.get_by_role("button", name="Create event type").click()
    row = page.get_by_role("row", name=re.compile("purchase"))
    expect(row).to_contain_text("amount: NUMBER (required)")
    page.get_by_role("button", name="Edit purchase").click()
    edit = page.get_by_role("form", name="Edit purchase")
    edit.get_by_label("Description").fill("A receipt")
    edit.get_by_role("button", name="Save event type").click()
    expect(row).to_contain_text("A receipt")
    got = console_suite.ok(console_suite.api.get(f"/v1/programs/{program_id}/event-types/purchase"))
    assert got["description"] == "A receipt"
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete purchase").click()
    expect(page.get_by_text("No event type registered yet.")).to_be_visible()

    name = f"signup_{uuid.uuid4().hex[:6]}"
    page.get_by_role("navigation", name="Console").get_by_role("link", name="CDP event types").click()
    form = page.get_by_role("form", name="New event type")
    form.get_by_label("Event type name").fill(name)
    form.get_by_role("button", name="Add property").click()
    form.get_by_label("Property 1 name").fill("plan")
    form.get_by_role("button", name="Add property").click()
    form.get_by_label("Property 2 name").fill("")
    form.get_by_role("button", name="Create event type").click()
    # The API names the bad property; the console shows it there.
    expect(form.get_by_label("Property 2 name")).to_have_attribute("aria-invalid", "true")
    form.get_by_role("button", name="Remove property 2").click()
    form.get_by_role("button", name="Create event type").click()
    expect(page.get_by_role("row", name=re.compile(name))).to_contain_text("plan: STRING")
    assert console_suite.ok(console_suite.api.get(f"/v1/cdp/event-types/{name}"))["properties"][0]["name"] == "plan"


def test_what_the_key_scopes_do_not_allow_is_shown_unavailable(page: Page, console_suite: Suite) -> None:
    program_id = new_program(console_suite)
    sign_in(page, console_suite, key=console_suite.key("events:read"))
    # Programs need programs:read: the landing page and its nav entry say so up front.
    expect(page.get_by_role("heading", name="Unavailable")).to_be_visible()
    expect(page.get_by_text("lacks the programs:read scope")).to_be_visible()
    nav = page.get_by_role("navigation", name="Console")
    expect(nav.get_by_text("Programs (unavailable)")).to_be_visible()
    expect(nav.get_by_role("link", name="Activity")).to_be_visible()
    # The CDP registry can be read, not changed.
    nav.get_by_role("link", name="CDP event types").click()
    create = page.get_by_role("button", name="Create event type")
    expect(create).to_be_disabled()
    expect(page.get_by_text("lacks the programs:write scope").first).to_be_visible()
    page.goto(f"{console_suite.base}/console/programs/{program_id}/rules")
    expect(page.get_by_text("lacks the programs:read scope")).to_be_visible()


def test_rules_are_reordered_suspended_and_archived(signed_in: Page, console_suite: Suite) -> None:
    page = signed_in
    program_id = new_program(console_suite)
    ids = [console_suite.ok(console_suite.api.post(f"/v1/programs/{program_id}/rules", json={
        "name": name, "formula": "1", "order": order}))["rule_id"]
        for name, order in (("first", 10), ("second", 20), ("third", 30))]
    second_id = ids[1]
    page.goto(f"{console_suite.base}/console/programs/{program_id}/rules")
    names = page.locator("section[aria-labelledby=rules-heading] tbody tr td:nth-child(2)")
    expect(names).to_have_text(["first", "second", "third"])
    page.get_by_role("button", name="Move third up").click()
    expect(names).to_have_text(["first", "third", "second"])
    row = page.get_by_role("row", name=re.compile("first"))
    row.get_by_role("button", name="Suspend").click()
    expect(row).to_contain_text("SUSPENDED")
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("row", name=re.compile("second")).get_by_role("button", name="Archive").click()
    # An archived rule leaves the list (its history stays readable by its URL).
    expect(names).to_have_text(["first", "third"])
    rules = {r["name"]: r for r in console_suite.ok(console_suite.api.get(f"/v1/programs/{program_id}/rules"))["rules"]}
    assert rules["first"]["order"] < rules["third"]["order"] and rules["first"]["status"] == "SUSPENDED"
    second = console_suite.ok(console_suite.api.get(f"/v1/programs/{program_id}/rules/{second_id}"))
    assert (second["status"], second["order"] > rules["third"]["order"]) == ("ARCHIVED", True)
    page.goto(f"{console_suite.base}/console/programs/{program_id}/rules/{second_id}")
    expect(page.get_by_text("This rule is archived")).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile(r"Versions \(\d\)"))).to_be_visible()
