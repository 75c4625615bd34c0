from __future__ import annotations

import pytest
from accrual_platform import ratelimit
from accrual_platform.ratelimit import LocalRateLimiter, RateLimitConfig


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    clock = Clock()
    limiter = LocalRateLimiter(RateLimitConfig(rate=2, burst=4), clock=clock)
    decisions = [limiter.hit("k") for _ in range(5)]
    assert [d.allowed for d in decisions] == [True, True, True, True, False]
    assert [d.remaining for d in decisions] == [3, 2, 1, 0, 0]
    assert decisions[-1].metadata() == [("x-ratelimit-limit", "4"), ("x-ratelimit-remaining", "0"),
                                        ("x-ratelimit-reset", "2"), ("retry-after", "1")]
    clock.now += 0.5  # one token back
    assert limiter.hit("k").allowed and not limiter.hit("k").allowed
    assert limiter.hit("another key").allowed
    clock.now += 60  # never more than the burst
    assert limiter.hit("k").remaining == 3


def test_config_from_environment() -> None:
    assert RateLimitConfig.from_env({}) == RateLimitConfig(rate=10_000, burst=20_000)
    assert RateLimitConfig.from_env({"RATE_LIMIT_PER_MINUTE": "120", "RATE_LIMIT_BURST": "10"}) == \
        RateLimitConfig(rate=2, burst=10)
    assert RateLimitConfig.from_env({"RATE_LIMIT_PER_SECOND": "5"}) == RateLimitConfig(rate=5, burst=10)
    assert RateLimitConfig.from_env({"RATE_LIMIT_PER_SECOND": "0"}) is None
    assert ratelimit.from_env({"RATE_LIMIT_PER_SECOND": "0"}) is None
    assert isinstance(ratelimit.from_env({}), LocalRateLimiter)
    with pytest.raises(ValueError, match="RATE_LIMIT"):
        RateLimitConfig.from_env({"RATE_LIMIT_BURST": "lots"})
    with pytest.raises(ValueError, match="negative"):
        RateLimitConfig.from_env({"RATE_LIMIT_PER_SECOND": "-1"})
