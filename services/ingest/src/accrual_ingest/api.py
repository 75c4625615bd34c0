"""IngestService servicer: proto in, use case, proto out. No logic of its own."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import grpc
import sqlalchemy as sa
import structlog
from accrual.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from accrual.messages.v1 import messages_pb2
from accrual_platform import auth, dates, errors, exactjson, grpc_server, structs
from accrual_platform.db import decimal_str
from accrual_platform.logging import bind_subject
from google.protobuf import json_format, struct_pb2
from sqlalchemy import exc as sa_exc

from accrual_ingest.domain.cdp import IDENTITY_FIELDS, CdpInput, EventTypeSpec, PropertySpec
from accrual_ingest.domain.engagement import SegmentConfig, average, from_micros
from accrual_ingest.domain.validation import MAX_BATCH, EventInput
from accrual_ingest.insights import EngagementQueries
from accrual_ingest.service import CdpResult, IngestService, SystemEventInput

log = structlog.get_logger("accrual.ingest")

_STATUS = {name: ingest_pb2.EventStatus.Value(f"EVENT_STATUS_{name}")
           for name in ("PENDING", "PROCESSING", "COMPLETED", "FAILED")}
_ORIGIN = {name: ingest_pb2.EventOrigin.Value(f"EVENT_ORIGIN_{name}") for name in ("EXTERNAL", "SYSTEM")}
_PROPERTY_TYPE_PREFIX = "CDP_PROPERTY_TYPE_"
_MIN_SECONDS, _MAX_SECONDS = -62135596800, 253402300799  # 0001-01-01 .. 9999-12-31
_SAFE_INT = 2**53


def _datetime(msg: Any, name: str, field: str) -> dt.datetime | None:
    """A Timestamp field of an event as an aware datetime; one outside protobuf's range is the
    caller's error here, and validation holds it to the partner range (dates), item by item."""
    if not msg.HasField(name):
        return None
    ts = getattr(msg, name)
    if not (_MIN_SECONDS <= ts.seconds <= _MAX_SECONDS and 0 <= ts.nanos < 1_000_000_000):
        raise errors.InvalidArgument.field(field, "must be a valid RFC 3339 timestamp between years 1 and 9999")
    return structs.timestamp_datetime(ts)


def plain_value(value: struct_pb2.Value) -> Any:
    """A Struct value as plain Python. Struct numbers are doubles: whole ones come back as
    integers (125, not 125.0); NaN and infinities are kept, for validation to refuse."""
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


def _struct(msg: Any, name: str) -> dict[str, Any]:
    if not msg.HasField(name):
        return {}
    return {k: plain_value(v) for k, v in getattr(msg, name).fields.items()}


def _exact(msg: Any, name: str, text_name: str, field: str) -> dict[str, Any]:
    """The JSON object of a Struct field, from its exact text field when that is sent (the
    REST shim sends the text: a Struct's numbers are doubles), numbers in canonical form."""
    text = getattr(msg, text_name)
    if not text:
        return exactjson.canonical(_struct(msg, name))  # type: ignore[no-any-return]
    if msg.HasField(name):
        raise errors.InvalidArgument.field(field, f"send {name} or {text_name}, not both")
    try:
        value = exactjson.loads(text)
    except ValueError:
        raise errors.InvalidArgument.field(field, "must be a JSON object (the text is not JSON)") from None
    if not isinstance(value, dict):
        raise errors.InvalidArgument.field(field, "must be a JSON object")
    return exactjson.canonical(value)  # type: ignore[no-any-return]


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
        event_data=_exact(req, "event_data", "event_data_json", prefix + "event_data"),
    )


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


def cdp_result(result: CdpResult) -> ingest_pb2.CdpEventResult:
    msg = ingest_pb2.CdpEventResult(status=result.status)
    for name in ("event_id", "original_event_id", "error_code", "message"):
        value = getattr(result, name)
        if value is not None:
            setattr(msg, name, value)
    for v in result.violations:
        msg.details.add(field=v.field, description=v.description)
    return msg


