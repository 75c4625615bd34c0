"""The protobuf forms of ingest's inputs and answers: requests to domain inputs, and
records and accept outcomes to response messages. No use case here, no SQL."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from typing import Any

from accrual.ingest.v1 import ingest_pb2
from accrual_platform import errors, exactjson, structs
from accrual_platform.db import decimal_str
from google.protobuf import json_format, struct_pb2, timestamp_pb2
from google.protobuf.message import Message

from accrual_ingest.domain.accept import CONFLICT, DUPLICATE, INVALID, Outcome, SystemEventInput
from accrual_ingest.domain.cdp import IDENTITY_FIELDS, CdpInput, EventTypeSpec, PropertySpec
from accrual_ingest.domain.engagement import SegmentConfig, from_micros
from accrual_ingest.domain.validation import EventInput, JsonObject, Violation
from accrual_ingest.storage import EventKey, EventRecord, EventTypeRecord

STATUS = {name: ingest_pb2.EventStatus.Value(f"EVENT_STATUS_{name}")
          for name in ("PENDING", "PROCESSING", "COMPLETED", "FAILED")}
ORIGIN = {name: ingest_pb2.EventOrigin.Value(f"EVENT_ORIGIN_{name}") for name in ("EXTERNAL", "SYSTEM")}
_PROPERTY_TYPE_PREFIX = "CDP_PROPERTY_TYPE_"
_MIN_SECONDS, _MAX_SECONDS = -62135596800, 253402300799  # 0001-01-01 .. 9999-12-31
_SAFE_INT = 2**53


# -- requests in ----------------------------------------------------------------------------
def _datetime(msg: Message, name: str, field: str) -> dt.datetime | None:
    """A Timestamp field of an event as an aware datetime; one outside protobuf's range is the
    caller's error here, and validation holds it to the partner range (dates), item by item."""
    if not msg.HasField(name):
        return None
    ts: timestamp_pb2.Timestamp = getattr(msg, name)
    if not (_MIN_SECONDS <= ts.seconds <= _MAX_SECONDS and 0 <= ts.nanos < 1_000_000_000):
        raise errors.InvalidArgument.field(field, "must be a valid RFC 3339 timestamp between years 1 and 9999")
    at: dt.datetime = structs.timestamp_datetime(ts)
    return at


def plain_value(value: struct_pb2.Value) -> Any:
    """A Struct value as plain Python (JSON). Struct numbers are doubles: whole ones come back
    as integers (125, not 125.0); NaN and infinities are kept, for validation to refuse."""
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return {k: plain_value(v) for k, v in value.struct_value.fields.items()}
    if kind == "list_value":
        return [plain_value(v) for v in value.list_value.values]
    if kind == "number_value":
        n = value.number_value
        return int(n) if math.isfinite(n) and n.is_integer() and abs(n) < _SAFE_INT else n
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    return None


def _struct(msg: Message, name: str) -> JsonObject:
    if not msg.HasField(name):
        return {}
    struct: struct_pb2.Struct = getattr(msg, name)
    return {k: plain_value(v) for k, v in struct.fields.items()}


def _exact(msg: Message, name: str, text_name: str, field: str) -> JsonObject:
    """The JSON object of a Struct field, from its exact text field when that is sent (the
    REST shim sends the text: a Struct's numbers are doubles), numbers in canonical form."""
    text: str = getattr(msg, text_name)
    if not text:
        return _canonical(_struct(msg, name))
    if msg.HasField(name):
        raise errors.InvalidArgument.field(field, f"send {name} or {text_name}, not both")
    try:
        value = exactjson.loads(text)
    except ValueError:
        raise errors.InvalidArgument.field(field, "must be a JSON object (the text is not JSON)") from None
    if not isinstance(value, dict):
        raise errors.InvalidArgument.field(field, "must be a JSON object")
    return _canonical(value)


def _sent_exact(msg: Message, name: str, text_name: str, field: str) -> JsonObject | None:
    """Like :func:`_exact`, None when neither the Struct nor its text is sent."""
    if not msg.HasField(name) and not getattr(msg, text_name):
        return None
    return _exact(msg, name, text_name, field)


def _canonical(value: JsonObject) -> JsonObject:
    """exactjson's canonical numbers, typed as the object it keeps (it returns any JSON value)."""
    canonical: JsonObject = exactjson.canonical(value)
    return canonical


