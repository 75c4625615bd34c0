"""IngestService servicer: proto in, use case, proto out. No logic of its own."""

from __future__ import annotations

import datetime as dt
from typing import Any

import grpc
import sqlalchemy as sa
from accrual.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from accrual.messages.v1 import messages_pb2
from accrual_platform import auth, errors
from accrual_platform.db import decimal_str
from google.protobuf import json_format, struct_pb2, timestamp_pb2

from accrual_ingest.domain.validation import EventInput
from accrual_ingest.service import IngestService

_STATUS = {name: ingest_pb2.EventStatus.Value(f"EVENT_STATUS_{name}")
           for name in ("PENDING", "PROCESSING", "COMPLETED", "FAILED")}


def _ts(value: dt.datetime, target: timestamp_pb2.Timestamp) -> None:
    target.FromDatetime(value)


def event_input(req: ingest_pb2.SubmitEventRequest) -> EventInput:
    return EventInput(
        program_id=req.program_id,
        idempotency_key=req.idempotency_key,
        event_type=req.event_type,
        event_timestamp=req.event_timestamp.ToDatetime(dt.UTC) if req.HasField("event_timestamp") else None,
        external_id=req.external_id if req.HasField("external_id") else None,
        participant_id=req.participant_id if req.HasField("participant_id") else None,
        recipient_external_id=req.recipient_external_id if req.HasField("recipient_external_id") else None,
        recipient_id=req.recipient_id if req.HasField("recipient_id") else None,
        event_data=json_format.MessageToDict(req.event_data) if req.HasField("event_data") else {},
    )


def event_message(row: sa.Row[Any], *, deduplicated: bool = False) -> ingest_pb2.Event:
    msg = ingest_pb2.Event(
        event_id=row.id, program_id=row.program_id, idempotency_key=row.idempotency_key,
        event_type=row.event_type, status=_STATUS[row.status], deduplicated=deduplicated,
    )
    for name in ("external_id", "participant_id", "recipient_external_id", "recipient_id",
                 "error_code", "error_message"):
        value = getattr(row, name)
        if value is not None:
            setattr(msg, name, value)
    data = struct_pb2.Struct()
    data.update(row.event_data or {})
    msg.event_data.CopyFrom(data)
    _ts(row.event_timestamp, msg.event_timestamp)
    _ts(row.received_at, msg.received_at)
    if row.processed_at is not None:
        _ts(row.processed_at, msg.processed_at)
    if row.points_awarded is not None:
        msg.points_awarded = decimal_str(row.points_awarded)
    for item in row.rule_evaluations or []:
        json_format.ParseDict(item, msg.rule_evaluations.add(), ignore_unknown_fields=True)
    return msg


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(self, service: IngestService) -> None:
        self._svc = service

    def SubmitEvent(self, request: ingest_pb2.SubmitEventRequest,
                    context: grpc.ServicerContext) -> ingest_pb2.Event:
        accepted = self._svc.submit(auth.tenant_id(), event_input(request))
        return event_message(accepted.row, deduplicated=accepted.deduplicated)

    def BatchSubmitEvents(self, request: ingest_pb2.BatchSubmitEventsRequest,
                          context: grpc.ServicerContext) -> ingest_pb2.BatchSubmitEventsResponse:
        results = self._svc.submit_batch(auth.tenant_id(), [event_input(e) for e in request.events])
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
            filters["status"] = ingest_pb2.EventStatus.Name(request.status).removeprefix("EVENT_STATUS_")
        for name in ("received_after", "received_before", "occurred_after", "occurred_before"):
            if request.HasField(name):
                filters[name] = getattr(request, name).ToDatetime(dt.UTC)
        rows, token = self._svc.list(auth.tenant_id(), filters=filters,
                                     page_size=request.page_size, page_token=request.page_token)
        return ingest_pb2.ListEventsResponse(events=[event_message(r) for r in rows],
                                             next_page_token=token)

    def RetryEvent(self, request: ingest_pb2.RetryEventRequest,
                   context: grpc.ServicerContext) -> ingest_pb2.Event:
        return event_message(self._svc.retry(auth.tenant_id(), request.event_id))

    def ClaimEvents(self, request: ingest_pb2.ClaimEventsRequest,
                    context: grpc.ServicerContext) -> ingest_pb2.ClaimEventsResponse:
        if not request.tenant_id:
            raise errors.InvalidArgument.field("tenant_id", "is required")
        rows = self._svc.claim(request.tenant_id, list(request.event_ids))
        return ingest_pb2.ClaimEventsResponse(events=[event_message(r) for r in rows])


def record_outcomes_actor(service: IngestService) -> Any:
    """The ``record_outcomes`` actor body (queue ``ingest``)."""
    from accrual_platform import queue

    def record_outcomes(payload: dict[str, Any]) -> None:
        msg = queue.from_payload(payload, messages_pb2.EventOutcomes)
        service.record_outcomes(list(msg.outcomes))

    return record_outcomes
