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

    def observe(self, template: str, verb: str, status: int, seconds: float) -> None:
        self.requests.labels(template, verb, str(status)).inc()
        self.latency.labels(template, verb).observe(seconds)

    async def endpoint(self, _: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
