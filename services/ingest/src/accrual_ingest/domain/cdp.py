"""CDP events (seed 003): the event-type registry's rules and the validation of one event.

A CDP event names its customer through an ``identity`` object instead of a program and an
``external_id``; it must match a registered event type (declared properties, their types,
which are required, and whether undeclared ones are allowed). Field names in violations are
the seed's camelCase wire names (``identity.email``, ``properties.amount``) so a partner can
find the offending field in what they sent.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from accrual_platform import dates
from accrual_platform.errors import excerpt
from accrual_platform.identities import IdentityType, InvalidIdentity, normalize

from accrual_ingest.domain.canonical import payload_digest
from accrual_ingest.domain.validation import (
    MAX_EVENT_DATA_BYTES,
    MAX_FUTURE,
    JsonObject,
    ValidEvent,
    Violation,
    check_key,
    json_problem,
    json_size,
)

MAX_PROPERTIES = 200
PROPERTY_TYPES = ("STRING", "NUMBER", "INTEGER", "BOOLEAN", "OBJECT", "ARRAY", "TIMESTAMP")
#: The identity object's wire fields, in the identity service's precedence order.
IDENTITY_FIELDS: tuple[tuple[str, IdentityType], ...] = (
    ("externalUserId", IdentityType.EXTERNAL), ("email", IdentityType.EMAIL),
    ("phone", IdentityType.PHONE), ("deviceKey", IdentityType.DEVICE_KEY))
IDENTITY_REQUIRED = "identity.externalUserId, identity.email, identity.phone, or identity.deviceKey is required"


@dataclass(frozen=True)
class PropertySpec:
    name: str
    type: str  # one of PROPERTY_TYPES
    required: bool = False


@dataclass(frozen=True)
class EventTypeSpec:
    name: str
    properties: tuple[PropertySpec, ...]
    allow_unknown_properties: bool = False


@dataclass(frozen=True)
class CdpInput:
    """What a partner sent, before validation; None means absent."""

    source: str
    external_event_id: str
    event_type: str
    occurred_at: dt.datetime | None
    #: Wire field name -> value, only the fields that were sent; None when no identity object.
    identity: Mapping[str, str] | None
    properties: JsonObject


def validate_event_type(spec: EventTypeSpec) -> list[Violation]:
    """Rules of a registry entry: a usable name, unique typed property names."""
    v: list[Violation] = []

    def bad(field: str, description: str) -> None:
        v.append(Violation(field, description))

    check_key(spec.name, "name", bad)
    if len(spec.properties) > MAX_PROPERTIES:
        bad("properties", f"must declare at most {MAX_PROPERTIES} properties")
    seen: set[str] = set()
    for i, prop in enumerate(spec.properties):
        check_key(prop.name, f"properties[{i}].name", bad)
        if prop.name in seen:
            bad(f"properties[{i}].name", f"{excerpt(prop.name)} is declared twice")
        seen.add(prop.name)
        if prop.type not in PROPERTY_TYPES:
            bad(f"properties[{i}].type", "must be one of " + ", ".join(PROPERTY_TYPES))
    return v


def _is_timestamp(value: str) -> bool:
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    return parsed.tzinfo is not None and "T" in value.upper()


_CHECKS: dict[str, Callable[[Any], bool]] = {
    "STRING": lambda x: isinstance(x, str),
    "NUMBER": lambda x: isinstance(x, int | float | decimal.Decimal) and not isinstance(x, bool),
    "INTEGER": lambda x: (isinstance(x, int) and not isinstance(x, bool))
    or (isinstance(x, float) and x.is_integer())
    or (isinstance(x, decimal.Decimal) and x == x.to_integral_value()),
    "BOOLEAN": lambda x: isinstance(x, bool),
    "OBJECT": lambda x: isinstance(x, dict),
    "ARRAY": lambda x: isinstance(x, list),
    "TIMESTAMP": lambda x: isinstance(x, str) and _is_timestamp(x),
}
_TYPE_WORDS = {"STRING": "a string", "NUMBER": "a number", "INTEGER": "an integer",
               "BOOLEAN": "true or false", "OBJECT": "a JSON object", "ARRAY": "a JSON array",
               "TIMESTAMP": "an RFC 3339 timestamp string"}


def check_properties(properties: Mapping[str, Any], spec: EventTypeSpec,
                     bad: Callable[[str, str], None]) -> None:
    """Required present (null counts as absent), declared types match, unknown rejected
    unless the type allows them."""
    declared = {p.name: p for p in spec.properties}
    for prop in spec.properties:
        value = properties.get(prop.name)
        if value is None:
            if prop.required:
                bad(f"properties.{prop.name}", f"is required by event type {spec.name}")
            continue
        if not _CHECKS[prop.type](value):
            bad(f"properties.{prop.name}", f"must be {_TYPE_WORDS[prop.type]}")
    if not spec.allow_unknown_properties:
        for name in properties:
            if name not in declared:
                bad(f"properties.{name}", f"is not a property of event type {spec.name}")


def validate_cdp_event(raw: CdpInput, spec: EventTypeSpec | None, now: dt.datetime,
                       prefix: str = "") -> tuple[ValidEvent | None, list[Violation]]:
    """Check one CDP event against its registered type; returns the normalised event (stored
    like any event, with an empty program_id) or every violation found."""
    v: list[Violation] = []

    def bad(field: str, description: str) -> None:
        v.append(Violation(prefix + field, description))

    check_key(raw.source, "source", bad)
    check_key(raw.external_event_id, "externalEventId", bad)
    check_key(raw.event_type, "eventType", bad)
    if raw.event_type and spec is None:
        bad("eventType", f"{excerpt(raw.event_type)} is not a registered CDP event type")
    if raw.occurred_at is not None and not dates.in_range(raw.occurred_at):
        bad("occurredAt", dates.RANGE_TEXT)
    elif raw.occurred_at is not None and raw.occurred_at > now + MAX_FUTURE:
        bad("occurredAt", "must not be more than 5 minutes in the future")
    identities: list[dict[str, str]] = []
    sent = {k: val for k, val in (raw.identity or {}).items() if val is not None}
    if not sent:
        bad("identity", IDENTITY_REQUIRED)
    for name, kind in IDENTITY_FIELDS:
        if name not in sent:
            continue
        try:
            ident = normalize(kind, sent[name])
        except InvalidIdentity as exc:
            bad(f"identity.{name}", exc.message)
            continue
        identities.append({"type": ident.type.value, "value": ident.value})
    problem = json_problem(raw.properties, "properties")
    if problem:
        bad(*problem)
    elif json_size(raw.properties) > MAX_EVENT_DATA_BYTES:
        bad("properties", f"must be at most {MAX_EVENT_DATA_BYTES} bytes of JSON")
    elif spec is not None:
        check_properties(raw.properties, spec, bad)
    if v:
        return None, v
    external = next((i["value"] for i in identities if i["type"] == IdentityType.EXTERNAL.value), None)
    digest = payload_digest({
        "cdp_source": raw.source, "event_type": raw.event_type, "event_timestamp": raw.occurred_at,
        "identities": [[i["type"], i["value"]] for i in identities], "event_data": raw.properties,
    })
    return ValidEvent(
        program_id="", idempotency_key=raw.external_event_id, event_type=raw.event_type,
        event_timestamp=raw.occurred_at or now, external_id=external, participant_id=None,
        recipient_external_id=None, recipient_id=None, event_data=raw.properties, digest=digest,
        cdp_source=raw.source, cdp_identities=identities,
    ), []

