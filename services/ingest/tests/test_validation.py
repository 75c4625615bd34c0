import datetime as dt
import unicodedata

from accrual_ingest.domain.canonical import payload_digest
from accrual_ingest.domain.validation import EventInput, has_control_chars, validate_event
from hypothesis import given
from hypothesis import strategies as st

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
PROGRAM = "550e8400-e29b-41d4-a716-446655440000"


def make(**kw: object) -> EventInput:
    base: dict[str, object] = dict(program_id=PROGRAM, idempotency_key="order-1", event_type="purchase",
                                   event_timestamp=None, external_id="u1", participant_id=None,
                                   recipient_external_id=None, recipient_id=None,
                                   event_data={"amount": 125})
    base.update(kw)
    return EventInput(**base)  # type: ignore[arg-type]


def test_canonical_payloads_ignore_key_order_number_spelling_and_timestamp_zone() -> None:
    a = payload_digest({"d": {"amount": 125, "x": [1, 2]}, "ts": dt.datetime(2024, 1, 15, 10, 30, tzinfo=dt.UTC)})
    tz = dt.timezone(dt.timedelta(hours=2))
    b = payload_digest({"ts": dt.datetime(2024, 1, 15, 12, 30, tzinfo=tz), "d": {"x": [1.0, 2], "amount": 125.0}})
    assert a == b
    assert a != payload_digest({"d": {"amount": 126, "x": [1, 2]}})


@given(st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), st.text(max_size=5), st.booleans())))
def test_digest_is_independent_of_insertion_order(data: dict[str, object]) -> None:
    reversed_data = dict(reversed(list(data.items())))
    assert payload_digest({"d": data}) == payload_digest({"d": reversed_data})


def test_valid_event_defaults_timestamp_to_receipt() -> None:
    event, violations = validate_event(make(), NOW)
    assert not violations and event is not None
    assert event.event_timestamp == NOW


def test_exactly_one_identity_field() -> None:
    _, v = validate_event(make(external_id=None), NOW)
    assert [x.field for x in v] == ["external_id"]
    _, v = validate_event(make(participant_id=PROGRAM), NOW)
    assert [x.field for x in v] == ["external_id"]


def test_bad_fields_are_named() -> None:
    _, v = validate_event(make(program_id="nope", idempotency_key="", external_id=None,
                               participant_id="bad", event_timestamp=NOW + dt.timedelta(minutes=6),
                               event_data={"x": "y" * 40000}), NOW, prefix="events[2].")
    fields = {x.field for x in v}
    assert fields == {"events[2].program_id", "events[2].idempotency_key",
                      "events[2].participant_id", "events[2].event_timestamp", "events[2].event_data"}


def test_retry_without_timestamp_has_same_digest() -> None:
    a, _ = validate_event(make(), NOW)
    b, _ = validate_event(make(event_data={"amount": 125.0}), NOW + dt.timedelta(seconds=30))
    assert a is not None and b is not None and a.digest == b.digest


@given(st.text())
def test_control_characters_are_unicode_category_cc(text: str) -> None:
    assert has_control_chars(text) == any(unicodedata.category(ch) == "Cc" for ch in text)


def test_aliases_stand_for_their_fields_with_the_same_digest() -> None:
    at = dt.datetime(2025, 12, 22, 10, 30, tzinfo=dt.UTC)
    spelt, _ = validate_event(make(event_timestamp=at), NOW)
    aliased, v = validate_event(make(idempotency_key="", reference="order-1", event_timestamp=None,
                                     occurred_at=at, event_data=None, data={"amount": 125}), NOW)
    assert not v and aliased is not None and spelt is not None
    assert (aliased.idempotency_key, aliased.event_timestamp, aliased.event_data) == ("order-1", at, {"amount": 125})
    assert aliased.digest == spelt.digest


def test_both_spellings_of_a_field_name_the_alias() -> None:
    both = make(reference="order-2", event_timestamp=NOW, occurred_at=NOW, data={})
    _, v = validate_event(both, NOW, prefix="events[0].")
    assert [x.field for x in v] == ["events[0].reference", "events[0].occurred_at", "events[0].data"]


def test_no_program_is_a_tenant_event_whose_participant_is_optional() -> None:
    event, v = validate_event(make(program_id="", external_id=None, event_data=None), NOW)
    assert not v and event is not None
    assert (event.program_id, event.external_id, event.event_data) == ("", None, {})
    named, v = validate_event(make(program_id=""), NOW)
    assert not v and named is not None and named.external_id == "u1"
    _, v = validate_event(make(program_id="", recipient_external_id="friend"), NOW)
    assert [x.field for x in v] == ["recipient_id"]


def test_violations_name_the_spelling_sent() -> None:
    _, v = validate_event(make(idempotency_key="", reference="k" * 256, occurred_at=NOW + dt.timedelta(hours=1),
                               event_data=None, data={"note": "a\x00b"}), NOW)
    assert [x.field for x in v] == ["reference", "occurred_at", "data.note"]
