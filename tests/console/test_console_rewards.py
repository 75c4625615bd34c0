"""The console's rewards and points-bank pages (issues 22 and 23) in Chromium against the real
embedded suite: a reward created, redeemed, captured for fewer points and refunded in part; a
redemption past the balance refused at its form with the shortfall; a reversal from the event
page lowering the balance; pending points activated or cancelled there; and what a read-only
key may not do shown as unavailable."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.console.conftest import Suite, sign_in
from tests.console.test_console_operator import add_rule, artifact, new_program, open_participant, submit

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def create_reward(page: Page, base: str, program_id: str, name: str, cost: str, stock: str = "") -> None:
    page.goto(f"{base}/console/programs/{program_id}/rewards")
    form = page.get_by_role("region", name="New reward")
    form.get_by_label("Reward name").fill(name)
    form.get_by_label("Cost in points").fill(cost)
    form.get_by_label("Status").select_option("ACTIVE")
    form.get_by_label("Stock").fill(stock)
    form.get_by_role("button", name="Create reward").click()
    expect(form.get_by_role("status")).to_have_text(f"Created {name}.")
    expect(page.get_by_role("table", name="Rewards").get_by_role("row", name=re.compile(name))).to_be_visible()


def test_a_reward_is_created_edited_held_captured_for_less_and_refunded_in_part(
        signed_in: Page, console_suite: Suite) -> None:
    page, base, api = signed_in, console_suite.base, console_suite.api
    program_id = new_program(console_suite)
    add_rule(console_suite, program_id)
    carol = submit(console_suite, program_id, "carol", 100)["participant_id"]
    create_reward(page, base, program_id, "Mug", "40", stock="5")
    create_reward(page, base, program_id, "Bike", "500")
    # An edit: less stock, and the list shows it.
    page.get_by_role("button", name="Edit Mug").click()
    edit = page.get_by_role("region", name="Edit Mug")
    edit.get_by_label("Stock").fill("3")
    edit.get_by_role("button", name="Save reward").click()
    expect(edit.get_by_role("status")).to_have_text("Saved.")
    expect(page.get_by_role("table", name="Rewards").get_by_role("row", name=re.compile("Mug"))).to_contain_text("3")
    rewards = console_suite.ok(api.get(f"/v1/programs/{program_id}/rewards"))["rewards"]
    mug = next(r for r in rewards if r["name"] == "Mug")
    assert mug["stock"] == 3 and mug["status"] == "ACTIVE"

    open_participant(page, base, program_id, "carol")
    expect(page.get_by_test_id("balance-available")).to_have_text("100")
    examine = page.get_by_role("table", name="Rewards for this participant")
    expect(examine.get_by_role("row", name=re.compile("Mug"))).to_contain_text("AVAILABLE")
    expect(examine.get_by_role("row", name=re.compile("Bike"))).to_contain_text("insufficient_points (short by 400)")
    # A hold of the mug; a double click holds once: the form's key is the same for both.
    redeem = page.get_by_role("region", name="Redeem points")
    redeem.get_by_label("Reward", exact=True).select_option(label="Mug (40 points)")
    redeem.get_by_role("button", name="Hold points").dblclick()
    expect(redeem.get_by_test_id("redeem-outcome")).to_contain_text("40 points, HELD")
    expect(page.get_by_test_id("balance-available")).to_have_text("60")
    expect(page.get_by_test_id("balance-held")).to_have_text("40")
    held = console_suite.ok(api.get(f"/v1/programs/{program_id}/participants/{carol}/redemptions"))["redemptions"]
    assert [r["state"] for r in held] == ["HELD"]
    # Captured for fewer points than held: the rest goes back.
    row = page.get_by_role("region", name="Redemptions").get_by_test_id("redemption-row")
    expect(row).to_have_count(1)
    row.get_by_label("Capture points (empty: all)").fill("30")
    row.get_by_role("button", name="Capture").click()
    expect(row.get_by_test_id("redemption-state")).to_have_text("CAPTURED")
    expect(page.get_by_test_id("balance-available")).to_have_text("70")
    expect(page.get_by_test_id("balance-held")).to_have_text("0")
    # A part refunded.
    row.get_by_label("Refund points (empty: all)").fill("10")
    row.get_by_role("button", name="Refund").click()
    expect(row.get_by_test_id("redemption-state")).to_have_text("PARTIALLY_REFUNDED")
    expect(row.get_by_test_id("redemption-refunded")).to_have_text("10")
    expect(page.get_by_test_id("balance-available")).to_have_text("80")
    answer = console_suite.ok(api.get(f"/v1/redemptions/{held[0]['redemption_id']}"))
    assert (answer["state"], answer["captured_points"], answer["refunded_points"]) == ("PARTIALLY_REFUNDED", 30, 10)
    # The state filter and the lots list.
    page.get_by_label("Redemption state").select_option("HELD")
    expect(page.get_by_role("region", name="Redemptions")).to_contain_text("No HELD redemption.")
    page.get_by_label("Lot status").select_option("ACTIVE")
    expect(page.get_by_role("table", name="Lots").locator("tbody tr")).to_have_count(1)


def test_a_redemption_past_the_balance_shows_the_shortfall_at_its_form(signed_in: Page, console_suite: Suite) -> None:
    page, base, api = signed_in, console_suite.base, console_suite.api
    program_id = new_program(console_suite)
    add_rule(console_suite, program_id)
    dave = submit(console_suite, program_id, "dave", 20)["participant_id"]
    open_participant(page, base, program_id, "dave")
    expect(page.get_by_test_id("balance-available")).to_have_text("20")
    redeem = page.get_by_role("region", name="Redeem points")
    redeem.get_by_label("Points", exact=True).check()
    redeem.get_by_label("Points to redeem").fill("50")
    redeem.get_by_label("Capture at once (no hold)").check()
    redeem.get_by_role("button", name="Redeem now").click()
    expect(redeem.get_by_test_id("redeem-shortfall")).to_have_text(
        "Not enough points: short by 30 (available 20, required 50).")
    expect(page.get_by_test_id("balance-available")).to_have_text("20")
    assert console_suite.ok(api.get(f"/v1/programs/{program_id}/participants/{dave}/redemptions"))["redemptions"] == []
    # A dry run of what fits stores nothing.
    redeem.get_by_label("Points to redeem").fill("15")
    redeem.get_by_label("Dry run (store nothing)").check()
    redeem.get_by_role("button", name="Check redemption").click()
    expect(redeem.get_by_test_id("redeem-outcome")).to_contain_text("Dry run, nothing stored: 15 points")
    assert console_suite.ok(api.get(f"/v1/programs/{program_id}/participants/{dave}/redemptions"))["redemptions"] == []
    expect(page.get_by_test_id("balance-available")).to_have_text("20")


def test_a_reversal_from_the_event_page_lowers_the_balance(signed_in: Page, console_suite: Suite) -> None:
    page, base, api = signed_in, console_suite.base, console_suite.api
    program_id = new_program(console_suite)
    add_rule(console_suite, program_id)
    event = submit(console_suite, program_id, "erin", 80)
    erin = event["participant_id"]
    page.goto(f"{base}/console/activity/{event['event_id']}")
    panel = page.get_by_role("region", name="Points of this event")
    # Its points are active already: nothing pending to activate or cancel.
    expect(panel.get_by_test_id("event-pending")).to_have_text("Pending points: 0.")
    expect(panel.get_by_role("button", name="Activate points")).to_be_disabled()
    expect(panel.get_by_role("button", name="Cancel points")).to_be_disabled()
    expect(panel.get_by_test_id("activate-unavailable")).to_contain_text("no pending points")
    panel.get_by_label("Ratio", exact=True).fill("0.5")
    panel.get_by_label("Reversal reason").fill("half returned")
    panel.get_by_role("button", name="Reverse").dblclick()
    expect(panel.get_by_test_id("reverse-outcome")).to_contain_text("Reversed: 40 points")
    balance = console_suite.ok(api.get(f"/v1/programs/{program_id}/participants/{erin}/balance"))
    assert balance["available"] == 40
    open_participant(page, base, program_id, "erin")
    expect(page.get_by_test_id("balance-available")).to_have_text("40")
    kinds = sorted(t["kind"] for t in console_suite.ok(
        api.get(f"/v1/programs/{program_id}/participants/{erin}/transactions"))["transactions"])
    assert kinds == ["EARN", "REVERSAL"]


def test_a_read_only_key_sees_reversal_and_redemption_unavailable(page: Page, console_suite: Suite) -> None:
    program_id = new_program(console_suite)
    add_rule(console_suite, program_id)
    event = submit(console_suite, program_id, "frank", 30)
    sign_in(page, console_suite, key=console_suite.key("events:read,participants:read,programs:read"))
    expect(page.get_by_role("heading", name="Programs", exact=True)).to_be_visible()
    page.goto(f"{console_suite.base}/console/activity/{event['event_id']}")
    panel = page.get_by_role("region", name="Points of this event")
    expect(panel.get_by_test_id("reverse-unavailable")).to_contain_text("lacks the events:write scope")
    expect(panel.get_by_role("button", name="Reverse")).to_be_disabled()
    expect(panel.get_by_role("button", name="Activate points")).to_be_disabled()
    page.goto(f"{console_suite.base}/console/programs/{program_id}/rewards")
    expect(page.get_by_role("button", name="Create reward")).to_be_disabled()
    open_participant(page, console_suite.base, program_id, "frank")
    redeem = page.get_by_role("region", name="Redeem points")
    expect(redeem.get_by_text("lacks the participants:write scope")).to_be_visible()
    expect(redeem.get_by_role("button", name="Hold points")).to_be_disabled()


def test_pending_points_are_activated_or_cancelled_from_the_event_page(signed_in: Page, console_suite: Suite) -> None:
    page, base, api = signed_in, console_suite.base, console_suite.api
    program_id = new_program(console_suite, pending={"type": "DURATION", "duration": "P30D"})
    add_rule(console_suite, program_id)
    kept = submit(console_suite, program_id, "gina", 70)
    returned = submit(console_suite, program_id, "gina", 20)
    gina = kept["participant_id"]
    balance = console_suite.ok(api.get(f"/v1/programs/{program_id}/participants/{gina}/balance"))
    assert (balance["pending"], balance["available"]) == (90, 0)
    page.goto(f"{base}/console/activity/{kept['event_id']}")
    panel = page.get_by_role("region", name="Points of this event")
    expect(panel.get_by_test_id("event-pending")).to_have_text("Pending points: 70.")
    panel.get_by_role("button", name="Activate points").click()
    expect(panel.get_by_role("status")).to_have_text("Points activated.")
    expect(panel.get_by_test_id("event-pending")).to_have_text("Pending points: 0.")
    expect(panel.get_by_role("button", name="Cancel points")).to_be_disabled()
    page.goto(f"{base}/console/activity/{returned['event_id']}")
    expect(panel.get_by_test_id("event-pending")).to_have_text("Pending points: 20.")
    panel.get_by_role("button", name="Cancel points").click()
    expect(panel.get_by_role("status")).to_have_text("Pending points cancelled.")
    open_participant(page, base, program_id, "gina")
    expect(page.get_by_test_id("balance-available")).to_have_text("70")
    expect(page.get_by_test_id("balance-pending")).to_have_text("0")
    page.get_by_label("Lot status").select_option("CANCELLED")
    expect(page.get_by_role("table", name="Lots").locator("tbody tr")).to_have_count(1)


def test_rewards_and_a_participants_bank_fit_a_phone(browser: Browser, console_suite: Suite) -> None:
    program_id = new_program(console_suite)
    add_rule(console_suite, program_id)
    hana = submit(console_suite, program_id, "hana", 90)["participant_id"]
    console_suite.ok(console_suite.api.post(f"/v1/programs/{program_id}/rewards", json={
        "name": "Tote bag", "cost_points": 30, "status": "ACTIVE", "stock": 9}))
    console_suite.ok(console_suite.api.post(f"/v1/programs/{program_id}/participants/{hana}/redemptions", json={
        "idempotency_key": "phone-hold", "points": 25}))
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        sign_in(page, console_suite)
        expect(page.get_by_role("heading", name="Programs", exact=True)).to_be_visible()
        for name, path, ready in (("rewards", f"programs/{program_id}/rewards", "Tote bag"),
                                  ("participant-bank", f"programs/{program_id}/participants/{hana}", "HELD")):
            page.goto(f"{console_suite.base}/console/{path}")
            expect(page.locator("main").get_by_text(ready).first).to_be_visible()
            assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
            page.screenshot(path=str(artifact(f"phone-{name}")), full_page=True)
    finally:
        context.close()
