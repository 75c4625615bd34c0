"""Endpoint management and the delivery log, as the API offers them.

Validation names the offending field so the REST shim can answer a 400 that says what to
fix; another tenant's endpoint is indistinguishable from a missing one (404), so ids leak
nothing across tenants.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from accrual_platform import errors, pages
from accrual_platform.db import utcnow
from accrual_platform.ids import require_uuid
from accrual_platform.settings import Settings

from accrual_notify.domain import events, signing, urls
from accrual_notify.storage import DISABLED, ENABLED, Attempt, Delivery, Endpoint, NotifyStore
from accrual_notify.transport import resolve_host

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
DELIVERY_PAGES = pages.Codec("webhook_deliveries", pages.timestamp, pages.uuid_key)


class Endpoints:
    def __init__(self, store: NotifyStore, settings: Settings, *,
                 resolve: urls.Resolver = resolve_host) -> None:
        self._store = store
        self._settings = settings
        self._resolve = resolve

    def create(self, tenant_id: str, url: str, enabled_events: Sequence[str],
               description: str) -> tuple[Endpoint, str]:
        """A new enabled endpoint and its secret, which is returned here and never again."""
        url = url.strip()
        subscribed, violations = events.validate_enabled_events(enabled_events)
        violations = [*self._check_url(url),
                      *violations, *events.validate_description(description)]
        errors.collect([errors.FieldViolation(f, d) for f, d in violations])
        secret = signing.new_secret()
        endpoint = self._store.insert_endpoint(
            tenant_id=tenant_id, url=url, enabled_events=subscribed,
            description=description.strip(), secret=secret, now=utcnow())
        return endpoint, secret

    def _check_url(self, url: str) -> list[events.Violation]:
        return urls.check_url(url, allow_private=self._settings.webhook_allow_private,
                              allow_http=self._settings.webhook_http_allowed, resolve=self._resolve)

    def list_endpoints(self, tenant_id: str) -> list[Endpoint]:
        return self._store.list_endpoints(tenant_id)

    def get(self, tenant_id: str, endpoint_id: str) -> Endpoint:
        endpoint_id = require_uuid(endpoint_id, "endpoint_id")
        endpoint = self._store.get_endpoint(tenant_id, endpoint_id)
        if endpoint is None:
            raise errors.NotFound(f"webhook endpoint {endpoint_id} not found",
                                  reason="endpoint_not_found")
        return endpoint

    def delete(self, tenant_id: str, endpoint_id: str) -> None:
        endpoint_id = require_uuid(endpoint_id, "endpoint_id")
        if not self._store.soft_delete_endpoint(tenant_id, endpoint_id, utcnow()):
            raise errors.NotFound(f"webhook endpoint {endpoint_id} not found",
                                  reason="endpoint_not_found")

    def update(self, tenant_id: str, endpoint_id: str, *, url: str | None = None,
               enabled_events: Sequence[str] | None = None, description: str | None = None,
               status: str | None = None) -> Endpoint:
        """Change the given fields (None leaves one as it is), validated like a create."""
        endpoint_id = require_uuid(endpoint_id, "endpoint_id")
        violations: list[events.Violation] = []
        subscribed: tuple[str, ...] | None = None
        if url is not None:
            url = url.strip()
            violations += self._check_url(url)
        if enabled_events is not None:
            subscribed, problems = events.validate_enabled_events(enabled_events)
            violations += problems
        if description is not None:
            violations += events.validate_description(description)
            description = description.strip()
        if status is not None and status not in (ENABLED, DISABLED):
            violations.append(("status", "must be ENABLED or DISABLED"))
        errors.collect([errors.FieldViolation(f, d) for f, d in violations])
        now = utcnow()
        endpoint = self._store.update_endpoint(
            tenant_id, endpoint_id, now=now, url=url, enabled_events=subscribed,
            description=description, status=status,
            disabled_reason=f"disabled through the API at {events.rfc3339(now)}")
        if endpoint is None:
            raise errors.NotFound(f"webhook endpoint {endpoint_id} not found",
                                  reason="endpoint_not_found")
        return endpoint

    def rotate_secret(self, tenant_id: str, endpoint_id: str,
                      overlap: dt.timedelta | None = None) -> tuple[Endpoint, str]:
        """A new current secret; the old one keeps signing (a second signature) for the
        configured overlap (WEBHOOK_SECRET_OVERLAP_SECONDS) or ``overlap``."""
        endpoint_id = require_uuid(endpoint_id, "endpoint_id")
        if overlap is None:
            overlap = dt.timedelta(seconds=self._settings.webhook_secret_overlap_seconds)
        secret, now = signing.new_secret(), utcnow()
        if not self._store.rotate_secret(tenant_id, endpoint_id, secret, now + overlap, now):
            raise errors.NotFound(f"webhook endpoint {endpoint_id} not found",
                                  reason="endpoint_not_found")
        return self.get(tenant_id, endpoint_id), secret

    def delivery(self, tenant_id: str, delivery_id: str) -> Delivery:
        delivery_id = require_uuid(delivery_id, "delivery_id")
        delivery = self._store.get_delivery(tenant_id, delivery_id)
        if delivery is None:
            raise errors.NotFound(f"webhook delivery {delivery_id} not found",
                                  reason="delivery_not_found")
        return delivery

    def attempts(self, tenant_id: str, delivery_id: str) -> list[Attempt]:
        """Every attempt of the delivery, oldest first."""
        delivery = self.delivery(tenant_id, delivery_id)
        return self._store.list_attempts(tenant_id, delivery.id)

    def deliveries(self, tenant_id: str, endpoint_id: str, page_size: int,
                   page_token: str) -> tuple[list[Delivery], str]:
        """One page of the endpoint's deliveries, newest first, and the next page's token."""
        endpoint = self.get(tenant_id, endpoint_id)
        if page_size < 0:
            raise errors.InvalidArgument.field("page_size", "must not be negative")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        after = DELIVERY_PAGES.decode_optional(page_token)
        rows = self._store.list_deliveries(tenant_id, endpoint.id, size + 1, after)
        if len(rows) <= size:
            return rows, ""
        last = rows[size - 1]
        return rows[:size], DELIVERY_PAGES.encode(last.created_at, last.id)
