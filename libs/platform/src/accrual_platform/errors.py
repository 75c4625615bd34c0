"""The suite's one error tree and its mapping to google.rpc.Status.

Domain code raises these; the gRPC error interceptor turns them into a rich status
(ErrorInfo reason + BadRequest field violations), which the REST shim maps to HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

DOMAIN = "accrual.dev"
#: How much of a client's value an error quotes back: enough to recognise it.
EXCERPT_LENGTH = 40
#: Bounds of what an error carries. The status travels in gRPC trailers, which a peer
#: refuses past 8-16 KiB (the gateway then saw RESOURCE_EXHAUSTED, a 429 with gRPC internals):
#: at these bounds a status stays under 8 KiB however many violations it names (the first
#: MAX_VIOLATIONS of them: enough to fix a request by).
MAX_MESSAGE, MAX_FIELD, MAX_DESCRIPTION, MAX_METADATA_VALUE = 600, 100, 300, 200
MAX_VIOLATIONS = 10

T = TypeVar("T")


def shorten(text: str, limit: int = EXCERPT_LENGTH) -> str:
    """``text`` itself when short, else its first ``limit`` characters and "…"."""
    return text if len(text) <= limit else text[:limit] + "…"


def excerpt(value: object, limit: int = EXCERPT_LENGTH) -> str:
    """A client's value quoted in an error: its repr, of at most ``limit`` characters of it."""
    return repr(shorten(str(value), limit))


#: no word of ours is this long; a run of it in an error text is a client's value echoed
_LONG_RUN = re.compile(r"\S{" + str(2 * EXCERPT_LENGTH + 1) + ",}")


def clip(text: str, limit: int) -> str:
    """An error text as sent: every long run of non-space characters (a value some check
    echoed whole) cut to its first EXCERPT_LENGTH characters, the whole to ``limit``."""
    return shorten(_LONG_RUN.sub(lambda m: shorten(m.group()), text), limit)


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "field", shorten(self.field, MAX_FIELD))
        object.__setattr__(self, "description", clip(self.description, MAX_DESCRIPTION))


class AppError(Exception):
    """Base of every error a client may see."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "internal"

    def __init__(self, message: str, *, reason: str | None = None,
                 violations: Sequence[FieldViolation] = (),
                 metadata: dict[str, str] | None = None) -> None:
        message = clip(message, MAX_MESSAGE)
        super().__init__(message)
        self.message = message
        if reason:
            self.reason = reason
        self.violations = tuple(violations)[:MAX_VIOLATIONS]
        self.metadata = {k: shorten(v, MAX_METADATA_VALUE) for k, v in (metadata or {}).items()}

    def to_status(self) -> status_pb2.Status:
        details: list[any_pb2.Any] = []
        info = any_pb2.Any()
        info.Pack(error_details_pb2.ErrorInfo(
            reason=self.reason.upper(), domain=DOMAIN, metadata=self.metadata))
        details.append(info)
        if self.violations:
            bad = any_pb2.Any()
            bad.Pack(error_details_pb2.BadRequest(field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in self.violations]))
            details.append(bad)
        return status_pb2.Status(
            code=getattr(code_pb2, self.grpc_code.name), message=self.message, details=details)


class InvalidArgument(AppError):
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "invalid_argument"

    @classmethod
    def field(cls, field: str, description: str, *, reason: str = "invalid_argument") -> InvalidArgument:
        return cls(f"{field}: {description}", reason=reason,
                   violations=[FieldViolation(field, description)])


class Unauthenticated(AppError):
    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    reason = "unauthenticated"


class PermissionDenied(AppError):
    grpc_code = grpc.StatusCode.PERMISSION_DENIED
    reason = "permission_denied"


class NotFound(AppError):
    grpc_code = grpc.StatusCode.NOT_FOUND
    reason = "not_found"


class Conflict(AppError):
    grpc_code = grpc.StatusCode.ABORTED
    reason = "conflict"


class AlreadyExists(AppError):
    grpc_code = grpc.StatusCode.ALREADY_EXISTS
    reason = "already_exists"


class FailedPrecondition(AppError):
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "failed_precondition"


class ResourceExhausted(AppError):
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "rate_limited"


class Unavailable(AppError):
    grpc_code = grpc.StatusCode.UNAVAILABLE
    reason = "unavailable"


def collect(violations: list[FieldViolation], *, reason: str = "invalid_argument") -> None:
    """Raise one InvalidArgument naming every violation, if there are any."""
    if violations:
        message = "; ".join(f"{v.field}: {v.description}" for v in violations)
        raise InvalidArgument(message, reason=reason, violations=violations)


def found(value: T | None, what: str, key: str) -> T:
    """``value``, or NotFound "<what> <key> not found" (reason ``<what>_not_found``) when it is None."""
    if value is None:
        raise NotFound(f"{what} {key} not found", reason=f"{what}_not_found")
    return value
