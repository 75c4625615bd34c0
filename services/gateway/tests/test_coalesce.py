"""The gateway's coalescer: calls that arrive while carrying calls are upstream travel
together, each with its own metadata, and each gets its own answer or error."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from accrual.ingest.v1 import ingest_pb2
from accrual_gateway.coalesce import CallFailed, Coalescer
from google.rpc import code_pb2, status_pb2


class Upstream:
    """A fake CoalescedSubmitEvents: records what each carrying call carried, holds it until
    released, answers keys starting with "bad" with INVALID_ARGUMENT."""

    def __init__(self) -> None:
        self.carried: list[list[tuple[str, str]]] = []
        self.release = asyncio.Event()

    async def send(self, request: Any) -> ingest_pb2.CoalescedSubmitEventsResponse:
        self.carried.append([(c.request.idempotency_key, c.metadata["x-api-key"]) for c in request.calls])
        await self.release.wait()
        response = ingest_pb2.CoalescedSubmitEventsResponse()
        for call in request.calls:
            result = response.results.add()
            result.trailing_metadata["x-ratelimit-remaining"] = call.metadata["x-api-key"][-1]
            if call.request.idempotency_key.startswith("bad"):
                result.status.CopyFrom(status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="bad key"))
            else:
                result.response.idempotency_key = call.request.idempotency_key
        return response


def submit(coalescer: Coalescer, key: str, api_key: str) -> asyncio.Task[Any]:
    return asyncio.get_running_loop().create_task(coalescer.call(
        ingest_pb2.SubmitEventRequest(idempotency_key=key), [("x-api-key", api_key)]))


async def _test_calls_arriving_while_upstream_is_busy_travel_together() -> None:
    up = Upstream()
    coalescer = Coalescer(up.send, ingest_pb2.CoalescedSubmitEventsRequest, max_in_flight=2)
    first = submit(coalescer, "k-first", "sk_1")
    await asyncio.sleep(0.01)  # an idle gateway sends the first call at once, alone
    assert up.carried == [[("k-first", "sk_1")]]
    second = submit(coalescer, "k-second", "sk_2")
    await asyncio.sleep(0.01)  # a second carrier may go up beside the first
    burst = [submit(coalescer, f"k{i}" if i != 7 else "bad-7", f"sk_{i % 10}") for i in range(40)]
    await asyncio.sleep(0.01)
    assert len(up.carried) == 2  # the burst waits for a carrier to come back
    up.release.set()
    answers = await asyncio.gather(first, second, *burst, return_exceptions=True)
    assert [len(c) for c in up.carried] == [1, 1, 40]
    assert up.carried[2][7] == ("bad-7", "sk_7")  # each call kept its own metadata
    for i, answer in enumerate(answers[2:]):
        if i == 7:
            assert isinstance(answer, CallFailed)
            assert answer.code() == grpc.StatusCode.INVALID_ARGUMENT and answer.details() == "bad key"
            assert dict(answer.trailing_metadata())["x-ratelimit-remaining"] == "7"
            status = status_pb2.Status.FromString(dict(answer.trailing_metadata())["grpc-status-details-bin"])
            assert status.code == code_pb2.INVALID_ARGUMENT
        else:
            reply, trailing = answer
            assert reply.idempotency_key == f"k{i}" and trailing == [("x-ratelimit-remaining", str(i % 10))]


async def _test_a_failed_carrier_fails_every_call_it_carried_and_nothing_else() -> None:
    calls = 0

    async def send(request: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("upstream gone")
        up = Upstream()
        up.release.set()
        return await up.send(request)

    coalescer = Coalescer(send, ingest_pb2.CoalescedSubmitEventsRequest, max_in_flight=1)
    doomed = [submit(coalescer, f"k{i}", "sk_1") for i in range(3)]
    outcomes = await asyncio.gather(*doomed, return_exceptions=True)
    assert all(isinstance(o, ConnectionError) for o in outcomes)
    reply, _ = await coalescer.call(ingest_pb2.SubmitEventRequest(idempotency_key="later"), [("x-api-key", "sk_1")])
    assert reply.idempotency_key == "later"


async def _test_a_caller_that_goes_away_does_not_disturb_the_others() -> None:
    up = Upstream()
    coalescer = Coalescer(up.send, ingest_pb2.CoalescedSubmitEventsRequest, max_in_flight=1)
    leaving, staying = submit(coalescer, "k-leaving", "sk_1"), submit(coalescer, "k-staying", "sk_2")
    await asyncio.sleep(0.01)
    leaving.cancel()
    up.release.set()
    reply, _ = await staying
    assert reply.idempotency_key == "k-staying"
    with pytest.raises(asyncio.CancelledError):
        await leaving


async def _test_a_short_answer_fails_the_calls_instead_of_mismatching_them() -> None:
    async def send(request: Any) -> Any:
        return ingest_pb2.CoalescedSubmitEventsResponse()

    coalescer = Coalescer(send, ingest_pb2.CoalescedSubmitEventsRequest)
    with pytest.raises(RuntimeError):
        await coalescer.call(ingest_pb2.SubmitEventRequest(idempotency_key="k"), [("x-api-key", "sk_1")])


def test_calls_arriving_while_upstream_is_busy_travel_together() -> None:
    asyncio.run(_test_calls_arriving_while_upstream_is_busy_travel_together())


def test_a_failed_carrier_fails_every_call_it_carried_and_nothing_else() -> None:
    asyncio.run(_test_a_failed_carrier_fails_every_call_it_carried_and_nothing_else())


def test_a_caller_that_goes_away_does_not_disturb_the_others() -> None:
    asyncio.run(_test_a_caller_that_goes_away_does_not_disturb_the_others())


def test_a_short_answer_fails_the_calls_instead_of_mismatching_them() -> None:
    asyncio.run(_test_a_short_answer_fails_the_calls_instead_of_mismatching_them())
