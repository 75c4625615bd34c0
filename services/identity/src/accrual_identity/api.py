"""IdentityService servicer."""

from __future__ import annotations

from typing import Any

import grpc
import sqlalchemy as sa
from google.protobuf import json_format

from accrual.identity.v1 import identity_pb2, identity_pb2_grpc
from accrual_identity import keys
from accrual_identity.service import IdentityService, ResolveInput
from accrual_platform import auth, errors


def _kind(value: int) -> str:
    return identity_pb2.IdentityType.Name(value).removeprefix("IDENTITY_TYPE_")


def participant_message(row: sa.Row[Any], idents: list[sa.Row[Any]]) -> identity_pb2.Participant:
    msg = identity_pb2.Participant(participant_id=row.id, identities=[
        identity_pb2.Identity(type=identity_pb2.IdentityType.Value(f"IDENTITY_TYPE_{i.type}"),
                              value=i.value) for i in idents])
    msg.attributes.update(row.attributes or {})
    msg.created_at.FromDatetime(row.created_at)
    return msg


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(self, service: IdentityService) -> None:
        self._svc = service

    def CreateParticipant(self, request: identity_pb2.CreateParticipantRequest,
                          context: grpc.ServicerContext) -> identity_pb2.Participant:
        row, idents = self._svc.create_participant(
            auth.tenant_id(), [(_kind(i.type), i.value) for i in request.identities],
            json_format.MessageToDict(request.attributes))
        return participant_message(row, idents)

    def GetParticipant(self, request: identity_pb2.GetParticipantRequest,
                       context: grpc.ServicerContext) -> identity_pb2.Participant:
        row, idents = self._svc.get_participant(auth.tenant_id(), request.participant_id)
        return participant_message(row, idents)

    def AuthenticateApiKey(self, request: identity_pb2.AuthenticateApiKeyRequest,
                           context: grpc.ServicerContext) -> identity_pb2.AuthenticateApiKeyResponse:
        principal = keys.authenticate(self._svc.db, request.api_key)
        if principal is None:
            raise errors.Unauthenticated("unknown or revoked API key")
        return identity_pb2.AuthenticateApiKeyResponse(
            tenant_id=principal.tenant_id, key_id=principal.key_id, scopes=sorted(principal.scopes))

    def ResolveParticipants(self, request: identity_pb2.ResolveParticipantsRequest,
                            context: grpc.ServicerContext) -> identity_pb2.ResolveParticipantsResponse:
        items = [ResolveInput(
            program_id=i.program_id,
            create_unknown=i.on_unknown_participant != identity_pb2.UNKNOWN_PARTICIPANT_POLICY_REJECT,
            participant_id=i.participant_id,
            identities=[(_kind(x.type), x.value) for x in i.identities]) for i in request.items]
        resp = identity_pb2.ResolveParticipantsResponse()
        for r in self._svc.resolve(request.tenant_id, items):
            out = resp.results.add(
                participant_id=r.participant_id, participant_created=r.participant_created,
                enrollment_change=identity_pb2.EnrollmentChange.Value(
                    f"ENROLLMENT_CHANGE_{r.enrollment_change}"),
                error_code=r.error_code, error_message=r.error_message)
            out.attributes.update(r.attributes)
        return resp
