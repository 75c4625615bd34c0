"""Concurrent calls of one method sent upstream as one call of its ``coalesced_by`` method.

A burst of single-event submissions otherwise costs one gRPC call, one handler thread and one
small transaction per event in ingest, where a batch costs a twentieth of that per event.
Calls are never held back for a timer: the first call of an idle gateway goes up at once,
and the calls that arrive while ``max_in_flight`` carrying calls are upstream wait for the
next one, so the batch size follows the load.

One carrier at a time is the default: ingest's work on a carrier is mostly Python holding
its GIL, so a second concurrent carrier mostly halves both batches (twice the per-call cost)
and contends for that lock (bench/README.md, "Gateway coalescer"). Each call keeps its own
metadata (API key, request id) and gets its own answer, error and rate-limit headers,
exactly as if it had been sent alone (the upstream method admits each call by its own
metadata).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
from google.protobuf.message import Message
from google.rpc import status_pb2

_CODES = {code.value[0]: code for code in grpc.StatusCode}


class CallFailed(Exception):
    """One carried call's error, shaped like ``grpc.aio.AioRpcError`` (code, details,
    metadata), so the shim maps it to HTTP exactly as it maps an error of a call of its own."""

    def __init__(self, status: status_pb2.Status, trailing: Sequence[tuple[str, str]]) -> None:
        super().__init__(status.message)
        self._status = status
        self._trailing = tuple(trailing)

    def code(self) -> grpc.StatusCode:
        return _CODES.get(self._status.code, grpc.StatusCode.UNKNOWN)

    def details(self) -> str:
        return str(self._status.message)

    def initial_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return (*self._trailing, ("grpc-status-details-bin", self._status.SerializeToString()))


Send = Callable[[Message], Awaitable[Message]]


class Coalescer:
    """Sends the calls of one method through its coalescing method, ``max_calls`` at most per
    carrying call and ``max_in_flight`` carrying calls at a time."""

    def __init__(self, send: Send, request_class: type[Message], *, max_calls: int = 256,
                 max_in_flight: int = 1) -> None:
        self._send = send
        self._request_class = request_class
        self._max_calls = max_calls
        self._max_in_flight = max_in_flight
        self._pending: list[tuple[Message, dict[str, str], asyncio.Future[tuple[Message, list[tuple[str, str]]]]]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def call(self, request: Message, metadata: Sequence[tuple[str, str]]
                   ) -> tuple[Message, list[tuple[str, str]]]:
        """The answer to ``request`` and its trailing metadata; CallFailed (or the carrying
        call's grpc.aio.AioRpcError) when it fails."""
        future: asyncio.Future[tuple[Message, list[tuple[str, str]]]] = asyncio.get_running_loop().create_future()
        self._pending.append((request, dict(metadata), future))
        if self._in_flight < self._max_in_flight:
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:self._max_calls], self._pending[self._max_calls:]
                await self._carry(batch)
        finally:
            self._in_flight -= 1

    async def _carry(self, batch: list[tuple[Message, dict[str, str], asyncio.Future[Any]]]) -> None:
        request: Any = self._request_class()
        for message, metadata, _ in batch:
            call = request.calls.add()
            call.metadata.update(metadata)
            call.request.CopyFrom(message)
        try:
            response: Any = await self._send(request)
            results = list(response.results)
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for {len(batch)} calls")
        except Exception as exc:  # the carrying call failed: so did every call it carried
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (*_, future), result in zip(batch, results, strict=True):
            if future.done():  # the caller went away
                continue
            trailing = list(result.trailing_metadata.items())
            if result.WhichOneof("result") == "response":
                future.set_result((result.response, trailing))
            else:
                future.set_exception(CallFailed(result.status, trailing))
