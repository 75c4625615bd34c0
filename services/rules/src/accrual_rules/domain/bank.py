"""The points bank's pure rules: lots, the order debits consume them in, the negative balance
policy, and the expiry date math (ISO 8601 periods, rounding, end of day in the program's
timezone). No database here: :mod:`accrual_rules.store` applies these decisions to rows."""

from __future__ import annotations

import calendar
import datetime as dt
import decimal
import re
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

from accrual_rules.domain import Json

ZERO = decimal.Decimal(0)

LOT_STATUSES = ("PENDING", "ACTIVE", "EXHAUSTED", "EXPIRED", "CANCELLED")
EXPIRY_TYPES = ("NONE", "ROLLING", "CALENDAR", "SLIDING")
ROUNDINGS = ("NONE", "END_OF_MONTH", "END_OF_QUARTER", "END_OF_YEAR")
NEGATIVE_BALANCE = ("FORBID", "CLAMP", "ALLOW")
DEFAULT_LEAD_DAYS = (30, 7)
MAX_LEAD_DAYS = 3650
MAX_PERIOD_YEARS = 100


# -- lots and allocations -------------------------------------------------------------------
@dataclass
class Lot:
    """A credit's points as the bank tracks them (``remaining`` changes as debits consume it)."""

    id: str
    status: str
    original: decimal.Decimal
    remaining: decimal.Decimal
    earned_at: dt.datetime
    activates_at: dt.datetime | None = None
    expires_at: dt.datetime | None = None


def spend_key(lot: Lot) -> tuple[bool, dt.datetime, dt.datetime, str]:
    """Debits consume lots earliest expiry first, ties by earned_at then id; never-expiring last."""
    far = dt.datetime.max.replace(tzinfo=dt.UTC)
    return (lot.expires_at is None, lot.expires_at or far, lot.earned_at, lot.id)


def spend_order(lots: Iterable[Lot]) -> list[Lot]:
    return sorted(lots, key=spend_key)


@dataclass(frozen=True)
class Allocation:
    """``amount`` points of lot ``lot_id`` consumed by one debit (negative: restored into it)."""

    lot_id: str
    amount: decimal.Decimal


@dataclass(frozen=True)
class Debit:
    """How a debit of ``requested`` points is covered: from lots (``allocations``), as new debt
    (ALLOW), or not at all (``unrecovered``, CLAMP). ``amount`` is what the ledger entry takes."""

    requested: decimal.Decimal
    allocations: tuple[Allocation, ...]
    debt: decimal.Decimal = ZERO
    unrecovered: decimal.Decimal = ZERO

    @property
    def allocated(self) -> decimal.Decimal:
        return sum((a.amount for a in self.allocations), ZERO)

    @property
    def amount(self) -> decimal.Decimal:
        """Points the entry debits: all requested, less what CLAMP could not recover."""
        return self.requested - self.unrecovered


class InsufficientPoints(Exception):
    """FORBID: the eligible lots cannot cover the debit."""

    def __init__(self, requested: decimal.Decimal, available: decimal.Decimal) -> None:
        super().__init__(f"debit of {requested} exceeds the {available} points available")
        self.requested = requested
        self.available = available


def allocate(lots: Sequence[Lot], amount: decimal.Decimal, policy: str = "FORBID") -> Debit:
    """Cover a debit of ``amount`` (> 0) from ``lots`` in the order given (the caller puts them
    in spend order, or its own, e.g. a reversal's event lots first), applying the negative
    balance ``policy`` to what they cannot cover. Pure: the lots are not changed."""
    if amount <= 0:
        raise ValueError("a debit amount is positive")
    left = amount
    out: list[Allocation] = []
    for lot in lots:
        if left <= 0:
            break
        take = min(lot.remaining, left)
        if take > 0:
            out.append(Allocation(lot.id, take))
            left -= take
    if left <= 0:
        return Debit(amount, tuple(out))
    if policy == "ALLOW":
        return Debit(amount, tuple(out), debt=left)
    if policy == "CLAMP":
        return Debit(amount, tuple(out), unrecovered=left)
    raise InsufficientPoints(amount, amount - left)


