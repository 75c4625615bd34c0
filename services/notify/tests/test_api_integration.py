"""NotifyService through a real gRPC server with the platform interceptor, on PostgreSQL.

Checks what a partner sees: the secret shown once, scopes (403), tenant isolation (404),
field-naming 400s, cursor pages of the delivery log, partial updates, secret rotation, the
attempt log, manual retry and recovery (the last ones against a real loopback receiver).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc
import pytest
from accrual.notify.v1 import notify_pb2
from accrual_notify import storage
from accrual_notify.delivery import Publisher
from accrual_notify.domain.events import message_id
from accrual_platform.db import utcnow
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

if TYPE_CHECKING:
    from conftest import Api, Receiver

pytestmark = pytest.mark.integration
PUBLIC_URL = "https://93.184.216.34/webhooks"  # a public address literal: no DNS needed


@pytest.fixture
def api(api_factory: Callable[..., Api]) -> Api:
    return api_factory(worker=False, webhook_allow_private=False)


def fails(fn: Callable[[], object]) -> tuple[grpc.StatusCode, list[str]]:
    """The status code of a failing call and the fields its BadRequest names."""
    with pytest.raises(grpc.RpcError) as info:
        fn()
    err = info.value
    fields: list[str] = []
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
    return err.code(), fields  # type: ignore[attr-defined]


def reason(fn: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    """The status code of a failing call and its ErrorInfo reason."""
    with pytest.raises(grpc.RpcError) as info:
        fn()
    status = rpc_status.from_call(info.value)  # type: ignore[arg-type]
    found = ""
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            error_info = error_details_pb2.ErrorInfo()
            detail.Unpack(error_info)
            found = error_info.reason.lower()  # the gateway answers it lower-cased
    return info.value.code(), found  # type: ignore[attr-defined]


def create(api: Api, key: str = "sk_writer_a", **fields: object) -> notify_pb2.WebhookEndpoint:
    request = notify_pb2.CreateWebhookEndpointRequest(
        url=PUBLIC_URL, enabled_events=["*"], description="orders")
    for name, value in fields.items():
        if isinstance(value, list):
            request.ClearField(name)  # type: ignore[arg-type]
            getattr(request, name).extend(value)
        else:
            setattr(request, name, value)
    response = api.call("CreateWebhookEndpoint", request, key)
    assert isinstance(response, notify_pb2.WebhookEndpoint)
    return response


def test_endpoint_crud_shows_the_secret_once(api: Api) -> None:
    created = create(api, enabled_events=["event.completed", "points.awarded"])
    assert created.secret.startswith("whsec_") and len(created.secret) > 40
    assert created.status == notify_pb2.ENDPOINT_STATUS_ENABLED
    assert list(created.enabled_events) == ["event.completed", "points.awarded"]

    got = api.call("GetWebhookEndpoint",
                   notify_pb2.GetWebhookEndpointRequest(endpoint_id=created.endpoint_id),
                   "sk_reader_a")
    assert isinstance(got, notify_pb2.WebhookEndpoint)
    assert not got.HasField("secret")
    assert (got.url, got.description) == (PUBLIC_URL, "orders")
    listed = api.call("ListWebhookEndpoints", notify_pb2.ListWebhookEndpointsRequest())
    assert [e.endpoint_id for e in listed.endpoints] == [created.endpoint_id]  # type: ignore[attr-defined]
    assert not listed.endpoints[0].HasField("secret")  # type: ignore[attr-defined]

    delete = notify_pb2.DeleteWebhookEndpointRequest(endpoint_id=created.endpoint_id)
    api.call("DeleteWebhookEndpoint", delete)
    get = notify_pb2.GetWebhookEndpointRequest(endpoint_id=created.endpoint_id)
    assert fails(lambda: api.call("GetWebhookEndpoint", get))[0] == grpc.StatusCode.NOT_FOUND
    assert fails(lambda: api.call("DeleteWebhookEndpoint", delete))[0] == grpc.StatusCode.NOT_FOUND
    listed = api.call("ListWebhookEndpoints", notify_pb2.ListWebhookEndpointsRequest())
    assert list(listed.endpoints) == []  # type: ignore[attr-defined]


def test_scopes_are_enforced(api: Api) -> None:
    request = notify_pb2.CreateWebhookEndpointRequest(url=PUBLIC_URL, enabled_events=["*"])
    code, _ = fails(lambda: api.call("CreateWebhookEndpoint", request, "sk_reader_a"))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    listing = notify_pb2.ListWebhookEndpointsRequest()
    code, _ = fails(lambda: api.call("ListWebhookEndpoints", listing, "sk_events_a"))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    code, _ = fails(lambda: api.call("ListWebhookEndpoints", listing, "sk_unknown"))
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_another_tenants_endpoint_is_not_found(api: Api) -> None:
    created = create(api)
    eid = created.endpoint_id
    for method, request in [
        ("GetWebhookEndpoint", notify_pb2.GetWebhookEndpointRequest(endpoint_id=eid)),
        ("DeleteWebhookEndpoint", notify_pb2.DeleteWebhookEndpointRequest(endpoint_id=eid)),
        ("ListWebhookDeliveries", notify_pb2.ListWebhookDeliveriesRequest(endpoint_id=eid)),
    ]:
        code, _ = fails(lambda m=method, r=request: api.call(m, r, "sk_writer_b"))  # type: ignore[misc]
        assert code == grpc.StatusCode.NOT_FOUND, method
    listed = api.call("ListWebhookEndpoints", notify_pb2.ListWebhookEndpointsRequest(),
                      "sk_writer_b")
    assert list(listed.endpoints) == []  # type: ignore[attr-defined]
    api.call("GetWebhookEndpoint", notify_pb2.GetWebhookEndpointRequest(endpoint_id=eid))


@pytest.mark.parametrize(("fields", "expected"), [
    ({"enabled_events": ["event.completed", "order.shipped"]}, ["enabled_events[1]"]),
    ({"enabled_events": []}, ["enabled_events"]),
    ({"url": "http://93.184.216.34/webhooks"}, ["url"]),
    ({"url": "https://127.0.0.1/webhooks"}, ["url"]),
    ({"url": "https://10.1.2.3/webhooks"}, ["url"]),
    ({"url": "https://169.254.169.254/latest/meta-data"}, ["url"]),
    ({"url": "https://localhost/webhooks"}, ["url"]),
    ({"url": "https://[2002:7f00:1::]/webhooks"}, ["url"]),
    ({"url": "https://192.0.0.8/webhooks"}, ["url"]),
    ({"url": "https://93.184.216.34:0/webhooks"}, ["url"]),
    ({"url": "https://[64:ff9b::7f00:1]/webhooks"}, ["url"]),
    ({"url": "not a url", "enabled_events": ["nope"]}, ["url", "enabled_events[0]"]),
])
def test_invalid_endpoints_are_refused_naming_the_field(
        api: Api, fields: dict[str, object], expected: list[str]) -> None:
    code, named = fails(lambda: create(api, **fields))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert named == expected
    listed = api.call("ListWebhookEndpoints", notify_pb2.ListWebhookEndpointsRequest())
    assert list(listed.endpoints) == []  # type: ignore[attr-defined]


def test_malformed_ids_and_tokens_are_400(api: Api) -> None:
    get = notify_pb2.GetWebhookEndpointRequest(endpoint_id="not-a-uuid")
    assert fails(lambda: api.call("GetWebhookEndpoint", get)) == (
        grpc.StatusCode.INVALID_ARGUMENT, ["endpoint_id"])
    eid = create(api).endpoint_id
    for request, field in [
        (notify_pb2.ListWebhookDeliveriesRequest(endpoint_id=eid, page_token="garbage!"),
         "page_token"),
        (notify_pb2.ListWebhookDeliveriesRequest(endpoint_id=eid, page_size=-1), "page_size"),
    ]:
        assert fails(lambda r=request: api.call("ListWebhookDeliveries", r)) == (  # type: ignore[misc]
            grpc.StatusCode.INVALID_ARGUMENT, [field])


def test_deliveries_are_listed_newest_first_in_pages(api: Api) -> None:
    eid = create(api, enabled_events=["points.awarded"]).endpoint_id
    h = api.harness
    facts = [f"fact-{i}" for i in range(3)]
    for fact in facts:
        h.runtime.publisher.publish([h.notification("points.awarded", fact, tenant=api.tenant_a)])
    h.runtime.publisher.publish([h.notification("event.failed", tenant=api.tenant_a)])

    request = notify_pb2.ListWebhookDeliveriesRequest(endpoint_id=eid, page_size=2)
    first = api.call("ListWebhookDeliveries", request, "sk_reader_a")
    assert isinstance(first, notify_pb2.ListWebhookDeliveriesResponse)
    assert len(first.deliveries) == 2 and first.next_page_token
    request.page_token = first.next_page_token
    second = api.call("ListWebhookDeliveries", request, "sk_reader_a")
    assert isinstance(second, notify_pb2.ListWebhookDeliveriesResponse)
    assert len(second.deliveries) == 1 and second.next_page_token == ""

    seen = [d.message_id for d in [*first.deliveries, *second.deliveries]]
    assert seen == [message_id(api.tenant_a, f) for f in reversed(facts)]
    d = first.deliveries[0]
    assert d.status == notify_pb2.DELIVERY_STATUS_PENDING and d.type == "points.awarded"
    assert d.attempts == 0 and d.HasField("next_attempt_at") and d.HasField("created_at")


# -- update, rotation, the attempt log, manual retry and recovery over gRPC ------------------

def created_for(api: Api, receiver: Receiver, path: str = "/hook",
                events: tuple[str, ...] = ("*",)) -> notify_pb2.WebhookEndpoint:
    """An endpoint on the loopback receiver, whose secret the receiver then verifies with."""
    endpoint = create(api, url=receiver.url(path), enabled_events=list(events))
    receiver.secrets.setdefault(path, []).append(endpoint.secret)
    return endpoint


def test_update_changes_only_the_fields_given(api: Api) -> None:
    created = create(api, enabled_events=["event.completed"], description="orders")
    eid = created.endpoint_id
    request = notify_pb2.UpdateWebhookEndpointRequest(
        endpoint_id=eid, url="https://93.184.216.35/v2", enabled_events=["event.failed", "*"])
    updated = api.call("UpdateWebhookEndpoint", request)
    assert (updated.url, list(updated.enabled_events)) == ("https://93.184.216.35/v2", ["*"])
    assert updated.description == "orders" and not updated.HasField("secret")
    request = notify_pb2.UpdateWebhookEndpointRequest(endpoint_id=eid, description="")
    assert api.call("UpdateWebhookEndpoint", request).description == ""
    got = api.call("GetWebhookEndpoint", notify_pb2.GetWebhookEndpointRequest(endpoint_id=eid))
    assert (got.url, list(got.enabled_events), got.description) == (
        "https://93.184.216.35/v2", ["*"], "")


@pytest.mark.parametrize(("fields", "expected"), [
    ({"url": "https://127.0.0.1/hook"}, ["url"]),
    ({"url": "https://169.254.169.254/latest"}, ["url"]),
    ({"url": "http://93.184.216.34/hook"}, ["url"]),
    ({"enabled_events": ["points.awarded", "points.spent"]}, ["enabled_events[1]"]),
    ({"description": "x" * 1001}, ["description"]),
    ({"status": notify_pb2.ENDPOINT_STATUS_UNSPECIFIED}, ["status"]),
])
def test_invalid_updates_are_refused_and_change_nothing(
        api: Api, fields: dict[str, object], expected: list[str]) -> None:
    created = create(api)
    request = notify_pb2.UpdateWebhookEndpointRequest(endpoint_id=created.endpoint_id, **fields)
    assert fails(lambda: api.call("UpdateWebhookEndpoint", request)) == (
        grpc.StatusCode.INVALID_ARGUMENT, expected)
    got = api.call("GetWebhookEndpoint",
                   notify_pb2.GetWebhookEndpointRequest(endpoint_id=created.endpoint_id))
    assert (got.url, list(got.enabled_events), got.status) == (
        PUBLIC_URL, ["*"], notify_pb2.ENDPOINT_STATUS_ENABLED)


def test_update_and_rotation_of_another_tenants_endpoint_is_not_found(api: Api) -> None:
    eid = create(api).endpoint_id
    for method, request in [
        ("UpdateWebhookEndpoint", notify_pb2.UpdateWebhookEndpointRequest(
            endpoint_id=eid, description="mine")),
        ("RotateWebhookEndpointSecret",
         notify_pb2.RotateWebhookEndpointSecretRequest(endpoint_id=eid)),
        ("RecoverWebhookEndpoint", notify_pb2.RecoverWebhookEndpointRequest(
            endpoint_id=eid, since={"seconds": 0})),
    ]:
        code, _ = fails(lambda m=method, r=request: api.call(m, r, "sk_writer_b"))  # type: ignore[misc]
        assert code == grpc.StatusCode.NOT_FOUND, method
    update = notify_pb2.UpdateWebhookEndpointRequest(endpoint_id=eid, description="x")
    assert fails(lambda: api.call("UpdateWebhookEndpoint", update, "sk_reader_a"))[0] == \
        grpc.StatusCode.PERMISSION_DENIED


def test_disable_stops_deliveries_and_enable_clears_the_reason(
        api_factory: Callable[..., Api], receiver: Receiver) -> None:
    api = api_factory()
    eid = created_for(api, receiver).endpoint_id
    h = api.harness
    disabled = api.call("UpdateWebhookEndpoint", notify_pb2.UpdateWebhookEndpointRequest(
        endpoint_id=eid, status=notify_pb2.ENDPOINT_STATUS_DISABLED))
    assert disabled.status == notify_pb2.ENDPOINT_STATUS_DISABLED
    assert disabled.disabled_reason.startswith("disabled through the API")
    h.publish(h.notification())
    time.sleep(0.5)
    assert h.deliveries(eid) == [] and receiver.received() == []

    enabled = api.call("UpdateWebhookEndpoint", notify_pb2.UpdateWebhookEndpointRequest(
        endpoint_id=eid, status=notify_pb2.ENDPOINT_STATUS_ENABLED))
    assert enabled.status == notify_pb2.ENDPOINT_STATUS_ENABLED
    assert enabled.disabled_reason == "" and not enabled.HasField("failing_since")
    h.publish(h.notification())
    [delivery] = h.wait_final(eid)
    assert delivery.status == storage.SUCCEEDED
    assert [r.verified for r in receiver.received()] == [True]


def test_rotated_secret_is_shown_once_and_both_sign_during_the_overlap(
        api_factory: Callable[..., Api], receiver: Receiver) -> None:
    api = api_factory(webhook_secret_overlap_seconds=1.5)
    created = created_for(api, receiver)
    eid, old = created.endpoint_id, created.secret
    h = api.harness
    rotated = api.call("RotateWebhookEndpointSecret",
                       notify_pb2.RotateWebhookEndpointSecretRequest(endpoint_id=eid))
    new = rotated.secret
    assert new.startswith("whsec_") and new != old
    expires = rotated.previous_secret_expires_at.ToDatetime(dt.UTC)
    assert 1.0 < (expires - utcnow()).total_seconds() <= 1.5
    got = api.call("GetWebhookEndpoint", notify_pb2.GetWebhookEndpointRequest(endpoint_id=eid))
    assert not got.HasField("secret")

    h.publish(h.notification())
    h.wait_final(eid)
    [during] = receiver.received()
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):  # a partner may verify with either while it switches
        Webhook(secret).verify(during.body, during.headers)

    time.sleep(max(0.0, (expires - utcnow()).total_seconds()) + 0.1)
    h.publish(h.notification())
    h.wait_final(eid, count=2)
    after = receiver.received()[1]
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    Webhook(new).verify(after.body, after.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(after.body, after.headers)


def test_delivery_and_its_attempt_log(api_factory: Callable[..., Api],
                                      receiver: Receiver) -> None:
    api = api_factory()
    big = "e" * 5000
    receiver.script("/hook", dict(status=500, body=big), dict(status=200, body="thanks"))
    eid = created_for(api, receiver).endpoint_id
    h = api.harness
    h.publish(h.notification("points.awarded"))
    [row] = h.wait_final(eid)

    delivery = api.call("GetWebhookDelivery",
                        notify_pb2.GetWebhookDeliveryRequest(delivery_id=row.id), "sk_reader_a")
    assert delivery.status == notify_pb2.DELIVERY_STATUS_SUCCEEDED
    assert (delivery.attempts, delivery.last_status_code, delivery.type) == (
        2, 200, "points.awarded")
    assert delivery.HasField("last_attempt_at") and not delivery.HasField("next_attempt_at")
    log = api.call("ListWebhookDeliveryAttempts",
                   notify_pb2.ListWebhookDeliveryAttemptsRequest(delivery_id=row.id),
                   "sk_reader_a").attempts
    assert [(a.attempt, a.status_code, a.error) for a in log] == [
        (1, 500, "http_status: 500"), (2, 200, "")]
    assert log[0].response_excerpt == "e" * 1024  # bounded, not the whole 5,000 bytes
    assert log[1].response_excerpt == "thanks"
    assert all(a.latency_ms >= 0 and a.HasField("started_at") for a in log)
    assert log[0].started_at.ToDatetime() <= log[1].started_at.ToDatetime()

    for method, request in [
        ("GetWebhookDelivery", notify_pb2.GetWebhookDeliveryRequest(delivery_id=row.id)),
        ("ListWebhookDeliveryAttempts",
         notify_pb2.ListWebhookDeliveryAttemptsRequest(delivery_id=row.id)),
        ("RetryWebhookDelivery", notify_pb2.RetryWebhookDeliveryRequest(delivery_id=row.id)),
    ]:
        code, _ = fails(lambda m=method, r=request: api.call(m, r, "sk_writer_b"))  # type: ignore[misc]
        assert code == grpc.StatusCode.NOT_FOUND, method
    bad = notify_pb2.GetWebhookDeliveryRequest(delivery_id="nope")
    assert fails(lambda: api.call("GetWebhookDelivery", bad)) == (
        grpc.StatusCode.INVALID_ARGUMENT, ["delivery_id"])


def test_manual_retry_redelivers_a_failed_delivery_and_refuses_the_others(
        api_factory: Callable[..., Api], receiver: Receiver) -> None:
    api = api_factory(webhook_retry_schedule=(0.0,), webhook_timeout_seconds=3.0)
    receiver.script("/hook", dict(status=500), dict(status=200, sleep=1.0), dict(status=200))
    eid = created_for(api, receiver).endpoint_id
    h = api.harness
    h.publish(h.notification())
    [failed] = h.wait_final(eid)
    assert failed.status == storage.FAILED

    retry = notify_pb2.RetryWebhookDeliveryRequest(delivery_id=failed.id)
    assert reason(lambda: api.call("RetryWebhookDelivery", retry, "sk_reader_a"))[0] == \
        grpc.StatusCode.PERMISSION_DENIED
    requeued = api.call("RetryWebhookDelivery", retry)
    assert requeued.status == notify_pb2.DELIVERY_STATUS_PENDING
    h.wait_for(lambda: len(receiver.received()) == 2, what="the retried attempt to start")
    # The receiver is still answering (1 s): the attempt is in flight.
    assert reason(lambda: api.call("RetryWebhookDelivery", retry)) == (
        grpc.StatusCode.ABORTED, "delivery_in_progress")
    [done] = h.wait_final(eid)
    assert done.status == storage.SUCCEEDED and done.attempts == 2
    assert reason(lambda: api.call("RetryWebhookDelivery", retry)) == (
        grpc.StatusCode.ABORTED, "delivery_already_succeeded")
    time.sleep(0.3)
    assert len(receiver.received()) == 2 and all(r.verified for r in receiver.received())


def test_retry_and_recovery_need_an_enabled_endpoint(
        api_factory: Callable[..., Api], receiver: Receiver) -> None:
    api = api_factory(webhook_retry_schedule=(0.0,))
    receiver.script("/hook", dict(status=410))
    eid = created_for(api, receiver).endpoint_id
    h = api.harness
    h.publish(h.notification())
    [failed] = h.wait_final(eid)
    retry = notify_pb2.RetryWebhookDeliveryRequest(delivery_id=failed.id)
    assert reason(lambda: api.call("RetryWebhookDelivery", retry)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "endpoint_disabled")
    recover = notify_pb2.RecoverWebhookEndpointRequest(endpoint_id=eid, since={"seconds": 0})
    assert reason(lambda: api.call("RecoverWebhookEndpoint", recover)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "endpoint_disabled")
    no_since = notify_pb2.RecoverWebhookEndpointRequest(endpoint_id=eid)
    assert fails(lambda: api.call("RecoverWebhookEndpoint", no_since)) == (
        grpc.StatusCode.INVALID_ARGUMENT, ["since"])


def test_recovery_requeues_failed_deliveries_since_a_time(
        api_factory: Callable[..., Api], receiver: Receiver) -> None:
    api = api_factory(webhook_retry_schedule=(0.0,))
    receiver.script("/hook", dict(status=503))
    eid = created_for(api, receiver).endpoint_id
    h = api.harness
    past = utcnow() - dt.timedelta(hours=2)
    old_publisher = Publisher(h.store, h.runtime.scheduler, h.settings, clock=lambda: past)
    old_publisher.publish([h.notification(fact_id="old-fact")])
    h.wait_final(eid)
    since = utcnow()
    h.publish(h.notification(fact_id="new-1"), h.notification(fact_id="new-2"))
    rows = h.wait_final(eid, count=3)
    assert all(r.status == storage.FAILED for r in rows)
    receiver.script("/hook", dict(status=200))

    request = notify_pb2.RecoverWebhookEndpointRequest(endpoint_id=eid)
    request.since.FromDatetime(since)
    recovered = api.call("RecoverWebhookEndpoint", request)
    by_message = {r.message_id: r for r in h.deliveries(eid)}
    new_ids = {by_message[message_id(h.tenant, f)].id for f in ("new-1", "new-2")}
    assert recovered.recovered_count == 2 and set(recovered.delivery_ids) == new_ids

    h.wait_for(lambda: sum(r.status == storage.SUCCEEDED for r in h.deliveries(eid)) == 2,
               what="recovered deliveries")
    after = {r.message_id: r for r in h.deliveries(eid)}
    assert after[message_id(h.tenant, "old-fact")].status == storage.FAILED
    assert all(after[message_id(h.tenant, f)].attempts == 2 for f in ("new-1", "new-2"))
    assert api.call("RecoverWebhookEndpoint", request).recovered_count == 0
