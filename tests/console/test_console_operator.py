"""The operator console's pages 5-8 in Chromium against the real embedded suite (issue 21):
participants, bulk upload, analytics and webhooks; bad input in a bulk file; the API stopped
in the middle of an upload; and one operator's whole day, from sign-in to a webhook delivery."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import os
import pathlib
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from accrual_platform.testing import free_port, wait_http
from accrual_platform.testing import stop_processes as stop
from playwright.sync_api import Browser, FilePayload, Page, Route, expect

from tests.console.conftest import ARTIFACTS, Suite, keep_screenshot, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def new_program(suite: Suite, **fields: object) -> str:
    body = suite.ok(suite.api.post("/v1/programs", json={"name": f"p-{uuid.uuid4().hex[:6]}", **fields}))
    return str(body["program_id"])


def add_rule(suite: Suite, program_id: str, formula: str = "properties.amount") -> None:
    suite.ok(suite.api.post(f"/v1/programs/{program_id}/rules", json={
        "name": "A point a euro", "event_type": "purchase", "formula": formula}))


def events_csv(rows: int, *, days: int = 14, broken: Callable[[int], str | None] = lambda i: None) -> bytes:
    """A CSV of events over the last `days` days, spread unevenly over days, types and
    customers (a few busy ones, a long tail) so that the charts have a shape; `broken(i)`
    may give row i's text instead."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    lines = ["customer,type,amount,timestamp"]
    for i in range(rows):
        spread, recent = (i * 7919) % 1000 / 1000, (i * 6151) % 1009 / 1009
        at = now - dt.timedelta(days=int(recent ** 1.5 * days), minutes=i % 600)
        kind = "review" if i % 7 == 0 else "referral" if i % 11 == 0 else "purchase"
        lines.append(broken(i) or f"c{int(spread ** 4 * 150)},{kind},{5 + i % 17},"
                                  f"{at.isoformat().replace('+00:00', 'Z')}")
    return ("\n".join(lines) + "\n").encode()


def choose_file(page: Page, name: str, content: bytes) -> None:
    payload: FilePayload = {"name": name, "mimeType": "text/csv", "buffer": content}
    page.get_by_label("Events file").set_input_files(files=[payload])


def count(page: Page, what: str) -> int:
    return int(page.get_by_test_id(f"count-{what}").inner_text())


def wait_finished(page: Page) -> None:
    expect(page.get_by_test_id("bulk-counts")).to_contain_text("Finished.", timeout=120_000)


def program_events(api: httpx.Client, program_id: str, **query: str) -> list[dict[str, Any]]:
    """Every event of the program (cursor pages of 200)."""
    out: list[dict[str, Any]] = []
    token = ""
    while True:
        r = api.get("/v1/events", params={"program_id": program_id, "page_size": 200, **query,
                                          **({"page_token": token} if token else {})})
        assert r.status_code == 200, r.text
        out += r.json()["events"]
        token = r.json()["next_page_token"]
        if not token:
            return out


def wait_processed(api: httpx.Client, program_id: str, total: int) -> None:
    """Until the program has `total` events, none PENDING or PROCESSING (the suite's workers
    run at their own pace; the test's own timeout bounds the wait)."""
    while True:
        events = program_events(api, program_id)
        if len(events) == total and all(e["status"] in ("COMPLETED", "FAILED") for e in events):
            return
        time.sleep(0.5)


def test_bulk_csv_with_broken_rows_lands_the_good_ones_and_reports_the_bad_by_line(
        signed_in: Page, console_suite: Suite) -> None:
    page = signed_in
    program_id = new_program(console_suite)
    # Row i is on line i + 2 (the header is line 1).
    bad = {3: "c3,purchase", 7: "c7,purchase,5,2024-01-01T00:00:00Z,extra",
           11: "c11,purchase,5,yesterday", 15: ",purchase,5,"}
    content = events_csv(20, broken=lambda i: bad.get(i))
    page.goto(f"{console_suite.base}/console/programs/{program_id}/bulk")
    choose_file(page, "mixed.csv", content)
    expect(page.get_by_label("Column timestamp becomes")).to_have_value("field:event_timestamp")
    page.get_by_role("button", name="Upload", exact=True).click()
    wait_finished(page)
    errors = page.get_by_test_id("bulk-errors")
    expect(errors.get_by_role("row", name=re.compile(r"^5 "))).to_contain_text("has 2 fields; the header has 4")
    expect(errors.get_by_role("row", name=re.compile(r"^9 "))).to_contain_text("has 5 fields; the header has 4")
    expect(errors.get_by_role("row", name=re.compile(r"^13 event_timestamp"))).to_contain_text("RFC 3339")
    expect(errors.get_by_role("row", name=re.compile(r"^17 external_id"))).to_contain_text("required")
    assert (count(page, "accepted"), count(page, "error"), count(page, "pending")) == (16, 4, 0)
    assert len(program_events(console_suite.api, program_id)) == 16
    with page.expect_download() as download:
        page.get_by_role("button", name="Download results").click()
    results = pathlib.Path(download.value.path()).read_text().splitlines()
    assert results[0] == "line,status,idempotency_key,event_id,field,message"
    assert results[12].startswith("13,error,,,event_timestamp,")
    assert results[1].startswith("2,accepted,row-")

    # The same file again: its keys come from the rows' content, so nothing lands twice.
    choose_file(page, "mixed-again.csv", content)
    page.get_by_role("button", name="Upload", exact=True).click()
    wait_finished(page)
    assert (count(page, "accepted"), count(page, "duplicate"), count(page, "error")) == (0, 16, 4)
    assert len(program_events(console_suite.api, program_id)) == 16


