"""The gateway's Prometheus metrics: requests and latency per route template."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response


class HttpMetrics:
    """Counts of answered API requests and their latency, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("accrual_http_requests", "HTTP requests", ["route", "method", "status"],
                                registry=self.registry)
        self.latency = Histogram("accrual_http_request_seconds", "HTTP latency", ["route", "method"],
                                 registry=self.registry)

        # labels() looks its child up under a lock on every call: the children of the few
        # (route, verb, status) seen are kept instead.
        self._counts: dict[tuple[str, str, int], Counter] = {}
        self._latencies: dict[tuple[str, str], Histogram] = {}

    def observe(self, template: str, verb: str, status: int, seconds: float) -> None:
        count = self._counts.get((template, verb, status))
        if count is None:
            count = self._counts[(template, verb, status)] = self.requests.labels(template, verb, str(status))
        latency = self._latencies.get((template, verb))
        if latency is None:
            latency = self._latencies[(template, verb)] = self.latency.labels(template, verb)
        count.inc()
        latency.observe(seconds)

    async def endpoint(self, _: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
