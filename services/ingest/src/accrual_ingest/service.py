"""Ingest use cases: accept (one use case for every input), read, retry, claim, record
outcomes and announce stale events again. No SQL here: the store (storage.py) runs it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import queue as queue_mod
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TypeVar

import structlog
from accrual.messages.v1 import messages_pb2
from accrual_platform import errors, facts, pages
from accrual_platform.db import decimal_str, utcnow
from accrual_platform.ids import canonical_uuid, require_uuid

from accrual_ingest.domain.accept import (
    Candidate,
    Outcome,
    SystemEventInput,
    cdp_candidate,
    check_batch_size,
    decide,
    loyalty_candidate,
    system_candidate,
    unique,
)
from accrual_ingest.domain.cdp import CdpInput, EventTypeSpec, PropertySpec, validate_event_type
from accrual_ingest.domain.engagement import Increments, ProcessedEvent
from accrual_ingest.domain.validation import EventInput, JsonObject, check_key
from accrual_ingest.storage import (
    COMPLETED,
    FAILED,
    Consequences,
    EventFilters,
    EventKey,
    EventRecord,
    EventSummary,
    EventTypeRecord,
    IngestStore,
    R,
)
from accrual_ingest.waiting import Waiters

log = structlog.get_logger("accrual.ingest")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
#: the states in which an event has its outcome
FINISHED = frozenset({COMPLETED, FAILED})
EVENT_PAGES = pages.Codec("events", pages.timestamp, pages.uuid_key)

T = TypeVar("T")


def page_of(rows: list[T], size: int, token: Callable[[T], str]) -> tuple[list[T], str]:
    """A page of ``size`` from ``rows`` read with one more, and the next page's token ("" on
    the last page)."""
    if len(rows) > size:
        rows = rows[:size]
        return rows, token(rows[-1])
    return rows, ""


class GroupCommitter:
    """Concurrent single-event accepts share transactions (group commit).

    A request thread hands its candidate over and waits; flusher threads take everything
    waiting (up to ``max_batch``) and accept it in one transaction, so under load one
    INSERT, one outbox row and one COMMIT serve many events, and when idle an event is
    stored at once (nobody waits for a timer). Nothing is answered before its commit, and a
    failed transaction fails every request of its group (each gets the error, e.g. 503).
    """

    def __init__(self, accept: Callable[[Sequence[Candidate]], list[Outcome[EventRecord]]],
                 *, flushers: int = 2, max_batch: int = 256) -> None:
        self._accept = accept
        self._max = max_batch
        self._queue: queue_mod.SimpleQueue[
            tuple[Candidate, Future[Outcome[EventRecord]]] | None] = queue_mod.SimpleQueue()
        self._threads = [threading.Thread(target=self._run, name=f"ingest-group-commit-{i}", daemon=True)
                         for i in range(flushers)]
        for t in self._threads:
            t.start()

    def submit(self, candidate: Candidate) -> Outcome[EventRecord]:
        future: Future[Outcome[EventRecord]] = Future()
        self._queue.put((candidate, future))
        return future.result()

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            group = [item]
            while len(group) < self._max:
                try:
                    more = self._queue.get_nowait()
                except queue_mod.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                group.append(more)
            try:
                outcomes = self._accept([c for c, _ in group])
            except BaseException as exc:
                for _, f in group:
                    f.set_exception(exc)
            else:
                for (_, f), outcome in zip(group, outcomes, strict=True):
                    f.set_result(outcome)


class IngestService:
    def __init__(self, store: IngestStore, wake_relay: Callable[[], None],
                 waiters: Waiters | None = None) -> None:
        self.store = store
        self._wake = wake_relay
        self._committer = GroupCommitter(self._accept_full)
        self.waiters = waiters if waiters is not None else Waiters(0)

    def close(self) -> None:
        self._committer.close()

    # -- accept: one use case, fed by the input adapters of domain/accept.py --------------
    def accept(self, candidates: Sequence[Candidate], record: type[R]) -> list[Outcome[R]]:
        """Store the valid candidates (new keys inserted, announced through the outbox, in
        one transaction) and answer every candidate, each with the stored event as
        ``record``: the whole event, or the key columns only (PostgreSQL then prints no event
        data back). A failed transaction raises: nothing was stored."""
        stored = self.store.store_events(unique(candidates), record)
        if stored.inserted:
            self._wake()
        return decide(candidates, stored.events, stored.inserted)

    def _accept_full(self, candidates: Sequence[Candidate]) -> list[Outcome[EventRecord]]:
        return self.accept(candidates, EventRecord)

    def submit(self, tenant_id: str, raw: EventInput) -> Outcome[EventRecord]:
        """One event; concurrent calls share a transaction (GroupCommitter)."""
        candidate = loyalty_candidate(tenant_id, raw, utcnow())
        if candidate.event is None:
            return decide([candidate], {}, ())[0]
        return self._committer.submit(candidate)

    def submit_many(self, calls: Sequence[tuple[str, EventInput]]) -> list[Outcome[EventRecord]]:
        """Single-event submissions of several callers at once (the REST shim's coalesced
        calls), each answered as :meth:`submit` would answer it and with its own receipt
        time, the valid ones stored in one transaction."""
        return self.accept([loyalty_candidate(tenant_id, raw, utcnow()) for tenant_id, raw in calls], EventRecord)

    def submit_batch(self, tenant_id: str, raws: Sequence[EventInput]) -> list[Outcome[EventKey]]:
        check_batch_size(len(raws), "events")
        now = utcnow()
        return self.accept([loyalty_candidate(tenant_id, raw, now, f"events[{i}].")
                            for i, raw in enumerate(raws)], EventKey)

    def submit_system(self, tenant_id: str, items: Sequence[SystemEventInput]) -> list[Outcome[EventKey]]:
        """The scheduler's events (origin SYSTEM), accepted like a partner batch: each is
        deduplicated by its deterministic idempotency key, so a fire repeated by a second
        scheduler run, a restart or a second machine is answered ``duplicate``."""
        if not tenant_id:
            raise errors.InvalidArgument.field("tenant_id", "is required")
        check_batch_size(len(items), "events")
        now = utcnow()
        return self.accept([system_candidate(tenant_id, item, now, f"events[{i}].")
                            for i, item in enumerate(items)], EventKey)

    def submit_cdp(self, tenant_id: str, raws: Sequence[CdpInput], *, batch: bool) -> list[Outcome[EventKey]]:
        """CDP events (seed 003), each checked against its registered event type: one
        event (``batch`` False) or a batch whose items are named ``items[i]``."""
        if batch:
            check_batch_size(len(raws), "items")
        specs = self.store.event_types_by_name(tenant_id, [r.event_type for r in raws if r.event_type])
        now = utcnow()
        return self.accept([cdp_candidate(tenant_id, raw, s.spec if (s := specs.get(raw.event_type)) else None,
                                          now, f"items[{i}]." if batch else "")
                            for i, raw in enumerate(raws)], EventKey)

    # -- the CDP registry -----------------------------------------------------------------
    def register_event_type(self, tenant_id: str, spec: EventTypeSpec) -> EventTypeRecord:
        violations = validate_event_type(spec)
        errors.collect([errors.FieldViolation(v.field, v.description) for v in violations],
                       reason="validation_failed")
        return self.store.put_event_type(tenant_id, spec, utcnow())

    def event_types(self, tenant_id: str) -> list[EventTypeRecord]:
        return self.store.event_types(tenant_id)

    def event_type(self, tenant_id: str, name: str) -> EventTypeRecord:
        return _event_type_found(self.store.event_type(tenant_id, name), name)

    def update_event_type(self, tenant_id: str, name: str, *, properties: tuple[PropertySpec, ...] | None,
                          allow_unknown_properties: bool | None) -> EventTypeRecord:
        """Change the fields given (None keeps one); the result is validated as on create."""
        current = self.event_type(tenant_id, name)
        spec = EventTypeSpec(
            name, current.properties if properties is None else properties,
            current.allow_unknown_properties if allow_unknown_properties is None else allow_unknown_properties)
        violations = validate_event_type(spec)
        errors.collect([errors.FieldViolation(v.field, v.description) for v in violations],
                       reason="validation_failed")
        return _event_type_found(self.store.update_event_type(tenant_id, spec, utcnow()), name)

    def delete_event_type(self, tenant_id: str, name: str) -> EventTypeRecord:
        """Events of the type submitted afterwards are refused as unregistered; stored ones stay."""
        return _event_type_found(self.store.delete_event_type(tenant_id, name), name)

    # -- read -----------------------------------------------------------------------------
    def get(self, tenant_id: str, event_id: str) -> EventRecord:
        canonical = require_uuid(event_id, "event_id")
        return errors.found(self.store.get_event(tenant_id, canonical), "event", canonical)

    def list_events(self, tenant_id: str, filters: EventFilters, page_size: int,
                    page_token: str) -> tuple[list[EventRecord], str]:
        if page_size < 0:
            raise errors.InvalidArgument.field("page_size", f"must be between 1 and {MAX_PAGE_SIZE}")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        program_id = canonical_uuid(filters.program_id) if filters.program_id else ""
        participant_id = canonical_uuid(filters.participant_id) if filters.participant_id else ""
        v = [errors.FieldViolation(name, "must be a UUID")
             for name, value in (("program_id", program_id), ("participant_id", participant_id))
             if value is None]
        for name in ("external_id", "event_type", "cdp_source"):
            if value := getattr(filters, name):  # what no stored event can hold is refused
                check_key(value, name, lambda field, problem: v.append(errors.FieldViolation(field, problem)))
        errors.collect(v)
        filters = dataclasses.replace(filters, program_id=program_id or "", participant_id=participant_id or "")
        after = None
        if page_token:
            at, last_id = EVENT_PAGES.decode(page_token)
            after = (at, last_id)
        rows = self.store.list_events(tenant_id, filters, after, size + 1)
        return page_of(rows, size, lambda r: EVENT_PAGES.encode(r.received_at, r.id))

    # -- retry, claim, outcome ------------------------------------------------------------
    def retry(self, tenant_id: str, event_id: str) -> EventRecord:
        current = self.get(tenant_id, event_id)
        record = self.store.retry(tenant_id, current.id, utcnow())
        if record is None:
            raise errors.Conflict(f"only FAILED events can be retried; this one is {current.status}",
                                  reason="event_not_retryable")
        self._wake()
        return record

    def claim(self, tenant_id: str, event_ids: Sequence[str]) -> list[EventRecord]:
        """Move PENDING events to PROCESSING; return every event not finished yet."""
        return self.store.claim(tenant_id, event_ids)

    def record_outcomes(self, outcomes: Sequence[messages_pb2.EventOutcome]) -> int:
        """Store outcomes of unfinished events and announce them; redeliveries change nothing.

        The analytics aggregates are updated in the same transaction, only for events this
        call moves to COMPLETED, so a redelivered outcome adds nothing to them either.
        """
        recorded = self.store.record_outcomes(outcomes, utcnow(), _consequences)
        if recorded:
            self._wake()
            # Other processes hear of it through the transaction's pg_notify; this one
            # (the embedded suite's only process) is told directly.
            self.waiters.wake(recorded)
        return len(recorded)

    def await_outcome(self, tenant_id: str, event: EventRecord, seconds: float, *,
                      on_cancel: Callable[[Callable[[], None]], object] | None = None) -> EventRecord | None:
        """``event`` once finished (COMPLETED or FAILED), or as it is after ``seconds``; None
        when too many calls wait already (the caller answers at once, without waiting).

        The wait is a ``threading.Event`` woken by the outcome's announcement: no database
        connection is held and nothing polls. The event is read again once after the waiter
        is registered, since its outcome may have been recorded in between. ``on_cancel``
        registers a callback run when the caller gives up (gRPC's ``add_callback``), which
        ends the wait early and frees its thread."""
        if event.status in FINISHED:
            return event
        with self.waiters.waiter(event.id) as done:
            if done is None:
                return None
            if on_cancel is not None:
                on_cancel(done.set)
            current = self.store.get_event(tenant_id, event.id) or event
            if current.status in FINISHED:
                return current
            done.wait(seconds)
        return self.store.get_event(tenant_id, event.id) or current

    def sweep_stale(self, older_than: dt.timedelta, limit: int = 1000, *,
                    announced_before: dt.datetime | None = None) -> int:
        """Announce again the unfinished events last announced more than ``older_than`` ago
        (or, given ``announced_before``, before that moment).

        Every consumer is idempotent, so a second announcement of an event that is merely
        slow costs a replay; an event whose message was lost (dead-lettered after its
        retries, a purged queue) gets processed instead of staying PENDING forever.
        """
        now = utcnow()
        cutoff = announced_before if announced_before is not None else now - older_than
        count = self.store.announce_stale(cutoff, now, limit)
        if not count:
            return 0
        log.warning("stale_events_announced_again", count=count, older_than_s=older_than.total_seconds())
        self._wake()
        return count


def _consequences(rows: list[EventSummary]) -> Consequences:
    """The webhook facts of recorded outcomes (``event.completed`` / ``event.failed``) and
    what the COMPLETED ones add to the analytics."""
    analytics: dict[str, Increments] = {}
    notes = messages_pb2.Notifications()
    for row in sorted(rows, key=lambda r: r.id):
        completed = row.status == COMPLETED
        if completed:
            analytics.setdefault(row.tenant_id, Increments()).add(processed_event(row))
        kind = "event.completed" if completed else "event.failed"
        notes.notifications.append(facts.notification(
            row.tenant_id, kind, f"{kind}:{row.id}:{row.attempt}", row.processed_at, event_summary(row)))
    return Consequences(notes, analytics)


def processed_event(row: EventSummary) -> ProcessedEvent:
    return ProcessedEvent(program_id=row.program_id, event_type=row.event_type,
                          event_timestamp=row.event_timestamp, origin=row.origin,
                          participant_id=row.participant_id,
                          rule_evaluations=list(row.rule_evaluations or []))


def event_summary(row: EventSummary) -> JsonObject:
    """Webhook data of an event: ids partners correlate on, status and outcome."""
    return {
        "event_id": row.id, "idempotency_key": row.idempotency_key, "program_id": row.program_id,
        "event_type": row.event_type, "external_id": row.external_id,
        "participant_id": row.participant_id, "recipient_id": row.recipient_id,
        "status": row.status,
        "points_awarded": decimal_str(row.points_awarded) if row.points_awarded is not None else None,
        "error_code": row.error_code, "error_message": row.error_message,
        "rule_evaluations": row.rule_evaluations or [],
        "origin": row.origin, "cdp_source": row.cdp_source,
    }


class StaleEventSweeper:
    """Runs :meth:`IngestService.sweep_stale` every ``interval`` seconds in a thread.

    ``at_start``: first announce again every event left unfinished when the thread starts,
    however recent. An in-process broker's messages died with the process that held them,
    so after a restart of the embedded suite nothing else would carry those events before
    they are stale (``older_than``, two minutes by default)."""

    def __init__(self, service: IngestService, *, interval: float, older_than: float,
                 at_start: bool = False) -> None:
        self._service = service
        self._interval = interval
        self._older_than = dt.timedelta(seconds=older_than)
        self._at_start = at_start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stale-event-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        if self._at_start:
            self._sweep_unfinished(utcnow())
        while not self._stop.wait(self._interval):
            try:
                while self._service.sweep_stale(self._older_than) and not self._stop.is_set():
                    pass
            except Exception as exc:  # the database may be down; try again next round
                log.warning("stale_event_sweep_failed", error=_first_line(exc))

    def _sweep_unfinished(self, started: dt.datetime) -> None:
        # A fixed cutoff: events announced again here are not taken a second time.
        try:
            while (self._service.sweep_stale(self._older_than, announced_before=started)
                   and not self._stop.is_set()):
                pass
        except Exception as exc:  # the regular sweep takes them later
            log.warning("unfinished_event_sweep_failed", error=_first_line(exc))


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else repr(exc)


def _event_type_found(record: EventTypeRecord | None, name: str) -> EventTypeRecord:
    if record is None:
        raise errors.NotFound(f"CDP event type {errors.excerpt(name)} is not registered",
                              reason="event_type_not_found")
    return record