def apply_allocations(lots: Mapping[str, Lot], allocations: Iterable[Allocation]) -> list[Lot]:
    """Lots after the allocations (new objects, status EXHAUSTED at 0, ACTIVE again when a
    restore refills an EXHAUSTED one); never below 0 nor above the original."""
    changed: list[Lot] = []
    for a in allocations:
        lot = lots[a.lot_id]
        remaining = lot.remaining - a.amount
        if remaining < 0 or remaining > lot.original:
            raise ValueError(f"lot {lot.id}: {a.amount} would leave {remaining} of {lot.original}")
        status = lot.status
        if remaining == 0 and status in ("ACTIVE", "PENDING"):
            status = "EXHAUSTED"
        elif remaining > 0 and status == "EXHAUSTED":
            status = "ACTIVE"
        changed.append(replace(lot, remaining=remaining, status=status))
    return changed


def pay_debt(credit: decimal.Decimal, debt: decimal.Decimal) -> decimal.Decimal:
    """What of an active credit pays off debt first (the rest stays in its lot)."""
    return min(credit, debt) if credit > 0 and debt > 0 else ZERO


def restore_plan(allocations: Sequence[Allocation], amount: decimal.Decimal) -> list[Allocation]:
    """Give back up to ``amount`` points into the lots a debit consumed, last consumed first
    (the reverse of the spend order); returns negative allocations."""
    left = amount
    out: list[Allocation] = []
    for a in reversed(allocations):
        if left <= 0:
            break
        give = min(a.amount, left)
        if give > 0:
            out.append(Allocation(a.lot_id, -give))
            left -= give
    return out


# -- policies -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Period:
    """An ISO 8601 duration of whole days, weeks, months and years (``P12M``, ``P1Y6M``, ``P30D``)."""

    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0

    def __str__(self) -> str:
        parts = [f"{n}{u}" for n, u in ((self.years, "Y"), (self.months, "M"), (self.weeks, "W"),
                                        (self.days, "D")) if n]
        return "P" + "".join(parts) if parts else "P0D"

    @property
    def empty(self) -> bool:
        return not (self.years or self.months or self.weeks or self.days)


_PERIOD = re.compile(r"P(?:(\d{1,4})Y)?(?:(\d{1,5})M)?(?:(\d{1,5})W)?(?:(\d{1,6})D)?")


def parse_period(text: str) -> Period:
    """``P…`` with Y, M, W, D parts (no time part: expiry counts whole days)."""
    m = _PERIOD.fullmatch(text.strip().upper())
    if not m or text.strip().upper() == "P":
        raise ValueError("must be an ISO 8601 period of years, months, weeks and days, e.g. P12M or P30D")
    years, months, weeks, days = (int(g) if g else 0 for g in m.groups())
    period = Period(years, months, weeks, days)
    if period.empty:
        raise ValueError("must be longer than zero days")
    if years + months / 12 + (weeks * 7 + days) / 365 > MAX_PERIOD_YEARS:
        raise ValueError(f"must be at most {MAX_PERIOD_YEARS} years")
    return period


def add_months(day: dt.date, months: int) -> dt.date:
    """Calendar month arithmetic that clamps to the month's end (Jan 31 + 1 month = Feb 28/29)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return dt.date(year, month + 1, min(day.day, last))


def add_period(day: dt.date, period: Period) -> dt.date:
    return add_months(day, period.years * 12 + period.months) + dt.timedelta(weeks=period.weeks, days=period.days)


def round_up(day: dt.date, rounding: str) -> dt.date:
    """The last day of the day's month, quarter or year (NONE: the day itself)."""
    if rounding == "END_OF_MONTH":
        return day.replace(day=calendar.monthrange(day.year, day.month)[1])
    if rounding == "END_OF_QUARTER":
        last_month = (day.month - 1) // 3 * 3 + 3
        return dt.date(day.year, last_month, calendar.monthrange(day.year, last_month)[1])
    if rounding == "END_OF_YEAR":
        return dt.date(day.year, 12, 31)
    return day


