"""Identity normalisation: one spelling per identifier, so matching is an exact lookup.

The same person arrives spelled many ways (`` Jane@Example.COM``, ``(415) 555-2671``).
Normalising before every read and write makes the unique key (tenant, type, value) the one
arbiter of "same identifier", and because normalising is idempotent a stored value can be
fed back in (by a client that read it) and still match.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from enum import StrEnum
from typing import NamedTuple

import email_validator
import phonenumbers

MAX_LENGTH = 255
DEFAULT_REGION = "US"


class IdentityType(StrEnum):
    EXTERNAL = "EXTERNAL"
    EMAIL = "EMAIL"
    PHONE = "PHONE"
    DEVICE_KEY = "DEVICE_KEY"


#: Which identifier decides when several point at different participants (SPEC section 5):
#: the partner's own id is the most deliberate, a device key the least.
PRECEDENCE: tuple[IdentityType, ...] = (
    IdentityType.EXTERNAL, IdentityType.EMAIL, IdentityType.PHONE, IdentityType.DEVICE_KEY)
_RANK = {kind: rank for rank, kind in enumerate(PRECEDENCE)}


class Identity(NamedTuple):
    """A normalised identifier; hashable so it can key lookups of owners."""

    type: IdentityType
    value: str


class InvalidIdentity(ValueError):
    """``field`` is ``type`` or ``value``, so callers can name ``identities[i].<field>``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def normalize(kind: IdentityType | None, value: str, region: str = DEFAULT_REGION) -> Identity:
    """The canonical form of one identifier, or InvalidIdentity saying what is wrong.

    ``kind`` is None for a type the caller could not map (UNSPECIFIED or unknown).
    """
    if kind is None:
        raise InvalidIdentity("type", "must be one of " + ", ".join(PRECEDENCE))
    text = value.strip()
    if not text:
        raise InvalidIdentity("value", "must not be empty")
    if len(text) > MAX_LENGTH:
        raise InvalidIdentity("value", f"must be at most {MAX_LENGTH} characters")
    # Control characters are never part of a real identifier, and NUL cannot be stored.
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise InvalidIdentity("value", "must not contain control characters")
    if kind is IdentityType.EMAIL:
        text = _email(text)
    elif kind is IdentityType.PHONE:
        text = _phone(text, region)
    if len(text) > MAX_LENGTH:
        raise InvalidIdentity("value", f"must be at most {MAX_LENGTH} characters")
    return Identity(kind, text)


def _email(text: str) -> str:
    try:
        info = email_validator.validate_email(text, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise InvalidIdentity("value", f"not a valid email address: {exc}") from None
    # The validator lower-cases the domain only; the product treats the whole address as
    # case-insensitive, as partners expect ("Jane@x.com" is "jane@x.com").
    return info.normalized.lower()


def _phone(text: str, region: str) -> str:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidIdentity("value", f"not a valid phone number: {exc}") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidIdentity("value", "not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def by_precedence(identities: Iterable[Identity]) -> list[Identity]:
    """Identities in the order that decides resolution; ties keep the caller's order."""
    return sorted(identities, key=lambda ident: _RANK[ident.type])
