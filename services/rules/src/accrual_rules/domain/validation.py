"""Field checks of programs, event types, rules and adjustments: pure functions that either
return clean values or add :class:`errors.FieldViolation` to a list (``errors.collect`` turns
the list into one 400). Checks that run a rule's expressions need the sandbox and live in
:mod:`accrual_rules.service`; the pure parts they use (sample events, result wording) are here.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypedDict

from accrual_platform import errors, text
from accrual_platform.ids import canonical_uuid

from accrual_rules.domain import Json
from accrual_rules.domain.bank import check_expiry
from accrual_rules.domain.evaluation import CAP_FIELDS, MAX_POINTS, ROUNDINGS, Caps, RuleSpec, RuleTerms
from accrual_rules.domain.expressions import Position, normalised
from accrual_rules.domain.pending import PendingPolicy, check_pending

POLICIES = ("CREATE", "REJECT")
STATUSES = ("ACTIVE", "SUSPENDED")
EVENT_TYPE_POLICIES = ("OPEN", "REGISTERED")
PROPERTY_TYPES = ("STRING", "NUMBER", "BOOLEAN", "OBJECT", "ARRAY")
# Names of event types and properties: what ingest accepts (1 to 255 characters), without
# surrounding whitespace or control characters.
_NAME = re.compile(r"^(?=\S)[^\x00-\x1f]{1,255}(?<=\S)$")
_NAME_RULE = "must be 1 to 255 characters without surrounding spaces"
_PROPERTY_REF = re.compile(r"\bproperties\.([A-Za-z_][A-Za-z0-9_]*)")
_SAMPLE_VALUES: dict[str, Json] = {"STRING": "sample", "NUMBER": 1, "BOOLEAN": True, "OBJECT": {},
                                  "ARRAY": []}


def decimal_text(value: decimal.Decimal) -> str:
    """Plain decimal text without exponent or trailing zeros (the stored form): 125, 187.5, -3."""
    shown = format(value.normalize(), "f")
    return "0" if shown in ("-0", "0") else shown


def check_type_name(v: list[errors.FieldViolation], field: str, value: str) -> None:
    """The shared control-character rule first (it names the character), then the shape."""
    before = len(v)
    text.check_name(v, field, value)
    if len(v) == before and not _NAME.match(value):
        v.append(errors.FieldViolation(field, _NAME_RULE))


def parse_decimal(value: str, field: str, *, minimum: decimal.Decimal | None = None,
                  exclusive: bool = False) -> decimal.Decimal:
    try:
        d = decimal.Decimal(value.strip())
    except (decimal.InvalidOperation, AttributeError):
        raise errors.InvalidArgument.field(field, "must be a decimal number") from None
    if not d.is_finite() or abs(d) >= MAX_POINTS:
        raise errors.InvalidArgument.field(field, "must be a finite number below 1e18")
    exponent = d.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -10:
        raise errors.InvalidArgument.field(field, "must have at most 10 decimal places")
    if minimum is not None and (d <= minimum if exclusive else d < minimum):
        raise errors.InvalidArgument.field(field, f"must be {'>' if exclusive else '>='} {minimum}")
    return d


def validate_tiers(tiers: Sequence[Mapping[str, str]], v: list[errors.FieldViolation]) -> list[dict[str, str]]:
    """Tiers in strictly increasing ``min_lifetime_points`` (the first may start above 0: below
    it a participant has no tier and multiplier 1), unique names, multiplier > 0."""
    clean: list[dict[str, str]] = []
    names: set[str] = set()
    previous: decimal.Decimal | None = None
    for i, t in enumerate(tiers):
        name = t.get("name", "").strip()
        if not name or len(name) > 200:
            v.append(errors.FieldViolation(f"tiers[{i}].name", "is required (1 to 200 characters)"))
        elif name in names:
            v.append(errors.FieldViolation(f"tiers[{i}].name", f"must be unique ({errors.excerpt(name)} repeats)"))
        text.check_name(v, f"tiers[{i}].name", name)
        names.add(name)
        try:
            minimum = parse_decimal(t.get("min_lifetime_points") or "0", f"tiers[{i}].min_lifetime_points",
                                    minimum=decimal.Decimal(0))
            if previous is not None and minimum <= previous:
                raise errors.InvalidArgument.field(
                    f"tiers[{i}].min_lifetime_points",
                    f"must be greater than the previous tier's ({decimal_text(previous)}); "
                    "list tiers from lowest to highest without overlaps")
            previous = minimum
            mult = parse_decimal(t.get("multiplier") or "1", f"tiers[{i}].multiplier",
                                 minimum=decimal.Decimal(0), exclusive=True)
            clean.append({"name": name, "min_lifetime_points": decimal_text(minimum),
                          "multiplier": decimal_text(mult)})
        except errors.InvalidArgument as exc:
            v.extend(exc.violations)
    return clean


def check_program(name: str, rounding_mode: str, rounding_precision: int,
                  tiers: Sequence[Mapping[str, str]] | None, on_unknown: str,
                  event_type_policy: str) -> list[dict[str, str]] | None:
    """Every field of a program; the clean tiers (None when ``tiers`` is None: unchanged)."""
    v: list[errors.FieldViolation] = []
    if not name.strip() or len(name) > 200:
        v.append(errors.FieldViolation("name", "is required (1 to 200 characters)"))
    text.check_name(v, "name", name)
    if on_unknown not in POLICIES:
        v.append(errors.FieldViolation("on_unknown_participant", "must be CREATE or REJECT"))
    if rounding_mode not in ROUNDINGS:
        v.append(errors.FieldViolation("rounding_mode", f"must be one of {', '.join(ROUNDINGS)}"))
    if not 0 <= rounding_precision <= 6:
        v.append(errors.FieldViolation("rounding_precision", "must be between 0 and 6"))
    if event_type_policy not in EVENT_TYPE_POLICIES:
        v.append(errors.FieldViolation("event_type_policy", "must be OPEN or REGISTERED"))
    clean = validate_tiers(tiers, v) if tiers is not None else None
    errors.collect(v)
    return clean


def check_points_terms(pending: Mapping[str, Json] | None, monetary_field: str) -> tuple[PendingPolicy, str | None]:
    """A program's pending policy and monetary field; (the clean policy, the field or None)."""
    v: list[errors.FieldViolation] = []
    policy = check_pending(pending, v)
    if monetary_field:
        check_type_name(v, "monetary_field", monetary_field)
    errors.collect(v)
    return policy, monetary_field or None