@lru_cache(maxsize=256)
def zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def end_of_day(day: dt.date, timezone: str) -> dt.datetime:
    """The instant the day ends in ``timezone`` (the next local midnight), in UTC: a lot is
    expired once the clock reaches it. DST is the zone's business: a 23- or 25-hour day ends
    at its own midnight."""
    midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=zone(timezone))
    return midnight.astimezone(dt.UTC)


def local_date(at: dt.datetime, timezone: str) -> dt.date:
    return at.astimezone(zone(timezone)).date()


@dataclass(frozen=True)
class ExpiryPolicy:
    """When a lot's points expire: NONE; ROLLING (``period`` after the points start, rounded
    up to the end of the month, quarter or year); CALENDAR (the end of the first ``month_day``,
    ``MM-DD``, on or after that day); SLIDING (``period`` after the participant's latest
    activity of the ``activity`` event types, any when empty: every active lot is extended)."""

    type: str = "NONE"
    period: Period | None = None
    rounding: str = "NONE"
    month_day: str = ""
    activity: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Json]:
        out: dict[str, Json] = {"type": self.type}
        if self.type in ("ROLLING", "SLIDING"):
            out["period"] = str(self.period)
        if self.type == "ROLLING":
            out["rounding"] = self.rounding
        if self.type == "CALENDAR":
            out["month_day"] = self.month_day
        if self.type == "SLIDING":
            out["activity"] = list(self.activity)
        return out

    def expires_at(self, start: dt.datetime, timezone: str) -> dt.datetime | None:
        """When points that start counting at ``start`` expire (None: never)."""
        if self.type == "NONE":
            return None
        day = local_date(start, timezone)
        if self.type == "CALENDAR":
            month, mday = (int(x) for x in self.month_day.split("-"))
            target = _month_day(day.year, month, mday)
            if target < day:
                target = _month_day(day.year + 1, month, mday)
            return end_of_day(target, timezone)
        assert self.period is not None
        rounding = self.rounding if self.type == "ROLLING" else "NONE"
        return end_of_day(round_up(add_period(day, self.period), rounding), timezone)

    def extends_on(self, event_type: str) -> bool:
        """Whether an event of this type slides the participant's active lots."""
        return self.type == "SLIDING" and (not self.activity or event_type in self.activity)


