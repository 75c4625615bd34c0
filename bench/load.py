"""Load generators: wrk (closed loop, max throughput), an asyncio open-loop client (fixed
offered rate, latency percentiles), a grpc.aio client and a batch client.

Each Python generator runs in processes of its own so it does not share an interpreter
(and a GIL) with what it measures; all of them share the machine's cores with the suite,
which the report states."""

from __future__ import annotations

import asyncio
import functools
import json
import multiprocessing as mp
import os
import pathlib
import shutil
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

LUA = pathlib.Path(__file__).with_name("submit.lua")


@dataclass
class Result:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return (self.requests - self.errors) / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, round(p / 100 * (len(data) - 1)))]


#: Distinct participants the load spreads over (BENCH_PARTICIPANTS). Events of one participant
#: serialise on its balance row, so very few participants measure lock convoys, not throughput.
PARTICIPANTS = int(os.environ.get("BENCH_PARTICIPANTS", "5000"))


def event_body(program_id: str, run: str, i: int, participants: int = PARTICIPANTS) -> dict[str, object]:
    return {"program_id": program_id, "idempotency_key": f"{run}-{i}", "external_id": f"user-{i % participants}",
            "event_type": "purchase", "event_data": {"amount": 10 + i % 90, "sku": "A-1"}}


#: A request of an open-loop run: (target, run, i) -> (path, JSON body). Module functions, so
#: they travel to the generator processes.
Request = Callable[[str, str, int], tuple[str, dict[str, object]]]


def event_request(program_id: str, run: str, i: int) -> tuple[str, dict[str, object]]:
    return "/v1/events", event_body(program_id, run, i)


@functools.lru_cache(maxsize=4)
def hold_target(target: str) -> tuple[str, list[str]]:
    """A holds run's target, ``<program id>:<participant id>,<participant id>,…``."""
    program_id, _, people = target.partition(":")
    return program_id, people.split(",")


def hold_request(target: str, run: str, i: int) -> tuple[str, dict[str, object]]:
    """A one-point redemption hold, spread over the target's participants."""
    program_id, people = hold_target(target)
    return (f"/v1/programs/{program_id}/participants/{people[i % len(people)]}/redemptions",
            {"idempotency_key": f"{run}-{i}", "points": "1"})


# -- wrk ------------------------------------------------------------------------------------

def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def wrk(base_url: str, key: str, program_id: str, seconds: int, connections: int, threads: int = 2) -> Result:
    """Closed-loop maximum throughput of POST /v1/events with unique keys per request."""
    env_script = LUA.read_text().replace("__PROGRAM__", program_id).replace("__KEY__", key).replace(
        "__PARTICIPANTS__", str(PARTICIPANTS)).replace(
        "__RUN__", uuid.uuid4().hex[:8])
    script = pathlib.Path("/tmp") / f"accrual-bench-{uuid.uuid4().hex[:6]}.lua"
    script.write_text(env_script)
    try:
        out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
                              "--latency", "-s", str(script), f"{base_url}/v1/events"],
                             check=True, capture_output=True, text=True).stdout
    finally:
        script.unlink(missing_ok=True)
    line = next(x for x in out.splitlines() if x.startswith("JSON "))
    data = json.loads(line[5:])
    lat = [data["p50"] / 1000, data["p99"] / 1000]
    res = Result(data["requests"], data["errors"], data["seconds"], [])
    res.latencies_ms = lat  # p50 and p99 only; pct() below is not used for wrk
    return res


def _fan_out(target: Any, arg_sets: list[tuple[Any, ...]]) -> tuple[list[Any], float]:
    """Run ``target`` once per argument tuple, each in a process of its own (the queue for
    its answer is appended to its arguments); their answers and the wall time of all."""
    q: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    ps = [mp.Process(target=target, args=((*args, q),)) for args in arg_sets]
    t0 = time.perf_counter()
    for p in ps:
        p.start()
    parts = [q.get() for _ in ps]
    for p in ps:
        p.join()
    return parts, time.perf_counter() - t0


# -- open loop over HTTP (aiohttp) ------------------------------------------------------------

def _open_loop_worker(args: tuple[str, str, str, float, float, str, int, int, Request, mp.Queue]) -> None:  # type: ignore[type-arg]
    base_url, key, program_id, rate, seconds, run, offset, stride, request, out = args
    import aiohttp

    async def main() -> tuple[int, int, list[float]]:
        lat: list[float] = []
        errors = 0
        sent = 0
        conn = aiohttp.TCPConnector(limit=256)
        async with aiohttp.ClientSession(connector=conn, headers={"X-API-Key": key}) as session:
            async def one(i: int) -> None:
                nonlocal errors
                path, body = request(program_id, run, i)
                t0 = time.perf_counter()
                try:
                    async with session.post(f"{base_url}{path}", json=body) as r:
                        await r.read()
                        if r.status != 200:
                            errors += 1
                except aiohttp.ClientError:
                    errors += 1
                lat.append((time.perf_counter() - t0) * 1000)

            tasks = []
            start = time.perf_counter()
            interval = 1.0 / rate
            n = int(rate * seconds)
            for k in range(n):
                target = start + k * interval
                delay = target - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(offset + k * stride)))
                sent += 1
            await asyncio.gather(*tasks)
        return sent, errors, lat

    out.put(asyncio.run(main()))


def open_loop(base_url: str, key: str, program_id: str, rate: float, seconds: float,
              processes: int = 2, run: str | None = None, request: Request = event_request) -> Result:
    """Offer ``rate`` requests/s for ``seconds`` (split over processes); latency of each.
    ``request`` makes each one (default: a single event for ``program_id``)."""
    run = run or uuid.uuid4().hex[:8]
    parts, elapsed = _fan_out(_open_loop_worker, [(base_url, key, program_id, rate / processes, seconds, run, i,
                                                   processes, request) for i in range(processes)])
    return Result(sum(p[0] for p in parts), sum(p[1] for p in parts), elapsed,
                  [x for p in parts for x in p[2]])


