"""Webhook endpoints, fan-out of facts to endpoints, and signed delivery with retries."""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import hashlib
import ipaddress
import json
import secrets
import socket
import time
import urllib.parse
import uuid
from collections.abc import Sequence
from typing import Any

import dramatiq
import httpx
import sqlalchemy as sa
import structlog
from sqlalchemy.dialects import postgresql, sqlite
from standardwebhooks.webhooks import Webhook

from accrual.messages.v1 import messages_pb2
from accrual_notify import storage
from accrual_platform import errors, queue
from accrual_platform.db import Database, utcnow
from accrual_platform.settings import Settings

log = structlog.get_logger("accrual.notify")
TYPES = ("event.completed", "event.failed", "points.awarded", "points.adjusted",
         "participant.created", "enrollment.created", "enrollment.reactivated", "tier.changed")
API_VERSION = "2026-11-01"


def check_url(url: str, allow_private: bool) -> None:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in (("https", "http") if allow_private else ("https",)) or not parsed.hostname:
        raise errors.InvalidArgument.field("url", "must be an absolute https:// URL")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parsed.hostname, parsed.port or 443, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        raise errors.InvalidArgument.field("url", "host does not resolve") from None
    for info in infos:
        ip = ipaddress.ip_address(info[4][0])
        if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast:
            raise errors.InvalidArgument.field("url", "must not resolve to a private, loopback or "
                                                      "link-local address")


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def message_id(tenant_id: str, fact_id: str) -> str:
    """Stable webhook-id per fact: the same fact always gets the same id."""
    return "msg_" + hashlib.sha256(f"{tenant_id}\x00{fact_id}".encode()).hexdigest()[:32]