def test_bulk_upload_cancelled_mid_way_resumes_and_json_lines_report_bad_lines(
        signed_in: Page, console_suite: Suite) -> None:
    page = signed_in
    program_id = new_program(console_suite)
    page.goto(f"{console_suite.base}/console/programs/{program_id}/bulk")
    choose_file(page, "cancel.csv", events_csv(2500))
    calls: list[Route] = []

    def hold_the_second_batch(route: Route) -> None:
        """The second batch gets no answer until the operator cancels."""
        calls.append(route)
        if len(calls) != 2:
            route.continue_()

    page.route("**/v1/events/batch", hold_the_second_batch)
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.get_by_test_id("count-accepted")).to_have_text("1000")
    expect(page.get_by_role("button", name="Cancel")).to_be_visible()
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_test_id("bulk-counts")).to_contain_text("Cancelled.")
    assert (count(page, "accepted"), count(page, "pending")) == (1000, 1500)
    page.get_by_role("button", name="Resume").click()
    wait_finished(page)
    assert (count(page, "accepted"), count(page, "duplicate"), count(page, "error")) == (2500, 0, 0)
    assert len(program_events(console_suite.api, program_id)) == 2500

    lines = [{"external_id": "j1", "event_type": "purchase", "event_data": {"amount": 3}},
             {"external_id": "j2", "event_type": "purchase", "colour": "red"},
             {"external_id": 7, "event_type": "purchase"}]
    text = "\n".join(json.dumps(line) for line in lines) + "\nnot json\n"
    payload: FilePayload = {"name": "events.jsonl", "mimeType": "application/x-ndjson", "buffer": text.encode()}
    page.get_by_label("Events file").set_input_files(files=[payload])
    page.get_by_role("button", name="Upload", exact=True).click()
    wait_finished(page)
    errors = page.get_by_test_id("bulk-errors")
    expect(errors.get_by_role("row", name=re.compile(r"^2 colour unknown field"))).to_be_visible()
    expect(errors.get_by_role("row", name=re.compile(r"^3 external_id must be a string"))).to_be_visible()
    expect(errors.get_by_role("row", name=re.compile(r"^4 "))).to_contain_text("is not JSON")
    assert (count(page, "accepted"), count(page, "error")) == (1, 3)


@pytest.mark.parametrize("path", ["programs/{p}/participants", "programs/{p}/bulk", "programs/{p}/analytics",
                                  "webhooks"])
def test_pages_5_to_8_fit_a_phone(browser: Browser, console_suite: Suite, path: str) -> None:
    program_id = new_program(console_suite)
    add_rule(console_suite, program_id)
    submit(console_suite, program_id, "dana", 4)
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        sign_in(page, console_suite)
        expect(page.get_by_role("heading", name="Programs", exact=True)).to_be_visible()
        page.goto(f"{console_suite.base}/console/{path.format(p=program_id)}")
        expect(page.locator("main h1")).to_be_visible()
        if "analytics" in path:
            expect(page.locator("figure.chart .recharts-wrapper")).to_have_count(4)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
        page.screenshot(path=str(artifact(f"phone-{path.rsplit('/', 1)[-1]}")), full_page=True)
    finally:
        context.close()


