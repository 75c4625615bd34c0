"""/docs renders every operation of /openapi.json in Chromium (Swagger UI 5, offline).

Drives Debian's Chromium (``make chromium`` installs it) with Python Playwright; a
screenshot of the page is kept under test-artifacts/.
"""

from __future__ import annotations

import shutil

import pytest
from playwright.sync_api import sync_playwright

from tests.contract.conftest import ARTIFACTS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_docs_render_every_operation(suite: tuple[str, str], document: dict[str, object]) -> None:
    assert CHROMIUM, "chromium is missing: run `make chromium`"
    base, _ = suite
    paths = document["paths"]
    assert isinstance(paths, dict)
    expected = {op["operationId"] for item in paths.values() for op in item.values()}
    blocked: list[str] = []
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 2000})
        # Offline: any request leaving the gateway fails the test.
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(base)
                   else (blocked.append(route.request.url), route.abort()))
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{base}/docs")
        page.wait_for_selector(".opblock", timeout=60_000)
        assert page.locator("text=Unable to render this definition").count() == 0
        rendered = set(page.eval_on_selector_all(
            ".opblock", "els => els.map(e => e.id.replace(/^operations-[^-]+-/, ''))"))
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "docs.png"), full_page=False)
        browser.close()
    assert not blocked and not errors, (blocked, errors)
    assert expected <= rendered, sorted(expected - rendered)
