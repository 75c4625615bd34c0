"""Peer addresses (one service, or replicas of it reached round robin), and the program
lookup that identity and ingest make of the rules service."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from accrual.rules.v1 import rules_pb2, rules_pb2_grpc
from accrual_platform import clients, errors
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


class _Rules(rules_pb2_grpc.RulesServiceServicer):  # type: ignore[misc]
    """GetProgram of a rules service that has ``programs`` (program id -> tenant), counting
    calls and recording the metadata each came with."""

    def __init__(self, programs: dict[str, str]) -> None:
        self.programs = programs
        self.calls: list[dict[str, str]] = []
        self.failing: grpc.StatusCode | None = None

    def GetProgram(self, request: rules_pb2.GetProgramRequest, context: grpc.ServicerContext) -> rules_pb2.Program:
        md = dict(context.invocation_metadata())
        self.calls.append(md)
        if self.failing is not None:
            context.abort(self.failing, "cannot answer")
        if md.get("x-internal-token") != "tok":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid internal token")
        if self.programs.get(request.program_id) != md.get("x-tenant-id"):
            context.abort(grpc.StatusCode.NOT_FOUND, "program not found")
        return rules_pb2.Program(program_id=request.program_id)


@pytest.fixture
def rules() -> Iterator[tuple[_Rules, str]]:
    servicer, port = _Rules({}), free_port()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    rules_pb2_grpc.add_RulesServiceServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(None)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_programs_are_asked_of_rules_with_the_tenant_and_cached(rules: tuple[_Rules, str]) -> None:
    servicer, address = rules
    mine, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    servicer.programs.update({mine: "tenant-a", theirs: "tenant-b"})
    clock = _Clock()
    directory = clients.ProgramDirectory(lambda: clients.channel(address), "tok", ttl=300, negative_ttl=2,
                                         clock=clock)

    assert directory("tenant-a", mine) is True
    assert directory("tenant-a", theirs) is False  # another tenant's: as if it did not exist
    assert directory("tenant-b", theirs) is True
    assert [(c["x-tenant-id"], c["x-internal-token"]) for c in servicer.calls] == [
        ("tenant-a", "tok"), ("tenant-a", "tok"), ("tenant-b", "tok")]

    # a program found is remembered for minutes, a missing one for seconds
    later = str(uuid.uuid4())
    assert directory("tenant-a", later) is False
    servicer.programs[later] = "tenant-a"
    clock.now += 1
    assert directory("tenant-a", mine) is True and directory("tenant-a", later) is False
    assert len(servicer.calls) == 4
    clock.now += 2
    assert directory("tenant-a", later) is True
    assert len(servicer.calls) == 5
    clock.now += 290
    assert directory("tenant-a", mine) is True and directory("tenant-a", later) is True
    assert len(servicer.calls) == 5
    clock.now += 20
    assert directory("tenant-a", mine) is True
    assert len(servicer.calls) == 6


def test_a_rules_service_that_cannot_answer_is_a_503_never_a_pass(rules: tuple[_Rules, str]) -> None:
    servicer, address = rules
    program = str(uuid.uuid4())
    servicer.programs[program] = "tenant-a"
    down = clients.ProgramDirectory(lambda: clients.channel(f"127.0.0.1:{free_port()}"), "tok", timeout=2)
    with pytest.raises(errors.Unavailable) as info:
        down("tenant-a", program)
    assert info.value.reason == "programs_unavailable"
    misconfigured = clients.ProgramDirectory(lambda: clients.channel(address), "wrong-token")
    with pytest.raises(errors.Unavailable):
        misconfigured("tenant-a", program)
    directory = clients.ProgramDirectory(lambda: clients.channel(address), "tok")
    for code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.DEADLINE_EXCEEDED):
        servicer.failing = code
        with pytest.raises(errors.Unavailable):
            directory("tenant-a", program)
    # a failure is not remembered: the next call asks again and gets the answer
    servicer.failing = None
    assert directory("tenant-a", program) is True


def test_require_program_raises_the_rules_services_404() -> None:
    clients.require_program(lambda tenant, program: True, "t", "p")
    with pytest.raises(errors.NotFound) as info:
        clients.require_program(lambda tenant, program: False, "t", "0b6e8f3c-0000-4000-8000-000000000000")
    assert info.value.reason == "program_not_found"
    assert "0b6e8f3c-0000-4000-8000-000000000000" in info.value.message
