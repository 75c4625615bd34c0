"""NotifyService over gRPC: requests in, records out, nothing else.

Authentication and scopes are checked by the platform interceptor from the contract's
``required_scope`` options; errors raised below become rich statuses there.
"""

from __future__ import annotations

import grpc
from accrual.notify.v1 import notify_pb2, notify_pb2_grpc
from accrual_platform import auth, errors

from accrual_notify.endpoints import Endpoints
from accrual_notify.storage import Delivery, Endpoint


def _tenant() -> str:
    tenant: str = auth.tenant_id()
    if not tenant:
        raise errors.InvalidArgument("the call carries no tenant", reason="tenant_required")
    return tenant


def endpoint_message(endpoint: Endpoint, secret: str | None = None) -> notify_pb2.WebhookEndpoint:
    msg = notify_pb2.WebhookEndpoint(
        endpoint_id=endpoint.id, url=endpoint.url, enabled_events=list(endpoint.enabled_events),
        description=endpoint.description,
        status=notify_pb2.EndpointStatus.Value(f"ENDPOINT_STATUS_{endpoint.status}"),
        disabled_reason=endpoint.disabled_reason)
    if secret is not None:
        msg.secret = secret
    msg.created_at.FromDatetime(endpoint.created_at)
    return msg


def delivery_message(delivery: Delivery) -> notify_pb2.WebhookDelivery:
    msg = notify_pb2.WebhookDelivery(
        delivery_id=delivery.id, endpoint_id=delivery.endpoint_id,
        message_id=delivery.message_id, type=delivery.type,
        status=notify_pb2.DeliveryStatus.Value(f"DELIVERY_STATUS_{delivery.status}"),
        attempts=delivery.attempts, last_status_code=delivery.last_status_code,
        last_latency_ms=delivery.last_latency_ms,
        last_response_excerpt=delivery.last_response_excerpt, last_error=delivery.last_error)
    if delivery.next_attempt_at is not None:
        msg.next_attempt_at.FromDatetime(delivery.next_attempt_at)
    msg.created_at.FromDatetime(delivery.created_at)
    return msg


class NotifyServicer(notify_pb2_grpc.NotifyServiceServicer):  # type: ignore[misc]
    def __init__(self, endpoints: Endpoints) -> None:
        self._endpoints = endpoints

    def CreateWebhookEndpoint(self, request: notify_pb2.CreateWebhookEndpointRequest,
                              context: grpc.ServicerContext) -> notify_pb2.WebhookEndpoint:
        endpoint, secret = self._endpoints.create(
            _tenant(), request.url, list(request.enabled_events), request.description)
        return endpoint_message(endpoint, secret)

    def ListWebhookEndpoints(
            self, request: notify_pb2.ListWebhookEndpointsRequest,
            context: grpc.ServicerContext) -> notify_pb2.ListWebhookEndpointsResponse:
        return notify_pb2.ListWebhookEndpointsResponse(
            endpoints=[endpoint_message(e) for e in self._endpoints.list_endpoints(_tenant())])

    def GetWebhookEndpoint(self, request: notify_pb2.GetWebhookEndpointRequest,
                           context: grpc.ServicerContext) -> notify_pb2.WebhookEndpoint:
        return endpoint_message(self._endpoints.get(_tenant(), request.endpoint_id))

    def DeleteWebhookEndpoint(
            self, request: notify_pb2.DeleteWebhookEndpointRequest,
            context: grpc.ServicerContext) -> notify_pb2.DeleteWebhookEndpointResponse:
        self._endpoints.delete(_tenant(), request.endpoint_id)
        return notify_pb2.DeleteWebhookEndpointResponse()

    def ListWebhookDeliveries(
            self, request: notify_pb2.ListWebhookDeliveriesRequest,
            context: grpc.ServicerContext) -> notify_pb2.ListWebhookDeliveriesResponse:
        rows, token = self._endpoints.deliveries(
            _tenant(), request.endpoint_id, request.page_size, request.page_token)
        return notify_pb2.ListWebhookDeliveriesResponse(
            deliveries=[delivery_message(r) for r in rows], next_page_token=token)
