"""Per-API-key rate limiting: a token bucket, in Redis when REDIS_URL is set, else in process.

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per second; every
authenticated public call takes one. The answer carries ``x-ratelimit-limit`` (the bucket
size), ``x-ratelimit-remaining`` (whole tokens left) and ``x-ratelimit-reset`` (seconds until
the bucket is full again); a refused call also carries ``retry-after`` (seconds until one
token is back). The REST gateway forwards these as ``X-RateLimit-*`` and ``Retry-After``.

Configuration (:class:`accrual_platform.settings.Settings` reads it):

- ``RATE_LIMIT_PER_SECOND`` or ``RATE_LIMIT_PER_MINUTE``: refill rate per key. Default
  10,000/s: far above the single-key benchmark load (SPEC section 9), so it only stops a
  runaway client. ``0`` turns rate limiting off.
- ``RATE_LIMIT_BURST``: bucket size, default twice the per-second rate (at least 1).
- ``REDIS_URL``: share the buckets between every process of the suite (gateway replicas hit
  different ingest processes, so a per-process bucket would multiply the limit). The bucket
  update is one Lua script, atomic in Redis, timed by Redis' own clock so that processes with
  skewed clocks agree. When Redis cannot be reached the call is counted in the process's own
  bucket instead (fail open to a local limit rather than refuse all traffic).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import structlog

log = structlog.get_logger("accrual.ratelimit")

KEY_PREFIX = "accrual:ratelimit:"


@dataclass(frozen=True)
class RateLimitConfig:
    rate: float  # tokens per second
    burst: int

    DEFAULT_PER_SECOND: ClassVar[float] = 10_000.0
    #: the limit when none is configured
    DEFAULT: ClassVar[RateLimitConfig]

    @staticmethod
    def default_burst(rate: float) -> int:
        return max(1, math.ceil(rate * 2)) if math.isfinite(rate) else 1

    @classmethod
    def of(cls, rate: float, burst: int | None = None) -> RateLimitConfig | None:
        """``rate`` tokens a second into a bucket of ``burst`` (default twice the rate, at
        least 1); None when either is 0, which turns rate limiting off."""
        burst = cls.default_burst(rate) if burst is None else burst
        if rate < 0 or burst < 0 or not math.isfinite(rate):
            raise ValueError("RATE_LIMIT_* must not be negative")
        return None if rate == 0 or burst == 0 else cls(rate=rate, burst=burst)


RateLimitConfig.DEFAULT = RateLimitConfig(
    RateLimitConfig.DEFAULT_PER_SECOND, RateLimitConfig.default_burst(RateLimitConfig.DEFAULT_PER_SECOND))


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_after: float  # seconds until the bucket is full
    retry_after: float  # seconds until the next call would be allowed (0 when allowed)

    def metadata(self) -> list[tuple[str, str]]:
        md = [("x-ratelimit-limit", str(self.limit)), ("x-ratelimit-remaining", str(self.remaining)),
              ("x-ratelimit-reset", str(math.ceil(self.reset_after)))]
        if not self.allowed:
            md.append(("retry-after", str(max(1, math.ceil(self.retry_after)))))
        return md


def _decide(config: RateLimitConfig, tokens: float, allowed: bool) -> Decision:
    return Decision(
        allowed=allowed, limit=config.burst, remaining=max(0, math.floor(tokens)),
        reset_after=max(0.0, (config.burst - tokens) / config.rate),
        retry_after=0.0 if allowed else max(0.0, (1 - tokens) / config.rate))


class RateLimiter(Protocol):
    config: RateLimitConfig

    def hit(self, key: str) -> Decision: ...

    def hit_many(self, key: str, count: int) -> list[Decision]:
        """``count`` calls of one key at once: the decisions ``count`` hits in a row would
        get, in one step (one Redis round trip for a group of coalesced calls)."""
        ...


def _taken(before: float, count: int) -> int:
    """How many of ``count`` hits in a row a bucket holding ``before`` tokens allows."""
    return max(0, min(count, math.floor(before)))


def _decisions(config: RateLimitConfig, before: float, count: int, allowed: int) -> list[Decision]:
    """What ``count`` hits in a row get from a bucket holding ``before`` tokens, of which the
    first ``allowed`` pass (:func:`_taken`), each leaving a token less; the rest are refused."""
    out = [_decide(config, before - (i + 1), True) for i in range(allowed)]
    out += [_decide(config, before - allowed, False)] * (count - allowed)
    return out


class LocalRateLimiter:
    """Buckets in this process's memory (embedded mode, or when Redis is unreachable)."""

    def __init__(self, config: RateLimitConfig, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000) -> None:
        self.config = config
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> Decision:
        return self.hit_many(key, 1)[0]

    def hit_many(self, key: str, count: int) -> list[Decision]:
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (float(self.config.burst), now))
            before = min(float(self.config.burst), tokens + max(0.0, now - at) * self.config.rate)
            taken = _taken(before, count)
            if len(self._buckets) >= self._max_keys and key not in self._buckets:
                self._buckets.clear()  # a full bucket is what an unknown key gets anyway
            self._buckets[key] = (before - taken, now)
        return _decisions(self.config, before, count, taken)


# KEYS[1] bucket; ARGV: rate per second, burst, calls. Takes up to that many tokens at once;
# returns {calls allowed, tokens before them as text}.
_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local count = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = math.max(0, math.min(count, math.floor(tokens)))
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - allowed), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(tokens)}
"""


class RedisRateLimiter:
    """Buckets shared by every process through Redis: one atomic script per call, or per key
    for a group of coalesced calls."""

    def __init__(self, config: RateLimitConfig, url: str, *, timeout: float = 0.25) -> None:
        import redis

        self.config = config
        self._client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self._script: Any = self._client.register_script(_LUA)
        self._fallback = LocalRateLimiter(config)
        self._errors = (redis.RedisError, OSError)

    def hit(self, key: str) -> Decision:
        return self.hit_many(key, 1)[0]

    def hit_many(self, key: str, count: int) -> list[Decision]:
        try:
            allowed, before = self._script(keys=[KEY_PREFIX + key], args=[self.config.rate, self.config.burst, count])
        except self._errors as exc:
            log.warning("rate_limit_redis_unavailable", error=str(exc))
            return self._fallback.hit_many(key, count)
        return _decisions(self.config, float(before), count, int(allowed))

    def close(self) -> None:
        self._client.close()


def build(config: RateLimitConfig | None, redis_url: str | None) -> RateLimiter | None:
    if config is None:
        return None
    if redis_url:
        return RedisRateLimiter(config, redis_url)
    return LocalRateLimiter(config)
