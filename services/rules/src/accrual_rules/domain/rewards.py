"""Rewards and redemptions, the pure part (issue 23): a reward's field checks, why a
participant cannot redeem one, a redemption request's canonical hash, and the state machine
of a redemption (which transition a capture, cancel, refund or expiry makes, or why it is
refused). No database here: :mod:`accrual_rules.rewards_store` applies these decisions."""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from accrual_platform import errors, text

from accrual_rules.domain.bank import Allocation, add_months, parse_period
from accrual_rules.domain.validation import decimal_text, parse_decimal

ZERO = decimal.Decimal(0)
REWARD_STATUSES = ("DRAFT", "ACTIVE", "INACTIVE")
STATES = ("HELD", "CAPTURED", "CANCELLED", "EXPIRED", "PARTIALLY_REFUNDED", "REFUNDED")
#: states whose redemptions count towards a per-participant limit (and keep a stock unit)
COUNTED_STATES = ("HELD", "CAPTURED", "PARTIALLY_REFUNDED")
DEFAULT_HOLD_TTL = dt.timedelta(minutes=15)
MAX_HOLD_TTL = dt.timedelta(days=7)
MAX_LIMIT_COUNT = 1_000_000
MAX_STOCK = 10**12
MAX_TIERS = 100


# -- the catalogue --------------------------------------------------------------------------
@dataclass(frozen=True)
class RewardLimit:
    """``count`` redemptions per participant over ``period`` (ISO 8601, counted back from now;
    empty: ever)."""

    count: int
    period: str = ""

    def window_start(self, now: dt.datetime) -> dt.datetime | None:
        """Where the counted window starts (None: it has no start)."""
        if not self.period:
            return None
        p = parse_period(self.period)
        day = add_months(now.date(), -(p.years * 12 + p.months)) - dt.timedelta(weeks=p.weeks, days=p.days)
        return dt.datetime.combine(day, now.timetz())


@dataclass(frozen=True)
class RewardFields:
    """A reward's settable fields."""

    name: str
    cost_points: decimal.Decimal
    description: str = ""
    stock: int | None = None
    limit: RewardLimit | None = None
    eligible_tiers: tuple[str, ...] = ()
    active_from: dt.datetime | None = None
    active_to: dt.datetime | None = None
    status: str = "DRAFT"


def parse_cost(value: str, field_name: str = "cost_points") -> decimal.Decimal:
    """A price or an amount of points: an exact decimal above 0."""
    return parse_decimal(value, field_name, minimum=ZERO, exclusive=True)


def check_reward(fields: RewardFields, tiers: Sequence[str]) -> RewardFields:
    """Check every field (``tiers``: the program's tier names); the clean fields, or one 400
    naming every violation."""
    v: list[errors.FieldViolation] = []
    name = fields.name.strip()
    if not 1 <= len(name) <= 200:
        v.append(errors.FieldViolation("name", "is required (1 to 200 characters)"))
    text.check_name(v, "name", fields.name)
    if len(fields.description) > 2000:
        v.append(errors.FieldViolation("description", "must be at most 2000 characters"))
    if fields.cost_points <= 0:
        v.append(errors.FieldViolation("cost_points", "must be > 0"))
    if fields.stock is not None and not 0 <= fields.stock <= MAX_STOCK:
        v.append(errors.FieldViolation("stock", f"must be between 0 and {MAX_STOCK}"))
    limit = fields.limit
    if limit is not None:
        if not 1 <= limit.count <= MAX_LIMIT_COUNT:
            v.append(errors.FieldViolation("per_participant_limit.count", f"must be between 1 and {MAX_LIMIT_COUNT}"))
        if limit.period:
            try:
                limit = replace(limit, period=str(parse_period(limit.period)))
            except ValueError as exc:
                v.append(errors.FieldViolation("per_participant_limit.period", str(exc)))
    if len(fields.eligible_tiers) > MAX_TIERS:
        v.append(errors.FieldViolation("eligible_tiers", f"must list at most {MAX_TIERS} tiers"))
    for i, tier in enumerate(fields.eligible_tiers[:MAX_TIERS]):
        if tier not in tiers:
            v.append(errors.FieldViolation(f"eligible_tiers[{i}]", "is not a tier of the program"))
        elif tier in fields.eligible_tiers[:i]:
            v.append(errors.FieldViolation(f"eligible_tiers[{i}]", "is listed twice"))
    if fields.active_from and fields.active_to and fields.active_from >= fields.active_to:
        v.append(errors.FieldViolation("active_to", "must be after active_from"))
    if fields.status not in REWARD_STATUSES:
        v.append(errors.FieldViolation("status", "must be DRAFT, ACTIVE or INACTIVE"))
    errors.collect(v)
    return replace(fields, name=name, limit=limit)


