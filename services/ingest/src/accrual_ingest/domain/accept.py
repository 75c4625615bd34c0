"""Accepting events, in one shape for every input.

Each input (a single event, a partner batch, a CDP event, the scheduler's SYSTEM events) is
turned by its adapter here into :class:`Candidate` items: a validated event with its dedup
key, or the violations that stop it. The service stores the valid candidates in one
transaction, and :func:`decide` answers every candidate with an :class:`Outcome`, from which
each API builds its own response.

Candidates and outcomes are NamedTuples: a 1,000-event batch makes one of each per event,
and a NamedTuple is made in a tenth of a frozen dataclass's time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, NamedTuple, Protocol, TypeVar

from accrual_platform import errors

from accrual_ingest.domain.cdp import CdpInput, EventTypeSpec, validate_cdp_event
from accrual_ingest.domain.engagement import SYSTEM
from accrual_ingest.domain.validation import MAX_BATCH, EventInput, JsonObject, ValidEvent, Violation, validate_event

ACCEPTED, DUPLICATE, CONFLICT, INVALID = "accepted", "duplicate", "conflict", "invalid"


def scope_of(e: ValidEvent) -> str:
    """What an idempotency key is unique within: the program, or the CDP source."""
    return f"cdp:{e.cdp_source}" if e.cdp_source is not None else e.program_id


def dedup_key(scope: str, idempotency_key: str) -> str:
    return f"{scope}\x00{idempotency_key}"


class Candidate(NamedTuple):
    """One submitted event in the common form: valid (``event``) or not (``violations``)."""

    tenant_id: str
    received_at: dt.datetime
    event: ValidEvent | None
    #: The dedup key of ``event`` (:func:`dedup_key`), "" for an invalid item.
    key: str = ""
    violations: tuple[Violation, ...] = ()


class Stored(Protocol):
    """What deciding needs of a stored event: its id and payload digest."""

    @property
    def id(self) -> str: ...

    @property
    def payload_digest(self) -> str: ...


S = TypeVar("S", bound=Stored)


class Outcome(NamedTuple, Generic[S]):
    """The answer to one candidate.

    ``accepted``: stored now; ``duplicate``: the same payload was stored before (``event`` is
    that original); ``conflict``: the key was used with another payload (``event`` is the
    original); ``invalid``: not stored, ``violations`` say why.
    """

    status: str
    event: S | None = None
    violations: tuple[Violation, ...] = ()

    @property
    def event_id(self) -> str | None:
        return self.event.id if self.event is not None else None


def _valid(tenant_id: str, now: dt.datetime, event: ValidEvent | None,
           violations: Sequence[Violation]) -> Candidate:
    if event is None:
        return Candidate(tenant_id, now, None, "", tuple(violations))
    return Candidate(tenant_id, now, event, dedup_key(scope_of(event), event.idempotency_key))


def loyalty_candidate(tenant_id: str, raw: EventInput, now: dt.datetime, prefix: str = "") -> Candidate:
    """A partner's loyalty event (single, coalesced or batch item)."""
    event, violations = validate_event(raw, now, prefix=prefix)
    return _valid(tenant_id, now, event, violations)


@dataclass(frozen=True)
class SystemEventInput:
    """One of the scheduler's events (birthday, anniversary, inactivity)."""

    program_id: str
    idempotency_key: str
    event_type: str
    participant_id: str
    event_timestamp: dt.datetime | None
    event_data: JsonObject


def system_candidate(tenant_id: str, item: SystemEventInput, now: dt.datetime, prefix: str) -> Candidate:
    """A scheduler's event: a loyalty event of origin SYSTEM whose program, participant id
    and timestamp are required."""
    raw = EventInput(program_id=item.program_id, idempotency_key=item.idempotency_key,
                     event_type=item.event_type, event_timestamp=item.event_timestamp,
                     external_id=None, participant_id=item.participant_id or None,
                     recipient_external_id=None, recipient_id=None, event_data=item.event_data)
    violations = [Violation(prefix + name, "is required") for name, value in
                  (("program_id", item.program_id), ("participant_id", item.participant_id),
                   ("event_timestamp", item.event_timestamp))
                  if not value]
    event, problems = validate_event(raw, now, prefix=prefix)
    violations += problems
    if event is None or violations:
        return _valid(tenant_id, now, None, violations)
    return _valid(tenant_id, now, event._replace(origin=SYSTEM), ())


def cdp_candidate(tenant_id: str, raw: CdpInput, spec: EventTypeSpec | None, now: dt.datetime,
                  prefix: str = "") -> Candidate:
    """A CDP event, checked against its registered type (``spec``, None when unregistered)."""
    event, violations = validate_cdp_event(raw, spec, now, prefix=prefix)
    return _valid(tenant_id, now, event, violations)


def check_batch_size(count: int, field: str) -> None:
    if count == 0:
        raise errors.InvalidArgument.field(field, f"must contain 1 to {MAX_BATCH} items")
    if count > MAX_BATCH:
        raise errors.InvalidArgument.field(field, f"must contain at most {MAX_BATCH} items (got {count})")


def unique(candidates: Sequence[Candidate]) -> list[Candidate]:
    """The valid candidates to store: the first of each (tenant, dedup key). A key repeated
    among them is stored once; its later candidates are answered like retries of the first."""
    first: dict[tuple[str, str], Candidate] = {}
    for c in candidates:
        if c.event is not None:
            first.setdefault((c.tenant_id, c.key), c)
    return list(first.values())


def decide(candidates: Sequence[Candidate], stored: Mapping[tuple[str, str], S],
           inserted: Collection[tuple[str, str]]) -> list[Outcome[S]]:
    """The outcome of every candidate, given the stored event of each valid one's (tenant,
    key) and the keys inserted just now."""
    answered: set[tuple[str, str]] = set()
    out: list[Outcome[S]] = []
    for c in candidates:
        if c.event is None:
            out.append(Outcome(INVALID, None, c.violations))
            continue
        k = (c.tenant_id, c.key)
        row = stored[k]
        if k in inserted and k not in answered:
            out.append(Outcome(ACCEPTED, row))
        elif row.payload_digest != c.event.digest:
            out.append(Outcome(CONFLICT, row))
        else:
            out.append(Outcome(DUPLICATE, row))
        answered.add(k)
    return out
