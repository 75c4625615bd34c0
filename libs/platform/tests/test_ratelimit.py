from __future__ import annotations

import pytest
from accrual_platform import ratelimit
from accrual_platform.ratelimit import LocalRateLimiter, RateLimitConfig
from accrual_platform.settings import ConfigError, Settings


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


def limit(env: dict[str, str]) -> RateLimitConfig | None:
    return Settings.read(env).rate_limit


def test_config_from_environment() -> None:
    assert limit({}) == RateLimitConfig(rate=10_000, burst=20_000) == RateLimitConfig.DEFAULT
    assert limit({"RATE_LIMIT_PER_MINUTE": "120", "RATE_LIMIT_BURST": "10"}) == \
        RateLimitConfig(rate=2, burst=10)
    assert limit({"RATE_LIMIT_PER_SECOND": "5"}) == RateLimitConfig(rate=5, burst=10)
    assert limit({"RATE_LIMIT_PER_SECOND": "0"}) is None
    assert ratelimit.build(limit({"RATE_LIMIT_PER_SECOND": "0"}), None) is None
    assert isinstance(ratelimit.build(limit({}), None), LocalRateLimiter)
    with pytest.raises(ConfigError, match="RATE_LIMIT"):
        limit({"RATE_LIMIT_BURST": "lots"})
    with pytest.raises(ConfigError, match="negative"):
        limit({"RATE_LIMIT_PER_SECOND": "-1"})


@pytest.mark.parametrize(("burst", "counts"), [(4, [5]), (4, [2, 3, 1]), (3, [1, 1, 1, 1]), (10, [3, 0, 9])])
def test_hit_many_decides_as_hits_in_a_row(burst: int, counts: list[int]) -> None:
    one, many = Clock(), Clock()
    single = LocalRateLimiter(RateLimitConfig(rate=2, burst=burst), clock=one)
    grouped = LocalRateLimiter(RateLimitConfig(rate=2, burst=burst), clock=many)
    for n in counts:
        assert grouped.hit_many("k", n) == [single.hit("k") for _ in range(n)]
        one.now += 0.3
        many.now += 0.3
    assert grouped.hit("k") == single.hit("k")


def test_admit_many_answers_each_call_as_admit_would() -> None:
    """A group of coalesced calls: good keys, an unknown and a missing key, a key without the
    scope, one key past its limit, a bad internal token; each answer (and its rate-limit
    metadata) is what admit gives the same call, in order."""
    from accrual_platform import auth
    from accrual_platform.grpc_server import Refused, ServiceInterceptor

    keys = {"sk_a": auth.Principal("t1", "key-a", frozenset({"events:write"})),
            "sk_b": auth.Principal("t2", "key-b", frozenset({"events:write"})),
            "sk_read": auth.Principal("t1", "key-r", frozenset({"events:read"}))}
    mds = [{"x-api-key": "sk_a"}, {"authorization": "Bearer sk_b"}, {"x-api-key": "sk_a"}, {"x-api-key": "sk_nope"},
           {}, {"x-api-key": "sk_read"}, {"x-api-key": "sk_a"}, {"x-internal-token": "wrong"}, {"x-api-key": "sk_a"},
           {"x-api-key": "sk_nope"}]

    def interceptor() -> ServiceInterceptor:
        return ServiceInterceptor(keys.get, "internal-token",
                                  LocalRateLimiter(RateLimitConfig(rate=0.001, burst=3), clock=Clock()))

    def shape(answer: object) -> object:
        if isinstance(answer, Refused):
            return ("refused", type(answer.error).__name__, answer.error.message, answer.limit_metadata)
        return answer

    one_by_one = interceptor()
    expected = []
    for md in mds:
        try:
            expected.append(shape(one_by_one.admit(md, "events:write")))
        except Refused as refused:
            expected.append(shape(refused))
    got = [shape(a) for a in interceptor().admit_many(mds, "events:write")]
    assert got == expected
    assert [g[0] if isinstance(g, tuple) and g[0] == "refused" else "ok" for g in got] == \
        ["ok", "ok", "ok", "refused", "refused", "refused", "ok", "refused", "refused", "refused"]