# -- can this participant redeem it? ---------------------------------------------------------
@dataclass(frozen=True)
class Unavailable:
    """One reason a reward cannot be redeemed (``shortfall``: insufficient_points only)."""

    code: str
    message: str
    shortfall: decimal.Decimal = ZERO


@dataclass(frozen=True)
class Standing:
    """What a reward's checks need to know about the participant, read under its lock."""

    available: decimal.Decimal
    tier: str | None
    #: redemptions of the reward counted in the limit's window
    redeemed: int = 0


def is_live(fields: RewardFields, now: dt.datetime) -> bool:
    """ACTIVE and inside its active window."""
    return (fields.status == "ACTIVE" and (fields.active_from is None or fields.active_from <= now)
            and (fields.active_to is None or now < fields.active_to))


def unavailable(fields: RewardFields, standing: Standing, now: dt.datetime, *,
                points: bool = True) -> list[Unavailable]:
    """Every reason the participant cannot redeem the reward now, in a fixed order (empty:
    available). ``points``: whether to check the balance too."""
    out: list[Unavailable] = []
    if not is_live(fields, now):
        out.append(Unavailable("inactive", "the reward is not active now"))
    if fields.eligible_tiers and standing.tier not in fields.eligible_tiers:
        out.append(Unavailable("tier_not_eligible",
                               f"the reward is for tiers {', '.join(fields.eligible_tiers)}"))
    if fields.stock is not None and fields.stock <= 0:
        out.append(Unavailable("out_of_stock", "the reward is out of stock"))
    if fields.limit is not None and standing.redeemed >= fields.limit.count:
        over = f" in {fields.limit.period}" if fields.limit.period else ""
        out.append(Unavailable("limit_reached",
                               f"the participant redeemed it {standing.redeemed} times{over} "
                               f"(limit {fields.limit.count})"))
    if points and standing.available < fields.cost_points:
        short = fields.cost_points - standing.available
        out.append(Unavailable("insufficient_points",
                               f"{decimal_text(short)} more points needed", short))
    return out


#: the reason code a refused redemption answers for each unavailability
REFUSAL_REASONS = {"inactive": "reward_inactive", "tier_not_eligible": "tier_not_eligible",
                   "out_of_stock": "out_of_stock", "limit_reached": "limit_reached",
                   "insufficient_points": "insufficient_points"}


def insufficient(available: decimal.Decimal, required: decimal.Decimal) -> errors.Conflict:
    """409 insufficient_points with available, required and shortfall."""
    shortfall = required - available
    return errors.Conflict(
        f"insufficient points: {decimal_text(required)} required, {decimal_text(available)} available",
        reason="insufficient_points",
        metadata={"available": decimal_text(available), "required": decimal_text(required),
                  "shortfall": decimal_text(shortfall)})


def refusal(reason: Unavailable, available: decimal.Decimal, required: decimal.Decimal) -> errors.Conflict:
    """The 409 a redemption gets for the first reason it cannot go ahead."""
    if reason.code == "insufficient_points":
        return insufficient(available, required)
    return errors.Conflict(reason.message, reason=REFUSAL_REASONS[reason.code])