def event_type_message(row: sa.Row[Any]) -> ingest_pb2.CdpEventType:
    msg = ingest_pb2.CdpEventType(name=row.name, allow_unknown_properties=row.allow_unknown_properties)
    for p in row.properties:
        msg.properties.add(name=p["name"], required=bool(p.get("required")),
                           type=ingest_pb2.CdpPropertyType.Value(_PROPERTY_TYPE_PREFIX + p["type"]))
    structs.set_timestamp(msg.created_at, row.created_at)
    structs.set_timestamp(msg.updated_at, row.updated_at)
    return msg


def event_type_spec(req: ingest_pb2.CreateCdpEventTypeRequest) -> EventTypeSpec:
    props = []
    for p in req.properties:
        name = ingest_pb2.CdpPropertyType.Name(p.type) if p.type in ingest_pb2.CdpPropertyType.values() else ""
        props.append(PropertySpec(p.name, name.removeprefix(_PROPERTY_TYPE_PREFIX), p.required))
    return EventTypeSpec(req.name, tuple(props), req.allow_unknown_properties)


def _points(micros: int) -> str:
    return str(decimal_str(from_micros(micros)))


def segment_config_message(program_id: str, config: SegmentConfig,
                           updated_at: dt.datetime | None) -> ingest_pb2.SegmentConfig:
    msg = ingest_pb2.SegmentConfig(program_id=program_id)
    json_format.ParseDict(config.to_json(), msg)
    if updated_at is not None:
        structs.set_timestamp(msg.updated_at, updated_at)
    return msg


