"""Log context (SPEC 8): service, request id and tenant bound per RPC; service, message id,
actor, tenant and event bound per queue message; the process's service on every other line."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import dramatiq
import grpc
import pytest
import structlog
from accrual.messages.v1 import messages_pb2
from accrual.notify.v1 import notify_pb2, notify_pb2_grpc
from accrual_platform import auth, queue
from accrual_platform.grpc_server import ServiceInterceptor, build_server, service_of
from accrual_platform.logging import bind_subject, configure_logging
from structlog.testing import capture_logs

log = structlog.get_logger("test.context")
KEY = "key-of-tenant-a"


class Endpoints(notify_pb2_grpc.NotifyServiceServicer):  # type: ignore[misc]
    def GetWebhookEndpoint(self, request: notify_pb2.GetWebhookEndpointRequest,
                           context: grpc.ServicerContext) -> notify_pb2.WebhookEndpoint:
        log.info("probe_rpc")
        return notify_pb2.WebhookEndpoint(endpoint_id=request.endpoint_id)


@pytest.fixture
def stub() -> Iterator[notify_pb2_grpc.NotifyServiceStub]:
    principal = auth.Principal(tenant_id="tenant-a", key_id="k1", scopes=frozenset({"webhooks:read"}))
    interceptor = ServiceInterceptor(lambda key: principal if key == KEY else None, "internal", limiter=None)
    server, port = build_server(
        [("accrual.notify.v1.NotifyService",
          lambda s: notify_pb2_grpc.add_NotifyServiceServicer_to_server(Endpoints(), s))],
        "127.0.0.1:0", interceptor, max_workers=2)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield notify_pb2_grpc.NotifyServiceStub(channel)
    channel.close()
    server.stop(None)


def test_an_rpcs_lines_carry_service_request_and_tenant(stub: notify_pb2_grpc.NotifyServiceStub) -> None:
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        for request_id in ("req-1", "req-2"):
            stub.GetWebhookEndpoint(notify_pb2.GetWebhookEndpointRequest(endpoint_id="e"),
                                    metadata=[("x-api-key", KEY), ("x-request-id", request_id)])
    lines = [e for e in logs if e["event"] in ("probe_rpc", "rpc_done")]
    assert [(e["event"], e["request_id"]) for e in lines] == [
        ("probe_rpc", "req-1"), ("rpc_done", "req-1"), ("probe_rpc", "req-2"), ("rpc_done", "req-2")]
    for line in lines:
        assert (line["service"], line["tenant_id"]) == ("notify", "tenant-a")
        assert line["rpc"] == "/accrual.notify.v1.NotifyService/GetWebhookEndpoint"


def test_service_of_a_method() -> None:
    assert service_of("/accrual.rules.v1.RulesService/GetRule") == "rules"
    assert service_of("/grpc.health.v1.Health/Check") == "grpc.health.v1.Health"


def test_an_actors_lines_carry_service_message_tenant_and_event() -> None:
    broker = queue.make_broker("stub://")

    def evaluate_events(payload: str) -> None:
        msg = queue.decode(payload, messages_pb2.EventsAccepted)
        bind_subject(tenant_ids=[msg.tenant_id], event_ids=msg.event_ids)
        log.info("probe_actor")

    queue.declare_actor(broker, evaluate_events, queue=queue.RULES_QUEUE, name="evaluate_events")
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=20)
    worker.start()
    try:
        with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
            queue.enqueue(broker, queue.RULES_QUEUE, "evaluate_events",
                          messages_pb2.EventsAccepted(tenant_id="tenant-a", event_ids=["e1"]))
            queue.enqueue(broker, queue.RULES_QUEUE, "evaluate_events",
                          messages_pb2.EventsAccepted(tenant_id="tenant-b", event_ids=["e2", "e3"]))
            broker.join(queue.RULES_QUEUE)
    finally:
        worker.stop()
        broker.close()
    one, batch = [e for e in logs if e["event"] == "probe_actor"]
    for line, tenant in ((one, "tenant-a"), (batch, "tenant-b")):
        assert (line["service"], line["actor"], line["tenant_id"]) == ("rules", "evaluate_events", tenant)
    assert one["event_id"] == "e1"
    assert "event_id" not in batch  # a batch names no single event, nor the previous message's
    assert one["message_id"] != batch["message_id"]


def test_bind_subject_binds_only_what_is_one() -> None:
    structlog.contextvars.clear_contextvars()
    bind_subject(tenant_ids=["t", "t"], event_ids=["e1", "e2"])
    assert structlog.contextvars.get_contextvars() == {"tenant_id": "t"}
    structlog.contextvars.clear_contextvars()


def test_the_process_service_survives_cleared_contexts_and_new_threads() -> None:
    configure_logging("worker-rules", fmt="json", level="INFO")
    stream = io.StringIO()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    structlog.contextvars.clear_contextvars()
    log.info("after_clear")
    thread = threading.Thread(target=lambda: log.info("in_a_new_thread"))
    thread.start()
    thread.join()
    structlog.contextvars.bind_contextvars(service="rules")
    log.info("bound_service_wins")
    structlog.contextvars.clear_contextvars()
    lines: dict[str, Any] = {d["event"]: d for d in map(json.loads, stream.getvalue().splitlines())}
    assert lines["after_clear"]["service"] == "worker-rules"
    assert lines["in_a_new_thread"]["service"] == "worker-rules"
    assert lines["bound_service_wins"]["service"] == "rules"
