"""The accept use case without a database: the input adapters, the decision, and the service
over a fake store (what each candidate is answered, and what is stored once)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import NamedTuple, cast

import pytest
from accrual_ingest.domain.accept import (
    ACCEPTED,
    CONFLICT,
    DUPLICATE,
    INVALID,
    Candidate,
    SystemEventInput,
    decide,
    loyalty_candidate,
    system_candidate,
    unique,
)
from accrual_ingest.domain.validation import EventInput
from accrual_ingest.service import IngestService
from accrual_ingest.storage import EventKey, IngestStore, StoredEvents
from accrual_platform import errors

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
PROGRAM = "550e8400-e29b-41d4-a716-446655440000"
PARTICIPANT = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"


def raw(key: str = "order-1", amount: int = 125, program_id: str = PROGRAM) -> EventInput:
    return EventInput(program_id=program_id, idempotency_key=key, event_type="purchase", event_timestamp=None,
                      external_id="u1", participant_id=None, recipient_external_id=None, recipient_id=None,
                      event_data={"amount": amount})


class Row(NamedTuple):
    id: str
    payload_digest: str


def test_a_key_repeated_is_accepted_once_then_duplicate_or_conflict() -> None:
    same, again, other = (loyalty_candidate("t", raw(), NOW), loyalty_candidate("t", raw(), NOW),
                          loyalty_candidate("t", raw(amount=126), NOW))
    bad = loyalty_candidate("t", raw(program_id="nope"), NOW)
    assert same.event is not None and bad.event is None
    assert unique([same, bad, again, other]) == [same]
    stored = {("t", same.key): Row("e1", same.event.digest)}
    outcomes = decide([same, bad, again, other], stored, {("t", same.key)})
    assert [o.status for o in outcomes] == [ACCEPTED, INVALID, DUPLICATE, CONFLICT]
    assert [o.event_id for o in outcomes] == ["e1", None, "e1", "e1"]
    assert [v.field for v in outcomes[1].violations] == ["program_id"]


def test_a_key_stored_before_is_a_duplicate_for_everyone() -> None:
    c = loyalty_candidate("t", raw(), NOW)
    assert c.event is not None
    outcomes = decide([c, c], {("t", c.key): Row("e0", c.event.digest)}, set())
    assert [o.status for o in outcomes] == [DUPLICATE, DUPLICATE]


def test_the_same_key_of_two_tenants_is_two_events() -> None:
    a, b = loyalty_candidate("a", raw(), NOW), loyalty_candidate("b", raw(), NOW)
    assert unique([a, b]) == [a, b]


def test_system_events_require_participant_and_timestamp() -> None:
    item = SystemEventInput(program_id=PROGRAM, idempotency_key="birthday:2026", event_type="birthday",
                            participant_id="", event_timestamp=None, event_data={})
    c = system_candidate("t", item, NOW, "events[3].")
    assert c.event is None
    assert [v.field for v in c.violations] == ["events[3].participant_id", "events[3].event_timestamp",
                                               "events[3].external_id"]
    ok = system_candidate("t", SystemEventInput(PROGRAM, "birthday:2026", "birthday", PARTICIPANT, NOW, {}),
                          NOW, "")
    assert ok.event is not None and ok.event.origin == "SYSTEM"


class FakeStore:
    """Stores keys in a dict, as the unique indexes would."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], EventKey] = {}
        self.calls = 0

    def store_events(self, candidates: Sequence[Candidate], record: type[EventKey]) -> StoredEvents[EventKey]:
        self.calls += 1
        inserted = set()
        for c in candidates:
            assert c.event is not None
            k = (c.tenant_id, c.key)
            if k not in self.rows:
                self.rows[k] = EventKey(f"e{len(self.rows)}", c.event.program_id, None, c.event.idempotency_key,
                                        c.event.digest)
                inserted.add(k)
        return StoredEvents({(c.tenant_id, c.key): self.rows[(c.tenant_id, c.key)] for c in candidates}, inserted)


def test_a_batch_is_stored_in_one_call_and_wakes_the_relay_only_for_new_events() -> None:
    store, woken = FakeStore(), []
    service = IngestService(cast(IngestStore, store), lambda: woken.append(1))
    try:
        first = service.submit_batch("t", [raw("a"), raw("b"), raw("a")])
        assert [o.status for o in first] == [ACCEPTED, ACCEPTED, DUPLICATE]
        again = service.submit_batch("t", [raw("a"), raw("b", amount=1)])
        assert [o.status for o in again] == [DUPLICATE, CONFLICT]
        assert store.calls == 2 and woken == [1]
        with pytest.raises(errors.InvalidArgument):
            service.submit_batch("t", [])
    finally:
        service.close()


def test_system_events_require_a_program() -> None:
    c = system_candidate("t", SystemEventInput("", "birthday:2026", "birthday", PARTICIPANT, NOW, {}), NOW, "")
    assert c.event is None and [v.field for v in c.violations] == ["program_id"]


def test_a_tenant_event_is_unique_per_tenant_by_its_key() -> None:
    a, b = loyalty_candidate("t", raw(program_id=""), NOW), loyalty_candidate("t", raw(program_id=""), NOW)
    other = loyalty_candidate("u", raw(program_id=""), NOW)
    assert a.event is not None and a.event.program_id == "" and a.key == b.key
    assert unique([a, b, other]) == [a, other]
