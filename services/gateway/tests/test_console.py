"""The console at /console: files of the build, index.html for every other page path, and the
security headers on every answer."""

from __future__ import annotations

import pathlib
from html.parser import HTMLParser

import httpx
import pytest
from accrual_gateway.app import create_app
from accrual_gateway.console import CSP, default_dir
from starlette.testclient import TestClient

INDEX = '<!doctype html><html><head><script type="module" src="/console/assets/app-1.js"></script></head></html>'


@pytest.fixture
def build(tmp_path: pathlib.Path) -> pathlib.Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text(INDEX)
    (tmp_path / "assets" / "app-1.js").write_text("console.log(1)")
    (tmp_path.parent / "secret.txt").write_text("outside the build")
    return tmp_path


def client(directory: pathlib.Path) -> TestClient:
    return TestClient(create_app({}, console_dir=directory), follow_redirects=False)


def assert_secured(headers: httpx.Headers) -> None:
    assert headers.get("content-security-policy") == CSP
    assert headers.get("x-frame-options") == "DENY"
    assert headers.get("referrer-policy") == "no-referrer"


@pytest.mark.parametrize("path", ["/console/", "/console/programs", "/console/programs/p_1/rules/r_2",
                                  "/console/activity?status=FAILED"])
def test_every_page_path_answers_the_index_with_the_security_headers(build: pathlib.Path, path: str) -> None:
    r = client(build).get(path)
    assert r.status_code == 200
    assert r.text == INDEX
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-cache"
    assert_secured(r.headers)


def test_assets_are_files_kept_for_good_and_a_missing_one_is_a_404(build: pathlib.Path) -> None:
    c = client(build)
    r = c.get("/console/assets/app-1.js")
    assert r.status_code == 200 and r.text == "console.log(1)"
    assert "immutable" in r.headers["cache-control"]
    assert_secured(r.headers)
    missing = c.get("/console/assets/app-2.js")
    assert missing.status_code == 404
    assert_secured(missing.headers)


def test_console_without_slash_redirects(build: pathlib.Path) -> None:
    r = client(build).get("/console")
    assert r.status_code == 308 and r.headers["location"] == "/console/"
    assert_secured(r.headers)


@pytest.mark.parametrize("path", ["/console/../secret.txt", "/console/%2e%2e/secret.txt",
                                  "/console/assets/..%2f..%2fsecret.txt"])
def test_no_file_outside_the_build_is_served(build: pathlib.Path, path: str) -> None:
    r = client(build).get(path)
    assert "outside the build" not in r.text


def test_an_unbuilt_console_says_how_to_build_it(tmp_path: pathlib.Path) -> None:
    r = client(tmp_path / "nothing").get("/console/")
    assert r.status_code == 503
    assert "make console" in r.text
    assert_secured(r.headers)


def test_api_routes_are_not_touched(build: pathlib.Path) -> None:
    r = client(build).get("/healthz")
    assert r.status_code == 200
    assert "content-security-policy" not in r.headers


class _Inline(HTMLParser):
    """Collects what a strict CSP would block: inline scripts, style elements and attributes,
    event handler attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.blocked: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {k for k, _ in attrs}
        if tag == "script":
            self._in_script = "src" not in names
        if tag == "style" or "style" in names or any(n.startswith("on") for n in names):
            self.blocked.append(f"<{tag} {sorted(names)}>")

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.blocked.append(f"inline script {data[:40]!r}")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False


def test_the_real_build_has_nothing_a_strict_csp_blocks() -> None:
    index = default_dir() / "index.html"
    assert index.is_file(), "console/dist is missing: run `make console`"
    parser = _Inline()
    parser.feed(index.read_text())
    assert parser.blocked == []
    assert "/console/assets/" in index.read_text()