def event_input(req: ingest_pb2.SubmitEventRequest, prefix: str = "") -> EventInput:
    return EventInput(
        program_id=req.program_id,
        idempotency_key=req.idempotency_key,
        event_type=req.event_type,
        event_timestamp=_datetime(req, "event_timestamp", prefix + "event_timestamp"),
        external_id=req.external_id if req.HasField("external_id") else None,
        participant_id=req.participant_id if req.HasField("participant_id") else None,
        recipient_external_id=req.recipient_external_id if req.HasField("recipient_external_id") else None,
        recipient_id=req.recipient_id if req.HasField("recipient_id") else None,
        event_data=_sent_exact(req, "event_data", "event_data_json", prefix + "event_data"),
        occurred_at=_datetime(req, "occurred_at", prefix + "occurred_at"),
        data=_sent_exact(req, "data", "data_json", prefix + "data"),
        reference=req.reference or None,
    )


def system_inputs(req: ingest_pb2.SubmitSystemEventsRequest) -> list[SystemEventInput]:
    return [SystemEventInput(
        program_id=e.program_id, idempotency_key=e.idempotency_key, event_type=e.event_type,
        participant_id=e.participant_id,
        event_timestamp=_datetime(e, "event_timestamp", f"events[{i}].event_timestamp"),
        event_data=_canonical(_struct(e, "event_data"))) for i, e in enumerate(req.events)]


def cdp_input(req: ingest_pb2.SubmitCdpEventRequest, prefix: str = "") -> CdpInput:
    identity: dict[str, str] | None = None
    if req.HasField("identity"):
        identity = {}
        for wire, _ in IDENTITY_FIELDS:
            field = req.identity.DESCRIPTOR.fields_by_camelcase_name[wire].name
            if req.identity.HasField(field):
                identity[wire] = getattr(req.identity, field)
    return CdpInput(
        source=req.source, external_event_id=req.external_event_id, event_type=req.event_type,
        occurred_at=_datetime(req, "occurred_at", prefix + "occurredAt"),
        identity=identity, properties=_exact(req, "properties", "properties_json", prefix + "properties"),
    )


def event_type_spec(req: ingest_pb2.CreateCdpEventTypeRequest) -> EventTypeSpec:
    return EventTypeSpec(req.name, property_specs(req.properties), req.allow_unknown_properties)


def property_specs(properties: Iterable[ingest_pb2.CdpPropertySpec]) -> tuple[PropertySpec, ...]:
    """Declared properties; an unknown type number becomes "" for validation to name."""
    props = []
    for p in properties:
        name = ingest_pb2.CdpPropertyType.Name(p.type) if p.type in ingest_pb2.CdpPropertyType.values() else ""
        props.append(PropertySpec(p.name, name.removeprefix(_PROPERTY_TYPE_PREFIX), p.required))
    return tuple(props)


# -- accept outcomes out ----------------------------------------------------------------------
def _violations_message(violations: Sequence[Violation]) -> str:
    return "; ".join(f"{v.field}: {v.description}" for v in violations)


def _raise_invalid(violations: Sequence[Violation], reason: str = "invalid_argument") -> None:
    errors.collect([errors.FieldViolation(v.field, v.description) for v in violations], reason=reason)


def submitted_event(outcome: Outcome[EventRecord]) -> ingest_pb2.Event:
    """A single submission's answer: the new event, the original one for a retry with the
    same payload, 400 for a bad field, or 409 for the same key with another payload."""
    if outcome.status == INVALID:
        _raise_invalid(outcome.violations)
    event = outcome.event
    assert event is not None
    if outcome.status == CONFLICT:
        raise errors.Conflict(
            "idempotency_key was already used with a different payload "
            + ("in this program" if event.program_id else "by a tenant event"),
            reason="idempotency_conflict",
            metadata={"event_id": event.id, "idempotency_key": event.idempotency_key})
    return event_message(event, deduplicated=outcome.status == DUPLICATE)


def batch_response(outcomes: Sequence[Outcome[EventKey]]) -> ingest_pb2.BatchSubmitEventsResponse:
    """Per-item results of a batch (partner or SYSTEM): accepted, duplicate or error."""
    resp = ingest_pb2.BatchSubmitEventsResponse()
    for i, o in enumerate(outcomes):
        if o.status == INVALID:
            resp.results.add(index=i, status="error", error=ingest_pb2.ItemError(
                code="invalid_argument", message=_violations_message(o.violations), field=o.violations[0].field))
        elif o.status == CONFLICT:
            assert o.event is not None
            resp.results.add(index=i, status="error", event_id=o.event.id, error=ingest_pb2.ItemError(
                code="idempotency_conflict", message="idempotency_key was already used with a different payload",
                field=f"events[{i}].idempotency_key"))
        else:
            assert o.event is not None
            resp.results.add(index=i, status=o.status, event_id=o.event.id)
    return resp


