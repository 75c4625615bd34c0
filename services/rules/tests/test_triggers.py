"""Scheduled-trigger configuration of a program (pure code)."""

from __future__ import annotations

import datetime as dt

from accrual_rules.domain.triggers import enabled, idempotency_key, normalise_triggers
from hypothesis import given
from hypothesis import strategies as st


def test_defaults_fill_every_trigger_and_all_are_off() -> None:
    clean, problems = normalise_triggers(None)
    assert problems == []
    assert clean == {"birthday": {"enabled": False, "event_type": "birthday"},
                     "anniversary": {"enabled": False, "event_type": "anniversary"},
                     "inactivity": {"enabled": False, "event_type": "inactivity", "days": 30}}
    assert enabled(clean) == []


def test_violations_name_the_field() -> None:
    _, problems = normalise_triggers({"birthday": {"days": 3, "event_type": " bday"},
                                      "inactivity": {"enabled": True, "days": 5000}})
    assert [f for f, _ in problems] == ["scheduled_triggers.birthday.event_type", "scheduled_triggers.birthday.days",
                                        "scheduled_triggers.inactivity.days"]


@given(st.uuids(), st.dates())
def test_keys_are_deterministic_and_distinct_per_trigger(participant: object, day: dt.date) -> None:
    keys = {idempotency_key(t, str(participant), day) for t in ("birthday", "anniversary", "inactivity")}
    assert len(keys) == 3 and idempotency_key("birthday", str(participant), day) in keys
    assert all(len(k) <= 255 for k in keys)
