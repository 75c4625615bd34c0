"""Fan-out of facts to endpoints, and one attempt of one delivery.

Every hop is at-least-once, so both steps are idempotent: a fact is stored once (unique on
tenant and fact id) and yields one delivery per endpoint, and an attempt first claims its
delivery with a lease, so duplicate or concurrent ``deliver_webhook`` messages collapse into
one HTTP request. Each delivery is its own queue message, so a slow receiver holds one
worker thread for at most the timeout; and an endpoint may have at most
``webhook_endpoint_max_in_flight`` attempts running, so even a backlog for one slow receiver
leaves the other threads to the other endpoints (its further deliveries wait a moment).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Iterable, Sequence

import dramatiq
import structlog
from accrual.messages.v1 import messages_pb2
from accrual_platform import contract, errors
from accrual_platform.db import utcnow
from accrual_platform.facts import data_of
from accrual_platform.settings import Settings

from accrual_notify import storage
from accrual_notify.domain import events, retry, signing, urls
from accrual_notify.storage import AttemptRecord, Fact, NotifyStore, Scheduled
from accrual_notify.transport import Response, WebhookClient, resolve_host

log = structlog.get_logger("accrual.notify")

#: how long past the timeout a claimed delivery stays leased (DNS, commit, scheduling)
LEASE_MARGIN_SECONDS = 30.0
#: a message may arrive this early (clock skew between the enqueuing and consuming hosts)
EARLY_TOLERANCE_SECONDS = 2.0
MAX_FACT_ID = 512
#: how long a delivery waits when its endpoint already has its maximum of attempts running
BUSY_RETRY_SECONDS = 1.0

Clock = Callable[[], dt.datetime]


class Scheduler:
    """Sends ``deliver_webhook`` messages; the one place that knows the actor's name."""

    def __init__(self, broker: dramatiq.Broker) -> None:
        self._broker = broker

    def schedule(self, items: Iterable[Scheduled]) -> None:
        for item in items:
            delay_ms = int(item.delay_seconds * 1000)
            contract.send(self._broker, contract.DELIVER_WEBHOOK,
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
        """Store the facts some endpoint subscribes to and schedule their deliveries; returns
        how many deliveries were scheduled.

        A fact no enabled endpoint of its tenant subscribes to is not stored: it would have no
        delivery to attempt, log or retry (an endpoint created later receives what happens
        from then on). Notifications that cannot be delivered as documented (unknown type, no
        tenant or fact id) are logged and dropped: retrying them would never succeed.
        """
        now = self._clock()
        valid: list[messages_pb2.Notification] = []
        for note in notes:
            if not note.tenant_id or not note.fact_id or len(note.fact_id) > MAX_FACT_ID:
                log.error("notification_invalid", tenant_id=note.tenant_id,
                          fact_id=note.fact_id[:100], type=note.type)
            elif note.type not in events.WEBHOOK_TYPES:
                log.error("notification_type_unknown", tenant_id=note.tenant_id,
                          fact_id=note.fact_id, type=note.type)
            else:
                valid.append(note)
        subscribers = self._store.subscribers(sorted({note.tenant_id for note in valid}))
        facts: dict[tuple[str, str], Fact] = {}
        for note in valid:
            if (note.tenant_id, note.fact_id) in facts or not any(
                    events.subscribes(ep.enabled_events, note.type)
                    for ep in subscribers[note.tenant_id]):
                continue
            msg_id = events.message_id(note.tenant_id, note.fact_id)
            created = note.created_at.ToDatetime(dt.UTC) if note.HasField("created_at") else now
            try:
                data = data_of(note)
            except ValueError as exc:
                log.error("notification_invalid", tenant_id=note.tenant_id, fact_id=note.fact_id,
                          type=note.type, error=str(exc))
                continue
            body = events.envelope(msg_id=msg_id, type_=note.type, created_at=created,
                                   tenant_id=note.tenant_id, data=data)
            facts[(note.tenant_id, note.fact_id)] = Fact(
                tenant_id=note.tenant_id, fact_id=note.fact_id, type=note.type,
                message_id=msg_id, payload=events.render(body))
        if not facts:
            log.debug("notifications_unsubscribed", notifications=len(valid))
            return 0
        scheduled = self._store.store_facts(
            list(facts.values()), subscribers, now,
            retry.initial_delay(self._settings.webhook_retry_schedule))
        self._scheduler.schedule(scheduled)
        log.info("notifications_published", facts=len(facts), deliveries=len(scheduled),
                 unsubscribed=len(valid) - len(facts))
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
            due_by=now + dt.timedelta(seconds=EARLY_TOLERANCE_SECONDS),
            max_in_flight=self._settings.webhook_endpoint_max_in_flight)
        job = claim.job
        if job is None:
            log.info("delivery_skipped", delivery_id=delivery_id, reason=claim.skipped)
            if claim.skipped == "endpoint_busy":
                # jittered, so a backlog for one endpoint does not come back all at once
                delay = BUSY_RETRY_SECONDS * (1.0 + random.random())
                self._scheduler.schedule([Scheduled(tenant_id, delivery_id, delay)])
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
        disabled = self._store.record_attempt(
            job, AttemptRecord(started_at=started, status_code=response.status_code,
                               latency_ms=response.latency_ms, response_excerpt=response.excerpt,
                               error=response.error),
            status=status, next_attempt_at=next_at, disable_reason=disable, now=finished,
            succeeded=decision.verdict is retry.Verdict.SUCCEEDED,
            disable_after=dt.timedelta(seconds=self._settings.webhook_disable_after_seconds))
        log.info("webhook_attempted", attempt=job.attempts + 1,
                 status_code=response.status_code, latency_ms=response.latency_ms,
                 error=response.error or None, verdict=decision.verdict.value,
                 retry_in=decision.delay_seconds)
        if disabled is not None:
            log.warning("endpoint_disabled", reason=disabled)
        if decision.verdict is retry.Verdict.RETRY:
            self._scheduler.schedule([Scheduled(job.tenant_id, job.delivery_id,
                                                decision.delay_seconds or 0.0)])
        return decision.verdict.value

    def _attempt(self, job: storage.Job, started: dt.datetime) -> Response:
        address: str | None = None
        if not self._settings.webhook_allow_private:
            # DNS may have changed since the endpoint was created (rebinding): resolve once,
            # check every address, and connect to a checked one, never resolving again.
            resolved: list[str] = []

            def remember(host: str, port: int) -> list[str]:
                resolved.extend(self._resolve(host, port))
                return resolved

            refused = urls.check_url(job.url, allow_private=False, resolve=remember,
                                     allow_http=self._settings.webhook_http_allowed)
            if refused:
                return Response(None, 0, "", f"address_refused: url {refused[0][1]}")
            address = resolved[0] if resolved else None  # None: the URL holds an IP literal
        secrets_ = signing.active_secrets(job.secret, job.previous_secret,
                                          job.previous_secret_expires_at, started)
        headers = signing.headers(secrets_, job.message_id, int(started.timestamp()), job.payload)
        if address is None:
            return self._client.post(job.url, job.payload, headers)
        return self._client.post(job.url, job.payload, headers, address=address)

    def retry_by_hand(self, tenant_id: str, delivery_id: str) -> storage.Delivery:
        """Attempt a failed (or still waiting) delivery again now (SPEC 7: retried by hand).

        A delivery whose attempt is running is 409 ``delivery_in_progress``; a delivered one
        is 409 ``delivery_already_succeeded``: sending it again would only make the partner
        deduplicate. An exhausted delivery gets one more attempt, not a new schedule.
        """
        delivery = self._store.get_delivery(tenant_id, delivery_id)
        if delivery is None:
            raise errors.NotFound(f"webhook delivery {delivery_id} not found",
                                  reason="delivery_not_found")
        self._require_enabled(tenant_id, delivery.endpoint_id)
        rescheduled, why = self._store.reschedule(tenant_id, delivery_id, self._clock())
        if rescheduled is None:
            if why == "not_found":
                raise errors.NotFound(f"webhook delivery {delivery_id} not found",
                                      reason="delivery_not_found")
            if why == "succeeded":
                raise errors.Conflict("the delivery already succeeded",
                                      reason="delivery_already_succeeded")
            raise errors.Conflict("an attempt of this delivery is in progress",
                                  reason="delivery_in_progress")
        self._scheduler.schedule([Scheduled(tenant_id, delivery_id)])
        return rescheduled

    def recover(self, tenant_id: str, endpoint_id: str, since: dt.datetime) -> list[str]:
        """Re-queue every failed delivery of an enabled endpoint created since ``since``."""
        self._require_enabled(tenant_id, endpoint_id)
        scheduled = self._store.recover(tenant_id, endpoint_id, since, self._clock())
        self._scheduler.schedule(scheduled)
        log.info("endpoint_recovered", endpoint_id=endpoint_id, deliveries=len(scheduled))
        return [s.delivery_id for s in scheduled]

    def _require_enabled(self, tenant_id: str, endpoint_id: str) -> None:
        endpoint = self._store.get_endpoint(tenant_id, endpoint_id)
        if endpoint is None:
            raise errors.NotFound(f"webhook endpoint {endpoint_id} not found",
                                  reason="endpoint_not_found")
        if endpoint.status != storage.ENABLED:
            raise errors.FailedPrecondition(
                "the endpoint is disabled; enable it first (PATCH status ENABLED)",
                reason="endpoint_disabled")
