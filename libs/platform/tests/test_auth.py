from accrual_platform import auth


def test_scopes_write_implies_read_and_admin_implies_all() -> None:
    p = auth.Principal("t", "k", frozenset({"events:write"}))
    assert p.allows("events:write") and p.allows("events:read")
    assert not p.allows("programs:read")
    assert not p.allows(auth.INTERNAL_SCOPE)
    admin = auth.Principal("t", "k", frozenset({"admin"}))
    assert admin.allows("webhooks:write") and not admin.allows(auth.INTERNAL_SCOPE)
    assert p.allows(auth.ANY_KEY_SCOPE) and admin.allows(auth.ANY_KEY_SCOPE)
    assert p.allowed_scopes() == ["events:read", "events:write"]
    assert admin.allowed_scopes() == sorted(auth.KNOWN_SCOPES)


def test_keys_are_hashed_and_unique() -> None:
    a, b = auth.new_api_key(), auth.new_api_key()
    assert a.startswith("sk_") and a != b
    assert auth.hash_api_key(a) != a and len(auth.hash_api_key(a)) == 64


def test_cached_authenticator_calls_inner_once() -> None:
    calls = []

    def inner(key: str) -> auth.Principal | None:
        calls.append(key)
        return auth.Principal("t", "k", frozenset({"admin"})) if key == "good" else None

    cached = auth.CachedAuthenticator(inner, ttl=60)
    assert cached("good") == cached("good")
    assert cached("bad") is None
    assert calls == ["good", "bad"]


def test_evict_forgets_one_key_or_every_key() -> None:
    calls = []

    def inner(key: str) -> auth.Principal | None:
        calls.append(key)
        return auth.Principal("t", key, frozenset({"admin"}))

    cached = auth.CachedAuthenticator(inner, ttl=60)
    cached("a"), cached("b")
    cached.evict("a")
    cached("a"), cached("b")
    assert calls == ["a", "b", "a"]
    cached.evict()
    cached("a"), cached("b")
    assert calls == ["a", "b", "a", "a", "b"]


def test_a_lookup_that_raced_an_eviction_is_not_cached() -> None:
    """A lookup that read the key before its revocation committed must not keep it cached."""
    cached: auth.CachedAuthenticator
    revoked = False

    def inner(key: str) -> auth.Principal | None:
        nonlocal revoked
        if revoked:
            return None
        found = auth.Principal("t", "k", frozenset({"admin"}))
        revoked = True
        cached.evict("k")  # the revocation commits and is announced while this lookup runs
        return found

    cached = auth.CachedAuthenticator(inner, ttl=60)
    assert cached("key") is not None
    assert cached("key") is None