# -- a redemption request --------------------------------------------------------------------
@dataclass(frozen=True)
class RedemptionRequest:
    """A checked CreateRedemption: exactly one of ``reward_id`` and ``points``."""

    participant_id: str
    idempotency_key: str
    reward_id: str | None
    points: decimal.Decimal | None
    capture: bool
    hold_ttl: dt.timedelta
    external_ref: str

    def digest(self) -> str:
        """Canonical hash, to tell a retry from a conflicting reuse of the key."""
        canonical = json.dumps({
            "participant_id": self.participant_id, "reward_id": self.reward_id,
            "points": None if self.points is None else decimal_text(self.points), "capture": self.capture,
            "hold_ttl": self.hold_ttl.total_seconds(), "external_ref": self.external_ref}, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()


def check_redemption(v: list[errors.FieldViolation], participant_id: str, idempotency_key: str,
                     reward_id: str, points: str, capture: bool, hold_ttl: dt.timedelta | None,
                     external_ref: str) -> RedemptionRequest:
    """The request's fields (``participant_id`` and ``reward_id`` are checked by the caller,
    their violations already in ``v``); raises every violation at once."""
    amount: decimal.Decimal | None = None
    if bool(reward_id) == bool(points):
        v.append(errors.FieldViolation("reward_id", "give exactly one of reward_id and points"))
    elif points:
        try:
            amount = parse_cost(points, "points")
        except errors.InvalidArgument as exc:
            v.extend(exc.violations)
    if not 1 <= len(idempotency_key) <= 255:
        v.append(errors.FieldViolation("idempotency_key", "is required (1 to 255 characters)"))
    ttl = DEFAULT_HOLD_TTL if hold_ttl is None else hold_ttl
    if not dt.timedelta(seconds=1) <= ttl <= MAX_HOLD_TTL:
        v.append(errors.FieldViolation("hold_ttl", "must be between 1s and 7 days"))
    if len(external_ref) > 255:
        v.append(errors.FieldViolation("external_ref", "must be at most 255 characters"))
    text.check_name(v, "external_ref", external_ref)
    errors.collect(v)
    return RedemptionRequest(participant_id, idempotency_key, reward_id or None, amount, capture, ttl,
                             external_ref)


def refund_hash(points: decimal.Decimal | None, reason: str) -> str:
    canonical = json.dumps({"points": None if points is None else decimal_text(points), "reason": reason},
                           sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


# -- the state machine -----------------------------------------------------------------------
@dataclass(frozen=True)
class Redemption:
    """A redemption's amounts and state (all in points)."""

    state: str
    points: decimal.Decimal
    hold_expires_at: dt.datetime
    captured: decimal.Decimal = ZERO
    refunded: decimal.Decimal = ZERO
    released: decimal.Decimal = ZERO


@dataclass(frozen=True)
class Move:
    """What a transition does: the new redemption, the points it gives back to the lots
    (``release``: a hold's unspent points; ``refund``: captured ones), and whether the
    reward's stock unit comes back. ``same``: nothing to do (an idempotent retry)."""

    after: Redemption
    release: decimal.Decimal = ZERO
    refund: decimal.Decimal = ZERO
    restock: bool = False
    same: bool = False


def invalid_state(state: str, action: str) -> errors.Conflict:
    return errors.Conflict(f"a {state} redemption cannot be {action}", reason="invalid_state",
                           metadata={"state": state})


def capture(r: Redemption, points: decimal.Decimal | None, now: dt.datetime) -> Move:
    """Spend ``points`` of a hold (None: all); the rest is released. Capturing again the
    same points answers the redemption as it is."""
    if r.state in ("CAPTURED", "PARTIALLY_REFUNDED", "REFUNDED"):
        if points is None or points == r.captured:
            return Move(r, same=True)
        raise invalid_state(r.state, "captured again with other points")
    if r.state == "EXPIRED" or (r.state == "HELD" and now >= r.hold_expires_at):
        raise errors.Conflict("the hold expired before it was captured", reason="hold_expired")
    if r.state != "HELD":
        raise invalid_state(r.state, "captured")
    spend = r.points if points is None else points
    if spend > r.points:
        raise errors.InvalidArgument.field("points", f"must be at most the {decimal_text(r.points)} points held")
    rest = r.points - spend
    return Move(replace(r, state="CAPTURED", captured=spend, released=rest), release=rest)


def cancel(r: Redemption) -> Move:
    """Release a hold in full; cancelling again answers it as it is."""
    if r.state == "CANCELLED":
        return Move(r, same=True)
    if r.state != "HELD":
        raise invalid_state(r.state, "cancelled")
    return Move(replace(r, state="CANCELLED", released=r.points), release=r.points, restock=True)


def expire(r: Redemption, now: dt.datetime) -> Move | None:
    """Release a hold past its time to live (None: not due, or no longer held)."""
    if r.state != "HELD" or now < r.hold_expires_at:
        return None
    return Move(replace(r, state="EXPIRED", released=r.points), release=r.points, restock=True)


def refund(r: Redemption, points: decimal.Decimal | None) -> Move:
    """Give back ``points`` of what is captured (None: all that is left); the last point
    refunded makes it REFUNDED and returns the reward's stock unit."""
    if r.state not in ("CAPTURED", "PARTIALLY_REFUNDED"):
        raise invalid_state(r.state, "refunded")
    left = r.captured - r.refunded
    amount = left if points is None else points
    if amount > left:
        raise errors.InvalidArgument.field("points",
                                           f"must be at most the {decimal_text(left)} points not yet refunded")
    refunded = r.refunded + amount
    state = "REFUNDED" if refunded == r.captured else "PARTIALLY_REFUNDED"
    return Move(replace(r, state=state, refunded=refunded), refund=amount, restock=state == "REFUNDED")


# -- which lots get points back ------------------------------------------------------------
@dataclass
class Outstanding:
    """What a redemption still has out of each lot: its hold's allocations (in spend order)
    less what releases and refunds put back."""

    taken: list[Allocation] = field(default_factory=list)

    @classmethod
    def of(cls, hold: Sequence[Allocation], returned: Sequence[Allocation]) -> Outstanding:
        """``returned``: the negative allocations of the redemption's releases and refunds."""
        back: dict[str, decimal.Decimal] = {}
        for a in returned:
            back[a.lot_id] = back.get(a.lot_id, ZERO) - a.amount
        out: list[Allocation] = []
        for a in hold:
            still = a.amount - back.pop(a.lot_id, ZERO)
            if still > 0:
                out.append(Allocation(a.lot_id, still))
        return cls(out)

    @property
    def total(self) -> decimal.Decimal:
        return sum((a.amount for a in self.taken), ZERO)
