"""Rule evaluation: pure, deterministic, no I/O.

Given a program (tiers, rounding), its active rules in order and one event with its
participant, decide for every rule whether it matched (or why not) and how many points it
awards. ``now`` is the event timestamp, so reprocessing gives the same answer.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

import orjson

from accrual_rules.domain import Json
from accrual_rules.domain.expressions import Compiled, ExpressionError, compile_expression, shown, to_decimal

ZERO = decimal.Decimal(0)
#: The most points one ledger entry may carry (an adjustment or a rule's award): the ledger's
#: NUMERIC(30, 10) holds 20 digits before the point, so balances keep room to add up.
MAX_POINTS = decimal.Decimal("1e18")

ROUNDINGS = {
    "FLOOR": decimal.ROUND_FLOOR,
    "CEILING": decimal.ROUND_CEILING,
    "HALF_UP": decimal.ROUND_HALF_UP,
    "HALF_EVEN": decimal.ROUND_HALF_EVEN,
}


@dataclass(frozen=True)
class Tier:
    name: str
    min_lifetime_points: decimal.Decimal
    multiplier: decimal.Decimal


@dataclass(frozen=True)
class ProgramPolicy:
    program_id: str
    name: str
    tiers: tuple[Tier, ...] = ()
    rounding_mode: str = "FLOOR"
    rounding_precision: int = 0

    def tier_for(self, lifetime: decimal.Decimal) -> Tier | None:
        reached = [t for t in self.tiers if lifetime >= t.min_lifetime_points]
        return max(reached, key=lambda t: t.min_lifetime_points) if reached else None

    def round(self, points: decimal.Decimal) -> decimal.Decimal:
        return points.quantize(_quantum(self.rounding_precision), rounding=ROUNDINGS[self.rounding_mode])


@lru_cache(maxsize=64)
def _quantum(precision: int) -> decimal.Decimal:
    return decimal.Decimal(1).scaleb(-precision)


CAP_FIELDS = ("max_points_per_event", "per_participant_daily", "per_participant_weekly",
              "per_participant_monthly", "per_participant_lifetime", "total_budget")
# Cap -> the usage window it counts (None: not counted from the ledger).
CAP_WINDOWS = {"per_participant_daily": "day", "per_participant_weekly": "week",
               "per_participant_monthly": "month", "per_participant_lifetime": "lifetime",
               "total_budget": "budget"}


@dataclass(frozen=True)
class Caps:
    """Limits of one rule; None = no limit."""

    max_points_per_event: decimal.Decimal | None = None
    per_participant_daily: decimal.Decimal | None = None
    per_participant_weekly: decimal.Decimal | None = None
    per_participant_monthly: decimal.Decimal | None = None
    per_participant_lifetime: decimal.Decimal | None = None
    total_budget: decimal.Decimal | None = None

    @classmethod
    def from_json(cls, raw: Mapping[str, Json] | None) -> Caps:
        raw = raw or {}
        return cls(**{k: decimal.Decimal(str(raw[k])) for k in CAP_FIELDS if raw.get(k) is not None})

    def to_json(self) -> dict[str, str]:
        return {k: str(getattr(self, k)) for k in CAP_FIELDS if getattr(self, k) is not None}

    # Derived once, in __post_init__ (evaluate() asks for every rule of every event; not
    # functools.cached_property: on Python 3.11 its lock is shared by all instances).
    _counted: tuple[str, ...] = dataclasses.field(init=False, repr=False, compare=False)
    #: whether any cap applies (most rules have none)
    limited: bool = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        counted = tuple(k for k in CAP_WINDOWS if getattr(self, k) is not None)
        object.__setattr__(self, "_counted", counted)
        object.__setattr__(self, "limited", self.max_points_per_event is not None or bool(counted))

    def counted(self) -> tuple[str, ...]:
        """The caps that need usage from the ledger."""
        return self._counted


@dataclass(frozen=True)
class CapUsage:
    """Points a rule already awarded: to this participant in the event's day, ISO week, month,
    ever, and to everybody (budget)."""

    day: decimal.Decimal = ZERO
    week: decimal.Decimal = ZERO
    month: decimal.Decimal = ZERO
    lifetime: decimal.Decimal = ZERO
    budget: decimal.Decimal = ZERO


def window_starts(at: dt.datetime) -> dict[str, dt.datetime]:
    """Start of the UTC day, ISO week (Monday) and month of ``at``: the cap windows."""
    at = at.astimezone(dt.UTC)
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    return {"day": day, "week": day - dt.timedelta(days=day.weekday()), "month": day.replace(day=1)}


@dataclass(frozen=True)
class RuleTerms:
    """What a rule says, alike in a request (validation.RuleFields) and in the evaluator's spec."""

    name: str
    event_type: str
    condition: str
    formula: str
    apply_tier_multiplier: bool
    order: int
    stop_after_match: bool
    active_from: dt.datetime | None
    active_to: dt.datetime | None


