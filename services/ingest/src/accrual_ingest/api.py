"""IngestService over gRPC: request in, use case, response out (wire.py converts).

Authentication and scopes are checked by the platform interceptor from the contract's
``required_scope`` options; errors raised below become rich statuses there.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import grpc
import structlog
from accrual.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from accrual_platform import auth, dates, errors, grpc_server, structs
from google.protobuf import json_format
from sqlalchemy import exc as sa_exc

from accrual_ingest import wire
from accrual_ingest.domain.accept import Outcome
from accrual_ingest.domain.engagement import average
from accrual_ingest.domain.validation import MAX_BATCH, EventInput
from accrual_ingest.insights import EngagementQueries
from accrual_ingest.service import IngestService
from accrual_ingest.storage import EventFilters, EventRecord
from accrual_ingest.waiting import MAX_WAIT_SECONDS

log = structlog.get_logger("accrual.ingest")

#: Metadata of a caller that a coalesced call carries: its credentials and request id.
CALLER_METADATA = frozenset({"x-api-key", "authorization", "x-request-id"})
#: SubmitEvent's own scope, which each coalesced call must hold.
#: the metadata (an HTTP header through the REST shim, RFC 7240) saying the wait was applied
PREFERENCE_APPLIED = "preference-applied"
SUBMIT_SCOPE = grpc_server.required_scope("/accrual.ingest.v1.IngestService/SubmitEvent") or auth.ADMIN_SCOPE

if TYPE_CHECKING:
    # The generated servicer base is untyped; checked as a plain class.
    _Servicer = object
else:
    _Servicer = ingest_pb2_grpc.IngestServiceServicer


class IngestServicer(_Servicer):
    def __init__(self, service: IngestService, queries: EngagementQueries) -> None:
        self._svc = service
        self._queries = queries

    # -- accept ---------------------------------------------------------------------------
    def SubmitEvent(self, request: ingest_pb2.SubmitEventRequest,
                    context: grpc.ServicerContext) -> ingest_pb2.Event:
        """With ``wait_seconds``, the answer waits for the event's outcome (up to 10 s) and
        its initial metadata says ``preference-applied: wait=N``; when too many calls wait
        already it is answered at once, without that metadata."""
        tenant_id = auth.tenant_id()
        outcome = self._svc.submit(tenant_id, wire.event_input(request))
        answer = wire.submitted_event(outcome)
        if request.wait_seconds and outcome.event is not None:
            seconds = min(request.wait_seconds, MAX_WAIT_SECONDS)
            waited = self._svc.await_outcome(tenant_id, outcome.event, seconds, on_cancel=context.add_callback)
            if waited is not None:
                context.send_initial_metadata(((PREFERENCE_APPLIED, f"wait={seconds}"),))
                answer = wire.event_message(waited, deduplicated=answer.deduplicated)
        return answer

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
                admitted.append((i, principal.tenant_id, wire.event_input(call.request)))
            except errors.AppError as exc:
                results[i].status.CopyFrom(exc.to_status())
        answers: list[Outcome[EventRecord] | errors.AppError]
        try:
            answers = list(self._svc.submit_many([(tenant, raw) for _, tenant, raw in admitted]))
        except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
            # Nothing was stored: each call is answered 503 like SubmitEvent, keeping its own
            # rate-limit metadata.
            log.warning("database_unavailable", error=str(exc).splitlines()[0])
            answers = [errors.Unavailable("database unavailable, retry")] * len(admitted)
        for (i, _, _), answer in zip(admitted, answers, strict=True):
            if isinstance(answer, errors.AppError):
                results[i].status.CopyFrom(answer.to_status())
                continue
            try:
                results[i].response.CopyFrom(wire.submitted_event(answer))
            except errors.AppError as exc:
                results[i].status.CopyFrom(exc.to_status())
        return resp

    def BatchSubmitEvents(self, request: ingest_pb2.BatchSubmitEventsRequest,
                          context: grpc.ServicerContext) -> ingest_pb2.BatchSubmitEventsResponse:
        raws = [wire.event_input(e, f"events[{i}].") for i, e in enumerate(request.events)]
        return wire.batch_response(self._svc.submit_batch(auth.tenant_id(), raws))

    def SubmitSystemEvents(self, request: ingest_pb2.SubmitSystemEventsRequest,
                           context: grpc.ServicerContext) -> ingest_pb2.BatchSubmitEventsResponse:
        return wire.batch_response(self._svc.submit_system(request.tenant_id, wire.system_inputs(request)))

    def SubmitCdpEvent(self, request: ingest_pb2.SubmitCdpEventRequest,
                       context: grpc.ServicerContext) -> ingest_pb2.CdpEventResult:
        [outcome] = self._svc.submit_cdp(auth.tenant_id(), [wire.cdp_input(request)], batch=False)
        return wire.cdp_result(outcome)

    def BatchSubmitCdpEvents(self, request: ingest_pb2.BatchSubmitCdpEventsRequest,
                             context: grpc.ServicerContext) -> ingest_pb2.BatchSubmitCdpEventsResponse:
        items = [wire.cdp_input(item, f"items[{i}].") for i, item in enumerate(request.items)]
        outcomes = self._svc.submit_cdp(auth.tenant_id(), items, batch=True)
        return ingest_pb2.BatchSubmitCdpEventsResponse(
            results=[wire.cdp_item(o, i) for i, o in enumerate(outcomes)])

    # -- events ---------------------------------------------------------------------------
    def GetEvent(self, request: ingest_pb2.GetEventRequest,
                 context: grpc.ServicerContext) -> ingest_pb2.Event:
        return wire.event_message(self._svc.get(auth.tenant_id(), request.event_id))

    def ListEvents(self, request: ingest_pb2.ListEventsRequest,
                   context: grpc.ServicerContext) -> ingest_pb2.ListEventsResponse:
        status = origin = ""
        if request.status:
            if request.status not in wire.STATUS.values():
                raise errors.InvalidArgument.field("status", "must be one of " + ", ".join(wire.STATUS))
            status = ingest_pb2.EventStatus.Name(request.status).removeprefix("EVENT_STATUS_")
        if request.origin:
            if request.origin not in wire.ORIGIN.values():
                raise errors.InvalidArgument.field("origin", "must be one of " + ", ".join(wire.ORIGIN))
            origin = ingest_pb2.EventOrigin.Name(request.origin).removeprefix("EVENT_ORIGIN_")
        filters = EventFilters(
            program_id=request.program_id, participant_id=request.participant_id,
            external_id=request.external_id, status=status, origin=origin, cdp_source=request.cdp_source,
            event_type=request.event_type,
            received_after=dates.timestamp_field(request, "received_after"),
            received_before=dates.timestamp_field(request, "received_before"),
            occurred_after=dates.timestamp_field(request, "occurred_after"),
            occurred_before=dates.timestamp_field(request, "occurred_before"))
        rows, token = self._svc.list_events(auth.tenant_id(), filters, request.page_size, request.page_token)
        return ingest_pb2.ListEventsResponse(events=[wire.event_message(r) for r in rows], next_page_token=token)

    def RetryEvent(self, request: ingest_pb2.RetryEventRequest,
                   context: grpc.ServicerContext) -> ingest_pb2.Event:
        return wire.event_message(self._svc.retry(auth.tenant_id(), request.event_id))

    def ClaimEvents(self, request: ingest_pb2.ClaimEventsRequest,
                    context: grpc.ServicerContext) -> ingest_pb2.ClaimEventsResponse:
        if not request.tenant_id:
            raise errors.InvalidArgument.field("tenant_id", "is required")
        rows = self._svc.claim(request.tenant_id, list(request.event_ids))
        return ingest_pb2.ClaimEventsResponse(events=[wire.event_message(r) for r in rows])

    # -- the CDP registry -----------------------------------------------------------------
    def CreateCdpEventType(self, request: ingest_pb2.CreateCdpEventTypeRequest,
                           context: grpc.ServicerContext) -> ingest_pb2.CdpEventType:
        return wire.event_type_message(self._svc.register_event_type(auth.tenant_id(), wire.event_type_spec(request)))

    def ListCdpEventTypes(self, request: ingest_pb2.ListCdpEventTypesRequest,
                          context: grpc.ServicerContext) -> ingest_pb2.ListCdpEventTypesResponse:
        return ingest_pb2.ListCdpEventTypesResponse(
            event_types=[wire.event_type_message(r) for r in self._svc.event_types(auth.tenant_id())])

    def GetCdpEventType(self, request: ingest_pb2.GetCdpEventTypeRequest,
                        context: grpc.ServicerContext) -> ingest_pb2.CdpEventType:
        return wire.event_type_message(self._svc.event_type(auth.tenant_id(), request.name))

    def UpdateCdpEventType(self, request: ingest_pb2.UpdateCdpEventTypeRequest,
                           context: grpc.ServicerContext) -> ingest_pb2.CdpEventType:
        if request.properties and request.clear_properties:
            raise errors.InvalidArgument.field("clear_properties", "cannot be combined with properties")
        properties = wire.property_specs(request.properties) if request.properties or request.clear_properties \
            else None
        allow = request.allow_unknown_properties if request.HasField("allow_unknown_properties") else None
        return wire.event_type_message(self._svc.update_event_type(
            auth.tenant_id(), request.name, properties=properties, allow_unknown_properties=allow))

    def DeleteCdpEventType(self, request: ingest_pb2.DeleteCdpEventTypeRequest,
                           context: grpc.ServicerContext) -> ingest_pb2.CdpEventType:
        return wire.event_type_message(self._svc.delete_event_type(auth.tenant_id(), request.name))

    # -- engagement -----------------------------------------------------------------------
    def GetProgramAnalytics(self, request: ingest_pb2.GetProgramAnalyticsRequest,
                            context: grpc.ServicerContext) -> ingest_pb2.ProgramAnalytics:
        a = self._queries.analytics(auth.tenant_id(), request.program_id, request.from_date,
                                    request.to_date, request.top)
        msg = ingest_pb2.ProgramAnalytics(
            program_id=request.program_id, from_date=a.from_date.isoformat(), to_date=a.to_date.isoformat(),
            total_events=a.total_events, total_points=wire.points(a.total_micros),
            active_participants=a.active_participants,
            average_events_per_participant=average(a.participant_events, a.active_participants))
        for label, low, high, n in a.buckets:
            msg.events_per_participant.add(label=label, min_events=low, max_events=high, participants=n)
        for etype, events, micros in a.by_type:
            msg.events_by_type.add(event_type=etype, events=events, points=wire.points(micros))
        for rule_id, name, matches, micros in a.by_rule:
            msg.points_by_rule.add(rule_id=rule_id, rule_name=name, matches=matches, points=wire.points(micros))
        for day, events, micros in a.daily:
            msg.daily.add(date=day.isoformat(), events=events, points=wire.points(micros))
        for pid, events, micros in a.top:
            msg.top_participants.add(participant_id=pid, events=events, points=wire.points(micros))
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
            resp.members.add(participant_id=r.participant_id, events=r.events, points=wire.points(r.micros))
        if at is not None:
            structs.set_timestamp(resp.as_of, at)
        return resp

    def GetSegmentConfig(self, request: ingest_pb2.GetSegmentConfigRequest,
                         context: grpc.ServicerContext) -> ingest_pb2.SegmentConfig:
        config, updated = self._queries.config(auth.tenant_id(), request.program_id)
        return wire.segment_config_message(request.program_id, config, updated)

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
        return wire.segment_config_message(request.program_id, config, updated)

    def ListInactiveParticipants(self, request: ingest_pb2.ListInactiveParticipantsRequest,
                                 context: grpc.ServicerContext) -> ingest_pb2.ListInactiveParticipantsResponse:
        rows, token = self._queries.inactive(request.tenant_id, request.program_id,
                                             request.last_event_on_or_before, request.page_size,
                                             request.page_token)
        resp = ingest_pb2.ListInactiveParticipantsResponse(next_page_token=token)
        for pid, last in rows:
            resp.participants.add(participant_id=pid, last_event_date=last.astimezone(dt.UTC).date().isoformat())
        return resp
