"""Envelope, webhook ids and subscriptions."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from accrual_notify.domain import events


def test_message_id_is_stable_per_fact_and_tenant() -> None:
    a = events.message_id("t1", "event:e1:completed")
    assert a == events.message_id("t1", "event:e1:completed")
    assert a.startswith("msg_") and len(a) == 36
    assert a != events.message_id("t2", "event:e1:completed")
    assert a != events.message_id("t1", "event:e2:completed")


def test_envelope_has_the_documented_fields() -> None:
    at = dt.datetime(2026, 11, 1, 12, 30, 5, 123456, tzinfo=dt.UTC)
    body = events.envelope(msg_id="msg_1", type_="tier.changed", created_at=at,
                           tenant_id="t1", data={"tier": "gold"})
    assert json.loads(events.render(body)) == {
        "id": "msg_1", "type": "tier.changed", "api_version": "2026-11-01",
        "created_at": "2026-11-01T12:30:05.123Z", "tenant_id": "t1", "data": {"tier": "gold"}}
    assert " " not in events.render(body)


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValueError):
        events.rfc3339(dt.datetime(2026, 1, 1))


def test_subscriptions() -> None:
    assert events.subscribes(["*"], "points.awarded")
    assert events.subscribes(["points.awarded"], "points.awarded")
    assert not events.subscribes(["event.completed"], "points.awarded")


def test_enabled_events_are_validated_and_normalised() -> None:
    assert events.validate_enabled_events(["event.completed", "event.completed"]) == (
        ("event.completed",), [])
    assert events.validate_enabled_events(["tier.changed", "*"]) == (("*",), [])
    _, violations = events.validate_enabled_events(["points.awarded", "points.spent", "x"])
    assert [f for f, _ in violations] == ["enabled_events[1]", "enabled_events[2]"]
    assert "points.spent" in violations[0][1]
    assert [f for f, _ in events.validate_enabled_events([])[1]] == ["enabled_events"]
    assert set(events.WEBHOOK_TYPES) == {
        "event.completed", "event.failed", "points.awarded", "points.adjusted",
        "participant.created", "enrollment.created", "enrollment.reactivated", "tier.changed",
        "rule.suspended", "points.expired", "points.expiring", "points.pending", "points.activated",
        "points.reversed", "redemption.held", "redemption.captured", "redemption.cancelled",
        "redemption.expired", "redemption.refunded"}