_CDP_CONFLICT = "externalEventId was already used by this source with a different payload"


def cdp_result(outcome: Outcome[EventKey]) -> ingest_pb2.CdpEventResult:
    """A single CDP event's answer: 422 ``validation_failed`` or 409 instead of an error item."""
    if outcome.status == INVALID:
        _raise_invalid(outcome.violations, reason="validation_failed")
    if outcome.status == CONFLICT:
        assert outcome.event is not None
        raise errors.Conflict(
            _CDP_CONFLICT, reason="idempotency_conflict",
            metadata={"original_event_id": outcome.event.id, "externalEventId": outcome.event.idempotency_key})
    return cdp_item(outcome, 0)


def cdp_item(outcome: Outcome[EventKey], index: int) -> ingest_pb2.CdpEventResult:
    """One CDP batch item's result, in seed 003's terms (``event_id`` for a new event,
    ``original_event_id`` for a duplicate or a conflict)."""
    if outcome.status == INVALID:
        msg = ingest_pb2.CdpEventResult(status="error", error_code="validation_failed",
                                        message=_violations_message(outcome.violations))
        for v in outcome.violations:
            msg.details.add(field=v.field, description=v.description)
        return msg
    event = outcome.event
    assert event is not None
    if outcome.status == CONFLICT:
        msg = ingest_pb2.CdpEventResult(status="error", original_event_id=event.id,
                                        error_code="idempotency_conflict", message=_CDP_CONFLICT)
        msg.details.add(field=f"items[{index}].externalEventId", description="already used with a different payload")
        return msg
    if outcome.status == DUPLICATE:
        return ingest_pb2.CdpEventResult(status=DUPLICATE, original_event_id=event.id)
    return ingest_pb2.CdpEventResult(status=outcome.status, event_id=event.id)


# -- records out ----------------------------------------------------------------------------
def event_type_message(record: EventTypeRecord) -> ingest_pb2.CdpEventType:
    msg = ingest_pb2.CdpEventType(name=record.name, allow_unknown_properties=record.allow_unknown_properties)
    for p in record.properties:
        msg.properties.add(name=p.name, required=p.required,
                           type=ingest_pb2.CdpPropertyType.Value(_PROPERTY_TYPE_PREFIX + p.type))
    structs.set_timestamp(msg.created_at, record.created_at)
    structs.set_timestamp(msg.updated_at, record.updated_at)
    return msg


def points(micros: int) -> str:
    return str(decimal_str(from_micros(micros)))


def segment_config_message(program_id: str, config: SegmentConfig,
                           updated_at: dt.datetime | None) -> ingest_pb2.SegmentConfig:
    msg = ingest_pb2.SegmentConfig(program_id=program_id)
    json_format.ParseDict(config.to_json(), msg)
    if updated_at is not None:
        structs.set_timestamp(msg.updated_at, updated_at)
    return msg


def event_message(row: EventRecord, *, deduplicated: bool = False) -> ingest_pb2.Event:
    msg = ingest_pb2.Event(
        event_id=row.id, program_id=row.program_id, idempotency_key=row.idempotency_key,
        event_type=row.event_type, status=STATUS[row.status], deduplicated=deduplicated,
        origin=ORIGIN.get(row.origin, ingest_pb2.EVENT_ORIGIN_EXTERNAL),
    )
    for item in row.cdp_identities or []:
        msg.cdp_identities.add(type=item["type"], value=item["value"])
    for name in ("external_id", "participant_id", "recipient_external_id", "recipient_id",
                 "error_code", "error_message", "cdp_source"):
        value = getattr(row, name)
        if value is not None:
            setattr(msg, name, value)
    values = row.event_data or {}
    msg.event_data_json = exactjson.dumps(values).decode()
    data = struct_pb2.Struct()
    try:
        data.update(values)
    except (TypeError, ValueError):  # a decimal or a wide integer: the Struct holds doubles
        data.Clear()
        data.update(exactjson.approximate(values))
    msg.event_data.CopyFrom(data)
    structs.set_timestamp(msg.event_timestamp, row.event_timestamp)
    structs.set_timestamp(msg.received_at, row.received_at)
    if row.processed_at is not None:
        structs.set_timestamp(msg.processed_at, row.processed_at)
    if row.points_awarded is not None:
        msg.points_awarded = decimal_str(row.points_awarded)
    for item in row.rule_evaluations or []:
        json_format.ParseDict(item, msg.rule_evaluations.add(), ignore_unknown_fields=True)
    return msg