@dataclass(frozen=True)
class RuleKey:
    """Which rule, at which version (a base of RuleSpec so that both lead its fields)."""

    rule_id: str
    version: int


@dataclass(frozen=True)
class RuleSpec(RuleTerms, RuleKey):
    status: str = "ACTIVE"
    caps: Caps = Caps()
    #: times the rule went over the sandbox's budget since it was last saved
    budget_breaches: int = 0


@dataclass(frozen=True)
class EventFacts:
    event_id: str
    event_type: str
    timestamp: dt.datetime
    properties: dict[str, Json]
    participant: dict[str, Json] = field(default_factory=dict)


class Evaluation(NamedTuple):
    """One rule's verdict on one event (a tuple: a hundred are made per event)."""

    rule_id: str
    version: int
    name: str
    matched: bool
    skip_reason: str = ""
    message: str = ""
    points: decimal.Decimal = decimal.Decimal(0)


NO_USAGE = CapUsage()
_UNANSWERED = object()


@lru_cache(maxsize=8192)
def compiled_rule(rule_id: str, version: int, condition: str, formula: str
                  ) -> tuple[Compiled | None, Compiled, Compiled | None]:
    """Compiled condition, formula and, for a rule with a condition, both in one expression
    (sources are part of the key so a draft rule without an id never picks up another rule's
    expressions).

    The combined form, ``(condition) ? [true, (formula)] : [false]``, asks the engine once
    instead of twice per rule (its ternary evaluates only the branch taken, so a formula is
    still not run when the condition is false). Whatever it cannot answer plainly (a
    condition that is not a boolean, an error) is asked again of each expression on its own,
    so verdicts and messages are exactly those of the two."""
    compiled_condition = compile_expression(condition) if condition.strip() else None
    compiled_formula = compile_expression(formula)
    both = None
    if compiled_condition is not None:
        try:
            both = compile_expression(f"({condition}) ? [true, ({formula})] : [false]")
        except ExpressionError:
            both = None
    return compiled_condition, compiled_formula, both


def context_for(program: ProgramPolicy, event: EventFacts, tier: Tier | None,
                lifetime_points: decimal.Decimal) -> dict[str, Json]:
    """What expressions see. ``now`` is the event timestamp, so reprocessing is deterministic."""
    return {
        "properties": event.properties,
        "event_type": event.event_type,
        "event": {"id": event.event_id, "type": event.event_type,
                  "timestamp": event.timestamp.isoformat()},
        "participant": {"attributes": {}, **event.participant, "tier": tier.name if tier else None,
                        "lifetime_points": float(lifetime_points)},
        "program": {"id": program.program_id, "name": program.name},
        "now": event.timestamp.isoformat(),
    }


def apply_caps(rule: RuleSpec, points: decimal.Decimal, usage: CapUsage) -> tuple[decimal.Decimal, str]:
    """Points left after the rule's caps, and the name of the cap that limited them ("" if none).

    A rule that would go over a cap awards what is left under it."""
    limited_by = ""
    caps = rule.caps
    if caps.max_points_per_event is not None and points > caps.max_points_per_event:
        points, limited_by = caps.max_points_per_event, "max_points_per_event"
    for cap in caps.counted():
        left = max(getattr(caps, cap) - getattr(usage, CAP_WINDOWS[cap]), ZERO)
        if points > left:
            points, limited_by = left, cap
    return points, limited_by


def _order(rule: RuleSpec) -> tuple[int, str]:
    return rule.order, rule.rule_id


class Breach(NamedTuple):
    """A rule's expressions went past the sandbox's budget on an event, or crashed it:
    ``reason`` is evaluation_timeout, evaluation_resource_exhausted or evaluation_crashed."""

    reason: str
    message: str


#: What the expressions of one rule gave on one event: the formula's number (condition true),
#: False (condition false), an error message (str), a Breach, or None (not asked: the rule
#: was skipped before its expressions, for its status, event type or time window).
Answer = decimal.Decimal | bool | str | Breach | None


