"""Planning a batch: precedence, attachment, in-batch sharing, policies. No database."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from accrual_identity.domain.attributes import InvalidAttribute, validate_attributes
from accrual_identity.domain.enrollments import EnrollmentChange, changes
from accrual_identity.domain.identities import Identity, IdentityType
from accrual_identity.domain.resolution import Decision, Subject, plan

EXT = Identity(IdentityType.EXTERNAL, "ext")
MAIL = Identity(IdentityType.EMAIL, "a@example.com")
PHONE = Identity(IdentityType.PHONE, "+14155552671")
DEVICE = Identity(IdentityType.DEVICE_KEY, "dev")


def new_ids() -> itertools.count[int]:
    return itertools.count(1)


def run(subjects: list[Subject], participants: dict[str, str] | None = None,
        owners: dict[Identity, str] | None = None) -> list[Decision]:
    counter = new_ids()
    return plan(subjects, participants or {}, owners or {}, lambda: f"new-{next(counter)}")


def subject(*identities: Identity, participant_id: str | None = None,
            create: bool = True) -> Subject:
    return Subject(participant_id, identities, create)


@pytest.mark.parametrize(("higher", "lower"), [(EXT, MAIL), (MAIL, PHONE), (PHONE, DEVICE),
                                                (EXT, DEVICE)])
def test_the_higher_precedence_owner_wins_whatever_the_order(higher: Identity,
                                                            lower: Identity) -> None:
    owners = {higher: "p-high", lower: "p-low"}
    for order in ((higher, lower), (lower, higher)):
        [decision] = run([subject(*order)], owners=owners)
        assert decision == Decision(participant_id="p-high")  # nothing attached, nothing stolen


def test_unclaimed_identities_attach_to_the_winner() -> None:
    [decision] = run([subject(DEVICE, MAIL, PHONE)], owners={PHONE: "p1"})
    assert decision == Decision(participant_id="p1", attach=(DEVICE, MAIL))


def test_an_explicit_participant_wins_over_every_identity() -> None:
    [decision] = run([subject(EXT, MAIL, participant_id="p-explicit")],
                     participants={"p-explicit": "p-explicit"}, owners={EXT: "p-other"})
    assert decision == Decision(participant_id="p-explicit", attach=(MAIL,))


def test_an_explicit_participant_that_was_merged_resolves_to_the_survivor() -> None:
    [decision] = run([subject(participant_id="p-old")], participants={"p-old": "p-new"})
    assert decision.participant_id == "p-new"


def test_a_missing_explicit_participant_is_not_found_even_with_create() -> None:
    [decision] = run([subject(EXT, participant_id="p-gone")])
    assert decision.error_code == "participant_not_found" and not decision.participant_id


def test_nobody_known_creates_with_every_identity_or_rejects() -> None:
    [created] = run([subject(MAIL, EXT, MAIL)])
    assert created == Decision(participant_id="new-1", created=True, attach=(MAIL, EXT))
    [rejected] = run([subject(MAIL, create=False)])
    assert rejected.error_code == "participant_not_found" and not rejected.attach


def test_reject_still_resolves_a_known_person_and_attaches_new_identities() -> None:
    [decision] = run([subject(MAIL, EXT, create=False)], owners={MAIL: "p1"})
    assert decision == Decision(participant_id="p1", attach=(EXT,))


def test_a_subject_without_any_identifier_is_invalid() -> None:
    [decision] = run([subject()])
    assert decision.error_code == "invalid_identity"


def test_later_items_see_what_earlier_items_of_the_batch_created_and_attached() -> None:
    first, second, third = run([subject(EXT, MAIL), subject(Identity(IdentityType.EXTERNAL,
                                                                       "other"), MAIL),
                                subject(MAIL)])
    assert first == Decision(participant_id="new-1", created=True, attach=(EXT, MAIL))
    assert second == Decision(participant_id="new-1",
                              attach=(Identity(IdentityType.EXTERNAL, "other"),))
    assert third == Decision(participant_id="new-1")


def test_enrollment_changes_are_reported_once_per_pair() -> None:
    a, b = ("prog", "p1"), ("prog", "p2")
    got = changes([a, None, a, b, b], created={a}, reactivated={b})
    assert got == [EnrollmentChange.CREATED, None, EnrollmentChange.NONE,
                   EnrollmentChange.REACTIVATED, EnrollmentChange.NONE]


TODAY = dt.date(2026, 6, 1)


def test_birth_date_is_parsed_and_other_attributes_kept() -> None:
    attributes = {"birth_date": "2000-02-29", "tier": "gold", "tags": ["a"]}
    assert validate_attributes(attributes, TODAY) == (attributes, dt.date(2000, 2, 29))
    assert validate_attributes({"birth_date": None, "x": 1}, TODAY) == ({"x": 1}, None)


@pytest.mark.parametrize(("attributes", "field"), [
    ({"birth_date": "2001-02-29"}, "attributes.birth_date"),
    ({"birth_date": "2026-06-02"}, "attributes.birth_date"),
    ({"birth_date": "1990-5-17"}, "attributes.birth_date"),
    ({"birth_date": 19900517}, "attributes.birth_date"),
    ({"note": "a\x00b"}, "attributes.note"),
    ({"deep": {"list": ["ok", "\x00"]}}, "attributes.deep.list[1]"),
    ({"blob": "x" * 40_000}, "attributes"),
    ({"score": float("nan")}, "attributes"),
])
def test_invalid_attributes_name_the_field(attributes: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidAttribute) as info:
        validate_attributes(attributes, TODAY)
    assert info.value.field == field