class NotifyService:
    def __init__(self, db: Database, settings: Settings, broker: dramatiq.Broker) -> None:
        self.db = db
        self.settings = settings
        self.broker = broker
        self._http = httpx.Client(follow_redirects=False, timeout=settings.webhook_timeout_seconds)

    def _insert(self) -> Any:
        return postgresql.insert if self.db.dialect == "postgresql" else sqlite.insert

    # -- endpoints ---------------------------------------------------------------------
    def create_endpoint(self, tenant_id: str, url: str, enabled: Sequence[str],
                        description: str) -> tuple[sa.Row[Any], str]:
        check_url(url, self.settings.webhook_allow_private)
        if not enabled:
            raise errors.InvalidArgument.field("enabled_events", "must list event types or \"*\"")
        for i, t in enumerate(enabled):
            if t != "*" and t not in TYPES:
                raise errors.InvalidArgument.field(f"enabled_events[{i}]",
                                                   f"unknown type; one of *, {', '.join(TYPES)}")
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        eid = str(uuid.uuid4())
        with self.db.transaction() as session:
            session.execute(storage.endpoints.insert().values(
                id=eid, tenant_id=tenant_id, url=url, enabled_events=list(enabled),
                description=description, secret=secret, status="ENABLED", created_at=utcnow()))
        return self.get_endpoint(tenant_id, eid), secret

    def get_endpoint(self, tenant_id: str, endpoint_id: str) -> sa.Row[Any]:
        try:
            endpoint_id = str(uuid.UUID(endpoint_id))
        except ValueError:
            raise errors.InvalidArgument.field("endpoint_id", "must be a UUID") from None
        e = storage.endpoints
        with self.db.transaction() as session:
            row = session.execute(sa.select(e).where(e.c.tenant_id == tenant_id, e.c.id == endpoint_id,
                                                     e.c.deleted_at.is_(None))).first()
        if row is None:
            raise errors.NotFound(f"webhook endpoint {endpoint_id} not found", reason="endpoint_not_found")
        return row

    def list_endpoints(self, tenant_id: str) -> list[sa.Row[Any]]:
        e = storage.endpoints
        with self.db.transaction() as session:
            return list(session.execute(sa.select(e).where(
                e.c.tenant_id == tenant_id, e.c.deleted_at.is_(None)).order_by(e.c.created_at)).all())

    def delete_endpoint(self, tenant_id: str, endpoint_id: str) -> None:
        row = self.get_endpoint(tenant_id, endpoint_id)
        with self.db.transaction() as session:
            session.execute(sa.update(storage.endpoints).where(storage.endpoints.c.id == row.id)
                            .values(deleted_at=utcnow(), status="DISABLED", disabled_reason="deleted"))

    def list_deliveries(self, tenant_id: str, endpoint_id: str, page_size: int,
                        page_token: str) -> tuple[list[sa.Row[Any]], str]:
        endpoint = self.get_endpoint(tenant_id, endpoint_id)
        if not 0 <= page_size <= 200:
            raise errors.InvalidArgument.field("page_size", "must be between 1 and 200")
        size = page_size or 50
        d, m = storage.deliveries, storage.messages
        query = sa.select(d, m.c.type).join(m, m.c.id == d.c.message_id).where(
            d.c.tenant_id == tenant_id, d.c.endpoint_id == endpoint.id)
        if page_token:
            try:
                offset = int(base64.urlsafe_b64decode(page_token.encode()).decode())
            except ValueError:
                raise errors.InvalidArgument.field("page_token", "is not a token from a previous page") from None
        else:
            offset = 0
        with self.db.transaction() as session:
            rows = list(session.execute(query.order_by(d.c.created_at.desc(), d.c.id.desc())
                                        .offset(offset).limit(size + 1)).all())
        token = base64.urlsafe_b64encode(str(offset + size).encode()).decode() if len(rows) > size else ""
        return rows[:size], token

    # -- fan-out and delivery --------------------------------------------------------------
    def publish(self, notes: Sequence[messages_pb2.Notification]) -> None:
        """Store each fact once and create a delivery per subscribed endpoint."""
        new: list[str] = []
        with self.db.transaction() as session:
            for note in notes:
                mid = message_id(note.tenant_id, note.fact_id)
                created = note.created_at.ToDatetime(dt.UTC) if note.HasField("created_at") else utcnow()
                envelope = {"id": mid, "type": note.type, "api_version": API_VERSION,
                            "created_at": created.isoformat().replace("+00:00", "Z"),
                            "tenant_id": note.tenant_id, "data": queue.to_payload(note.data)}
                inserted = session.execute(self._insert()(storage.messages).values(
                    id=mid, tenant_id=note.tenant_id, fact_id=note.fact_id, type=note.type,
                    payload=json.dumps(envelope, separators=(",", ":")), created_at=utcnow(),
                ).on_conflict_do_nothing().returning(storage.messages.c.id)).first()
                if inserted is None:
                    continue  # the same fact again: already fanned out
                e = storage.endpoints
                for ep in session.execute(sa.select(e).where(
                        e.c.tenant_id == note.tenant_id, e.c.status == "ENABLED",
                        e.c.deleted_at.is_(None))):
                    if "*" in ep.enabled_events or note.type in ep.enabled_events:
                        did = str(uuid.uuid4())
                        session.execute(storage.deliveries.insert().values(
                            id=did, tenant_id=note.tenant_id, endpoint_id=ep.id, message_id=mid,
                            status="PENDING", attempts=0, created_at=utcnow()))
                        new.append(did)
        for did in new:
            queue.enqueue(self.broker, queue.NOTIFY_QUEUE, "deliver_webhook",
                          messages_pb2.DeliveryRequested(delivery_id=did))

    def deliver(self, delivery_id: str) -> None:
        d, m, e = storage.deliveries, storage.messages, storage.endpoints
        with self.db.transaction() as session:
            row = session.execute(sa.select(d, m.c.payload, e.c.url, e.c.secret, e.c.status.label("ep_status"),
                                            e.c.deleted_at).join(m, m.c.id == d.c.message_id)
                                  .join(e, e.c.id == d.c.endpoint_id).where(d.c.id == delivery_id)).first()
        if row is None or row.status != "PENDING" or row.ep_status != "ENABLED" or row.deleted_at:
            return
        now = dt.datetime.now(dt.UTC)
        headers = Webhook(row.secret).sign(row.message_id, now, row.payload)
        started = time.perf_counter()
        code, excerpt, error, retry_after = 0, "", "", None
        try:
            resp = self._http.post(row.url, content=row.payload.encode(), headers={
                "webhook-id": row.message_id, "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": headers, "content-type": "application/json"})
            code, excerpt = resp.status_code, resp.text[:1024]
            retry_after = retry_after_seconds(resp.headers.get("retry-after")) if code in (429, 503) else None
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:1024]
        latency = int((time.perf_counter() - started) * 1000)
        attempts = row.attempts + 1
        schedule = self.settings.webhook_retry_schedule
        values: dict[str, Any] = {"attempts": attempts, "last_status_code": code,
                                  "last_latency_ms": latency, "last_response_excerpt": excerpt,
                                  "last_error": error, "next_attempt_at": None}
        delay: float | None = None
        if 200 <= code < 300:
            values["status"] = "SUCCEEDED"
        elif code == 410:
            values["status"] = "FAILED"
        elif attempts >= len(schedule):
            values["status"] = "FAILED"
        else:
            delay = max(schedule[attempts], retry_after or 0.0)
            values["next_attempt_at"] = now + dt.timedelta(seconds=delay)
        with self.db.transaction() as session:
            session.execute(storage.attempts.insert().values(
                id=str(uuid.uuid4()), delivery_id=delivery_id, status_code=code, latency_ms=latency,
                response_excerpt=excerpt, error=error, created_at=utcnow()))
            session.execute(sa.update(d).where(d.c.id == delivery_id).values(**values))
            if code == 410:
                session.execute(sa.update(e).where(e.c.id == row.endpoint_id).values(
                    status="DISABLED", disabled_reason="receiver answered 410 Gone"))
        if delay is not None:
            queue.enqueue(self.broker, queue.NOTIFY_QUEUE, "deliver_webhook",
                          messages_pb2.DeliveryRequested(delivery_id=delivery_id),
                          delay_ms=int(delay * 1000) or None)