def check_event_type(name: str, description: str,
                     properties: Sequence[Mapping[str, Json]]) -> list[dict[str, Json]]:
    """An event type's name, description and properties; the clean properties."""
    v: list[errors.FieldViolation] = []
    check_type_name(v, "name", name)
    if len(description) > 2000:
        v.append(errors.FieldViolation("description", "must be at most 2000 characters"))
    text.check_text(v, "description", description)
    seen: set[str] = set()
    clean: list[dict[str, Json]] = []
    for i, prop in enumerate(properties):
        pname = prop["name"]
        before = len(v)
        check_type_name(v, f"properties[{i}].name", pname)
        if len(v) == before and pname in seen:
            v.append(errors.FieldViolation(f"properties[{i}].name",
                                           f"must be unique ({errors.excerpt(pname)} repeats)"))
        seen.add(pname)
        if prop["type"] not in PROPERTY_TYPES:
            v.append(errors.FieldViolation(f"properties[{i}].type",
                                           f"must be one of {', '.join(PROPERTY_TYPES)}"))
        clean.append({"name": pname, "type": prop["type"], "required": bool(prop["required"])})
    errors.collect(v)
    return clean


def validate_caps(raw: Mapping[str, str | None] | None, v: list[errors.FieldViolation]) -> dict[str, str]:
    clean: dict[str, str] = {}
    for key, value in (raw or {}).items():
        if value is None:
            continue
        if key not in CAP_FIELDS:
            v.append(errors.FieldViolation(f"caps.{key}", "is not a known cap"))
            continue
        try:
            clean[key] = decimal_text(parse_decimal(value, f"caps.{key}", minimum=decimal.Decimal(0),
                                                    exclusive=True))
        except errors.InvalidArgument as exc:
            v.extend(exc.violations)
    return clean


