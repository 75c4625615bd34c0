"""NotifyService through a real gRPC server with the platform interceptor, on PostgreSQL.

Checks what a partner sees: the secret shown once, scopes (403), tenant isolation (404),
field-naming 400s and cursor pages of the delivery log.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
import pytest
from accrual.notify.v1 import notify_pb2, notify_pb2_grpc
from accrual_notify.domain.events import message_id
from accrual_platform import auth
from accrual_platform.grpc_server import ServiceInterceptor, build_server
from google.rpc import error_details_pb2
from grpc_status import rpc_status

if TYPE_CHECKING:
    from conftest import Harness

pytestmark = pytest.mark.integration
PUBLIC_URL = "https://93.184.216.34/webhooks"  # a public address literal: no DNS needed


@dataclass
class Api:
    stub: notify_pb2_grpc.NotifyServiceStub
    harness: Harness
    tenant_a: str
    tenant_b: str

    def call(self, method: str, request: object, key: str = "sk_writer_a") -> object:
        return getattr(self.stub, method)(request, metadata=[("x-api-key", key)], timeout=10)


@pytest.fixture
def api(harness_factory: Callable[..., Harness]) -> Iterator[Api]:
    h = harness_factory(worker=False, webhook_allow_private=False)
    tenant_a, tenant_b = f"a-{uuid.uuid4()}", f"b-{uuid.uuid4()}"
    keys = {
        "sk_writer_a": auth.Principal(tenant_a, "k1", frozenset({"webhooks:write"})),
        "sk_reader_a": auth.Principal(tenant_a, "k2", frozenset({"webhooks:read"})),
        "sk_events_a": auth.Principal(tenant_a, "k3", frozenset({"events:write"})),
        "sk_writer_b": auth.Principal(tenant_b, "k4", frozenset({"webhooks:write"})),
    }
    server, port = build_server([(h.runtime.service_full_name, h.runtime.register)],
                                "127.0.0.1:0", ServiceInterceptor(keys.get, "internal"))
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Api(notify_pb2_grpc.NotifyServiceStub(channel), h, tenant_a, tenant_b)
    finally:
        channel.close()
        server.stop(0)


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
