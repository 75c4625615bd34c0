"""Reversals (issue 22): the request, checked, and the proportional amounts. Pure.

An event's reversals add up to a share of it, kept as an exact fraction. Each ledger entry
the event produced (its EARN entries, tier multiplier included) is reversed by the
difference between its amount at the new share and at the share reversed before, each
rounded toward zero at the program's precision: so the amounts of partial reversals add up
to at most the entry, and the reversal that reaches the whole takes the exact remainder.
"""

from __future__ import annotations

import decimal
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from accrual_platform import errors, text

from accrual_rules.domain import Json
from accrual_rules.domain.validation import decimal_text, parse_decimal

ZERO = decimal.Decimal(0)
ONE = Fraction(1)
#: Places of a share shown as a decimal when the fraction has no finite decimal form.
SHOWN_PLACES = 12


@dataclass(frozen=True)
class ReversalRequest:
    """A checked CreateReversal: exactly one of ``ratio`` and ``amount``."""

    event_id: str
    idempotency_key: str
    ratio: decimal.Decimal | None
    amount: decimal.Decimal | None
    reason: str

    def digest(self) -> str:
        """Canonical hash of the body, to tell a retry from a conflicting reuse of its key."""
        canonical = json.dumps({"ratio": None if self.ratio is None else decimal_text(self.ratio),
                                "amount": None if self.amount is None else decimal_text(self.amount),
                                "reason": self.reason}, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def share(self, monetary_value: decimal.Decimal | None) -> Fraction:
        """The share of the event this request takes back; ``monetary_value`` is the event's
        value of the program's monetary field (needed for an amount)."""
        if self.ratio is not None:
            return Fraction(self.ratio)
        assert self.amount is not None and monetary_value is not None and monetary_value > 0
        return Fraction(self.amount) / Fraction(monetary_value)


def check_reversal(event_id: str, idempotency_key: str, ratio: str | None, amount: str | None,
                   reason: str, v: list[errors.FieldViolation]) -> ReversalRequest:
    """``event_id`` is checked by the caller (its violations already in ``v``); raises every
    violation at once."""
    parsed_ratio = parsed_amount = None
    if (ratio is None) == (amount is None):
        v.append(errors.FieldViolation("ratio", "send exactly one of ratio and amount"))
    if ratio is not None:
        try:
            parsed_ratio = parse_decimal(ratio, "ratio", minimum=ZERO, exclusive=True)
            if parsed_ratio > 1:
                v.append(errors.FieldViolation("ratio", "must be greater than 0 and at most 1"))
        except errors.InvalidArgument as exc:
            v.extend(exc.violations)
    if amount is not None:
        try:
            parsed_amount = parse_decimal(amount, "amount", minimum=ZERO, exclusive=True)
        except errors.InvalidArgument as exc:
            v.extend(exc.violations)
    if not reason.strip() or len(reason) > 500:
        v.append(errors.FieldViolation("reason", "is required (1 to 500 characters)"))
    text.check_name(v, "reason", reason)
    if not 1 <= len(idempotency_key) <= 255:
        v.append(errors.FieldViolation("idempotency_key", "is required (1 to 255 characters)"))
    else:
        text.check_name(v, "idempotency_key", idempotency_key)
    errors.collect(v)
    return ReversalRequest(event_id, idempotency_key, parsed_ratio, parsed_amount, reason.strip())


def monetary_value(data: Mapping[str, Json], field: str) -> decimal.Decimal | None:
    """The event's money amount in ``field`` (a positive number), or None."""
    value = data.get(field)
    if isinstance(value, bool) or not isinstance(value, (int, float, str, decimal.Decimal)):
        return None
    try:
        number = decimal.Decimal(str(value))
    except decimal.InvalidOperation:
        return None
    return number if number.is_finite() and number > 0 else None


def _at(amount: decimal.Decimal, share: Fraction, precision: int) -> decimal.Decimal:
    """``amount`` times ``share``, rounded toward zero at ``precision`` places."""
    if share >= ONE:
        return amount
    quantum = Fraction(1, 10 ** precision)
    units = Fraction(amount) * share / quantum
    whole = units.numerator // units.denominator if units >= 0 else -((-units.numerator) // units.denominator)
    return (decimal.Decimal(whole).scaleb(-precision)).quantize(decimal.Decimal(1).scaleb(-precision))


def proportional(amounts: Sequence[decimal.Decimal], before: Fraction, after: Fraction,
                 precision: int) -> list[decimal.Decimal]:
    """What a reversal moving an event's reversed share from ``before`` to ``after`` takes
    from each of its entries' ``amounts`` (same sign as the amounts; the exact remainder of
    each when ``after`` is 1)."""
    assert ZERO <= before <= after <= ONE
    return [_at(a, after, precision) - _at(a, before, precision) for a in amounts]


def trim(amounts: Sequence[decimal.Decimal], short: decimal.Decimal) -> list[decimal.Decimal]:
    """``amounts`` (positive) less ``short`` in all, taken from the last ones first: the part of
    a reversal that could not be recovered (negative balance policy CLAMP)."""
    out = list(amounts)
    for i in range(len(out) - 1, -1, -1):
        if short <= 0:
            break
        cut = min(out[i], short)
        out[i] -= cut
        short -= cut
    return out


def fraction_text(share: Fraction) -> str:
    """The stored form of a share: exact, ``n/d``."""
    return f"{share.numerator}/{share.denominator}"


def parse_fraction(stored: str) -> Fraction:
    return Fraction(stored)


def shown(share: Fraction) -> str:
    """A share as the API shows it: exact when it has a finite decimal form, else rounded."""
    d = share.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    if d == 1:
        value = decimal.Decimal(share.numerator) / decimal.Decimal(share.denominator)
    else:
        value = (decimal.Decimal(share.numerator) / decimal.Decimal(share.denominator)).quantize(
            decimal.Decimal(1).scaleb(-SHOWN_PLACES))
    return decimal_text(value)
