"""The gateway's error answers: its own input errors and gRPC errors mapped to HTTP."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
import orjson
from accrual_platform import errors
from google.rpc import error_details_pb2, status_pb2
from starlette.responses import Response

HTTP_STATUS = {
    grpc.StatusCode.OK: 200, grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400, grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401, grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409, grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499, grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}

class ShimError(Exception):
    """An error answered by the shim itself (before or instead of a gRPC call)."""

    def __init__(self, status: int, code: str, message: str,
                 violations: Sequence[tuple[str, str]] = ()) -> None:
        # Bounded like every error of the suite: a client's long key or value is quoted as
        # a short prefix, never echoed whole.
        message = errors.clip(message, errors.MAX_MESSAGE)
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.violations = [(errors.shorten(f, errors.MAX_FIELD), errors.clip(d, errors.MAX_DESCRIPTION))
                           for f, d in violations][:errors.MAX_VIOLATIONS]

    def body(self, request_id: str) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message,
                          "details": [{"field": f, "description": d} for f, d in self.violations],
                          "request_id": request_id}}


def error_from_rpc(exc: grpc.aio.AioRpcError | grpc.RpcError, invalid_status: int
                   ) -> tuple[int, dict[str, Any]]:
    """(HTTP status, error body) of a failed gRPC call."""
    raw = None
    for key, value in (exc.trailing_metadata() or ()):
        if key == "grpc-status-details-bin":
            raw = value
    rich = status_pb2.Status.FromString(raw) if raw else None
    return _answer(exc.code(), exc.details() or "", rich, invalid_status)


def error_from_app_error(exc: errors.AppError) -> tuple[int, dict[str, Any]]:
    """(HTTP status, error body) of an error the gateway raises itself, answered exactly as
    the same error raised by a service."""
    return _answer(exc.grpc_code, exc.message, exc.to_status(), 400)


def _answer(code: grpc.StatusCode, message: str, rich: status_pb2.Status | None,
            invalid_status: int) -> tuple[int, dict[str, Any]]:
    status = HTTP_STATUS.get(code, 500)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        status = invalid_status
    body: dict[str, Any] = {"code": code.name.lower(), "message": message or code.name,
                            "details": []}
    if rich is not None:
        for detail in rich.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                body["code"] = info.reason.lower()
                if info.metadata:
                    body["details"].append({"reason": info.reason.lower(), "domain": info.domain,
                                            "metadata": dict(info.metadata)})
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                body["details"].extend({"field": v.field, "description": v.description}
                                       for v in bad.field_violations)
            else:
                body["details"].append({"type": detail.type_url})
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and rich is None:
        # Not a rate limit (those carry an ErrorInfo) but the transport refusing a message
        # or metadata size: nothing the client can wait out, and no gRPC internals to show.
        status = 500
    if code == grpc.StatusCode.UNAVAILABLE and body["code"] == "unavailable":
        body["message"] = message or "service unavailable, retry"
    if status == 500:
        body["message"] = "internal error"
    return status, body


def error_response(status: int, error: dict[str, Any], request_id: str,
                   headers: dict[str, str] | None = None) -> Response:
    """The JSON answer ``{"error": error}``, naming the request id in body and header."""
    error.setdefault("request_id", request_id)
    return Response(orjson.dumps({"error": error}), status, media_type="application/json",
                    headers={"X-Request-Id": request_id, **(headers or {})})
