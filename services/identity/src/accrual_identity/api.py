"""IdentityService over gRPC: requests in, use cases called, messages out, nothing else.

Authentication and scopes are checked by the platform interceptor from the contract's
``required_scope`` options; the errors raised below become rich statuses there. Public
RPCs act for the caller's tenant; internal ones name the tenant in the request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import grpc
from accrual.identity.v1 import identity_pb2, identity_pb2_grpc
from accrual_platform import auth, errors
from accrual_platform.db import Database
from google.protobuf import json_format, struct_pb2

from accrual_identity import keys, storage
from accrual_identity.domain.enrollments import EnrollmentChange, EnrollmentStatus
from accrual_identity.domain.identities import IdentityType
from accrual_identity.enrollments import Enrollments
from accrual_identity.merges import Merges
from accrual_identity.participants import (
    LOOKUP_FIELDS,
    Participants,
    ParticipantView,
    RawIdentity,
    ResolveItem,
)
from accrual_identity.schedule import Schedule

_TYPES = {identity_pb2.IdentityType.Value(f"IDENTITY_TYPE_{t.value}"): t for t in IdentityType}
_TYPE_VALUES = {t: v for v, t in _TYPES.items()}
_CHANGES = {c: identity_pb2.EnrollmentChange.Value(f"ENROLLMENT_CHANGE_{c.value}")
            for c in EnrollmentChange}
_STATUSES = {identity_pb2.EnrollmentStatus.Value(f"ENROLLMENT_STATUS_{s.value}"): s
             for s in EnrollmentStatus}
_STATUS_VALUES = {s: v for v, s in _STATUSES.items()}
_STATUS_NAMES = ", ".join(s.value for s in EnrollmentStatus)


#: tenant ids are UUIDs; anything longer cannot be one and would not fit the columns
MAX_TENANT_ID = 36


def _tenant() -> str:
    tenant: str = auth.tenant_id()
    if not tenant or len(tenant) > MAX_TENANT_ID:
        raise errors.InvalidArgument("the call carries no tenant", reason="tenant_required")
    return tenant


def _attributes(struct: struct_pb2.Struct) -> dict[str, Any]:
    try:
        return json_format.MessageToDict(struct)
    except ValueError:  # NaN or Infinity, which JSON cannot carry
        raise errors.InvalidArgument.field("attributes", "numbers must be finite") from None


def _identities(messages: Iterable[identity_pb2.Identity]) -> list[RawIdentity]:
    """Unknown and UNSPECIFIED types map to None, which validation names as a bad type."""
    return [(_TYPES.get(m.type), m.value) for m in messages]


def _status(value: int, *, required: bool) -> EnrollmentStatus | None:
    """A status of the request; an unknown number is refused naming the field."""
    if value == identity_pb2.ENROLLMENT_STATUS_UNSPECIFIED and not required:
        return None
    status = _STATUSES.get(value)
    if status is None:
        raise errors.InvalidArgument.field("status", f"must be one of {_STATUS_NAMES}")
    return status


def enrollment_message(record: storage.EnrollmentRecord) -> identity_pb2.Enrollment:
    msg = identity_pb2.Enrollment(program_id=record.program_id,
                                  participant_id=record.participant_id,
                                  status=_STATUS_VALUES[record.status])
    msg.enrolled_at.FromDatetime(record.created_at)
    msg.updated_at.FromDatetime(record.updated_at)
    return msg


def participant_message(view: ParticipantView) -> identity_pb2.Participant:
    msg = identity_pb2.Participant(participant_id=view.id, identities=[
        identity_pb2.Identity(type=_TYPE_VALUES[i.type], value=i.value) for i in view.identities])
    msg.attributes.update(view.attributes)
    msg.created_at.FromDatetime(view.created_at)
    return msg


def api_key_message(record: keys.ApiKeyRecord) -> identity_pb2.ApiKey:
    msg = identity_pb2.ApiKey(key_id=record.id, tenant_id=record.tenant_id,
                              scopes=list(record.scopes), prefix=record.prefix)
    msg.created_at.FromDatetime(record.created_at)
    if record.revoked_at is not None:
        msg.revoked_at.FromDatetime(record.revoked_at)
    return msg


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):  # type: ignore[misc]
    def __init__(self, db: Database, participants: Participants, enrollments: Enrollments,
                 merges: Merges, on_revoked: Callable[[str], None] = lambda key_id: None) -> None:
        """``on_revoked`` evicts a revoked key from this process's cache at once; other
        processes hear of it from the database (``accrual_platform.revocations``)."""
        self._db = db
        self._on_revoked = on_revoked
        self._participants = participants
        self._enrollments = enrollments
        self._merges = merges

    def CreateParticipant(self, request: identity_pb2.CreateParticipantRequest,
                          context: grpc.ServicerContext) -> identity_pb2.Participant:
        return participant_message(self._participants.create(
            _tenant(), _identities(request.identities),
            _attributes(request.attributes)))

    def GetParticipant(self, request: identity_pb2.GetParticipantRequest,
                       context: grpc.ServicerContext) -> identity_pb2.Participant:
        return participant_message(self._participants.get(_tenant(), request.participant_id))

    def LookupParticipant(self, request: identity_pb2.LookupParticipantRequest,
                          context: grpc.ServicerContext) -> identity_pb2.Participant:
        wanted = [(name, kind, getattr(request, name)) for name, kind in LOOKUP_FIELDS.items()
                  if getattr(request, name)]
        return participant_message(self._participants.lookup(_tenant(), wanted))

    def LinkIdentity(self, request: identity_pb2.LinkIdentityRequest,
                     context: grpc.ServicerContext) -> identity_pb2.Participant:
        identity = _identities([request.identity])[0] if request.HasField("identity") else None
        return participant_message(self._participants.link(
            _tenant(), request.participant_id, identity))

    def MergeParticipants(self, request: identity_pb2.MergeParticipantsRequest,
                          context: grpc.ServicerContext) -> identity_pb2.MergeParticipantsResponse:
        result = self._merges.merge(_tenant(), request.survivor_participant_id,
                                    request.merged_participant_id)
        response = identity_pb2.MergeParticipantsResponse(
            merge_id=result.merge_id, merged_participant_id=result.merged_participant_id,
            survivor=participant_message(result.survivor))
        response.merged_at.FromDatetime(result.merged_at)
        return response

    def ListParticipantEnrollments(
            self, request: identity_pb2.ListParticipantEnrollmentsRequest,
            context: grpc.ServicerContext) -> identity_pb2.ListParticipantEnrollmentsResponse:
        rows, token = self._enrollments.list_for_participant(
            _tenant(), request.participant_id, _status(request.status, required=False),
            request.page_size, request.page_token)
        return identity_pb2.ListParticipantEnrollmentsResponse(
            enrollments=[enrollment_message(r) for r in rows], next_page_token=token)

    def ListProgramEnrollments(
            self, request: identity_pb2.ListProgramEnrollmentsRequest,
            context: grpc.ServicerContext) -> identity_pb2.ListProgramEnrollmentsResponse:
        rows, token = self._enrollments.list_for_program(
            _tenant(), request.program_id, _status(request.status, required=False),
            request.page_size, request.page_token)
        return identity_pb2.ListProgramEnrollmentsResponse(
            enrollments=[enrollment_message(r) for r in rows], next_page_token=token)

    def GetEnrollment(self, request: identity_pb2.GetEnrollmentRequest,
                      context: grpc.ServicerContext) -> identity_pb2.Enrollment:
        return enrollment_message(self._enrollments.get(
            _tenant(), request.program_id, request.participant_id))

    def CreateEnrollment(self, request: identity_pb2.CreateEnrollmentRequest,
                         context: grpc.ServicerContext) -> identity_pb2.Enrollment:
        return enrollment_message(self._enrollments.enroll(
            _tenant(), request.program_id, request.participant_id))

    def UpdateEnrollment(self, request: identity_pb2.UpdateEnrollmentRequest,
                         context: grpc.ServicerContext) -> identity_pb2.Enrollment:
        tenant = _tenant()
        status = _status(request.status, required=True)
        assert status is not None
        return enrollment_message(self._enrollments.set_status(
            tenant, request.program_id, request.participant_id, status))

    def ListApiKeys(self, request: identity_pb2.ListApiKeysRequest,
                    context: grpc.ServicerContext) -> identity_pb2.ListApiKeysResponse:
        rows, token = keys.list_api_keys(self._db, _tenant(), request.page_size,
                                         request.page_token)
        return identity_pb2.ListApiKeysResponse(keys=[api_key_message(r) for r in rows],
                                                next_page_token=token)

    def RevokeApiKey(self, request: identity_pb2.RevokeApiKeyRequest,
                     context: grpc.ServicerContext) -> identity_pb2.ApiKey:
        record, _ = keys.revoke(self._db, request.key_id, tenant_id=_tenant())
        self._on_revoked(record.id)
        return api_key_message(record)

    def GetCurrentApiKey(self, request: identity_pb2.GetCurrentApiKeyRequest,
                         context: grpc.ServicerContext) -> identity_pb2.CurrentApiKey:
        caller = auth.principal()
        record, tenant_name = keys.own_key(self._db, caller.tenant_id, caller.key_id)
        granted = auth.Principal(record.tenant_id, record.id, frozenset(record.scopes))
        return identity_pb2.CurrentApiKey(key=api_key_message(record), tenant_name=tenant_name,
                                          allowed_scopes=granted.allowed_scopes())

    def AuthenticateApiKey(
            self, request: identity_pb2.AuthenticateApiKeyRequest,
            context: grpc.ServicerContext) -> identity_pb2.AuthenticateApiKeyResponse:
        principal = keys.authenticate(self._db, request.api_key)
        if principal is None:
            raise errors.Unauthenticated("unknown or revoked API key")
        return identity_pb2.AuthenticateApiKeyResponse(
            tenant_id=principal.tenant_id, key_id=principal.key_id,
            scopes=sorted(principal.scopes))

    def ListScheduledCandidates(
            self, request: identity_pb2.ListScheduledCandidatesRequest,
            context: grpc.ServicerContext) -> identity_pb2.ListScheduledCandidatesResponse:
        occasion = (identity_pb2.ScheduledOccasion.Name(request.occasion).removeprefix("SCHEDULED_OCCASION_")
                    if request.occasion in identity_pb2.ScheduledOccasion.values() else "")
        rows, token = Schedule(self._db).candidates(
            request.tenant_id, request.program_id, occasion, request.date, request.page_size,
            request.page_token)
        return identity_pb2.ListScheduledCandidatesResponse(
            candidates=[identity_pb2.ScheduledCandidate(participant_id=pid, years=years) for pid, years in rows],
            next_page_token=token)

    def ResolveParticipants(
            self, request: identity_pb2.ResolveParticipantsRequest,
            context: grpc.ServicerContext) -> identity_pb2.ResolveParticipantsResponse:
        if not request.tenant_id or len(request.tenant_id) > MAX_TENANT_ID:
            raise errors.InvalidArgument.field("tenant_id", "is required (a tenant id)")
        reject = identity_pb2.UNKNOWN_PARTICIPANT_POLICY_REJECT
        outcomes = self._participants.resolve(request.tenant_id, [ResolveItem(
            program_id=item.program_id, participant_id=item.participant_id,
            identities=_identities(item.identities),
            create_unknown=item.on_unknown_participant != reject) for item in request.items])
        response = identity_pb2.ResolveParticipantsResponse()
        for outcome in outcomes:
            result = response.results.add(
                participant_id=outcome.participant_id,
                participant_created=outcome.participant_created,
                error_code=outcome.error_code, error_message=outcome.error_message)
            if outcome.enrollment_change is not None:
                result.enrollment_change = _CHANGES[outcome.enrollment_change]
            result.attributes.update(outcome.attributes)
            result.active_program_ids.extend(outcome.active_program_ids)
        return response
