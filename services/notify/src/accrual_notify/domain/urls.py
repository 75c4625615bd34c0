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


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (address.is_global and not address.is_multicast and not address.is_reserved
            and not address.is_unspecified)


def check_url(url: str, *, allow_private: bool, resolve: Resolver) -> list[Violation]:
    """Violations of ``url`` (empty when it may be called).

    ``allow_private`` is the development and test switch: plain http and loopback or private
    addresses are then accepted.
    """
    if not url:
        return [("url", "is required")]
    if len(url) > MAX_URL_LENGTH:
        return [("url", f"must be at most {MAX_URL_LENGTH} characters")]
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return [("url", f"is not a valid URL: {exc}")]
    schemes = ("https", "http") if allow_private else ("https",)
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
