"""URL safety: only public https targets, unless private ones are allowed by config."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from accrual_notify.domain.urls import check_url

DNS = {
    "hooks.example.com": ["93.184.216.34"],
    "dual.example.com": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
    "rebind.example.com": ["93.184.216.34", "10.0.0.7"],
    "localhost": ["127.0.0.1", "::1"],
    "metadata.internal": ["169.254.169.254"],
}


def resolve(host: str, port: int) -> Sequence[str]:
    try:
        return DNS[host]
    except KeyError:
        raise OSError("Name or service not known") from None


def fields(url: str, allow_private: bool = False) -> list[str]:
    return [f for f, _ in check_url(url, allow_private=allow_private, resolve=resolve)]


@pytest.mark.parametrize("url", [
    "https://hooks.example.com/webhooks",
    "https://dual.example.com:8443/a?b=c",
    "https://93.184.216.34/x",
])
def test_public_https_urls_are_accepted(url: str) -> None:
    assert fields(url) == []


@pytest.mark.parametrize("url", [
    "",
    "http://hooks.example.com/webhooks",
    "ftp://hooks.example.com/",
    "hooks.example.com/webhooks",
    "https:///path-only",
    "https://user:pass@hooks.example.com/",
    "https://hooks.example.com:99999/",
    "https://localhost/hook",
    "https://127.0.0.1/hook",
    "https://[::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://10.1.2.3/hook",
    "https://192.168.0.10/hook",
    "https://172.16.0.1/hook",
    "https://100.64.0.1/hook",
    "https://169.254.169.254/latest/meta-data",
    "https://metadata.internal/",
    "https://[fe80::1]/hook",
    "https://0.0.0.0/hook",
    "https://224.0.0.1/hook",
    "https://rebind.example.com/hook",
    "https://unknown.invalid/hook",
    "https://hooks.example.com/" + "a" * 3000,
])
def test_unsafe_or_malformed_urls_are_refused_naming_url(url: str) -> None:
    assert fields(url) == ["url"]


def test_allow_private_admits_http_and_loopback() -> None:
    assert fields("http://127.0.0.1:8080/hook", allow_private=True) == []
    assert fields("https://localhost/hook", allow_private=True) == []
    assert fields("ftp://127.0.0.1/", allow_private=True) == ["url"]
