"""Identity normalisation: one spelling per identifier, so matching is exact.

Emails are trimmed and lower-cased after a syntax check (email-validator); phones are parsed
to E.164 (phonenumbers) with the tenant's default region; external ids and device keys are
trimmed. Normalising a normalised value changes nothing.
"""

from __future__ import annotations

import email_validator
import phonenumbers

TYPES = ("EXTERNAL", "EMAIL", "PHONE", "DEVICE_KEY")
PRECEDENCE = {t: i for i, t in enumerate(TYPES)}
MAX_LENGTH = 255


class InvalidIdentity(ValueError):
    pass


def normalize(kind: str, value: str, region: str = "US") -> str:
    if kind not in PRECEDENCE:
        raise InvalidIdentity(f"unknown identity type {kind!r}")
    text = value.strip()
    if not text:
        raise InvalidIdentity("must not be empty")
    if len(text) > MAX_LENGTH:
        raise InvalidIdentity(f"must be at most {MAX_LENGTH} characters")
    if kind == "EMAIL":
        try:
            info = email_validator.validate_email(text, check_deliverability=False)
        except email_validator.EmailNotValidError as exc:
            raise InvalidIdentity(f"not a valid email address: {exc}") from None
        return info.normalized.lower()
    if kind == "PHONE":
        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException as exc:
            raise InvalidIdentity(f"not a valid phone number: {exc}") from None
        if not phonenumbers.is_valid_number(number):
            raise InvalidIdentity("not a valid phone number")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return text