def start_suite(home: pathlib.Path, port: int, grpc_port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BROKER_URL", "CONSOLE_DIR")}
    env.update(GATEWAY_PORT=str(port), GRPC_PORT=str(grpc_port))
    with open(home / "suite.log", "ab") as log:
        proc = subprocess.Popen([str(pathlib.Path(sys.executable).parent / "accrual"), "run"],
                                cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{port}/readyz", [proc])
    return proc


def test_api_stopped_mid_upload_shows_a_banner_and_a_resumed_upload_makes_no_duplicates(
        browser: Browser, tmp_path: pathlib.Path) -> None:
    port, grpc_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    procs = [start_suite(tmp_path, port, grpc_port)]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        key = (tmp_path / "var" / "admin_key").read_text().strip()
        api = httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=60)
        suite = Suite(base, key, tmp_path, api)
        program_id = new_program(suite)
        page = context.new_page()
        page.set_default_timeout(30_000)
        calls: list[int] = []

        def cut_after_the_server_answers(route: Route) -> None:
            """The second batch reaches the API, which stores it; then the API stops before
            its answer reaches the browser."""
            calls.append(1)
            if len(calls) != 2:
                route.continue_()
                return
            answered = route.fetch()
            assert answered.status == 200
            stop([procs.pop()])
            route.abort("connectionreset")

        sign_in(page, suite)
        expect(page.get_by_role("heading", name="Programs", exact=True)).to_be_visible()
        page.goto(f"{base}/console/programs/{program_id}/bulk")
        choose_file(page, "big.csv", events_csv(2500))
        page.route("**/v1/events/batch", cut_after_the_server_answers)
        page.get_by_role("button", name="Upload", exact=True).click()
        expect(page.get_by_test_id("failure-banner")).to_contain_text("could not be reached")
        expect(page.get_by_test_id("bulk-counts")).to_contain_text("Stopped.")
        assert (count(page, "accepted"), count(page, "pending")) == (1000, 1500)
        # Nothing is sent twice: 2,000 events are in, the browser knows of 1,000.
        procs.append(start_suite(tmp_path, port, grpc_port))
        assert len(program_events(api, program_id)) == 2000
        page.get_by_role("button", name="Resume").click()
        wait_finished(page)
        assert (count(page, "accepted"), count(page, "duplicate"), count(page, "error")) == (1500, 1000, 0)
        events = program_events(api, program_id)
        assert len(events) == 2500 == len({e["idempotency_key"] for e in events})
        page.screenshot(path=str(artifact("resumed-upload")), full_page=True)
    finally:
        context.close()
        stop(procs)


def artifact(name: str) -> pathlib.Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"{name}.png"


def submit(suite: Suite, program_id: str, customer: str, amount: int) -> dict[str, Any]:
    """One purchase through the API, answered once processed (Prefer: wait)."""
    return dict(suite.ok(suite.api.post("/v1/events", headers={"Prefer": "wait=10"}, json={
        "program_id": program_id, "idempotency_key": uuid.uuid4().hex, "external_id": customer,
        "event_type": "purchase", "event_data": {"amount": amount}})))


def open_participant(page: Page, base: str, program_id: str, external_id: str) -> None:
    page.goto(f"{base}/console/programs/{program_id}/participants")
    page.get_by_label("Identity").select_option("external_id")
    page.get_by_label("Value").fill(external_id)
    page.get_by_role("button", name="Look up").click()
    expect(page.get_by_role("heading", name="Participant", exact=True)).to_be_visible()


def adjust(page: Page, points: str, reason: str) -> None:
    form = page.get_by_role("region", name="Adjust points")
    form.get_by_label("Points (negative to debit)").fill(points)
    form.get_by_label("Reason").fill(reason)
    form.get_by_role("button", name="Record adjustment").dblclick()
    expect(form.get_by_role("status")).to_contain_text("Recorded")


def test_participant_lookup_balance_adjustment_once_and_merge(signed_in: Page, console_suite: Suite) -> None:
    page = signed_in
    program_id = new_program(console_suite)
    add_rule(console_suite, program_id)
    alice = submit(console_suite, program_id, "alice", 25)["participant_id"]
    bob = submit(console_suite, program_id, "bob", 10)["participant_id"]
    open_participant(page, console_suite.base, program_id, "alice")
    expect(page.get_by_text(alice).first).to_be_visible()
    expect(page.get_by_test_id("balance-available")).to_have_text("25")
    # A double click records one adjustment: the form's key is the same for both.
    adjust(page, "50", "goodwill")
    expect(page.get_by_test_id("balance-available")).to_have_text("75")
    ledger = console_suite.ok(console_suite.api.get(f"/v1/programs/{program_id}/participants/{alice}/transactions"))
    assert sorted(t["kind"] for t in ledger["transactions"]) == ["ADJUSTMENT", "EARN"]
    expect(page.get_by_role("region", name="Transactions").locator("tbody tr")).to_have_count(2)
    # A debit past the balance is refused at its field, with the API's message.
    form = page.get_by_role("region", name="Adjust points")
    form.get_by_label("Points (negative to debit)").fill("-500")
    form.get_by_label("Reason").fill("too much")
    form.get_by_role("button", name="Record adjustment").click()
    expect(form.get_by_role("alert")).to_have_text("exceeds the available balance")
    expect(form.get_by_label("Points (negative to debit)")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_test_id("balance-available")).to_have_text("75")

    merge = page.get_by_role("region", name="Merge another participant into this one")
    merge.get_by_label("Its value").fill("bob")
    merge.get_by_role("button", name="Find").click()
    confirm = merge.get_by_role("alertdialog")
    expect(confirm).to_contain_text(f"external bob ({bob})")
    expect(confirm).to_contain_text(f"external alice ({alice})")
    confirm.get_by_role("button", name="Yes, merge").click()
    expect(merge.get_by_role("status")).to_contain_text(f"Merged {bob} into {alice}")
    assert console_suite.ok(console_suite.api.get("/v1/participants", params={"external_id": "bob"}))[
        "participant_id"] == alice


class Receiver(http.server.BaseHTTPRequestHandler):
    """A partner's webhook URL: answers 204 and keeps what it was sent."""

    received: list[dict[str, str]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        Receiver.received.append({"signature": self.headers.get("webhook-signature", ""), "body": body})
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    Receiver.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/accrual"
    finally:
        server.shutdown()
        server.server_close()


def register_endpoint(page: Page, base: str, url: str) -> str:
    """Add an endpoint on the Webhooks page and open it; returns the secret shown once."""
    page.goto(f"{base}/console/webhooks")
    form = page.get_by_role("region", name="New endpoint")
    form.get_by_label("URL").fill(url)
    form.get_by_label("Description").fill("partner CRM")
    form.get_by_role("button", name="Add endpoint").click()
    secret = page.get_by_test_id("webhook-secret").inner_text()
    assert secret.startswith("whsec_")
    expect(page.get_by_role("region", name="Endpoints").get_by_role("link", name=url)).to_be_visible()
    page.get_by_role("link", name="Open the new endpoint").click()
    expect(page.get_by_role("heading", name=url)).to_be_visible()
    return secret


def see_a_delivery(page: Page) -> None:
    """The endpoint page's deliveries refresh by themselves; the first one succeeds."""
    row = page.get_by_test_id("deliveries").locator("tbody tr").first
    expect(row).to_contain_text("SUCCEEDED", timeout=60_000)
    row.get_by_role("button", name="Attempts").click()
    expect(page.get_by_test_id("deliveries")).to_contain_text("204")


def test_webhook_endpoint_secret_once_delivery_rotate_disable_delete(
        signed_in: Page, console_suite: Suite, receiver: str) -> None:
    page = signed_in
    secret = register_endpoint(page, console_suite.base, receiver)
    page.reload()
    expect(page.get_by_test_id("webhook-secret")).to_have_count(0)
    program_id = new_program(console_suite)
    submit(console_suite, program_id, "carol", 3)
    see_a_delivery(page)
    assert Receiver.received and Receiver.received[0]["signature"].startswith("v1,")

    page.get_by_role("button", name="Rotate secret").click()
    rotated = page.get_by_test_id("webhook-secret").inner_text()
    assert rotated.startswith("whsec_") and rotated != secret
    page.get_by_role("button", name="I have copied it").click()
    page.get_by_role("button", name="Disable").click()
    expect(page.get_by_role("region", name=receiver).locator(".status")).to_have_text("DISABLED")
    page.get_by_role("button", name="Enable").click()
    expect(page.get_by_role("region", name=receiver).locator(".status")).to_have_text("ENABLED")
    page.get_by_label("Since (your local time)").fill("2020-01-01T00:00")
    page.get_by_role("button", name="Re-queue failed deliveries").click()
    expect(page.get_by_text("0 deliveries re-queued.")).to_be_visible()
    edit = page.get_by_role("region", name="Edit")
    edit.get_by_label("URL").fill("ftp://nowhere")
    edit.get_by_role("button", name="Save").click()
    expect(edit.locator(".field-error")).to_be_visible()

    page.get_by_role("button", name="Delete").click()
    page.get_by_role("alertdialog").get_by_role("button", name="Yes, delete").click()
    expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_visible()
    assert console_suite.ok(console_suite.api.get("/v1/webhook-endpoints"))["endpoints"] == []


@pytest.mark.readme_screenshot
def test_an_operators_day(page: Page, console_suite: Suite, receiver: str) -> None:
    """Issue 21's walk: from sign-in to a program that awards points, with the proof on screen."""
    base = console_suite.base
    sign_in(page, console_suite)
    expect(page.get_by_role("heading", name="Programs", exact=True)).to_be_visible()

    name = f"Bean counters {uuid.uuid4().hex[:4]}"
    form = page.get_by_role("form", name="Create program")
    form.get_by_label("Name").fill(name)
    for _ in range(2):
        form.get_by_role("button", name="Add tier").click()
    form.get_by_label("Tier 1 name").fill("base")
    form.get_by_label("Tier 2 name").fill("silver")
    form.get_by_label("Tier 2 lifetime points from").fill("500")
    form.get_by_label("Tier 2 multiplier").fill("2")
    form.get_by_role("button", name="Create program").click()
    expect(page.get_by_role("heading", name=name)).to_be_visible()
    program_id = page.url.rsplit("/", 1)[1]
    program_nav = page.get_by_role("navigation", name="Program")

    program_nav.get_by_role("link", name="Rules").click()
    rule = page.get_by_role("form", name="Create rule")
    rule.get_by_label("Rule name").fill("A point a euro")
    rule.get_by_label("Event type").fill("purchase")
    rule.get_by_label("Formula").fill("properties.amount")
    rule.get_by_label("Condition").fill("properties.amount > > 0")
    expect(page.get_by_test_id("expression-error-position")).to_contain_text("column")
    rule.get_by_label("Condition").fill("properties.amount > 0")
    expect(page.get_by_test_id("validation-state")).to_contain_text("The API accepts this rule")
    rule.get_by_role("button", name="Create rule").click()
    expect(page.get_by_role("heading", name="Edit “A point a euro” (v1)")).to_be_visible()
    simulate = page.get_by_role("form", name="Simulate")
    simulate.get_by_label("Sample event type").fill("purchase")
    simulate.get_by_label("Sample event data (JSON)").fill('{"amount": 12}')
    simulate.get_by_role("button", name="Simulate").click()
    expect(page.get_by_test_id("simulated-total")).to_have_text("12")

    program_nav.get_by_role("link", name="Bulk upload").click()
    choose_file(page, "day.csv", events_csv(2500))
    page.get_by_role("button", name="Upload", exact=True).click()
    wait_finished(page)
    progress = page.get_by_label("Upload progress")
    assert progress.evaluate("p => [p.value, p.max]") == [2500, 2500]
    assert (count(page, "accepted"), count(page, "error")) == (2500, 0)
    wait_processed(console_suite.api, program_id, 2500)

    page.goto(f"{base}/console/activity?program_id={program_id}&status=COMPLETED")
    rows = page.get_by_role("table", name="Events").locator("tbody tr")
    expect(rows.first).to_contain_text("COMPLETED")
    expect(rows.filter(has_text="purchase").first).to_be_visible()

    open_participant(page, base, program_id, "c1")
    before = page.get_by_test_id("balance-available").inner_text()
    adjust(page, "100", "welcome gift")
    expect(page.get_by_test_id("balance-available")).not_to_have_text(before)
    assert float(page.get_by_test_id("balance-available").inner_text()) == float(before) + 100

    page.get_by_role("navigation", name="Program").get_by_role("link", name="Analytics").click()
    expect(page.get_by_test_id("total-events")).to_have_text("2500")
    expect(page.locator("figure.chart .recharts-wrapper")).to_have_count(4)
    expect(page.locator(".recharts-line-curve")).to_have_count(2)
    expect(page.locator(".recharts-bar-rectangle").first).to_be_visible()
    keep_screenshot(page, "analytics")
    last_day = dt.date.fromisoformat(page.get_by_label("To", exact=True).input_value())
    page.get_by_label("From", exact=True).fill(str(last_day - dt.timedelta(days=2)))
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_test_id("analytics-totals")).to_contain_text(f"{last_day - dt.timedelta(days=2)} to {last_day}")
    assert 0 < int(page.get_by_test_id("total-events").inner_text()) < 2500
    page.get_by_role("button", name="Members of high_engagers").click()
    expect(page.get_by_role("heading", name="Members of high_engagers")).to_be_visible()

    register_endpoint(page, base, receiver)
    submit(console_suite, program_id, "c2", 9)
    see_a_delivery(page)