@dataclass(frozen=True)
class RuleFields(RuleTerms):
    """What a rule's versions store (storage.RULE_FIELDS)."""

    status: str
    caps: Mapping[str, str]
    #: the rule's own expiry policy for the lots it awards (None: the program's)
    expiry: Mapping[str, Json] | None = None

    def changed(self, changes: RuleChanges) -> RuleFields:
        return replace(self, **changes)

    def expressions(self) -> dict[str, str]:
        """What :func:`accrual_rules.service.check_expressions` reads."""
        return {"condition": self.condition, "formula": self.formula, "event_type": self.event_type}

    def spec(self, rule_id: str, version: int, budget_breaches: int = 0) -> RuleSpec:
        """The evaluator's spec of these fields as version ``version`` of rule ``rule_id``."""
        return RuleSpec(rule_id=rule_id, version=version, name=self.name, event_type=self.event_type,
                        condition=self.condition, formula=self.formula,
                        apply_tier_multiplier=self.apply_tier_multiplier, order=self.order,
                        stop_after_match=self.stop_after_match, active_from=self.active_from,
                        active_to=self.active_to, status=self.status, caps=Caps.from_json(self.caps),
                        budget_breaches=budget_breaches)


class ProgramChanges(TypedDict, total=False):
    """The fields a program update names (the others keep their values)."""

    name: str
    on_unknown_participant: str
    rounding_mode: str
    rounding_precision: int
    event_type_policy: str
    scheduled_triggers: Mapping[str, Json]
    tiers: list[dict[str, str]]
    #: the points bank's fields (domain.bank.check_policy): expiry, timezone, negative_balance,
    #: expiring_lead_days
    bank: Mapping[str, Json]
    pending: Mapping[str, Json]
    monetary_field: str


#: The fields of :class:`RuleFields` an update names, by name (the others keep their values).
RuleChanges = Mapping[str, Any]


def check_rule_fields(fields: RuleFields) -> RuleFields:
    """Every field of a rule but its expressions' behaviour (that needs the sandbox); the clean
    fields (name stripped, caps canonical, expressions in the engine's notation)."""
    v: list[errors.FieldViolation] = []
    name = fields.name.strip()
    if not name or len(name) > 200:
        v.append(errors.FieldViolation("name", "is required (1 to 200 characters)"))
    text.check_name(v, "name", name)
    if fields.event_type:
        check_type_name(v, "event_type", fields.event_type)
    if not fields.formula.strip():
        v.append(errors.FieldViolation("formula", "is required"))
    if fields.status not in STATUSES:
        v.append(errors.FieldViolation("status", "must be ACTIVE or SUSPENDED"))
    if fields.active_from and fields.active_to and fields.active_from >= fields.active_to:
        v.append(errors.FieldViolation("active_to", "must be after active_from"))
    if not -1_000_000 <= fields.order <= 1_000_000:
        v.append(errors.FieldViolation("order", "must be between -1000000 and 1000000"))
    caps = validate_caps(fields.caps, v)
    expiry = None
    if fields.expiry is not None:
        policy, problems = check_expiry(fields.expiry, "expiry")
        v.extend(errors.FieldViolation(f, d) for f, d in problems)
        expiry = policy.to_json()
    errors.collect(v)
    return replace(fields, name=name, caps=caps, condition=normalised(fields.condition),
                   formula=normalised(fields.formula), expiry=expiry)


#: Orders a reorder gives are 10, 20, 30...: room to PATCH a rule in between later.
ORDER_STEP = 10
#: At most this many rules are reordered at once (their orders stay within the order bounds).
MAX_REORDERED = 1000


def check_rule_ids(rule_ids: Sequence[str]) -> list[str]:
    """The ids of a reorder, canonical; each must be a UUID and listed once."""
    v: list[errors.FieldViolation] = []
    if len(rule_ids) > MAX_REORDERED:
        errors.collect([errors.FieldViolation("rule_ids", f"must list at most {MAX_REORDERED} rules")])
    clean: list[str] = []
    for i, raw in enumerate(rule_ids):
        rule_id = canonical_uuid(raw)
        if rule_id is None:
            v.append(errors.FieldViolation(f"rule_ids[{i}]", "must be a UUID"))
        elif rule_id in clean:
            v.append(errors.FieldViolation(f"rule_ids[{i}]", f"repeats rule_ids[{clean.index(rule_id)}]"))
        clean.append(rule_id or "")
    errors.collect(v)
    return clean


