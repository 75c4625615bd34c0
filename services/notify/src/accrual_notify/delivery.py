"""Fan-out of facts to endpoints, and one attempt of one delivery.

Every hop is at-least-once, so both steps are idempotent: a fact is stored once (unique on
tenant and fact id) and yields one delivery per endpoint, and an attempt first claims its
delivery with a lease, so duplicate or concurrent ``deliver_webhook`` messages collapse into
one HTTP request. Each delivery is its own queue message, so a slow receiver holds one
worker thread for at most the timeout and never delays the other endpoints of a fact.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence

import dramatiq
import structlog
from accrual.messages.v1 import messages_pb2
from accrual_platform import errors, queue
from accrual_platform.db import utcnow
from accrual_platform.settings import Settings
from google.protobuf import json_format

from accrual_notify import storage
from accrual_notify.domain import events, retry, signing, urls
from accrual_notify.storage import AttemptRecord, Fact, NotifyStore, Scheduled
from accrual_notify.transport import Response, WebhookClient, resolve_host

log = structlog.get_logger("accrual.notify")

PUBLISH_ACTOR = "publish_notifications"
DELIVER_ACTOR = "deliver_webhook"
#: how long past the timeout a claimed delivery stays leased (DNS, commit, scheduling)
LEASE_MARGIN_SECONDS = 30.0
#: a message may arrive this early (clock skew between the enqueuing and consuming hosts)
EARLY_TOLERANCE_SECONDS = 2.0
MAX_FACT_ID = 512

Clock = Callable[[], dt.datetime]


class Scheduler:
    """Sends ``deliver_webhook`` messages; the one place that knows the actor's name."""

    def __init__(self, broker: dramatiq.Broker) -> None:
        self._broker = broker

    def schedule(self, items: Iterable[Scheduled]) -> None:
        for item in items:
            delay_ms = int(item.delay_seconds * 1000)
            queue.enqueue(self._broker, queue.NOTIFY_QUEUE, DELIVER_ACTOR,
                          messages_pb2.DeliveryRequested(tenant_id=item.tenant_id,
                                                         delivery_id=item.delivery_id),
                          delay_ms=delay_ms if delay_ms > 0 else None)


class Publisher:
    def __init__(self, store: NotifyStore, scheduler: Scheduler, settings: Settings, *,
                 clock: Clock = utcnow) -> None:
        self._store = store
        self._scheduler = scheduler
        self._settings = settings
        self._clock = clock

    def publish(self, notes: Sequence[messages_pb2.Notification]) -> int:
        """Store the facts and schedule their deliveries; returns how many were scheduled.

        Notifications that cannot be delivered as documented (unknown type, no tenant or
        fact id) are logged and dropped: retrying them would never succeed.
        """
        now = self._clock()
        facts: dict[tuple[str, str], Fact] = {}
        for note in notes:
            if not note.tenant_id or not note.fact_id or len(note.fact_id) > MAX_FACT_ID:
                log.error("notification_invalid", tenant_id=note.tenant_id,
                          fact_id=note.fact_id[:100], type=note.type)
                continue
            if note.type not in events.WEBHOOK_TYPES:
                log.error("notification_type_unknown", tenant_id=note.tenant_id,
                          fact_id=note.fact_id, type=note.type)
                continue
            msg_id = events.message_id(note.tenant_id, note.fact_id)
            created = note.created_at.ToDatetime(dt.UTC) if note.HasField("created_at") else now
            body = events.envelope(msg_id=msg_id, type_=note.type, created_at=created,
                                   tenant_id=note.tenant_id,
                                   data=json_format.MessageToDict(note.data))
            facts.setdefault((note.tenant_id, note.fact_id), Fact(
                tenant_id=note.tenant_id, fact_id=note.fact_id, type=note.type,
                message_id=msg_id, payload=events.render(body)))
        if not facts:
            return 0
        scheduled = self._store.store_facts(
            list(facts.values()), now, retry.initial_delay(self._settings.webhook_retry_schedule))
        self._scheduler.schedule(scheduled)
        log.info("notifications_published", facts=len(facts), deliveries=len(scheduled))
        return len(scheduled)


