"""The network side of a webhook: resolving a host and POSTing one signed message.

Redirects are never followed (a 3xx is a failed attempt): following one would send a signed
payload to a URL nobody checked. The whole attempt, body included, must finish within the
timeout, not just each read, so a receiver trickling bytes cannot hold a worker thread.

Against DNS rebinding, the caller resolves and checks the host itself and passes the checked
address; the connection is then opened to that address by :class:`PinningBackend` while
the URL, the Host header, SNI and the certificate check keep the real host name. A pooled
connection is only ever one that was opened to a checked address.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

EXCERPT_BYTES = 1024
USER_AGENT = "Accrual-Webhooks/1.0"


@dataclass(frozen=True)
class Response:
    """What came back from one POST; ``status_code`` is None when nothing did."""

    status_code: int | None
    latency_ms: int
    excerpt: str
    error: str
    retry_after: str | None = None


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (raises OSError when it does not)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


class PinningBackend(httpcore.NetworkBackend):
    """Opens TCP connections to the address pinned for a host by the calling thread, if any,
    instead of resolving the host again."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()
        self._local = threading.local()

    @contextmanager
    def pinned(self, host: str, address: str) -> Iterator[None]:
        self._local.pin = (host.lower(), address)
        try:
            yield
        finally:
            self._local.pin = None

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        pin = getattr(self._local, "pin", None)
        if pin is not None and pin[0] == host.lower():
            host = pin[1]
        return self._inner.connect_tcp(host, port, timeout=timeout, local_address=local_address,
                                       socket_options=socket_options)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("webhooks are never sent to unix sockets")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _PinningTransport(httpx.HTTPTransport):
    """httpx's transport with the connection pool built on a :class:`PinningBackend`."""

    def __init__(self, backend: PinningBackend, limits: httpx.Limits) -> None:
        super().__init__(limits=limits)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(), max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry, network_backend=backend)


def status_error(status_code: int, location: str | None = None) -> str:
    """The attempt's error for a response: empty for a 2xx, otherwise what went wrong."""
    if 200 <= status_code < 300:
        return ""
    if 300 <= status_code < 400:
        return f"redirect: {status_code} to {location or '(no location)'} not followed"[:EXCERPT_BYTES]
    return f"http_status: {status_code}"


def _excerpt(data: bytes) -> str:
    return data[:EXCERPT_BYTES].decode("utf-8", errors="replace")[:EXCERPT_BYTES]


class WebhookClient:
    """One pooled HTTP client shared by the worker threads (httpx.Client is thread-safe)."""

    def __init__(self, timeout_seconds: float, *, client: httpx.Client | None = None) -> None:
        self.timeout = timeout_seconds
        self._backend = PinningBackend()
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        self._client = client or httpx.Client(
            follow_redirects=False, timeout=httpx.Timeout(timeout_seconds),
            headers={"user-agent": USER_AGENT}, limits=limits,
            transport=_PinningTransport(self._backend, limits))

    def post(self, url: str, body: str, headers: Mapping[str, str], *,
             address: str | None = None) -> Response:
        """POST ``body``; with ``address``, a new connection goes to that IP (already
        checked) instead of resolving the host again, so DNS cannot be rebound between check
        and connect. Host header, SNI and certificate check stay the URL's host."""
        if address is None:
            return self._post(url, body, headers)
        host = urllib.parse.urlsplit(url).hostname or ""
        with self._backend.pinned(host, address):
            return self._post(url, body, headers)

    def _post(self, url: str, body: str, headers: Mapping[str, str]) -> Response:
        started = time.perf_counter()

        def elapsed_ms() -> int:
            return int((time.perf_counter() - started) * 1000)

        try:
            with self._client.stream("POST", url, content=body.encode(),
                                     headers=dict(headers)) as resp:
                data = b""
                for chunk in resp.iter_bytes():
                    data += chunk
                    if len(data) >= EXCERPT_BYTES:
                        break
                    if time.perf_counter() - started > self.timeout:
                        break
                latency = elapsed_ms()
                if latency > self.timeout * 1000:
                    return Response(None, latency, _excerpt(data),
                                    f"timeout: no complete answer within {self.timeout:g} s")
                return Response(resp.status_code, latency, _excerpt(data),
                                status_error(resp.status_code, resp.headers.get("location")),
                                resp.headers.get("retry-after"))
        except httpx.TimeoutException as exc:
            return Response(None, elapsed_ms(), "",
                            f"timeout: no answer within {self.timeout:g} s ({type(exc).__name__})")
        except httpx.ConnectError as exc:
            kind = "connection_refused" if "refused" in str(exc).lower() else "connection_error"
            return Response(None, elapsed_ms(), "", f"{kind}: {exc}"[:EXCERPT_BYTES])
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
            return Response(None, elapsed_ms(), "",
                            f"connection_error: {type(exc).__name__}: {exc}"[:EXCERPT_BYTES])

    def close(self) -> None:
        self._client.close()
