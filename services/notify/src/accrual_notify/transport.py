"""The network side of a webhook: resolving a host and POSTing one signed message.

Redirects are never followed (a 3xx is a failed attempt): following one would send a signed
payload to a URL nobody checked. The whole attempt, body included, must finish within the
timeout, not just each read, so a receiver trickling bytes cannot hold a worker thread.
"""

from __future__ import annotations

import socket
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

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


def pin(url: str, address: str) -> tuple[str, str]:
    """``url`` with its host replaced by ``address``, and the Host header value to send."""
    parts = urllib.parse.urlsplit(url)
    ip = f"[{address}]" if ":" in address else address
    netloc = ip if parts.port is None else f"{ip}:{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), parts.netloc.rpartition("@")[2]


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
        self._client = client or httpx.Client(
            follow_redirects=False, timeout=httpx.Timeout(timeout_seconds),
            headers={"user-agent": USER_AGENT},
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50))

    def post(self, url: str, body: str, headers: Mapping[str, str], *,
             address: str | None = None) -> Response:
        """POST ``body``; with ``address``, connect to that IP (already checked) instead of
        resolving the host again, so DNS cannot be rebound between check and connect. The
        Host header and TLS server name (SNI and certificate check) stay the URL's host."""
        started = time.perf_counter()

        def elapsed_ms() -> int:
            return int((time.perf_counter() - started) * 1000)

        target, extensions, send_headers = url, {}, dict(headers)
        if address is not None:
            target, host = pin(url, address)
            send_headers["host"] = host
            if urllib.parse.urlsplit(url).scheme == "https":
                extensions["sni_hostname"] = urllib.parse.urlsplit(url).hostname or ""
        try:
            with self._client.stream("POST", target, content=body.encode(),
                                     headers=send_headers, extensions=extensions) as resp:
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