def event_message(row: sa.Row[Any], *, deduplicated: bool = False) -> ingest_pb2.Event:
    msg = ingest_pb2.Event(
        event_id=row.id, program_id=row.program_id, idempotency_key=row.idempotency_key,
        event_type=row.event_type, status=_STATUS[row.status], deduplicated=deduplicated,
        origin=_ORIGIN.get(row.origin, ingest_pb2.EVENT_ORIGIN_EXTERNAL),
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


#: Metadata of a caller that a coalesced call carries: its credentials and request id.
CALLER_METADATA = frozenset({"x-api-key", "authorization", "x-request-id"})
#: SubmitEvent's own scope, which each coalesced call must hold.
SUBMIT_SCOPE = grpc_server.required_scope("/accrual.ingest.v1.IngestService/SubmitEvent") or auth.ADMIN_SCOPE


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(self, service: IngestService, queries: EngagementQueries) -> None:
        self._svc = service
        self._queries = queries

    def SubmitEvent(self, request: ingest_pb2.SubmitEventRequest,
                    context: grpc.ServicerContext) -> ingest_pb2.Event:
        accepted = self._svc.submit(auth.tenant_id(), event_input(request))
        return event_message(accepted.row, deduplicated=accepted.deduplicated)

    def CoalescedSubmitEvents(self, request: ingest_pb2.CoalescedSubmitEventsRequest,
                              context: grpc.ServicerContext) -> ingest_pb2.CoalescedSubmitEventsResponse:
        """Each call is admitted by its own metadata (API key, rate limit, scope) as
        SubmitEvent would admit it; the admitted ones are stored together."""
        if len(request.calls) > MAX_BATCH:
            raise errors.InvalidArgument.field("calls", f"must contain at most {MAX_BATCH} calls")
        resp = ingest_pb2.CoalescedSubmitEventsResponse()
        results = [resp.results.add() for _ in request.calls]
        admitted: list[tuple[int, str, EventInput]] = []
        # Only what a caller may send: never the internal token of the carrying call. The
        # calls are admitted together: one rate-limiter step per API key (one Redis round
        # trip for the group where REDIS_URL shares the buckets, instead of one per call).
        admissions = grpc_server.admit_many(
            [{k: v for k, v in call.metadata.items() if k in CALLER_METADATA} for call in request.calls],
            SUBMIT_SCOPE)
        for i, (call, admission) in enumerate(zip(request.calls, admissions, strict=True)):
            if isinstance(admission, grpc_server.Refused):
                results[i].status.CopyFrom(admission.error.to_status())
                results[i].trailing_metadata.update(admission.limit_metadata)
                continue
            principal, limit_md = admission
            results[i].trailing_metadata.update(limit_md)
            try:
                admitted.append((i, principal.tenant_id, event_input(call.request)))
            except errors.AppError as exc:
                results[i].status.CopyFrom(exc.to_status())
        try:
            answers: list[Any] = self._svc.submit_many([(tenant, raw) for _, tenant, raw in admitted])
        except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
            # Nothing was stored: each call is answered 503 like SubmitEvent, keeping its own
            # rate-limit metadata.
            log.warning("database_unavailable", error=str(exc).splitlines()[0])
            answers = [errors.Unavailable("database unavailable, retry")] * len(admitted)
        for (i, _, _), answer in zip(admitted, answers, strict=True):
            if isinstance(answer, errors.AppError):
                results[i].status.CopyFrom(answer.to_status())
            else:
                results[i].response.CopyFrom(event_message(answer.row, deduplicated=answer.deduplicated))
        return resp

    def BatchSubmitEvents(self, request: ingest_pb2.BatchSubmitEventsRequest,
                          context: grpc.ServicerContext) -> ingest_pb2.BatchSubmitEventsResponse:
        results = self._svc.submit_batch(
            auth.tenant_id(), [event_input(e, f"events[{i}].") for i, e in enumerate(request.events)])
        resp = ingest_pb2.BatchSubmitEventsResponse()
        for i, r in enumerate(results):
            item = resp.results.add(index=i, status=r.status)
            if r.event_id:
                item.event_id = r.event_id
            if r.error_code:
                item.error.CopyFrom(ingest_pb2.ItemError(
                    code=r.error_code, message=r.error_message or "", field=r.error_field or ""))
        return resp

    def GetEvent(self, request: ingest_pb2.GetEventRequest,
                 context: grpc.ServicerContext) -> ingest_pb2.Event:
        return event_message(self._svc.get(auth.tenant_id(), request.event_id))

    def ListEvents(self, request: ingest_pb2.ListEventsRequest,
                   context: grpc.ServicerContext) -> ingest_pb2.ListEventsResponse:
        filters: dict[str, Any] = {
            "program_id": request.program_id, "participant_id": request.participant_id,
            "external_id": request.external_id,
        }
        if request.status:
            if request.status not in _STATUS.values():
                raise errors.InvalidArgument.field("status", "must be one of " + ", ".join(_STATUS))
            filters["status"] = ingest_pb2.EventStatus.Name(request.status).removeprefix("EVENT_STATUS_")
        if request.origin:
            if request.origin not in _ORIGIN.values():
                raise errors.InvalidArgument.field("origin", "must be one of " + ", ".join(_ORIGIN))
            filters["origin"] = ingest_pb2.EventOrigin.Name(request.origin).removeprefix("EVENT_ORIGIN_")
        if request.cdp_source:
            filters["cdp_source"] = request.cdp_source
        for name in ("received_after", "received_before", "occurred_after", "occurred_before"):
            value = dates.timestamp_field(request, name)
            if value is not None:
                filters[name] = value
        rows, token = self._svc.list_events(auth.tenant_id(), filters=filters,
                                     page_size=request.page_size, page_token=request.page_token)
        return ingest_pb2.ListEventsResponse(events=[event_message(r) for r in rows],
                                             next_page_token=token)

    def RetryEvent(self, request: ingest_pb2.RetryEventRequest,
                   context: grpc.ServicerContext) -> ingest_pb2.Event:
        return event_message(self._svc.retry(auth.tenant_id(), request.event_id))

    def SubmitCdpEvent(self, request: ingest_pb2.SubmitCdpEventRequest,
                       context: grpc.ServicerContext) -> ingest_pb2.CdpEventResult:
        return cdp_result(self._svc.submit_cdp(auth.tenant_id(), cdp_input(request)))

    def BatchSubmitCdpEvents(self, request: ingest_pb2.BatchSubmitCdpEventsRequest,
                             context: grpc.ServicerContext) -> ingest_pb2.BatchSubmitCdpEventsResponse:
        items = [cdp_input(item, f"items[{i}].") for i, item in enumerate(request.items)]
        results = self._svc.submit_cdp_batch(auth.tenant_id(), items)
        return ingest_pb2.BatchSubmitCdpEventsResponse(results=[cdp_result(r) for r in results])

    def CreateCdpEventType(self, request: ingest_pb2.CreateCdpEventTypeRequest,
                           context: grpc.ServicerContext) -> ingest_pb2.CdpEventType:
        return event_type_message(self._svc.register_event_type(auth.tenant_id(), event_type_spec(request)))

    def ListCdpEventTypes(self, request: ingest_pb2.ListCdpEventTypesRequest,
                          context: grpc.ServicerContext) -> ingest_pb2.ListCdpEventTypesResponse:
        rows = self._svc.event_types(auth.tenant_id())
        return ingest_pb2.ListCdpEventTypesResponse(event_types=[event_type_message(r) for r in rows])

    def GetCdpEventType(self, request: ingest_pb2.GetCdpEventTypeRequest,
                        context: grpc.ServicerContext) -> ingest_pb2.CdpEventType:
        return event_type_message(self._svc.event_type(auth.tenant_id(), request.name))

    # -- engagement ---------------------------------------------------------------------
    def GetProgramAnalytics(self, request: ingest_pb2.GetProgramAnalyticsRequest,
                            context: grpc.ServicerContext) -> ingest_pb2.ProgramAnalytics:
        a = self._queries.analytics(auth.tenant_id(), request.program_id, request.from_date,
                                    request.to_date, request.top)
        msg = ingest_pb2.ProgramAnalytics(
            program_id=request.program_id, from_date=a.from_date.isoformat(), to_date=a.to_date.isoformat(),
            total_events=a.total_events, total_points=_points(a.total_micros),
            active_participants=a.active_participants,
            average_events_per_participant=average(a.participant_events, a.active_participants))
        for label, low, high, n in a.buckets:
            msg.events_per_participant.add(label=label, min_events=low, max_events=high, participants=n)
        for etype, events, micros in a.by_type:
            msg.events_by_type.add(event_type=etype, events=events, points=_points(micros))
        for rule_id, name, matches, micros in a.by_rule:
            msg.points_by_rule.add(rule_id=rule_id, rule_name=name, matches=matches, points=_points(micros))
        for day, events, micros in a.daily:
            msg.daily.add(date=day.isoformat(), events=events, points=_points(micros))
        for pid, events, micros in a.top:
            msg.top_participants.add(participant_id=pid, events=events, points=_points(micros))
        return msg

    def ListSegments(self, request: ingest_pb2.ListSegmentsRequest,
                     context: grpc.ServicerContext) -> ingest_pb2.ListSegmentsResponse:
        counts, at = self._queries.segments(auth.tenant_id(), request.program_id,
                                            dates.timestamp_field(request, "as_of"))
        resp = ingest_pb2.ListSegmentsResponse(
            segments=[ingest_pb2.Segment(name=c.name, description=c.description, count=c.count) for c in counts])
        if at is not None:
            structs.set_timestamp(resp.as_of, at)
        return resp

    def ListSegmentMembers(self, request: ingest_pb2.ListSegmentMembersRequest,
                           context: grpc.ServicerContext) -> ingest_pb2.ListSegmentMembersResponse:
        rows, token, at = self._queries.members(
            auth.tenant_id(), request.program_id, request.segment, dates.timestamp_field(request, "as_of"),
            request.page_size, request.page_token)
        resp = ingest_pb2.ListSegmentMembersResponse(next_page_token=token)
        for r in rows:
            resp.members.add(participant_id=r.participant_id, events=int(r.events), points=_points(r.micros))
        if at is not None:
            structs.set_timestamp(resp.as_of, at)
        return resp

    def GetSegmentConfig(self, request: ingest_pb2.GetSegmentConfigRequest,
                         context: grpc.ServicerContext) -> ingest_pb2.SegmentConfig:
        config, updated = self._queries.config(auth.tenant_id(), request.program_id)
        return segment_config_message(request.program_id, config, updated)

    def UpdateSegmentConfig(self, request: ingest_pb2.UpdateSegmentConfigRequest,
                            context: grpc.ServicerContext) -> ingest_pb2.SegmentConfig:
        sections = [f.name for f in request.DESCRIPTOR.fields if f.name != "program_id"]
        if not any(request.HasField(name) for name in sections):
            # A replacement that names no section would reset every threshold to its default.
            errors.collect([errors.FieldViolation(
                name, "is required: set at least one section (an empty section takes its defaults)")
                for name in sections])
        requested = json_format.MessageToDict(request, preserving_proto_field_name=True)
        requested.pop("program_id", None)
        config, updated = self._queries.put_config(auth.tenant_id(), request.program_id, requested)
        return segment_config_message(request.program_id, config, updated)

    def SubmitSystemEvents(self, request: ingest_pb2.SubmitSystemEventsRequest,
                           context: grpc.ServicerContext) -> ingest_pb2.BatchSubmitEventsResponse:
        items = [SystemEventInput(
            program_id=e.program_id, idempotency_key=e.idempotency_key, event_type=e.event_type,
            participant_id=e.participant_id,
            event_timestamp=_datetime(e, "event_timestamp", f"events[{i}].event_timestamp"),
            event_data=exactjson.canonical(_struct(e, "event_data"))) for i, e in enumerate(request.events)]
        results = self._svc.submit_system(request.tenant_id, items)
        resp = ingest_pb2.BatchSubmitEventsResponse()
        for i, r in enumerate(results):
            item = resp.results.add(index=i, status=r.status)
            if r.event_id:
                item.event_id = r.event_id
            if r.error_code:
                item.error.CopyFrom(ingest_pb2.ItemError(
                    code=r.error_code, message=r.error_message or "", field=r.error_field or ""))
        return resp

    def ListInactiveParticipants(self, request: ingest_pb2.ListInactiveParticipantsRequest,
                                 context: grpc.ServicerContext) -> ingest_pb2.ListInactiveParticipantsResponse:
        rows, token = self._queries.inactive(request.tenant_id, request.program_id,
                                             request.last_event_on_or_before, request.page_size,
                                             request.page_token)
        resp = ingest_pb2.ListInactiveParticipantsResponse(next_page_token=token)
        for pid, last in rows:
            resp.participants.add(participant_id=pid, last_event_date=last.astimezone(dt.UTC).date().isoformat())
        return resp

    def ClaimEvents(self, request: ingest_pb2.ClaimEventsRequest,
                    context: grpc.ServicerContext) -> ingest_pb2.ClaimEventsResponse:
        if not request.tenant_id:
            raise errors.InvalidArgument.field("tenant_id", "is required")
        rows = self._svc.claim(request.tenant_id, list(request.event_ids))
        return ingest_pb2.ClaimEventsResponse(events=[event_message(r) for r in rows])


def record_outcomes_actor(service: IngestService) -> Any:
    """The ``record_outcomes`` actor body (queue ``ingest``)."""
    from accrual_platform import queue

    def record_outcomes(payload: str | dict[str, Any]) -> None:
        msg = queue.decode(payload, messages_pb2.EventOutcomes)
        bind_subject(tenant_ids=(o.tenant_id for o in msg.outcomes),
                     event_ids=(o.event_id for o in msg.outcomes))
        service.record_outcomes(list(msg.outcomes))

    return record_outcomes
