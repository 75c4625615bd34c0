"""Browser tests of the operator console: the real embedded suite (`accrual run`), started by
the test session, driven through Debian's Chromium with Python Playwright.

Every test's last page is kept as a screenshot under var/test-artifacts/console/; with
CONSOLE_SCREENSHOTS=1 the README's screenshots are written to docs/screenshots/ too.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from accrual_platform.testing import free_port, wait_http
from accrual_platform.testing import stop_processes as stop
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

ROOT = pathlib.Path(__file__).parents[2]
ARTIFACTS = ROOT / "var" / "test-artifacts" / "console"
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CONSOLE_BUILD = ROOT / "console" / "dist" / "index.html"
BIN = pathlib.Path(sys.executable).parent / "accrual"


@dataclass
class Suite:
    base: str
    admin_key: str
    home: pathlib.Path
    api: httpx.Client = field(repr=False)

    def key(self, scopes: str, tenant: str = "default") -> str:
        """A new API key of ``tenant`` with ``scopes`` (``accrual keys create``)."""
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BROKER_URL")}
        out = subprocess.run([str(BIN), "keys", "create", "--tenant", tenant, "--scopes", scopes],
                             cwd=self.home, env=env, capture_output=True, text=True, check=True)
        return out.stdout.strip()

    def ok(self, response: httpx.Response) -> Any:
        assert response.is_success, response.text
        return response.json()


# Package scope: the suite and the browser stop once the console's tests are done, so later
# tests (tests/contract's /docs test) can start Playwright of their own.
@pytest.fixture(scope="package")
def console_suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    """An embedded suite on SQLite with the in-process broker, serving the built console."""
    assert CONSOLE_BUILD.is_file(), "the console is not built: run `make console`"
    home = tmp_path_factory.mktemp("console-suite")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BROKER_URL", "CONSOLE_DIR")}
    env.update(GATEWAY_PORT=str(port), GRPC_PORT=str(free_port()))
    with open(home / "suite.log", "wb") as log:
        proc = subprocess.Popen([str(BIN), "run"],
                                cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/readyz", [proc])
            key = (home / "var" / "admin_key").read_text().strip()
            with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=60) as api:
                yield Suite(base, key, home, api)
        finally:
            stop([proc])


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    assert CHROMIUM, "chromium is missing: run `make chromium`"
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    yield b
    b.close()


@pytest.fixture
def page(browser: Browser, console_suite: Suite, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh tab (no session) at laptop width; offline: a request leaving the gateway fails
    the test, as does a script error. Its last page is kept as a screenshot."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    p = context.new_page()
    left: list[str] = []
    errors: list[str] = []
    p.route("**/*", lambda route: route.continue_() if route.request.url.startswith(console_suite.base)
            else (left.append(route.request.url), route.abort()))
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    p.set_default_timeout(20_000)
    expect.set_options(timeout=20_000)
    try:
        yield p
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        try:
            p.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        finally:
            context.close()
    assert not left, f"requests left the gateway: {left}"
    assert not errors, f"script errors: {errors}"


def sign_in(page: Page, suite: Suite, key: str | None = None) -> None:
    page.goto(f"{suite.base}/console/")
    page.get_by_label("API key").fill(key or suite.admin_key)
    page.get_by_role("button", name="Sign in").click()


@pytest.fixture
def signed_in(page: Page, console_suite: Suite) -> Page:
    """The tab signed in with the embedded suite's admin key, on the Programs page."""
    sign_in(page, console_suite)
    expect(page.get_by_role("heading", name="Programs", exact=True)).to_be_visible()
    return page


def keep_screenshot(page: Page, name: str) -> None:
    """A screenshot for the README: written to docs/screenshots/ when CONSOLE_SCREENSHOTS=1
    (`make console-screenshots` runs the tests marked readme_screenshot so)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("CONSOLE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOTS / f"{name}.png")
