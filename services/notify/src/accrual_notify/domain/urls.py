"""Which webhook URLs we are willing to call.

A webhook URL is chosen by a tenant but called from inside our network, so without a check
it is a server-side request forgery: a tenant could make us POST to the metadata service,
the database or localhost. Every address the host resolves to must be public. The check runs
when the endpoint is created and again before each attempt (DNS can change in between).
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Callable, Sequence

from accrual_platform.errors import excerpt

from accrual_notify.domain.events import Violation

MAX_URL_LENGTH = 2048

#: host, port -> the IP addresses the host resolves to; raises OSError when it does not resolve
Resolver = Callable[[str, int], Sequence[str]]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# IANA's special-purpose registries, blocks not globally reachable. Python's own tables (what
# is_global reads) gained several of these only in 3.11.10 / 3.12.4 (192.0.0.0/24 beyond /29,
# 2002::/16, 64:ff9b:1::/48...), so they are stated here to not depend on the patch level.
_NOT_GLOBAL = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4",
    "::/128", "::1/128", "::ffff:0:0/96", "64:ff9b:1::/48", "100::/64", "2001::/23",
    "2001:db8::/32", "2002::/16", "3fff::/20", "fc00::/7", "fe80::/10",
))
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped, 6to4, Teredo, NAT64).

    Traffic to such an address can end up at the IPv4 one, so that one must be public too.
    """
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)  # (server, client), the client already un-obfuscated
    if address in _NAT64_WELL_KNOWN:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if not all(is_public(inner) for inner in embedded_ipv4(address)):
            return False
        if address.ipv4_mapped is not None:
            return True  # the mapped IPv4 address is the one connected to
    if any(address in network for network in _NOT_GLOBAL):
        return False
    return (address.is_global and not address.is_multicast and not address.is_reserved
            and not address.is_unspecified)


def check_url(url: str, *, allow_private: bool, resolve: Resolver,
              allow_http: bool | None = None) -> list[Violation]:
    """Violations of ``url`` (empty when it may be called).

    ``allow_private`` and ``allow_http`` are the development and test switches: loopback or
    private addresses, and plain http, are then accepted; ``allow_http`` follows
    ``allow_private`` unless given.
    """
    if allow_http is None:
        allow_http = allow_private
    if not url:
        return [("url", "is required")]
    if len(url) > MAX_URL_LENGTH:
        return [("url", f"must be at most {MAX_URL_LENGTH} characters")]
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return [("url", f"is not a valid URL: {exc}")]
    if port == 0:
        # no service listens on port 0; connecting there tells a prober only about the network
        return [("url", "must not use port 0")]
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes or not parts.hostname:
        return [("url", "must be an absolute https:// URL")]
    if parts.username is not None or parts.password is not None:
        return [("url", "must not contain credentials")]
    if allow_private:
        return []
    host = parts.hostname
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = [ipaddress.ip_address(a.split("%", 1)[0])
                         for a in resolve(host, port or 443)]
        except (OSError, ValueError, UnicodeError):
            return [("url", f"host {excerpt(host)} does not resolve")]
    if not addresses:
        return [("url", f"host {excerpt(host)} does not resolve")]
    for address in addresses:
        if not is_public(address):
            return [("url", "must not point to a private, loopback, link-local or reserved "
                            f"address ({address})")]
    return []