# -- gRPC -------------------------------------------------------------------------------------

def _grpc_call(kind: str, channel: Any, target: str, run: str, i: int) -> Any:
    """One call of a gRPC run: ``event`` (IngestService.SubmitEvent for the program
    ``target``) or ``hold`` (RewardsService.CreateRedemption, see :func:`hold_target`)."""
    from accrual.ingest.v1 import ingest_pb2, ingest_pb2_grpc
    from accrual.rules.v1 import rewards_pb2, rewards_pb2_grpc
    from google.protobuf import struct_pb2

    if kind == "hold":
        program_id, people = hold_target(target)
        return rewards_pb2_grpc.RewardsServiceStub(channel).CreateRedemption, rewards_pb2.CreateRedemptionRequest(
            program_id=program_id, participant_id=people[i % len(people)], idempotency_key=f"{run}-{i}", points="1")
    data = struct_pb2.Struct()
    data.update({"amount": 10 + i % 90, "sku": "A-1"})
    return ingest_pb2_grpc.IngestServiceStub(channel).SubmitEvent, ingest_pb2.SubmitEventRequest(
        program_id=target, idempotency_key=f"{run}-{i}", external_id=f"user-{i % PARTICIPANTS}",
        event_type="purchase", event_data=data)


def _grpc_worker(args: tuple[str, str, str, float, int, str, int, float, str, mp.Queue]) -> None:  # type: ignore[type-arg]
    """Closed loop with ``concurrency`` calls in flight, or (``rate`` > 0) open loop at ``rate``/s."""
    address, key, target, seconds, concurrency, run, offset, rate, kind, out = args
    import grpc

    async def main() -> tuple[int, int, list[float]]:
        lat: list[float] = []
        errors = 0
        count = 0
        async with grpc.aio.insecure_channel(address) as channel:
            md = (("x-api-key", key),)
            deadline = time.perf_counter() + seconds
            counter = iter(range(offset, 10**12, 1))

            async def one(i: int) -> None:
                nonlocal errors, count
                method, req = _grpc_call(kind, channel, target, run, i)
                t0 = time.perf_counter()
                try:
                    await method(req, metadata=md, timeout=10)
                except grpc.aio.AioRpcError:
                    errors += 1
                count += 1
                lat.append((time.perf_counter() - t0) * 1000)

            async def loop() -> None:
                while time.perf_counter() < deadline:
                    await one(next(counter))

            if rate <= 0:
                await asyncio.gather(*(loop() for _ in range(concurrency)))
                return count, errors, lat
            start, tasks = time.perf_counter(), []
            for k in range(int(rate * seconds)):
                delay = start + k / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(next(counter))))
            await asyncio.gather(*tasks)
        return count, errors, lat

    out.put(asyncio.run(main()))


def grpc_closed_loop(address: str, key: str, program_id: str, seconds: float, concurrency: int = 32,
                     processes: int = 2, kind: str = "event", rate: float = 0.0) -> Result:
    """gRPC calls of ``kind`` (see :func:`_grpc_call`) from ``processes`` processes: each keeps
    ``concurrency`` in flight, or with ``rate`` offers its share of that rate per second."""
    run = uuid.uuid4().hex[:8]
    parts, elapsed = _fan_out(_grpc_worker, [(address, key, program_id, seconds, concurrency, run, i * 10**9,
                                              rate / processes, kind) for i in range(processes)])
    return Result(sum(p[0] for p in parts), sum(p[1] for p in parts), elapsed, [x for p in parts for x in p[2]])


# -- batches ----------------------------------------------------------------------------------

def batches(base_url: str, key: str, program_id: str, total: int, size: int = 1000, concurrency: int = 4,
            run: str | None = None) -> Result:
    """POST /v1/events/batch with ``size``-event batches until ``total`` events are accepted.

    The bodies are serialised before the clock starts and the answers read by orjson: the
    generator shares the suite's cores, and building and printing 1,000-event bodies with
    the json module in the timed loop took about a tenth of them."""
    import aiohttp
    import orjson

    run = run or uuid.uuid4().hex[:8]
    spans = [range(start, min(start + size, total)) for start in range(0, total, size)]
    bodies = [(len(span), orjson.dumps({"events": [event_body(program_id, run, i) for i in span]})) for span in spans]

    async def main() -> Result:
        lat: list[float] = []
        errors = 0
        accepted = 0
        async with aiohttp.ClientSession(headers={"X-API-Key": key, "Content-Type": "application/json"},
                                         timeout=aiohttp.ClientTimeout(total=120)) as session:
            pending = iter(bodies)

            async def loop() -> None:
                nonlocal errors, accepted
                for count, body in pending:
                    t0 = time.perf_counter()
                    async with session.post(f"{base_url}/v1/events/batch", data=body) as r:
                        data = orjson.loads(await r.read())
                    lat.append((time.perf_counter() - t0) * 1000)
                    if r.status != 200:
                        errors += count
                        continue
                    ok = sum(1 for x in data["results"] if x["status"] == "accepted")
                    accepted += ok
                    errors += count - ok

            t0 = time.perf_counter()
            await asyncio.gather(*(loop() for _ in range(concurrency)))
            return Result(accepted + errors, errors, time.perf_counter() - t0, lat)

    return asyncio.run(main())


def summary(res: Result) -> str:
    return (f"{res.rate:,.0f}/s, p50 {statistics.median(res.latencies_ms):.1f} ms, p99 {res.pct(99):.1f} ms, "
            f"errors {res.errors}")
