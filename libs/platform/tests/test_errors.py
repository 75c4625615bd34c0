"""Errors quote a client's values as short prefixes and stay small enough for gRPC trailers."""

from __future__ import annotations

import base64

from accrual_platform import errors


def test_excerpt_quotes_a_short_prefix() -> None:
    assert errors.excerpt("purchase") == "'purchase'"
    assert errors.excerpt("y" * 300) == "'" + "y" * 40 + "…'"
    assert errors.excerpt("a\x00b") == "'a\\x00b'"


def test_a_value_echoed_whole_is_cut_to_a_prefix() -> None:
    exc = errors.InvalidArgument.field("eventType", f"'{'x' * 17_000}' is not a registered CDP event type")
    # the run cut is the quote and the value's first 39 characters
    assert exc.message == f"eventType: '{'x' * 39}… is not a registered CDP event type"
    assert exc.violations[0].description == f"'{'x' * 39}… is not a registered CDP event type"
    # our own words and ids are left alone
    ok = errors.NotFound("participant 0192e4a0-7b1c-7d3e-8f00-123456789abc not found")
    assert ok.message == "participant 0192e4a0-7b1c-7d3e-8f00-123456789abc not found"


def test_a_status_stays_under_the_metadata_limit_whatever_it_names() -> None:
    spaced = " ".join(["word"] * 5000)  # no long run: cut by length instead
    violations = [errors.FieldViolation("f" * 5000 + str(i), spaced) for i in range(100)]
    exc = errors.InvalidArgument(spaced, violations=violations, metadata={"field": "v" * 5000})
    size = len(base64.b64encode(exc.to_status().SerializeToString())) + len(exc.message)
    assert size < 8 * 1024, size
    assert len(exc.violations) == errors.MAX_VIOLATIONS
