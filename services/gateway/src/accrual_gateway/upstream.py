"""The services behind the routes: one gRPC channel per address, one callable per method,
and a coalescer per method that has a ``coalesced_by`` carrier."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from accrual_platform import clients
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from accrual_gateway import coalesce, routing

#: gRPC metadata the services send that the gateway passes on as HTTP headers
FORWARD_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "retry-after",
                   "preference-applied")
Metadata = Sequence[tuple[str, str]]
RawMetadata = Sequence[tuple[str, str | bytes]] | None


#: each of FORWARD_HEADERS as the HTTP header it becomes
_HEADER_NAMES = {k: "-".join(p.capitalize() for p in k.split("-")).replace("Ratelimit", "RateLimit")
                 for k in FORWARD_HEADERS}


def forwarded_headers(*mds: RawMetadata) -> dict[str, str]:
    """The rate-limit headers among the metadata of an answer, spelled as HTTP headers."""
    out: dict[str, str] = {}
    for md in mds:
        for k, v in md or ():
            name = _HEADER_NAMES.get(k)
            if name is not None:
                out[name] = str(v)
    return out


def _unary(channel: grpc.aio.Channel, method: Any) -> grpc.aio.UnaryUnaryMultiCallable:
    """The unary multicallable of ``method`` (a MethodDescriptor) on ``channel``."""
    return channel.unary_unary(
        f"/{method.containing_service.full_name}/{method.name}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=routing.response_class(method).FromString)


def _with_timeout(multicallable: grpc.aio.UnaryUnaryMultiCallable, timeout: float) -> coalesce.Send:
    async def send(message: Message) -> Message:
        reply: Message = await multicallable(message, timeout=timeout)
        return reply
    return send


class Upstream:
    """Calls a route's method on its service and answers (reply, headers to forward); raises
    grpc.aio.AioRpcError or coalesce.CallFailed. Channels are opened on first use, because
    grpc.aio channels belong to the serving event loop."""

    def __init__(self, addresses: Mapping[str, str], routes: Sequence[routing.Route], *,
                 call_timeout: float, coalesce_calls: bool) -> None:
        self._addresses = dict(addresses)
        self._routes = list(routes)
        self._timeout = call_timeout
        self._coalesce = coalesce_calls
        self.channels: dict[str, grpc.aio.Channel] = {}
        self._callables: dict[str, grpc.aio.UnaryUnaryMultiCallable] = {}
        self._coalescers: dict[str, coalesce.Coalescer] = {}

    def connect(self) -> None:
        by_address: dict[str, grpc.aio.Channel] = {}
        for name, address in self._addresses.items():
            if address not in by_address:
                where, options = clients.target(address)
                by_address[address] = grpc.aio.insecure_channel(where, options=[
                    ("grpc.max_receive_message_length", 64 * 1024 * 1024), *options])
            self.channels[name] = by_address[address]
        for r in self._routes:
            if r.full_method in self._callables:
                continue
            ch = self.channels[r.method.containing_service.full_name]
            self._callables[r.full_method] = _unary(ch, r.method)
            carrier = routing.coalesced_by(r.method)
            if carrier is not None and self._coalesce:
                self._coalescers[r.full_method] = coalesce.Coalescer(
                    _with_timeout(_unary(ch, carrier), self._timeout), routing.request_class(carrier))

    async def call(self, route: routing.Route, message: Message, metadata: Metadata, *,
                   wait_seconds: int = 0) -> tuple[Message, dict[str, str]]:
        """``wait_seconds``: the call may wait that long for an outcome (``Prefer: wait``), so
        it goes alone, not coalesced, and its deadline is that much longer."""
        if not self._callables:
            self.connect()
        coalescer = self._coalescers.get(route.full_method)
        if coalescer is not None and not wait_seconds:
            reply, trailing = await coalescer.call(message, metadata)
            return reply, forwarded_headers(trailing)
        call = self._callables[route.full_method](message, metadata=metadata,
                                                  timeout=self._timeout + wait_seconds)
        reply = await call
        return reply, forwarded_headers(await call.initial_metadata(), await call.trailing_metadata())

    async def failures(self) -> dict[str, str]:
        """{service: why it is not serving} for each service that does not answer its
        health check as SERVING."""
        if not self.channels:
            self.connect()
        failures: dict[str, str] = {}
        for name, ch in self.channels.items():
            try:
                resp = await health_pb2_grpc.HealthStub(ch).Check(
                    health_pb2.HealthCheckRequest(service=name), timeout=2)
                if resp.status != health_pb2.HealthCheckResponse.SERVING:
                    failures[name] = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
            except grpc.aio.AioRpcError as exc:
                failures[name] = exc.code().name
        return failures
