"""Webhook delivery end to end on PostgreSQL: queue message in, signed HTTP request out.

A real Dramatiq worker consumes a StubBroker; a real HTTP receiver on 127.0.0.1 verifies
every request with the reference ``standardwebhooks`` library.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from accrual_notify import storage
from accrual_notify.domain import events
from accrual_platform.db import utcnow
from standardwebhooks import Webhook

if TYPE_CHECKING:
    from conftest import Harness, Receiver

pytestmark = pytest.mark.integration
HarnessFactory = Callable[..., "Harness"]


def test_notification_is_delivered_signed_and_verifiable(
        harness_factory: HarnessFactory, receiver: Receiver) -> None:
    h = harness_factory()
    endpoint_id = h.endpoint(receiver)
    note = h.notification("points.awarded", data={"points": "12.5", "participant_id": "p-1"})
    h.publish(note)

    [delivery] = h.wait_final(endpoint_id)
    assert delivery.status == storage.SUCCEEDED
    assert (delivery.attempts, delivery.last_status_code) == (1, 200)
    [request] = receiver.received()
    assert request.verified, request.error
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == delivery.message_id
    assert delivery.message_id == events.message_id(h.tenant, note.fact_id)
    body = json.loads(request.body)
    assert body == {"id": delivery.message_id, "type": "points.awarded",
                    "api_version": "2026-11-01", "created_at": body["created_at"],
                    "tenant_id": h.tenant, "data": {"points": "12.5", "participant_id": "p-1"}}
    assert body["created_at"].endswith("Z")
    [attempt] = h.store.list_attempts(h.tenant, delivery.id)
    assert attempt.status_code == 200 and attempt.response_excerpt == "ok"


def test_500_then_200_is_retried_and_delivered_once(
        harness_factory: HarnessFactory, receiver: Receiver) -> None:
    h = harness_factory()
    receiver.script("/hook", dict(status=500, body="boom"), dict(status=200))
    endpoint_id = h.endpoint(receiver)
    h.publish(h.notification())

    [delivery] = h.wait_final(endpoint_id)
    assert delivery.status == storage.SUCCEEDED and delivery.attempts == 2
    requests = receiver.received()
    assert len(requests) == 2
    assert all(r.verified for r in requests)
    assert {r.headers["webhook-id"] for r in requests} == {delivery.message_id}
    attempts = h.store.list_attempts(h.tenant, delivery.id)
    assert [(a.attempt, a.status_code, a.response_excerpt) for a in attempts] == [
        (1, 500, "boom"), (2, 200, "ok")]
    time.sleep(0.5)  # nothing further is sent once it succeeded
    assert len(receiver.received()) == 2


def test_schedule_exhausted_marks_delivery_failed(
        harness_factory: HarnessFactory, receiver: Receiver) -> None:
    h = harness_factory()
    receiver.script("/hook", dict(status=302, headers={"location": receiver.url("/elsewhere")}))
    endpoint_id = h.endpoint(receiver)
    h.publish(h.notification())

    [delivery] = h.wait_final(endpoint_id)
    assert delivery.status == storage.FAILED
    assert delivery.attempts == len(h.settings.webhook_retry_schedule)
    assert delivery.last_status_code == 302 and delivery.next_attempt_at is None
    assert receiver.received("/elsewhere") == []  # redirects are not followed


def test_410_disables_the_endpoint(harness_factory: HarnessFactory, receiver: Receiver) -> None:
    h = harness_factory()
    receiver.script("/hook", dict(status=410, body="gone"))
    endpoint_id = h.endpoint(receiver)
    h.publish(h.notification())

    [delivery] = h.wait_final(endpoint_id)
    assert delivery.status == storage.FAILED and delivery.attempts == 1
    endpoint = h.runtime.endpoints.get(h.tenant, endpoint_id)
    assert endpoint.status == storage.DISABLED
    assert "410" in endpoint.disabled_reason
    h.publish(h.notification())  # a disabled endpoint gets no new deliveries
    time.sleep(0.5)
    assert len(h.deliveries(endpoint_id)) == 1 and len(receiver.received()) == 1


def test_429_retry_after_is_honoured(harness_factory: HarnessFactory, receiver: Receiver) -> None:
    h = harness_factory()
    receiver.script("/hook", dict(status=429, headers={"retry-after": "1"}), dict(status=200))
    endpoint_id = h.endpoint(receiver)
    h.publish(h.notification())

    [delivery] = h.wait_final(endpoint_id)
    assert delivery.status == storage.SUCCEEDED and delivery.attempts == 2
    first, second = receiver.received()
    assert second.at - first.at >= 0.95  # the schedule alone would have waited 0.2 s


def test_503_retry_after_http_date_is_honoured(
        harness_factory: HarnessFactory, receiver: Receiver) -> None:
    h = harness_factory()
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    receiver.script("/hook", dict(status=503, headers={"retry-after": when}), dict(status=200))
    endpoint_id = h.endpoint(receiver)
    h.publish(h.notification())

    [delivery] = h.wait_final(endpoint_id)
    assert delivery.status == storage.SUCCEEDED
    first, second = receiver.received()
    assert second.at - first.at >= 0.9  # HTTP dates have 1 s resolution


def test_timeout_counts_as_a_failed_attempt(
        harness_factory: HarnessFactory, receiver: Receiver) -> None:
    h = harness_factory(webhook_timeout_seconds=0.3)
    receiver.script("/hook", dict(status=200, sleep=1.0), dict(status=200))
    endpoint_id = h.endpoint(receiver)
    h.publish(h.notification())

    [delivery] = h.wait_final(endpoint_id)
    assert delivery.status == storage.SUCCEEDED and delivery.attempts == 2
    first, second = h.store.list_attempts(h.tenant, delivery.id)
    assert first.status_code == 0 and "timeout" in first.error
    assert 250 <= first.latency_ms < 1000
    assert second.status_code == 200 and second.error == ""


def test_redelivered_publish_produces_no_second_delivery(
        harness_factory: HarnessFactory, receiver: Receiver) -> None:
    h = harness_factory()
    endpoint_id = h.endpoint(receiver)
    note = h.notification(fact_id="event:e-42:completed")
    h.publish(note)
    h.publish(note)  # redelivered before the first was processed
    h.wait_final(endpoint_id)
    h.publish(note)  # and again after the webhook was delivered
    time.sleep(0.5)

    [delivery] = h.deliveries(endpoint_id)
    assert delivery.status == storage.SUCCEEDED and delivery.attempts == 1
    assert len(receiver.received()) == 1


def test_fan_out_follows_subscriptions_and_a_slow_endpoint_blocks_no_other(
        harness_factory: HarnessFactory, receiver: Receiver) -> None:
    h = harness_factory(webhook_timeout_seconds=5.0)
    receiver.script("/slow", dict(status=200, sleep=1.5))
    slow = h.endpoint(receiver, "/slow")
    fast = h.endpoint(receiver, "/fast", events=("event.completed",))
    points_only = h.endpoint(receiver, "/points", events=("points.awarded",))
    other_tenant = h.endpoint(receiver, "/other", tenant=f"{h.tenant}-other")
    h.publish(h.notification("event.completed"))

    h.wait_final(fast)
    fast_done = time.monotonic()
    h.wait_final(slow)
    slow_done = time.monotonic()
    assert slow_done - fast_done > 0.5  # the fast endpoint did not wait for the slow one
    assert h.deliveries(points_only) == []
    assert h.deliveries(other_tenant, tenant=f"{h.tenant}-other") == []
    assert all(r.verified for r in receiver.received())


def test_deleted_endpoint_receives_nothing(
        harness_factory: HarnessFactory, receiver: Receiver) -> None:
    h = harness_factory(worker=False)
    endpoint_id = h.endpoint(receiver)
    h.runtime.publisher.publish([h.notification()])
    [pending] = h.deliveries(endpoint_id)
    h.runtime.endpoints.delete(h.tenant, endpoint_id)

    assert h.runtime.deliverer.deliver(h.tenant, pending.id) == "endpoint_unavailable"
    [closed] = h.deliveries(endpoint_id)
    assert closed.status == storage.FAILED and closed.last_error == "endpoint deleted"
    h.runtime.publisher.publish([h.notification()])
    assert len(h.deliveries(endpoint_id)) == 1 and receiver.received() == []


def test_secret_rotation_signs_with_both_secrets(
        harness_factory: HarnessFactory, receiver: Receiver) -> None:
    h = harness_factory()
    endpoint_id = h.endpoint(receiver)
    [old] = receiver.secrets["/hook"]
    _, new = h.runtime.endpoints.rotate_secret(h.tenant, endpoint_id)
    h.publish(h.notification())

    h.wait_final(endpoint_id)
    [request] = receiver.received()
    signatures = request.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    for secret in (old, new):
        Webhook(secret).verify(request.body, request.headers)


def test_failed_delivery_can_be_retried_by_hand(
        harness_factory: HarnessFactory, receiver: Receiver) -> None:
    h = harness_factory(webhook_retry_schedule=(0.0,))
    receiver.script("/hook", dict(status=500), dict(status=200))
    endpoint_id = h.endpoint(receiver)
    h.publish(h.notification())
    [failed] = h.wait_final(endpoint_id)
    assert failed.status == storage.FAILED and failed.attempts == 1

    h.runtime.deliverer.retry_by_hand(h.tenant, failed.id)
    h.wait_for(lambda: h.deliveries(endpoint_id)[0].status == storage.SUCCEEDED,
               what="manual retry")
    assert len(receiver.received()) == 2


def test_sweeper_resends_a_delivery_whose_message_was_lost(
        harness_factory: HarnessFactory, receiver: Receiver) -> None:
    h = harness_factory()
    endpoint_id = h.endpoint(receiver)
    # A publisher that died between commit and enqueue: the rows exist, no message does.
    h.store.store_facts([storage.Fact(h.tenant, "lost-fact", "event.failed",
                                      events.message_id(h.tenant, "lost-fact"), "{}")],
                        utcnow() - dt.timedelta(minutes=10), 0.0)
    assert h.runtime.sweeper.sweep_once() >= 1

    [delivery] = h.wait_final(endpoint_id)
    assert delivery.status == storage.SUCCEEDED
    assert len(receiver.received()) == 1

