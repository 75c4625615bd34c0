"""URL safety: only public https targets, unless private ones are allowed by config."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest
from accrual_notify.domain.urls import check_url, embedded_ipv4

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
    # the IETF-reserved block beyond 192.0.0.0/29 (Python < 3.11.10 calls it global)
    "https://192.0.0.8/hook",
    "https://192.0.0.170/hook",
    # IPv4 loopback and private addresses carried inside IPv6 spellings
    "https://[2002:7f00:1::]/hook",  # 6to4 of 127.0.0.1
    "https://[2002:a00:1::1]/hook",  # 6to4 of 10.0.0.1
    "https://[::ffff:127.0.0.1]/hook",
    "https://[::ffff:7f00:1]/hook",
    "https://[::ffff:10.0.0.1]/hook",
    "https://[64:ff9b::7f00:1]/hook",  # NAT64 of 127.0.0.1
    "https://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 of 169.254.169.254
    "https://[64:ff9b:1::a00:1]/hook",  # local-use NAT64 prefix
    "https://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/hook",  # Teredo, client 10.0.0.1
    "https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/hook",  # Teredo, client 127.0.0.1
    # port 0 and ports out of range
    "https://hooks.example.com:0/hook",
    "https://93.184.216.34:0/hook",
    "https://hooks.example.com:65536/hook",
    "https://hooks.example.com:-1/hook",
])
def test_unsafe_or_malformed_urls_are_refused_naming_url(url: str) -> None:
    assert fields(url) == ["url"]


def test_allow_private_admits_http_and_loopback() -> None:
    assert fields("http://127.0.0.1:8080/hook", allow_private=True) == []
    assert fields("https://localhost/hook", allow_private=True) == []
    assert fields("ftp://127.0.0.1/", allow_private=True) == ["url"]


def test_http_and_private_addresses_are_separate_switches() -> None:
    def checked(url: str, *, allow_private: bool, allow_http: bool) -> list[str]:
        return [f for f, _ in check_url(url, allow_private=allow_private, allow_http=allow_http,
                                        resolve=resolve)]

    assert checked("http://hooks.example.com/hook", allow_private=False, allow_http=True) == []
    assert checked("http://localhost/hook", allow_private=False, allow_http=True) == ["url"]
    assert checked("https://localhost/hook", allow_private=True, allow_http=False) == []
    assert checked("http://localhost/hook", allow_private=True, allow_http=False) == ["url"]


@pytest.mark.parametrize(("address", "embedded"), [
    ("2002:7f00:1::", ["127.0.0.1"]),
    ("::ffff:127.0.0.1", ["127.0.0.1"]),
    ("64:ff9b::7f00:1", ["127.0.0.1"]),
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", ["65.54.227.120", "10.0.0.1"]),
    ("2606:2800:220:1:248:1893:25c8:1946", []),
])
def test_embedded_ipv4_addresses_are_found(address: str, embedded: list[str]) -> None:
    assert [str(a) for a in embedded_ipv4(ipaddress.IPv6Address(address))] == embedded


def test_mapped_public_ipv4_is_accepted() -> None:
    assert fields("https://[::ffff:93.184.216.34]/hook") == []


def test_port_zero_is_refused_even_with_private_addresses_allowed() -> None:
    assert fields("http://127.0.0.1:0/hook", allow_private=True) == ["url"]
    assert fields("http://127.0.0.1:70000/hook", allow_private=True) == ["url"]
