"""Peer addresses: one service, or replicas of it reached round robin."""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest
from accrual_platform import clients
from accrual_platform.testing import free_port
from grpc_health.v1 import health, health_pb2, health_pb2_grpc


def test_one_address_is_the_target_itself() -> None:
    assert clients.target("127.0.0.1:50062") == ("127.0.0.1:50062", [])
    assert clients.target("ingest.internal:50062") == ("ingest.internal:50062", [])


def test_replicas_are_an_ipv4_target_with_round_robin() -> None:
    where, options = clients.target("127.0.0.1:50062, 127.0.0.1:50065")
    assert where == "ipv4:127.0.0.1:50062,127.0.0.1:50065"
    assert ("grpc.lb_policy_name", "round_robin") in options


@pytest.mark.parametrize("address", ["ingest-a:1,ingest-b:2", "127.0.0.1:1,127.0.0.1", "127.0.0.1:1,127.0.0.1:x"])
def test_a_replica_list_names_ipv4_host_and_port(address: str) -> None:
    with pytest.raises(ValueError, match="replica address"):
        clients.target(address)


class _Counting(health.HealthServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def Check(self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext
              ) -> health_pb2.HealthCheckResponse:
        self.calls += 1
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


def test_calls_to_replicas_are_spread_over_all_of_them() -> None:
    servers, servicers, ports = [], [], []
    for _ in range(2):
        servicer, port = _Counting(), free_port()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        servers.append(server)
        servicers.append(servicer)
        ports.append(port)
    try:
        with clients.channel(",".join(f"127.0.0.1:{p}" for p in ports)) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            for _ in range(20):
                stub.Check(health_pb2.HealthCheckRequest(), timeout=5, wait_for_ready=True)
        calls = [s.calls for s in servicers]
        assert sum(calls) == 20 and min(calls) >= 5, calls
    finally:
        for server in servers:
            server.stop(None)