def _month_day(year: int, month: int, mday: int) -> dt.date:
    return dt.date(year, month, min(mday, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class BankPolicy:
    """A program's points bank settings (a policy change applies to new lots only)."""

    expiry: ExpiryPolicy = field(default_factory=ExpiryPolicy)
    timezone: str = "UTC"
    negative_balance: str = "FORBID"
    #: days before an expiry that points.expiring is announced
    expiring_lead_days: tuple[int, ...] = DEFAULT_LEAD_DAYS

    def to_json(self) -> dict[str, Json]:
        return {"expiry": self.expiry.to_json(), "timezone": self.timezone,
                "negative_balance": self.negative_balance,
                "expiring_lead_days": list(self.expiring_lead_days)}


def expiry_from_json(raw: Mapping[str, Json] | None) -> ExpiryPolicy:
    """An expiry policy as stored (validated before it was)."""
    if not raw:
        return ExpiryPolicy()
    period = raw.get("period")
    return ExpiryPolicy(type=str(raw.get("type") or "NONE"),
                        period=parse_period(period) if period else None,
                        rounding=str(raw.get("rounding") or "NONE"), month_day=str(raw.get("month_day") or ""),
                        activity=tuple(raw.get("activity") or ()))


def policy_from_json(raw: Mapping[str, Json] | None) -> BankPolicy:
    """A program's bank policy as stored (None: the defaults, no expiry)."""
    if not raw:
        return BankPolicy()
    return BankPolicy(expiry=expiry_from_json(raw.get("expiry")), timezone=str(raw.get("timezone") or "UTC"),
                      negative_balance=str(raw.get("negative_balance") or "FORBID"),
                      expiring_lead_days=tuple(int(d) for d in raw.get("expiring_lead_days") or DEFAULT_LEAD_DAYS))


def check_expiry(raw: Mapping[str, Json], prefix: str) -> tuple[ExpiryPolicy, list[tuple[str, str]]]:
    """Validate an expiry policy; (the policy, (field, problem) pairs)."""
    problems: list[tuple[str, str]] = []
    kind = str(raw.get("type") or "NONE")
    if kind not in EXPIRY_TYPES:
        return ExpiryPolicy(), [(f"{prefix}.type", "must be NONE, ROLLING, CALENDAR or SLIDING")]
    period: Period | None = None
    if kind in ("ROLLING", "SLIDING"):
        try:
            period = parse_period(str(raw.get("period") or ""))
        except ValueError as exc:
            problems.append((f"{prefix}.period", str(exc)))
    elif raw.get("period"):
        problems.append((f"{prefix}.period", f"is only for ROLLING and SLIDING, not {kind}"))
    rounding = str(raw.get("rounding") or "NONE")
    if rounding not in ROUNDINGS:
        problems.append((f"{prefix}.rounding", "must be NONE, END_OF_MONTH, END_OF_QUARTER or END_OF_YEAR"))
    elif rounding != "NONE" and kind != "ROLLING":
        problems.append((f"{prefix}.rounding", "is only for ROLLING"))
    month_day = str(raw.get("month_day") or "")
    if kind == "CALENDAR":
        m = re.fullmatch(r"(\d\d)-(\d\d)", month_day)
        if not m or not 1 <= int(m.group(1)) <= 12 or \
                not 1 <= int(m.group(2)) <= calendar.monthrange(2024, int(m.group(1)))[1]:
            problems.append((f"{prefix}.month_day", "must be a day of the year as MM-DD, e.g. 12-31"))
    elif month_day:
        problems.append((f"{prefix}.month_day", "is only for CALENDAR"))
    activity = raw.get("activity") or []
    if not isinstance(activity, list) or not all(isinstance(a, str) and 0 < len(a) <= 255 for a in activity) \
            or len(activity) > 100:
        problems.append((f"{prefix}.activity", "must be a list of at most 100 event types"))
        activity = []
    elif activity and kind != "SLIDING":
        problems.append((f"{prefix}.activity", "is only for SLIDING"))
    return ExpiryPolicy(kind, period, rounding, month_day, tuple(activity)), problems


def check_policy(raw: Mapping[str, Json]) -> tuple[BankPolicy, list[tuple[str, str]]]:
    """Validate a program's bank policy fields; (the policy, (field, problem) pairs)."""
    expiry, problems = check_expiry(raw.get("expiry") or {}, "expiry")
    timezone = str(raw.get("timezone") or "UTC")
    try:
        if len(timezone) > 64:
            raise ValueError(timezone)
        zone(timezone)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        problems.append(("timezone", "must be an IANA time zone, e.g. Europe/Paris"))
        timezone = "UTC"
    negative = str(raw.get("negative_balance") or "FORBID")
    if negative not in NEGATIVE_BALANCE:
        problems.append(("negative_balance", "must be FORBID, CLAMP or ALLOW"))
    leads_raw = raw.get("expiring_lead_days")
    leads = DEFAULT_LEAD_DAYS
    if leads_raw:
        if not isinstance(leads_raw, list) or len(leads_raw) > 10 or not all(
                isinstance(d, int) and 0 < d <= MAX_LEAD_DAYS for d in leads_raw):
            problems.append(("expiring_lead_days", f"must be at most 10 days counts, each 1-{MAX_LEAD_DAYS}"))
        else:
            leads = tuple(sorted(set(leads_raw), reverse=True))
    return BankPolicy(expiry, timezone, negative, leads), problems