def plan_reorder(rule_ids: Sequence[str], current: Mapping[str, int]) -> dict[str, int]:
    """The new order of each rule whose order changes when the rules ``current`` (order by
    id: every unarchived rule of the program) are evaluated as ``rule_ids`` lists them;
    refused unless it lists each of them."""
    v = [errors.FieldViolation(f"rule_ids[{i}]", "is not an unarchived rule of this program")
         for i, rule_id in enumerate(rule_ids) if rule_id not in current]
    missing = sorted(set(current) - set(rule_ids))
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        v.append(errors.FieldViolation("rule_ids", f"must list every unarchived rule of the program; "
                                                   f"missing {shown}"))
    errors.collect(v)
    wanted = {rule_id: (i + 1) * ORDER_STEP for i, rule_id in enumerate(rule_ids)}
    return {rule_id: order for rule_id, order in wanted.items() if current[rule_id] != order}


@dataclass(frozen=True)
class Adjustment:
    """A checked adjustment request."""

    participant_id: str
    amount: decimal.Decimal
    reason: str
    idempotency_key: str
    allow_negative: bool

    def digest(self) -> str:
        """Canonical hash of the request, to tell a retry from a conflicting reuse of its key."""
        return adjustment_hash(self.participant_id, self.amount, self.reason, self.allow_negative)


def adjustment_hash(participant_id: str, amount: decimal.Decimal, reason: str, allow_negative: bool) -> str:
    canonical = json.dumps({"participant_id": participant_id, "amount": decimal_text(amount),
                            "reason": reason, "allow_negative": allow_negative}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_adjustment(v: list[errors.FieldViolation], participant_id: str, amount: str, reason: str,
                     idempotency_key: str, allow_negative: bool) -> Adjustment:
    """An adjustment's amount, reason and key (``participant_id`` is checked by the caller,
    its violations already in ``v``); raises every violation at once."""
    value = decimal.Decimal(0)
    try:
        value = parse_decimal(amount, "amount")
        if value == 0:
            v.append(errors.FieldViolation("amount", "must not be zero"))
    except errors.InvalidArgument as exc:
        v.extend(exc.violations)
    if not reason.strip() or len(reason) > 500:
        v.append(errors.FieldViolation("reason", "is required (1 to 500 characters)"))
    text.check_name(v, "reason", reason)
    if not 1 <= len(idempotency_key) <= 255:
        v.append(errors.FieldViolation("idempotency_key", "is required (1 to 255 characters)"))
    errors.collect(v)
    return Adjustment(participant_id, value, reason.strip(), idempotency_key, allow_negative)


def sample_properties(source: str, declared: Sequence[Mapping[str, Json]] | None) -> list[dict[str, Json]]:
    """Sample event properties to try an expression on at save time: the registered event
    type's properties (when the rule names one), and every referenced property as a number."""
    samples = []
    if declared:
        samples.append({p["name"]: _SAMPLE_VALUES[p["type"]] for p in declared})
    samples.append({name: 1 for name in _PROPERTY_REF.findall(source)})
    return samples


SAMPLE_TIME = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class ExpressionViolation(errors.FieldViolation):
    """A violation in a condition or formula, with where in it when the engine can tell."""

    position: Position | None = None


def expression_error(field: str, message: str, position: Position | None) -> ExpressionViolation:
    where = f" (line {position.line}, column {position.column})" if position else ""
    return ExpressionViolation(field, f"{message.rstrip('.')}{where}", position)


def position_metadata(violations: Sequence[errors.FieldViolation]) -> dict[str, str] | None:
    """ErrorInfo metadata locating the first violation that has a position: its field,
    ``position`` as "start:end" character offsets, and its line and column."""
    for v in violations:
        if isinstance(v, ExpressionViolation) and v.position is not None:
            p = v.position
            return {"field": v.field, "position": f"{p.start}:{p.end}", "line": str(p.line),
                    "column": str(p.column)}
    return None


def wrong_type(field: str, results: Sequence[Sequence[Json]]) -> str:
    """What is wrong with the sample results of a condition (a boolean) or formula (a number)."""
    for result in results:
        kind = result[0]
        if kind in ("err", "null"):
            continue
        shown = json.dumps(result[1]) if kind == "bool" else result[1]
        if field == "condition" and kind != "bool":
            return f"must give true or false, gives {shown} on a sample event"
        if field == "formula" and kind != "num":
            return f"must give a number, gives {shown} on a sample event"
    return ""