class Deliverer:
    def __init__(self, store: NotifyStore, client: WebhookClient, scheduler: Scheduler,
                 settings: Settings, *, resolve: urls.Resolver = resolve_host,
                 clock: Clock = utcnow) -> None:
        self._store = store
        self._client = client
        self._scheduler = scheduler
        self._settings = settings
        self._resolve = resolve
        self._clock = clock

    def deliver(self, tenant_id: str, delivery_id: str) -> str:
        """Make one attempt if the delivery is due; returns what happened, for logs and tests."""
        now = self._clock()
        claim = self._store.claim(
            tenant_id, delivery_id, now=now,
            lease_until=now + dt.timedelta(
                seconds=self._settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS),
            due_by=now + dt.timedelta(seconds=EARLY_TOLERANCE_SECONDS))
        job = claim.job
        if job is None:
            log.info("delivery_skipped", delivery_id=delivery_id, reason=claim.skipped)
            return claim.skipped
        structlog.contextvars.bind_contextvars(
            tenant_id=job.tenant_id, delivery_id=job.delivery_id, endpoint_id=job.endpoint_id,
            webhook_id=job.message_id)
        started = self._clock()
        response = self._attempt(job, started)
        finished = self._clock()
        retry_after = (retry.parse_retry_after(response.retry_after, finished)
                       if response.status_code in retry.RETRY_AFTER_STATUSES else None)
        decision = retry.decide(response.status_code, job.attempts + 1,
                                self._settings.webhook_retry_schedule, retry_after)
        status, next_at, disable = storage.PENDING, None, None
        if decision.verdict is retry.Verdict.SUCCEEDED:
            status = storage.SUCCEEDED
        elif decision.verdict is retry.Verdict.RETRY:
            next_at = finished + dt.timedelta(seconds=decision.delay_seconds or 0.0)
        else:
            status = storage.FAILED
            if decision.verdict is retry.Verdict.DISABLE_ENDPOINT:
                disable = f"receiver answered 410 Gone at {events.rfc3339(finished)}"
        self._store.record_attempt(
            job, AttemptRecord(started_at=started, status_code=response.status_code,
                               latency_ms=response.latency_ms, response_excerpt=response.excerpt,
                               error=response.error),
            status=status, next_attempt_at=next_at, disable_reason=disable, now=finished)
        log.info("webhook_attempted", attempt=job.attempts + 1,
                 status_code=response.status_code, latency_ms=response.latency_ms,
                 error=response.error or None, verdict=decision.verdict.value,
                 retry_in=decision.delay_seconds)
        if decision.verdict is retry.Verdict.RETRY:
            self._scheduler.schedule([Scheduled(job.tenant_id, job.delivery_id,
                                                decision.delay_seconds or 0.0)])
        return decision.verdict.value

    def _attempt(self, job: storage.Job, started: dt.datetime) -> Response:
        if not self._settings.webhook_allow_private:
            # DNS may have changed since the endpoint was created (rebinding).
            refused = urls.check_url(job.url, allow_private=False, resolve=self._resolve)
            if refused:
                return Response(None, 0, "", f"refused: url {refused[0][1]}")
        secrets_ = signing.active_secrets(job.secret, job.previous_secret,
                                          job.previous_secret_expires_at, started)
        headers = signing.headers(secrets_, job.message_id, int(started.timestamp()), job.payload)
        return self._client.post(job.url, job.payload, headers)

    def retry_by_hand(self, tenant_id: str, delivery_id: str) -> storage.Delivery:
        """Attempt a delivery again now, whatever its state (SPEC 7: retried by hand)."""
        delivery = self._store.get_delivery(tenant_id, delivery_id)
        if delivery is None:
            raise errors.NotFound(f"webhook delivery {delivery_id} not found",
                                  reason="delivery_not_found")
        endpoint = self._store.get_endpoint(tenant_id, delivery.endpoint_id)
        if endpoint is None or endpoint.status != storage.ENABLED:
            raise errors.FailedPrecondition(
                "the delivery's endpoint is deleted or disabled", reason="endpoint_disabled")
        rescheduled = self._store.reschedule(tenant_id, delivery_id, self._clock())
        if rescheduled is None:
            raise errors.Conflict("an attempt of this delivery is in progress",
                                  reason="delivery_in_progress")
        self._scheduler.schedule([Scheduled(tenant_id, delivery_id)])
        return rescheduled
