"""The README's walkthrough over gRPC with the generated stubs: create a program and a rule,
submit a purchase, wait for its evaluation and read the participant's balance.

    make grpc-walkthrough                      # against `make run`, with its admin key
    make grpc-walkthrough ARGS="--address host:port --key sk_..."

The key comes from --key, else ACCRUAL_API_KEY, else var/admin_key (the embedded suite's,
in ACCRUAL_VAR_DIR when that is set); the address from --address, else GRPC_HOST and
GRPC_PORT as `accrual run` reads them (default 127.0.0.1:50051).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time
import uuid

import grpc
from accrual.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from accrual.rules.v1 import rules_pb2, rules_pb2_grpc

FINISHED = (ingest_pb2.EVENT_STATUS_COMPLETED, ingest_pb2.EVENT_STATUS_FAILED)


def default_address() -> str:
    host = os.environ.get("GRPC_HOST", "127.0.0.1")
    # a server listening on every interface is reached on loopback
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}.get(host, host)
    return f"{host}:{os.environ.get('GRPC_PORT', '50051')}"


def default_key() -> str:
    if os.environ.get("ACCRUAL_API_KEY"):
        return os.environ["ACCRUAL_API_KEY"]
    path = pathlib.Path(os.environ.get("ACCRUAL_VAR_DIR", "var")) / "admin_key"
    if not path.exists():
        sys.exit(f"no --key, no ACCRUAL_API_KEY and no {path}: start the suite with `make run` first")
    return path.read_text().strip()


def walkthrough(address: str, key: str, timeout: float = 30) -> str:
    """Run the walkthrough, printing each step; returns the balance's available points."""
    md = [("x-api-key", key)]
    with grpc.insecure_channel(address) as ch:
        rules = rules_pb2_grpc.RulesServiceStub(ch)
        ingest = ingest_pb2_grpc.IngestServiceStub(ch)
        program = rules.CreateProgram(rules_pb2.CreateProgramRequest(name="Demo"), metadata=md)
        print(f"program {program.program_id}")
        rule = rules.CreateRule(rules_pb2.CreateRuleRequest(
            program_id=program.program_id, name="1 point per dollar", event_type="purchase",
            formula="properties.amount * 1"), metadata=md)
        print(f"rule {rule.rule_id}: {rule.formula}")
        event = ingest.SubmitEvent(ingest_pb2.SubmitEventRequest(
            program_id=program.program_id, idempotency_key=f"order-{uuid.uuid4()}",
            external_id="user_abc123", event_type="purchase", event_data={"amount": 125}), metadata=md)
        print(f"event {event.event_id}: {ingest_pb2.EventStatus.Name(event.status)}")
        deadline = time.monotonic() + timeout
        while event.status not in FINISHED:
            if time.monotonic() > deadline:
                sys.exit(f"event {event.event_id} still {ingest_pb2.EventStatus.Name(event.status)} "
                         f"after {timeout:g}s")
            time.sleep(0.2)
            event = ingest.GetEvent(ingest_pb2.GetEventRequest(event_id=event.event_id), metadata=md)
        print(f"event {event.event_id}: {ingest_pb2.EventStatus.Name(event.status)}, "
              f"participant {event.participant_id}")
        if event.status != ingest_pb2.EVENT_STATUS_COMPLETED:
            sys.exit(f"event failed: {event.error_code} {event.error_message}")
        balance = rules.GetBalance(rules_pb2.GetBalanceRequest(
            program_id=program.program_id, participant_id=event.participant_id), metadata=md)
        print(f"balance: {balance.available} points available")
        return str(balance.available)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default=default_address(), help="gRPC address of the suite")
    parser.add_argument("--key", default="", help="API key with programs:write and events:write")
    ns = parser.parse_args()
    try:
        walkthrough(ns.address, ns.key or default_key())
    except grpc.RpcError as exc:
        sys.exit(f"{exc.code().name}: {exc.details()}")


if __name__ == "__main__":
    main()
