"""NotifyService servicer."""

from __future__ import annotations

from typing import Any

import grpc
import sqlalchemy as sa

from accrual.notify.v1 import notify_pb2, notify_pb2_grpc
from accrual_notify.service import NotifyService
from accrual_platform import auth


def endpoint_message(row: sa.Row[Any], secret: str | None = None) -> notify_pb2.WebhookEndpoint:
    msg = notify_pb2.WebhookEndpoint(
        endpoint_id=row.id, url=row.url, enabled_events=list(row.enabled_events),
        description=row.description,
        status=notify_pb2.EndpointStatus.Value(f"ENDPOINT_STATUS_{row.status}"),
        disabled_reason=row.disabled_reason)
    if secret:
        msg.secret = secret
    msg.created_at.FromDatetime(row.created_at)
    return msg


class NotifyServicer(notify_pb2_grpc.NotifyServiceServicer):
    def __init__(self, service: NotifyService) -> None:
        self._svc = service

    def CreateWebhookEndpoint(self, request: notify_pb2.CreateWebhookEndpointRequest,
                              context: grpc.ServicerContext) -> notify_pb2.WebhookEndpoint:
        row, secret = self._svc.create_endpoint(auth.tenant_id(), request.url,
                                                list(request.enabled_events), request.description)
        return endpoint_message(row, secret)

    def ListWebhookEndpoints(self, request: notify_pb2.ListWebhookEndpointsRequest,
                             context: grpc.ServicerContext) -> notify_pb2.ListWebhookEndpointsResponse:
        return notify_pb2.ListWebhookEndpointsResponse(
            endpoints=[endpoint_message(r) for r in self._svc.list_endpoints(auth.tenant_id())])

    def GetWebhookEndpoint(self, request: notify_pb2.GetWebhookEndpointRequest,
                           context: grpc.ServicerContext) -> notify_pb2.WebhookEndpoint:
        return endpoint_message(self._svc.get_endpoint(auth.tenant_id(), request.endpoint_id))

    def DeleteWebhookEndpoint(self, request: notify_pb2.DeleteWebhookEndpointRequest,
                              context: grpc.ServicerContext) -> notify_pb2.DeleteWebhookEndpointResponse:
        self._svc.delete_endpoint(auth.tenant_id(), request.endpoint_id)
        return notify_pb2.DeleteWebhookEndpointResponse()

    def ListWebhookDeliveries(self, request: notify_pb2.ListWebhookDeliveriesRequest,
                              context: grpc.ServicerContext) -> notify_pb2.ListWebhookDeliveriesResponse:
        rows, token = self._svc.list_deliveries(auth.tenant_id(), request.endpoint_id,
                                                request.page_size, request.page_token)
        resp = notify_pb2.ListWebhookDeliveriesResponse(next_page_token=token)
        for r in rows:
            d = resp.deliveries.add(
                delivery_id=r.id, endpoint_id=r.endpoint_id, message_id=r.message_id, type=r.type,
                status=notify_pb2.DeliveryStatus.Value(f"DELIVERY_STATUS_{r.status}"),
                attempts=r.attempts, last_status_code=r.last_status_code,
                last_latency_ms=r.last_latency_ms, last_response_excerpt=r.last_response_excerpt,
                last_error=r.last_error)
            if r.next_attempt_at:
                d.next_attempt_at.FromDatetime(r.next_attempt_at)
            d.created_at.FromDatetime(r.created_at)
        return resp
