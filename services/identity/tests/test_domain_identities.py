"""Normalisation of identities: examples, then properties over generated input."""

from __future__ import annotations

import string

import pytest
from accrual_identity.domain.identities import (
    MAX_LENGTH,
    Identity,
    IdentityType,
    InvalidIdentity,
    by_precedence,
    normalize,
)
from hypothesis import assume, given
from hypothesis import strategies as st

EMAIL, PHONE = IdentityType.EMAIL, IdentityType.PHONE
EXTERNAL, DEVICE_KEY = IdentityType.EXTERNAL, IdentityType.DEVICE_KEY


@pytest.mark.parametrize(("kind", "raw", "expected"), [
    (EMAIL, "  Jane.Doe@Example.COM ", "jane.doe@example.com"),
    (EMAIL, "A@xn--bcher-kva.de", "a@bücher.de"),
    (EMAIL, "customer@example.com", "customer@example.com"),
    (PHONE, "(415) 555-2671", "+14155552671"),
    (PHONE, "+1 415.555.2671", "+14155552671"),
    (PHONE, "+44 20 7946 0958", "+442079460958"),
    (EXTERNAL, "  L-123456789\t", "L-123456789"),
    (EXTERNAL, "Case Matters", "Case Matters"),
    (DEVICE_KEY, " dev:abc ", "dev:abc"),
])
def test_normalises_each_type(kind: IdentityType, raw: str, expected: str) -> None:
    assert normalize(kind, raw) == Identity(kind, expected)


def test_phone_numbers_without_country_use_the_tenant_region() -> None:
    assert normalize(PHONE, "020 7946 0958", region="GB").value == "+442079460958"
    with pytest.raises(InvalidIdentity):
        normalize(PHONE, "020 7946 0958", region="US")


@pytest.mark.parametrize(("kind", "raw", "field"), [
    (None, "x", "type"),
    (EXTERNAL, "", "value"),
    (EXTERNAL, "   ", "value"),
    (EXTERNAL, "x" * (MAX_LENGTH + 1), "value"),
    (EXTERNAL, "a\x00b", "value"),
    (DEVICE_KEY, "a\nb", "value"),
    (EMAIL, "no-at-sign", "value"),
    (EMAIL, "two@@example.com", "value"),
    (EMAIL, "x@localhost", "value"),
    (EMAIL, "Jane <jane@example.com>", "value"),
    (PHONE, "12", "value"),
    (PHONE, "call me", "value"),
    (PHONE, "+1 555 0100", "value"),
])
def test_rejects_invalid_identities_naming_the_field(kind: IdentityType | None, raw: str,
                                                     field: str) -> None:
    with pytest.raises(InvalidIdentity) as info:
        normalize(kind, raw)
    assert info.value.field == field and info.value.message


def test_a_value_of_exactly_the_maximum_length_is_accepted() -> None:
    assert normalize(EXTERNAL, "x" * MAX_LENGTH).value == "x" * MAX_LENGTH


def test_precedence_orders_external_email_phone_device_and_keeps_ties_stable() -> None:
    given_order = [Identity(DEVICE_KEY, "d"), Identity(PHONE, "+1"), Identity(EMAIL, "b@x.io"),
                   Identity(EXTERNAL, "e"), Identity(EMAIL, "a@x.io")]
    assert [i.value for i in by_precedence(given_order)] == ["e", "b@x.io", "a@x.io", "+1", "d"]


# -- properties -----------------------------------------------------------------------------

kinds = st.sampled_from(list(IdentityType))
whitespace = st.text(alphabet=" \t\n\r\u00a0\u2003", max_size=3)


def _normalized_or_none(kind: IdentityType, raw: str, region: str = "US") -> Identity | None:
    try:
        return normalize(kind, raw, region)
    except InvalidIdentity:
        return None


phone_spellings = st.from_regex(r"\A\+?[0-9 ().-]{7,20}\Z")
anything = st.one_of(st.text(max_size=300), st.emails(), phone_spellings)


@given(kind=kinds, raw=anything)
def test_normalising_twice_changes_nothing(kind: IdentityType, raw: str) -> None:
    once = _normalized_or_none(kind, raw)
    if once is not None:  # invalid input is covered by the "fits or says why" property
        assert normalize(kind, once.value) == once


@given(address=st.emails())
def test_normalising_a_generated_email_twice_changes_nothing(address: str) -> None:
    once = _normalized_or_none(EMAIL, address)
    assume(once is not None)
    assert once is not None
    assert normalize(EMAIL, once.value) == once


letters = st.characters(categories=["Ll", "Lu", "Lt", "Lo", "Nd", "Mn"])


@given(local=st.text(alphabet=letters, min_size=1, max_size=12),
       label=st.text(alphabet=letters, min_size=1, max_size=12),
       tld=st.sampled_from(["com", "de", "рф", "Com"]))
def test_normalising_an_internationalised_email_twice_changes_nothing(
        local: str, label: str, tld: str) -> None:
    """Lower-casing after the validator's NFC and IDNA handling must stay a fixed point."""
    once = _normalized_or_none(EMAIL, f"{local}@{label}.{tld}")
    assume(once is not None)
    assert once is not None
    assert normalize(EMAIL, once.value) == once


@given(address=st.emails(), flips=st.lists(st.booleans(), min_size=64, max_size=64),
       before=whitespace, after=whitespace)
def test_case_and_surrounding_space_do_not_make_a_different_email(
        address: str, flips: list[bool], before: str, after: str) -> None:
    plain = _normalized_or_none(EMAIL, address)
    assume(plain is not None)
    respelled = "".join(ch.upper() if flip else ch.lower()
                        for ch, flip in zip(address, flips * 5, strict=False))
    assert normalize(EMAIL, before + respelled + after) == plain


national = st.tuples(st.sampled_from([201, 212, 305, 312, 415, 617, 646, 702, 718, 917]),
                     st.integers(200, 999), st.integers(0, 9999))


@given(parts=national, style=st.integers(0, 5), before=whitespace, after=whitespace)
def test_spellings_of_one_us_number_normalise_equal(parts: tuple[int, int, int], style: int,
                                                    before: str, after: str) -> None:
    area, exchange, line = parts
    e164 = f"+1{area}{exchange}{line:04d}"
    spelled = [f"({area}) {exchange}-{line:04d}", f"{area}-{exchange}-{line:04d}",
               f"{area}.{exchange}.{line:04d}", f"+1 {area} {exchange} {line:04d}",
               f"1 ({area}) {exchange} {line:04d}", f"{area}{exchange}{line:04d}"][style]
    assert normalize(PHONE, before + spelled + after) == Identity(PHONE, e164)


@given(value=st.text(alphabet=string.ascii_letters + string.digits + "-_:.@", min_size=1,
                     max_size=MAX_LENGTH), before=whitespace, after=whitespace,
       kind=st.sampled_from([EXTERNAL, DEVICE_KEY]))
def test_external_ids_and_device_keys_are_only_trimmed(value: str, before: str, after: str,
                                                      kind: IdentityType) -> None:
    assert normalize(kind, before + value + after) == Identity(kind, value)


@given(kind=kinds, raw=st.text(max_size=400), region=st.sampled_from(["US", "GB", "DE", "FR"]))
def test_normalisation_either_fits_the_column_or_says_why(kind: IdentityType, raw: str,
                                                          region: str) -> None:
    try:
        got = normalize(kind, raw, region)
    except InvalidIdentity as exc:
        assert exc.field == "value" and exc.message
    else:
        assert 0 < len(got.value) <= MAX_LENGTH and got.value == got.value.strip()
        assert "\x00" not in got.value