def expression_needed(rule: RuleSpec, event: EventFacts) -> bool:
    """Whether evaluate() asks the rule's expressions about this event (stop_after_match aside:
    what an earlier rule does is not known until its caps are applied)."""
    if rule.status != "ACTIVE":
        return False
    if rule.event_type and rule.event_type != event.event_type:
        return False
    return not ((rule.active_from and event.timestamp < rule.active_from) or (
        rule.active_to and event.timestamp >= rule.active_to))


def ordered(rules: Sequence[RuleSpec]) -> list[RuleSpec]:
    """Rules in evaluation order: answers are given in this order."""
    return sorted(rules, key=_order)


def answer(rule: RuleSpec, context: dict[str, Json],
           made: dict[frozenset[str], bytes | dict[str, Json]]) -> Answer:
    """Ask the engine about one rule: the formula's value as a Decimal, False when the
    condition is false, or the error message. This is the only place expressions run, and
    in the suite it runs inside the sandbox's child processes (accrual_rules.sandbox)."""
    try:
        condition, formula, both = compiled_rule(rule.rule_id, rule.version, rule.condition, rule.formula)
        value: Json = _UNANSWERED
        if both is not None:
            try:
                reply = both.evaluate(_given(made, both, context), narrowed=True)
            except ExpressionError:
                reply = None  # asked again below, of each on its own, for the exact message
            if type(reply) is list:
                if len(reply) == 1 and reply[0] is False:
                    return False
                if len(reply) == 2 and reply[0] is True:
                    value = reply[1]
        if value is _UNANSWERED:
            if condition is not None:
                outcome = condition.evaluate(_given(made, condition, context), narrowed=True)
                if outcome is not True and outcome is not False:
                    raise ExpressionError(f"condition must give true or false, got {shown(outcome, render=repr)}")
                if not outcome:
                    return False
            value = formula.evaluate(_given(made, formula, context), narrowed=True)
        return to_decimal(value)
    except ExpressionError as exc:
        return exc.message


def answers_for(program: ProgramPolicy, rules: Sequence[RuleSpec], event: EventFacts,
                lifetime_points: decimal.Decimal, before: Callable[[int], None] | None = None,
                known: Mapping[int, Answer] | None = None) -> list[Answer]:
    """The answer of every rule of ``ordered(rules)`` to the event (None where none is
    needed). ``before(i)``, when given, is called before rule i's expressions run (the
    sandbox marks its progress and arms its deadline there); ``known`` answers, by position,
    are taken as they are instead of running the rule."""
    tier = program.tier_for(lifetime_points)
    context = context_for(program, event, tier, lifetime_points)
    made: dict[frozenset[str], bytes | dict[str, Json]] = {}
    out: list[Answer] = []
    for i, rule in enumerate(ordered(rules)):
        if not expression_needed(rule, event):
            out.append(None)
            continue
        if known and i in known:
            out.append(known[i])
            continue
        if before is not None:
            before(i)
        out.append(answer(rule, context, made))
    return out


