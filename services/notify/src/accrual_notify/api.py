"""NotifyService over gRPC: requests in, records out, nothing else.

Authentication and scopes are checked by the platform interceptor from the contract's
``required_scope`` options; errors raised below become rich statuses there.
"""

from __future__ import annotations

import grpc
from accrual.notify.v1 import notify_pb2, notify_pb2_grpc
from accrual_platform import auth, dates, errors
from accrual_platform.ids import require_uuid

from accrual_notify.delivery import Deliverer
from accrual_notify.endpoints import Endpoints
from accrual_notify.storage import Attempt, Delivery, Endpoint


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
    msg.updated_at.FromDatetime(endpoint.updated_at or endpoint.created_at)
    if endpoint.previous_secret_expires_at is not None:
        msg.previous_secret_expires_at.FromDatetime(endpoint.previous_secret_expires_at)
    if endpoint.failing_since is not None:
        msg.failing_since.FromDatetime(endpoint.failing_since)
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
    if delivery.last_attempt_at is not None:
        msg.last_attempt_at.FromDatetime(delivery.last_attempt_at)
    return msg


def attempt_message(attempt: Attempt) -> notify_pb2.WebhookDeliveryAttempt:
    msg = notify_pb2.WebhookDeliveryAttempt(
        attempt=attempt.attempt, status_code=attempt.status_code, latency_ms=attempt.latency_ms,
        response_excerpt=attempt.response_excerpt, error=attempt.error)
    msg.started_at.FromDatetime(attempt.started_at)
    return msg


_STATUS_NAMES = {notify_pb2.ENDPOINT_STATUS_ENABLED: "ENABLED",
                 notify_pb2.ENDPOINT_STATUS_DISABLED: "DISABLED"}


class NotifyServicer(notify_pb2_grpc.NotifyServiceServicer):  # type: ignore[misc]
    def __init__(self, endpoints: Endpoints, deliverer: Deliverer) -> None:
        self._endpoints = endpoints
        self._deliverer = deliverer

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

    def UpdateWebhookEndpoint(self, request: notify_pb2.UpdateWebhookEndpointRequest,
                              context: grpc.ServicerContext) -> notify_pb2.WebhookEndpoint:
        status: str | None = None
        if request.HasField("status"):
            status = _STATUS_NAMES.get(request.status)
            if status is None:
                raise errors.InvalidArgument.field("status", "must be ENABLED or DISABLED")
        endpoint = self._endpoints.update(
            _tenant(), request.endpoint_id,
            url=request.url if request.HasField("url") else None,
            enabled_events=list(request.enabled_events) or None,
            description=request.description if request.HasField("description") else None,
            status=status)
        return endpoint_message(endpoint)

    def RotateWebhookEndpointSecret(
            self, request: notify_pb2.RotateWebhookEndpointSecretRequest,
            context: grpc.ServicerContext) -> notify_pb2.WebhookEndpoint:
        endpoint, secret = self._endpoints.rotate_secret(_tenant(), request.endpoint_id)
        return endpoint_message(endpoint, secret)

    def RecoverWebhookEndpoint(
            self, request: notify_pb2.RecoverWebhookEndpointRequest,
            context: grpc.ServicerContext) -> notify_pb2.RecoverWebhookEndpointResponse:
        tenant = _tenant()
        endpoint_id = require_uuid(request.endpoint_id, "endpoint_id")
        since = dates.timestamp_field(request, "since")
        if since is None:
            raise errors.InvalidArgument.field("since", "is required (RFC 3339 timestamp)")
        ids = self._deliverer.recover(tenant, endpoint_id, since)
        return notify_pb2.RecoverWebhookEndpointResponse(recovered_count=len(ids),
                                                         delivery_ids=ids)

    def GetWebhookDelivery(self, request: notify_pb2.GetWebhookDeliveryRequest,
                           context: grpc.ServicerContext) -> notify_pb2.WebhookDelivery:
        return delivery_message(self._endpoints.delivery(_tenant(), request.delivery_id))

    def ListWebhookDeliveryAttempts(
            self, request: notify_pb2.ListWebhookDeliveryAttemptsRequest,
            context: grpc.ServicerContext) -> notify_pb2.ListWebhookDeliveryAttemptsResponse:
        attempts = self._endpoints.attempts(_tenant(), request.delivery_id)
        return notify_pb2.ListWebhookDeliveryAttemptsResponse(
            attempts=[attempt_message(a) for a in attempts])

    def RetryWebhookDelivery(self, request: notify_pb2.RetryWebhookDeliveryRequest,
                             context: grpc.ServicerContext) -> notify_pb2.WebhookDelivery:
        tenant = _tenant()
        delivery_id = require_uuid(request.delivery_id, "delivery_id")
        return delivery_message(self._deliverer.retry_by_hand(tenant, delivery_id))
