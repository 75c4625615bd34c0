"""Rate limiting per API key through the real interceptor and gateway, with the in-process
bucket and with the Redis one: headers on every answer, 429 + Retry-After when exceeded."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import grpc
import httpx
import pytest
from accrual.ingest.v1 import ingest_pb2
from accrual_platform import ratelimit
from accrual_platform.testing import REDIS_URL

if TYPE_CHECKING:
    from conftest import Stack

BURST = 3
CONFIG = ratelimit.RateLimitConfig(rate=0.2, burst=BURST)  # one token back every 5 s


def event() -> dict[str, object]:
    return {"program_id": str(uuid.uuid4()), "idempotency_key": uuid.uuid4().hex, "external_id": "u1"}


@pytest.fixture(scope="module", params=[
    pytest.param("local", id="in-process"),
    pytest.param("redis", id="redis", marks=pytest.mark.integration)])
def limited(request: pytest.FixtureRequest, sqlite_url: str,
            stack_factory: Callable[..., Iterator[Stack]]) -> Iterator[Stack]:
    limiter: ratelimit.RateLimiter
    if request.param == "redis":
        limiter = ratelimit.RedisRateLimiter(CONFIG, REDIS_URL)
        limiter._client.ping()  # fails (never skips) when Redis is not there
    else:
        limiter = ratelimit.LocalRateLimiter(CONFIG)
    yield from stack_factory(sqlite_url, limiter)


def test_rest_answers_carry_limits_and_429_with_retry_after(limited: Stack) -> None:
    key, tenant = limited.tenant()
    other_key = limited.keys.create(tenant)
    with limited.http(key) as c:
        ok = c.post("/v1/events", json=event())
        assert ok.status_code == 200
        assert ok.headers["X-RateLimit-Limit"] == str(BURST)
        assert ok.headers["X-RateLimit-Remaining"] == "2"
        assert 0 < int(ok.headers["X-RateLimit-Reset"]) <= 5
        bad = c.post("/v1/events", json={"external_id": "u1"})  # errors count and carry the headers too
        assert bad.status_code == 400 and bad.headers["X-RateLimit-Remaining"] == "1"
        assert c.get("/v1/events").headers["X-RateLimit-Remaining"] == "0"
        refused = c.post("/v1/events", json=event())
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(refused.headers["Retry-After"]) <= 5
        assert refused.headers["X-RateLimit-Remaining"] == "0" and refused.headers["X-Request-Id"]
    with limited.http(other_key) as other:  # the limit is per key, not per tenant
        assert other.get("/v1/events").status_code == 200
    assert limited.count(tenant) == 1


def test_grpc_gets_resource_exhausted_and_internal_calls_are_not_limited(limited: Stack) -> None:
    key, tenant = limited.tenant()
    md = limited.md(key)
    for _ in range(BURST):
        _, call = limited.stub.ListEvents.with_call(ingest_pb2.ListEventsRequest(), metadata=md)
        assert "x-ratelimit-remaining" in dict(call.trailing_metadata())
    failure = limited.failure(lambda: limited.stub.ListEvents(ingest_pb2.ListEventsRequest(), metadata=md))
    assert failure.code == grpc.StatusCode.RESOURCE_EXHAUSTED and failure.reason == "RATE_LIMITED"
    assert int(failure.trailing["retry-after"]) >= 1 and failure.trailing["x-ratelimit-remaining"] == "0"
    for _ in range(BURST * 3):
        assert limited.claim(tenant, [str(uuid.uuid4())]) == []


def test_refused_keys_are_counted_too(limited: Stack) -> None:
    with limited.http(f"sk_unknown_{uuid.uuid4().hex}") as c:
        answers = [c.get("/v1/events") for _ in range(BURST + 1)]
    assert [r.status_code for r in answers] == [401] * BURST + [429]
    assert [r.headers["X-RateLimit-Remaining"] for r in answers] == ["2", "1", "0", "0"]
    assert "Retry-After" in answers[-1].headers


@pytest.mark.integration
def test_redis_buckets_are_shared_between_processes() -> None:
    a = ratelimit.RedisRateLimiter(CONFIG, REDIS_URL)
    b = ratelimit.RedisRateLimiter(CONFIG, REDIS_URL)
    key = f"shared-{uuid.uuid4()}"
    try:
        assert [a.hit(key).allowed, b.hit(key).allowed, a.hit(key).allowed] == [True, True, True]
        refused = b.hit(key)
        assert not refused.allowed and refused.remaining == 0 and 0 < refused.retry_after <= 5
        assert a.hit(f"other-{uuid.uuid4()}").allowed
    finally:
        a.close()
        b.close()


@pytest.mark.integration
def test_redis_takes_a_group_of_calls_in_one_step_as_hits_in_a_row() -> None:
    a = ratelimit.RedisRateLimiter(CONFIG, REDIS_URL)
    b = ratelimit.RedisRateLimiter(CONFIG, REDIS_URL)
    key = f"group-{uuid.uuid4()}"
    try:
        first = a.hit_many(key, 2)
        assert [(d.allowed, d.remaining) for d in first] == [(True, 2), (True, 1)]
        rest = b.hit_many(key, 3)  # the other process sees the shared bucket
        assert [(d.allowed, d.remaining) for d in rest] == [(True, 0), (False, 0), (False, 0)]
        assert all(0 < d.retry_after <= 5 for d in rest[1:])
        assert not a.hit(key).allowed
        assert [d.allowed for d in a.hit_many(f"other-{uuid.uuid4()}", BURST + 2)] == [True] * BURST + [False] * 2
    finally:
        a.close()
        b.close()


def test_unreachable_redis_falls_back_to_the_process_bucket() -> None:
    limiter = ratelimit.RedisRateLimiter(CONFIG, "redis://127.0.0.1:1/0", timeout=0.2)
    decisions = [limiter.hit("k") for _ in range(BURST + 1)]
    assert [d.allowed for d in decisions] == [True] * BURST + [False]
    assert [d.allowed for d in limiter.hit_many("g", BURST + 1)] == [True] * BURST + [False]


def test_a_concurrent_burst_is_counted_call_by_call(limited: Stack) -> None:
    """Concurrent REST calls travel upstream coalesced; each still takes its own token."""
    key, tenant = limited.tenant()
    gate = threading.Barrier(2 * BURST)

    def send(_: int) -> httpx.Response:
        with limited.http(key) as c:
            gate.wait()
            return c.post("/v1/events", json=event())

    with ThreadPoolExecutor(2 * BURST) as pool:
        answers = list(pool.map(send, range(2 * BURST)))
    assert sorted(r.status_code for r in answers) == [200] * BURST + [429] * BURST
    assert all("Retry-After" in r.headers for r in answers if r.status_code == 429)
    assert sorted(r.headers["X-RateLimit-Remaining"] for r in answers) == ["0"] * (BURST + 1) + [
        str(n) for n in range(1, BURST)]
    assert limited.count(tenant) == BURST