def evaluate(program: ProgramPolicy, rules: Sequence[RuleSpec], event: EventFacts,
             lifetime_points: decimal.Decimal,
             usage: Mapping[str, CapUsage] | None = None,
             answers: Sequence[Answer] | None = None) -> list[Evaluation]:
    """Evaluate ``rules`` in order. ``usage`` gives, per rule id, what capped rules already
    awarded (rules missing from it count as unused). ``answers`` are what the expressions
    gave (answers_for, run in the sandbox); without them the expressions run here, which
    only pure tests and the plain-Python benchmark do.

    This runs once per event for every active rule of the program (the goal is 100 rules in
    under a millisecond), so the loop avoids per-rule allocations: verdicts are tuples, caps
    are checked only for rules that have them, and each expression gets the context as JSON
    text cut to the names it uses, serialised once per event per set of names (the engine
    reads JSON text faster than it converts a dict).
    """
    tier = program.tier_for(lifetime_points)
    context: dict[str, Json] | None = None
    usage = usage or {}
    made: dict[frozenset[str], bytes | dict[str, Json]] = {}
    results: list[Evaluation] = []
    append = results.append
    stopped = False
    for i, rule in enumerate(ordered(rules)):
        if rule.status != "ACTIVE":
            append(Evaluation(rule.rule_id, rule.version, rule.name, False, rule.status.lower()))
            continue
        if stopped:
            append(Evaluation(rule.rule_id, rule.version, rule.name, False, "stopped_by_earlier_rule"))
            continue
        if rule.event_type and rule.event_type != event.event_type:
            append(Evaluation(rule.rule_id, rule.version, rule.name, False, "event_type_mismatch"))
            continue
        if (rule.active_from and event.timestamp < rule.active_from) or (
                rule.active_to and event.timestamp >= rule.active_to):
            append(Evaluation(rule.rule_id, rule.version, rule.name, False, "outside_time_window"))
            continue
        if answers is not None:
            given = answers[i]
        else:
            if context is None:
                context = context_for(program, event, tier, lifetime_points)
            given = answer(rule, context, made)
        if given is False:
            append(Evaluation(rule.rule_id, rule.version, rule.name, False, "condition_false"))
            continue
        if type(given) is str:
            append(Evaluation(rule.rule_id, rule.version, rule.name, False, "evaluation_error", given))
            continue
        if type(given) is Breach:
            append(Evaluation(rule.rule_id, rule.version, rule.name, False, given.reason, given.message))
            continue
        if given is None or type(given) is not decimal.Decimal:
            raise ValueError(f"no answer for rule {rule.rule_id}")  # a caller's bug, not the rule's
        raw = given
        if raw < 0:
            append(Evaluation(rule.rule_id, rule.version, rule.name, False, "evaluation_error",
                              f"formula gave a negative number ({raw}); debit with an adjustment"))
            continue
        if rule.apply_tier_multiplier and tier is not None:
            raw *= tier.multiplier
        if raw >= MAX_POINTS:  # nor could rounding take it: Decimal's 28 digits overflow first
            append(Evaluation(rule.rule_id, rule.version, rule.name, False, "evaluation_error",
                              f"formula gave {raw:.6E} points; one award may be at most 1e18"))
            continue
        points = program.round(raw)
        if rule.caps.limited:
            points, limited_by = apply_caps(rule, points, usage.get(rule.rule_id, NO_USAGE))
            if limited_by and points <= 0:
                append(Evaluation(rule.rule_id, rule.version, rule.name, False, "cap_reached",
                                  f"{limited_by} reached"))
                continue
            message = f"capped by {limited_by}" if limited_by else ""
        else:
            message = ""
        append(Evaluation(rule.rule_id, rule.version, rule.name, True, "", message, points))
        if rule.stop_after_match:
            stopped = True
    return results


def _given(made: dict[frozenset[str], bytes | dict[str, Json]], expression: Compiled,
           context: dict[str, Json]) -> bytes | dict[str, Json]:
    """What ``expression`` is handed: the context cut to the names it uses, as JSON text,
    made once per event per set of names (``made`` holds those of this event)."""
    given = made.get(expression.words)
    if given is None:
        given = made[expression.words] = json_context(expression.narrow(context))
    return given


def json_context(context: dict[str, Json]) -> bytes | dict[str, Json]:
    """The context as JSON text; the dict itself if it holds what JSON cannot (an integer
    beyond 64 bits, say), which the engine converts the slower way."""
    try:
        return orjson.dumps(context)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return context


# -- event types ------------------------------------------------------------------------------

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "STRING": (str,), "NUMBER": (int, float), "BOOLEAN": (bool,), "OBJECT": (dict,), "ARRAY": (list,)}


def checks_event_types(policy: str) -> bool:
    """Whether a program's event-type policy looks at events at all (OPEN does not)."""
    return policy == "REGISTERED"


def check_event_type(policy: str, registered: Mapping[str, Sequence[Mapping[str, Json]]],
                     event_type: str, properties: Mapping[str, Json]) -> tuple[str, str] | None:
    """Why an event fails the program's event-type policy (error code, message), or None.

    OPEN accepts every event. REGISTERED needs the type registered and, for every declared
    property, a value of the declared type (required ones present)."""
    if not checks_event_types(policy):
        return None
    if event_type not in registered:
        return "event_type_not_registered", f"event type {event_type!r} is not registered on the program"
    problems = []
    for prop in registered[event_type]:
        name, kind = prop["name"], prop["type"]
        if name not in properties:
            if prop.get("required"):
                problems.append(f"{name} is required")
            continue
        value = properties[name]
        ok = isinstance(value, _JSON_TYPES[kind]) and not (kind == "NUMBER" and isinstance(value, bool))
        if not ok:
            problems.append(f"{name} must be a {kind.lower()}")
    if problems:
        return "event_data_invalid", "; ".join(problems)
    return None
