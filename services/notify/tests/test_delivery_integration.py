"""Webhook delivery end to end on PostgreSQL: queue message in, signed HTTP request out.

A real Dramatiq worker consumes a StubBroker; a real HTTP receiver on 127.0.0.1 verifies
every request with the reference ``standardwebhooks`` library.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import itertools
import json
import socket
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from accrual.messages.v1 import messages_pb2
from accrual_notify import storage
from accrual_notify.domain import events
from accrual_notify.transport import WebhookClient
from accrual_platform.db import utcnow
from accrual_platform.facts import data_of
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


def test_facts_no_endpoint_subscribes_to_are_not_stored(
        harness_factory: HarnessFactory, receiver: Receiver) -> None:
    h = harness_factory(worker=False)
    lonely = f"{h.tenant}-lonely"
    points_only = h.endpoint(receiver, "/points", events=("points.awarded",))
    disabled = h.endpoint(receiver, "/disabled")
    h.runtime.endpoints.update(h.tenant, disabled, status=storage.DISABLED)

    published = h.runtime.publisher.publish([
        h.notification("event.completed", "event:e-1:completed"),
        h.notification("points.awarded", "points:e-1"),
        h.notification("event.completed", "event:e-2:completed", tenant=lonely)])

    assert published == 1
    [delivery] = h.deliveries(points_only)
    assert delivery.type == "points.awarded" and h.deliveries(disabled) == []
    with h.store.db.transaction() as session:
        m = storage.messages
        stored = session.execute(sa.select(m.c.tenant_id, m.c.fact_id).where(
            m.c.tenant_id.in_([h.tenant, lonely]))).all()
    assert sorted(map(tuple, stored)) == [(h.tenant, "points:e-1")]
    # an endpoint that subscribes later receives what happens from then on, once
    everything = h.endpoint(receiver, "/all")
    again = h.notification("event.completed", "event:e-1:completed")
    assert h.runtime.publisher.publish([again]) == 1
    h.runtime.publisher.publish([again])  # a redelivery re-sends the unattempted one, no new one
    assert [d.type for d in h.deliveries(everything)] == ["event.completed"]
    assert h.deliveries(points_only) == [delivery]


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
                        h.store.subscribers([h.tenant]), utcnow() - dt.timedelta(minutes=10), 0.0)
    assert h.runtime.sweeper.sweep_once() >= 1

    [delivery] = h.wait_final(endpoint_id)
    assert delivery.status == storage.SUCCEEDED
    assert len(receiver.received()) == 1



# -- every type the suite produces, shaped as its producers send it --------------------------

def producer_notes(h: Harness) -> list[messages_pb2.Notification]:
    """One notification of each type, with the fact ids and data the producing services use
    (ingest: event.*; rules: points.*, tier.changed, rule.suspended, redemption.*; identity: participant.*,
    enrollment.*)."""
    event_id, program_id, participant = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    redemption = str(uuid.uuid4())
    summary = {"event_id": event_id, "idempotency_key": "order-1", "program_id": program_id,
               "external_id": "user_abc123", "participant_id": participant}
    return [
        h.notification("event.completed", f"event.completed:{event_id}:1",
                       {**summary, "status": "COMPLETED", "points_awarded": "125"}),
        h.notification("event.failed", f"event.failed:{event_id}:2",
                       {**summary, "status": "FAILED", "error_code": "program_not_found",
                        "error_message": "program does not exist"}),
        h.notification("points.awarded", f"points.awarded:event:{event_id}:rule:r1",
                       {"program_id": program_id, "participant_id": participant,
                        "points": "125", "event_id": event_id, "rule_id": "r1"}),
        h.notification("points.adjusted", f"points.adjusted:{program_id}:adj-1",
                       {"program_id": program_id, "participant_id": participant,
                        "points": "-5", "reason": "goodwill"}),
        h.notification("participant.created", f"participant.created:{participant}",
                       {"participant_id": participant}),
        h.notification("enrollment.created", f"enrollment.created:{program_id}:{participant}",
                       {"program_id": program_id, "participant_id": participant,
                        "status": "ACTIVE"}),
        h.notification("enrollment.reactivated",
                       f"enrollment.reactivated:{program_id}:{participant}:1",
                       {"program_id": program_id, "participant_id": participant,
                        "previous_status": "FROZEN", "status": "ACTIVE"}),
        h.notification("tier.changed", f"tier.changed:{event_id}:{participant}",
                       {"program_id": program_id, "participant_id": participant,
                        "previous_tier": None, "tier": "Gold", "event_id": event_id}),
        h.notification("rule.suspended", "rule.suspended:r1:2",
                       {"rule_id": "r1", "program_id": program_id, "rule_version": 2, "rule_name": "costly",
                        "reason": "evaluation_timeout", "breaches": 3,
                        "message": "the rule's expressions repeatedly ran past the CPU deadline"}),
        h.notification("points.pending", f"points.pending:{event_id}:{program_id}:{participant}",
                       {"event_id": event_id, "program_id": program_id, "participant_id": participant,
                        "points": "125", "activates_at": "2026-12-31T00:00:00Z"}),
        h.notification("points.activated", f"points.activated:{event_id}:{program_id}:{participant}",
                       {"event_id": event_id, "program_id": program_id, "participant_id": participant,
                        "points": "125", "early": False, "available": "125"}),
        h.notification("points.reversed", f"points.reversed:r1:{program_id}",
                       {"event_id": event_id, "program_id": program_id, "participant_id": participant,
                        "points": "50", "recovered": "50", "reversal_id": "r1", "cancelled": False,
                        "reason": "refund", "available": "75"}),
        h.notification("points.expired", "points.expired:lot-1",
                       {"program_id": program_id, "participant_id": participant, "points": "70",
                        "lots": [{"lot_id": "lot-1", "points": "70", "transaction_id": "t1",
                                  "expires_at": "2026-04-05T22:00:00+00:00"}]}),
        h.notification("points.expiring", f"points.expiring:{program_id}:{participant}:2026-04-05:7",
                       {"program_id": program_id, "participant_id": participant, "points": "70",
                        "expires_on": "2026-04-05", "expires_at": "2026-04-05T22:00:00+00:00", "lead_days": 7}),
        *[h.notification(f"redemption.{step}", f"redemption.{step}:{redemption}",
                         {"redemption_id": redemption, "program_id": program_id, "participant_id": participant,
                          "reward_id": None, "state": state, "points": "60", "captured_points": captured,
                          "refunded_points": refunded, "external_ref": "order-1", "idempotency_key": "hold-1"})
          for step, state, captured, refunded in (
              ("held", "HELD", "0", "0"), ("captured", "CAPTURED", "60", "0"),
              ("cancelled", "CANCELLED", "0", "0"), ("expired", "EXPIRED", "0", "0"),
              ("refunded", "REFUNDED", "60", "60"))],
    ]


def test_every_produced_type_is_delivered_and_filtered_by_subscription(
        harness_factory: HarnessFactory, receiver: Receiver) -> None:
    h = harness_factory()
    everything = h.endpoint(receiver, "/all")
    events_only = h.endpoint(receiver, "/events", events=("event.completed", "event.failed"))
    points_only = h.endpoint(receiver, "/points", events=("points.awarded", "points.adjusted"))
    notes = producer_notes(h)
    h.publish(*notes)

    h.wait_final(everything, count=len(events.WEBHOOK_TYPES))
    h.wait_final(events_only, count=2)
    h.wait_final(points_only, count=2)
    assert sorted(json.loads(r.body)["type"] for r in receiver.received("/all")) == sorted(
        events.WEBHOOK_TYPES)
    assert sorted(json.loads(r.body)["type"] for r in receiver.received("/events")) == [
        "event.completed", "event.failed"]
    assert sorted(json.loads(r.body)["type"] for r in receiver.received("/points")) == [
        "points.adjusted", "points.awarded"]
    assert all(r.verified for r in receiver.received())
    sent = {n.type: data_of(n) for n in notes}
    for request in receiver.received("/all"):
        body = json.loads(request.body)
        assert body["data"] == sent[body["type"]]  # data arrives exactly as produced


def test_one_event_yields_event_completed_and_points_awarded(
        harness_factory: HarnessFactory, receiver: Receiver) -> None:
    h = harness_factory()
    endpoint_id = h.endpoint(receiver, events=("event.completed", "points.awarded"))
    completed, _, awarded, *_ = producer_notes(h)
    h.publish(awarded)  # rules announces the award ...
    h.publish(completed)  # ... and ingest the outcome, each through its own outbox

    h.wait_final(endpoint_id, count=2)
    bodies = {json.loads(r.body)["type"]: json.loads(r.body) for r in receiver.received()}
    assert set(bodies) == {"event.completed", "points.awarded"}
    assert bodies["event.completed"]["data"]["event_id"] == \
        bodies["points.awarded"]["data"]["event_id"]
    assert all(r.verified for r in receiver.received())


def test_event_failed_carries_what_partners_correlate_on(
        harness_factory: HarnessFactory, receiver: Receiver) -> None:
    h = harness_factory()
    endpoint_id = h.endpoint(receiver, events=("event.failed",))
    notes = producer_notes(h)
    h.publish(*notes)

    [delivery] = h.wait_final(endpoint_id)
    [request] = receiver.received()
    assert request.verified
    body = json.loads(request.body)
    assert body["type"] == "event.failed" and body["id"] == delivery.message_id
    data = body["data"]
    assert data["event_id"] == data_of(notes[1])["event_id"]
    assert (data["idempotency_key"], data["error_code"], data["error_message"]) == (
        "order-1", "program_not_found", "program does not exist")
    assert data["program_id"]


def test_notifications_queued_with_struct_data_are_delivered_and_bad_data_json_is_dropped(
        harness_factory: HarnessFactory, receiver: Receiver) -> None:
    """Messages queued before data_json existed carry a Struct and still arrive as they were
    produced; a note whose data_json is not a JSON object is dropped (it could never be sent
    as documented) without holding back the others of its message."""
    h = harness_factory()
    endpoint_id = h.endpoint(receiver)
    legacy = messages_pb2.Notification(tenant_id=h.tenant, type="points.awarded", fact_id="legacy-1")
    legacy.created_at.FromDatetime(utcnow())
    legacy.data.update({"event_id": "e-legacy", "points": "12", "rule_evaluations": [{"matched": True}]})
    broken = h.notification(fact_id="broken-1")
    broken.data_json = "[1, 2]"
    h.publish(broken, legacy)

    [delivery] = h.wait_final(endpoint_id)
    [request] = receiver.received()
    body = json.loads(request.body)
    assert request.verified and body["id"] == delivery.message_id
    assert body["data"] == {"event_id": "e-legacy", "points": "12", "rule_evaluations": [{"matched": True}]}


# -- attempt errors ----------------------------------------------------------------------------

def test_attempt_errors_name_what_went_wrong(
        harness_factory: HarnessFactory, receiver: Receiver) -> None:
    h = harness_factory(webhook_retry_schedule=(0.0,), webhook_timeout_seconds=0.3)
    receiver.script("/redirect", dict(status=307, headers={"location": "https://x.example/"}))
    receiver.script("/slow", dict(status=200, sleep=1.0))
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    refused, _ = h.runtime.endpoints.create(h.tenant, f"http://127.0.0.1:{closed}/hook",
                                            ["*"], "")
    redirect = h.endpoint(receiver, "/redirect")
    slow = h.endpoint(receiver, "/slow")
    h.publish(h.notification())

    errors_by_endpoint = {}
    for endpoint_id in (refused.id, redirect, slow):
        [delivery] = h.wait_final(endpoint_id)
        assert delivery.status == storage.FAILED
        [attempt] = h.store.list_attempts(h.tenant, delivery.id)
        errors_by_endpoint[endpoint_id] = attempt
    assert errors_by_endpoint[refused.id].error.startswith("connection_refused: ")
    assert errors_by_endpoint[refused.id].status_code == 0
    assert errors_by_endpoint[redirect].error == \
        "redirect: 307 to https://x.example/ not followed"
    assert errors_by_endpoint[redirect].status_code == 307
    assert errors_by_endpoint[slow].error.startswith("timeout: ")
    assert 250 <= errors_by_endpoint[slow].latency_ms < 1000


# -- auto-disable and isolation ----------------------------------------------------------------

def test_endpoint_failing_for_the_configured_period_is_disabled(
        harness_factory: HarnessFactory, receiver: Receiver) -> None:
    h = harness_factory(webhook_retry_schedule=(0.0,) + (0.2,) * 20,
                        webhook_disable_after_seconds=0.7)
    receiver.script("/hook", dict(status=500))
    endpoint_id = h.endpoint(receiver)
    h.publish(h.notification())

    [delivery] = h.wait_final(endpoint_id)
    endpoint = h.runtime.endpoints.get(h.tenant, endpoint_id)
    assert endpoint.status == storage.DISABLED
    assert endpoint.disabled_reason.startswith("failing_since ")
    assert endpoint.failing_since is not None
    attempts = h.store.list_attempts(h.tenant, delivery.id)
    assert 3 <= len(attempts) < 20  # stopped by the disable, not by the schedule
    assert (attempts[-1].started_at - endpoint.failing_since).total_seconds() >= 0.5
    h.publish(h.notification())
    time.sleep(0.5)
    assert len(h.deliveries(endpoint_id)) == 1


def test_a_success_ends_the_failure_streak(
        harness_factory: HarnessFactory, receiver: Receiver) -> None:
    h = harness_factory(webhook_retry_schedule=(0.0, 0.5, 0.5), webhook_disable_after_seconds=1.5)
    receiver.script("/hook", dict(status=500), dict(status=500), dict(status=200),
                    dict(status=500), dict(status=500), dict(status=200))
    endpoint_id = h.endpoint(receiver)
    h.publish(h.notification())
    [first] = h.wait_final(endpoint_id)
    h.publish(h.notification())
    h.wait_final(endpoint_id, count=2)

    # Two failing stretches of ~1 s each, together longer than the 1.5 s period, but the
    # success between them ends the first streak, so they never add up.
    endpoint = h.runtime.endpoints.get(h.tenant, endpoint_id)
    assert first.status == storage.SUCCEEDED
    assert endpoint.status == storage.ENABLED and endpoint.failing_since is None
    assert [d.status for d in h.deliveries(endpoint_id)] == [storage.SUCCEEDED] * 2


def test_a_receiver_sleeping_to_the_timeout_does_not_delay_other_endpoints(
        harness_factory: HarnessFactory, receiver: Receiver) -> None:
    # Two worker threads; the slow endpoint has three deliveries that each hold a thread for
    # the whole timeout. At most one may run at a time, so the other thread stays free.
    h = harness_factory(webhook_timeout_seconds=1.0, webhook_endpoint_max_in_flight=1,
                        webhook_retry_schedule=(0.0, 30.0))
    receiver.script("/slow", dict(status=200, sleep=5.0))
    slow = h.endpoint(receiver, "/slow", events=("points.awarded",))
    fast = h.endpoint(receiver, "/fast", events=("event.completed",))
    h.publish(*[h.notification("points.awarded") for _ in range(3)])
    h.wait_for(lambda: len(receiver.received("/slow")) >= 1, what="the slow receiver")
    published = time.monotonic()
    h.publish(h.notification("event.completed"))

    [delivered] = h.wait_final(fast, timeout=5.0)
    [request] = receiver.received("/fast")
    assert delivered.status == storage.SUCCEEDED and request.verified
    assert request.at - published < 0.6  # the slow one holds its thread for 1 s
    assert len(receiver.received("/slow")) <= 2  # never more than one attempt at a time
    h.wait_for(lambda: all(d.attempts == 1 for d in h.deliveries(slow)), timeout=10.0,
               what="every slow delivery attempted once")
    attempts = [h.store.list_attempts(h.tenant, d.id)[0] for d in h.deliveries(slow)]
    assert all(a.error.startswith("timeout: ") for a in attempts)
    starts = sorted(a.started_at for a in attempts)
    assert all((b - a).total_seconds() >= 0.9 for a, b in itertools.pairwise(starts))


def test_pinned_request_reaches_the_checked_address_with_the_original_host(
        receiver: Receiver) -> None:
    client = WebhookClient(2.0)
    try:
        port = int(receiver.url().rsplit(":", 1)[1].split("/")[0])
        response = client.post(f"http://hooks.partner.example:{port}/pinned", "{}",
                               {"content-type": "application/json"}, address="127.0.0.1")
    finally:
        client.close()
    assert (response.status_code, response.error) == (200, "")
    [request] = receiver.received("/pinned")
    assert request.headers["host"] == f"hooks.partner.example:{port}"
