"""The notify schema and every query against it.

Four tables: ``endpoints`` (partner URLs and their signing secrets), ``messages`` (one row
per fact some endpoint subscribed to when it was published, unique on tenant and fact id,
holding the exact envelope text that is signed),
``deliveries`` (one message to one endpoint, with its state and schedule) and
``delivery_attempts`` (one row per HTTP attempt, for the partner's delivery log).

Each method of :class:`NotifyStore` is one transaction, so callers cannot leave half a
state change behind. The delivery state machine lives in the WHERE clauses: a delivery is
claimed with a short lease by a single conditional UPDATE, which makes duplicate or
concurrent ``deliver_webhook`` messages harmless on PostgreSQL and SQLite alike.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import structlog
from accrual_platform.db import Database, JsonType, UtcDateTime, in_values, insert_rows, newest_first
from accrual_platform.ids import new_id
from sqlalchemy.orm import Session

from accrual_notify.domain.events import rfc3339, subscribes
from accrual_notify.secretbox import SecretBox

SCHEMA = "notify"

log = structlog.get_logger("accrual.notify")

ENABLED, DISABLED = "ENABLED", "DISABLED"
PENDING, SUCCEEDED, FAILED = "PENDING", "SUCCEEDED", "FAILED"

metadata = sa.MetaData(schema=SCHEMA, naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

endpoints = sa.Table(
    "endpoints", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("enabled_events", JsonType, nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    # Signing secrets: the current one, and during a rotation the previous one until
    # previous_secret_expires_at, so messages carry both signatures while partners switch.
    # Fernet tokens of the secrets (secretbox), never the secrets themselves.
    sa.Column("secret", sa.String(512), nullable=False),
    sa.Column("previous_secret", sa.String(512)),
    sa.Column("previous_secret_expires_at", UtcDateTime()),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("disabled_reason", sa.Text, nullable=False, server_default=""),
    sa.Column("disabled_at", UtcDateTime()),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.Column("deleted_at", UtcDateTime()),
    # Health: since when every attempt failed (cleared by a success or a re-enable), and the
    # last success. An endpoint failing for longer than the configured period is disabled.
    sa.Column("failing_since", UtcDateTime()),
    sa.Column("last_success_at", UtcDateTime()),
    sa.Index(None, "tenant_id", "created_at"),
)

messages = sa.Table(
    "messages", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("fact_id", sa.String(512), nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    # One message per fact: the id is derived from (tenant_id, fact_id), so the primary key
    # is that uniqueness (migration 0004 dropped a second, redundant unique index).
)

deliveries = sa.Table(
    "deliveries", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("endpoint_id", sa.String(36), sa.ForeignKey(endpoints.c.id), nullable=False),
    sa.Column("message_id", sa.String(64), sa.ForeignKey(messages.c.id), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_status_code", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_latency_ms", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_response_excerpt", sa.Text, nullable=False, server_default=""),
    sa.Column("last_error", sa.Text, nullable=False, server_default=""),
    sa.Column("last_attempt_at", UtcDateTime()),
    sa.Column("next_attempt_at", UtcDateTime()),
    # Set while a worker is attempting the delivery; a second claim waits for it to pass.
    sa.Column("lease_until", UtcDateTime()),
    sa.Column("completed_at", UtcDateTime()),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.UniqueConstraint("endpoint_id", "message_id"),
    sa.Index(None, "tenant_id", "endpoint_id", "created_at", "id"),
    sa.Index(None, "status", "next_attempt_at"),
    sa.Index(None, "endpoint_id", "status", "created_at"),
    sa.Index(None, "message_id"),
)

delivery_attempts = sa.Table(
    "delivery_attempts", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
              primary_key=True, autoincrement=True),
    sa.Column("delivery_id", sa.String(36), sa.ForeignKey(deliveries.c.id), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    # 0 when no response arrived (connection error, timeout, refused address)
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("latency_ms", sa.Integer, nullable=False),
    sa.Column("response_excerpt", sa.Text, nullable=False),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("started_at", UtcDateTime(), nullable=False),
    sa.Index(None, "delivery_id", "attempt"),
)


# -- records ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Endpoint:
    id: str
    tenant_id: str
    url: str
    enabled_events: tuple[str, ...]
    description: str
    status: str
    disabled_reason: str
    created_at: dt.datetime
    updated_at: dt.datetime | None = None
    previous_secret_expires_at: dt.datetime | None = None
    failing_since: dt.datetime | None = None


@dataclass(frozen=True)
class Delivery:
    id: str
    tenant_id: str
    endpoint_id: str
    message_id: str
    type: str
    status: str
    attempts: int
    last_status_code: int
    last_latency_ms: int
    last_response_excerpt: str
    last_error: str
    next_attempt_at: dt.datetime | None
    created_at: dt.datetime
    last_attempt_at: dt.datetime | None = None


@dataclass(frozen=True)
class Attempt:
    attempt: int
    status_code: int
    latency_ms: int
    response_excerpt: str
    error: str
    started_at: dt.datetime


@dataclass(frozen=True)
class Subscriber:
    """An enabled endpoint of a tenant and the event types it subscribes to."""

    endpoint_id: str
    enabled_events: tuple[str, ...]


def _do_nothing(statement: Any) -> Any:
    return statement.on_conflict_do_nothing()


@dataclass(frozen=True)
class Fact:
    """A message to store: one notification, its webhook-id and rendered envelope."""

    tenant_id: str
    fact_id: str
    type: str
    message_id: str
    payload: str


@dataclass(frozen=True)
class Scheduled:
    """A delivery that needs a ``deliver_webhook`` message."""

    tenant_id: str
    delivery_id: str
    delay_seconds: float = 0.0


@dataclass(frozen=True)
class Job:
    """A claimed delivery with everything one attempt needs."""

    delivery_id: str
    tenant_id: str
    endpoint_id: str
    message_id: str
    attempts: int
    url: str
    payload: str
    secret: str
    previous_secret: str | None
    previous_secret_expires_at: dt.datetime | None


@dataclass(frozen=True)
class Claim:
    job: Job | None
    #: why nothing is to be done, when job is None
    skipped: str = ""


@dataclass(frozen=True)
class AttemptRecord:
    started_at: dt.datetime
    status_code: int | None
    latency_ms: int
    response_excerpt: str
    error: str


def _endpoint(row: Any) -> Endpoint:
    return Endpoint(id=row.id, tenant_id=row.tenant_id, url=row.url,
                    enabled_events=tuple(row.enabled_events), description=row.description,
                    status=row.status, disabled_reason=row.disabled_reason,
                    created_at=row.created_at, updated_at=row.updated_at,
                    previous_secret_expires_at=row.previous_secret_expires_at,
                    failing_since=row.failing_since)


def _delivery(row: Any) -> Delivery:
    return Delivery(id=row.id, tenant_id=row.tenant_id, endpoint_id=row.endpoint_id,
                    message_id=row.message_id, type=row.type, status=row.status,
                    attempts=row.attempts, last_status_code=row.last_status_code,
                    last_latency_ms=row.last_latency_ms,
                    last_response_excerpt=row.last_response_excerpt, last_error=row.last_error,
                    next_attempt_at=row.next_attempt_at, created_at=row.created_at,
                    last_attempt_at=row.last_attempt_at)


_DELIVERY_COLUMNS = (*deliveries.c, messages.c.type)


class NotifyStore:
    def __init__(self, db: Database, box: SecretBox) -> None:
        """``box`` encrypts signing secrets on their way in and decrypts them on their way
        out: the columns never hold a secret itself."""
        self.db = db
        self._box = box

    def prepare_secrets(self) -> int:
        """Fail (WrongSecretsKey) unless the key opens every stored secret, and encrypt with
        the first key the secrets still in plain text (rows from before encryption at rest)
        or under an older key: how many rows were rewritten. Racing processes are harmless:
        each row is rewritten only if it still holds what was read."""
        e = endpoints
        with self.db.transaction() as session:
            rows = session.execute(sa.select(e.c.id, e.c.secret, e.c.previous_secret)).all()
        stale = [r for r in rows if self._box.needs_reseal(r.secret)
                 or (r.previous_secret is not None and self._box.needs_reseal(r.previous_secret))]
        if not stale:
            return 0
        with self.db.transaction() as session:
            for r in stale:
                session.execute(sa.update(e).where(
                    e.c.id == r.id, e.c.secret == r.secret,
                    e.c.previous_secret.is_not_distinct_from(r.previous_secret),
                ).values(secret=self._box.reseal(r.secret),
                         previous_secret=None if r.previous_secret is None
                         else self._box.reseal(r.previous_secret)))
        log.info("webhook_secrets_encrypted", rows=len(stale))
        return len(stale)

    # -- endpoints -------------------------------------------------------------------------

    def insert_endpoint(self, *, tenant_id: str, url: str, enabled_events: Sequence[str],
                        description: str, secret: str, now: dt.datetime) -> Endpoint:
        endpoint_id = new_id()
        values = {"id": endpoint_id, "tenant_id": tenant_id, "url": url,
                  "enabled_events": list(enabled_events), "description": description,
                  "secret": self._box.seal(secret), "status": ENABLED, "disabled_reason": "",
                  "created_at": now, "updated_at": now}
        with self.db.transaction() as session:
            session.execute(endpoints.insert().values(**values))
        return Endpoint(id=endpoint_id, tenant_id=tenant_id, url=url,
                        enabled_events=tuple(enabled_events), description=description,
                        status=ENABLED, disabled_reason="", created_at=now, updated_at=now)

    def update_endpoint(self, tenant_id: str, endpoint_id: str, *, now: dt.datetime,
                        url: str | None = None, enabled_events: Sequence[str] | None = None,
                        description: str | None = None, status: str | None = None,
                        disabled_reason: str = "") -> Endpoint | None:
        """Change the given fields in one statement; None when there is no such endpoint.

        Enabling clears the disabled reason and the failure streak, so an endpoint the
        partner has fixed is not auto-disabled again by its old failures. Disabling an
        endpoint that is already disabled keeps the original reason.
        """
        e = endpoints
        values: dict[str, Any] = {"updated_at": now}
        if url is not None:
            values["url"] = url
        if enabled_events is not None:
            values["enabled_events"] = list(enabled_events)
        if description is not None:
            values["description"] = description
        if status == ENABLED:
            values.update(status=ENABLED, disabled_reason="", disabled_at=None,
                          failing_since=None)
        elif status == DISABLED:
            values.update(
                status=DISABLED,
                disabled_reason=sa.case((e.c.status == DISABLED, e.c.disabled_reason),
                                        else_=disabled_reason),
                disabled_at=sa.case((e.c.status == DISABLED, e.c.disabled_at), else_=now))
        with self.db.transaction() as session:
            row = session.execute(sa.update(e).where(
                e.c.tenant_id == tenant_id, e.c.id == endpoint_id, e.c.deleted_at.is_(None),
            ).values(**values).returning(e.c.id)).first()
        return None if row is None else self.get_endpoint(tenant_id, endpoint_id)

    def get_endpoint(self, tenant_id: str, endpoint_id: str) -> Endpoint | None:
        e = endpoints
        with self.db.transaction() as session:
            row = session.execute(sa.select(e).where(
                e.c.tenant_id == tenant_id, e.c.id == endpoint_id,
                e.c.deleted_at.is_(None))).first()
        return None if row is None else _endpoint(row)

    def list_endpoints(self, tenant_id: str) -> list[Endpoint]:
        e = endpoints
        with self.db.transaction() as session:
            rows = session.execute(sa.select(e).where(
                e.c.tenant_id == tenant_id, e.c.deleted_at.is_(None),
            ).order_by(e.c.created_at, e.c.id)).all()
        return [_endpoint(r) for r in rows]

    def soft_delete_endpoint(self, tenant_id: str, endpoint_id: str, now: dt.datetime) -> bool:
        """Mark deleted; rows stay for the delivery log. False when there was nothing to delete."""
        e = endpoints
        with self.db.transaction() as session:
            row = session.execute(sa.update(e).where(
                e.c.tenant_id == tenant_id, e.c.id == endpoint_id, e.c.deleted_at.is_(None),
            ).values(deleted_at=now, updated_at=now).returning(e.c.id)).first()
        return row is not None

    def rotate_secret(self, tenant_id: str, endpoint_id: str, new_secret: str,
                      previous_valid_until: dt.datetime, now: dt.datetime) -> bool:
        """Make ``new_secret`` current and keep signing with the old one until the deadline.

        Only one previous secret is kept: rotating again inside the overlap retires the
        oldest secret at once (the partner has had both the others)."""
        e = endpoints
        with self.db.transaction() as session:
            row = session.execute(sa.update(e).where(
                e.c.tenant_id == tenant_id, e.c.id == endpoint_id, e.c.deleted_at.is_(None),
            ).values(previous_secret=e.c.secret, previous_secret_expires_at=previous_valid_until,
                     secret=self._box.seal(new_secret), updated_at=now).returning(e.c.id)).first()
        return row is not None

    # -- delivery log ------------------------------------------------------------------------

    def list_deliveries(self, tenant_id: str, endpoint_id: str, limit: int,
                        after: tuple[dt.datetime, str] | None) -> list[Delivery]:
        """Newest first; ``after`` is the (created_at, id) of the last row of the previous page."""
        d, m = deliveries, messages
        query = newest_first(sa.select(*_DELIVERY_COLUMNS).join(m, m.c.id == d.c.message_id).where(
            d.c.tenant_id == tenant_id, d.c.endpoint_id == endpoint_id), d.c.created_at, d.c.id, after, limit)
        with self.db.transaction() as session:
            return [_delivery(r) for r in session.execute(query).all()]

    def get_delivery(self, tenant_id: str, delivery_id: str) -> Delivery | None:
        d, m = deliveries, messages
        with self.db.transaction() as session:
            row = session.execute(sa.select(*_DELIVERY_COLUMNS).join(
                m, m.c.id == d.c.message_id).where(
                d.c.tenant_id == tenant_id, d.c.id == delivery_id)).first()
        return None if row is None else _delivery(row)

    def list_attempts(self, tenant_id: str, delivery_id: str) -> list[Attempt]:
        a, d = delivery_attempts, deliveries
        with self.db.transaction() as session:
            rows = session.execute(sa.select(a).join(d, d.c.id == a.c.delivery_id).where(
                d.c.tenant_id == tenant_id, a.c.delivery_id == delivery_id,
            ).order_by(a.c.attempt, a.c.id)).all()
        return [Attempt(attempt=r.attempt, status_code=r.status_code, latency_ms=r.latency_ms,
                        response_excerpt=r.response_excerpt, error=r.error,
                        started_at=r.started_at) for r in rows]

    # -- fan-out ----------------------------------------------------------------------------

    def subscribers(self, tenant_ids: Sequence[str]) -> dict[str, list[Subscriber]]:
        """The enabled endpoints of each tenant, with what they subscribe to (one query)."""
        e = endpoints
        out: dict[str, list[Subscriber]] = {t: [] for t in tenant_ids}
        if not out:
            return out
        with self.db.transaction() as session:
            rows = session.execute(sa.select(e.c.tenant_id, e.c.id, e.c.enabled_events).where(
                e.c.tenant_id.in_(sorted(out)), e.c.status == ENABLED,
                e.c.deleted_at.is_(None)).order_by(e.c.tenant_id, e.c.id)).all()
        for row in rows:
            out[row.tenant_id].append(Subscriber(row.id, tuple(row.enabled_events)))
        return out

    def store_facts(self, facts: Sequence[Fact], subscribers: Mapping[str, Sequence[Subscriber]],
                    now: dt.datetime, first_delay: float) -> list[Scheduled]:
        """Insert each fact once and a delivery per endpoint of ``subscribers`` (as read by
        :meth:`subscribers`) that subscribes to its type.

        Returns the deliveries that need a ``deliver_webhook`` message: the new ones, plus
        those of already-stored facts that were never attempted (their message may have been
        lost if the previous run died between commit and enqueue; a duplicate is harmless
        because attempts are claimed).
        """
        m, d = messages, deliveries
        first_at = now + dt.timedelta(seconds=first_delay)
        unique: dict[str, Fact] = {}
        for fact in facts:
            unique.setdefault(fact.message_id, fact)
        if not unique:
            return []
        # One statement per table for the whole batch; rows in key order so concurrent
        # batches with overlapping facts wait for each other instead of deadlocking.
        ordered = [unique[k] for k in sorted(unique)]
        with self.db.transaction() as session:
            inserted = {r.id for r in insert_rows(
                session, m, [{"id": f.message_id, "tenant_id": f.tenant_id, "fact_id": f.fact_id, "type": f.type,
                              "payload": f.payload, "created_at": now} for f in ordered],
                conflict=_do_nothing, returning=[m.c.id], expect_new=True)}
            scheduled = self._unattempted(session, [k for k in unique if k not in inserted], first_delay)
            rows: list[dict[str, Any]] = [{"id": new_id(), "tenant_id": f.tenant_id, "endpoint_id": ep.endpoint_id,
                     "message_id": f.message_id, "status": PENDING, "attempts": 0,
                     "next_attempt_at": first_at, "created_at": now}
                    for f in ordered if f.message_id in inserted
                    for ep in subscribers.get(f.tenant_id, ()) if subscribes(ep.enabled_events, f.type)]
            if rows:
                session.execute(d.insert(), rows)
        scheduled.extend(Scheduled(r["tenant_id"], r["id"], first_delay) for r in rows)
        return scheduled

    @staticmethod
    def _unattempted(session: Session, message_ids: Sequence[str], delay: float) -> list[Scheduled]:
        d = deliveries
        out: list[Scheduled] = []
        for start in range(0, len(message_ids), 500):
            rows = session.execute(sa.select(d.c.tenant_id, d.c.id).where(
                in_values(session, [d.c.message_id], message_ids[start:start + 500]), d.c.status == PENDING,
                d.c.attempts == 0, d.c.lease_until.is_(None)).order_by(d.c.created_at, d.c.id)).all()
            out.extend(Scheduled(r.tenant_id, r.id, delay) for r in rows)
        return out

    # -- attempts ---------------------------------------------------------------------------

    def claim(self, tenant_id: str, delivery_id: str, *, now: dt.datetime,
              lease_until: dt.datetime, due_by: dt.datetime,
              max_in_flight: int | None = None) -> Claim:
        """Take the delivery for one attempt if it is pending, due by ``due_by`` and not
        leased; a delivery whose endpoint was disabled or deleted is closed as failed.

        With ``max_in_flight``, an endpoint that already has that many leased deliveries is
        ``endpoint_busy``: a slow receiver then holds at most that many worker threads, and
        the others stay free for every other endpoint. On PostgreSQL the endpoint row is
        locked while counting, so concurrent claims cannot overshoot the limit.
        """
        d, m, e = deliveries, messages, endpoints
        with self.db.transaction() as session:
            if max_in_flight is not None:
                owner = session.execute(sa.select(d.c.endpoint_id, d.c.status).where(
                    d.c.id == delivery_id, d.c.tenant_id == tenant_id)).first()
                if owner is not None and owner.status == PENDING:
                    lock = sa.select(e.c.id).where(e.c.id == owner.endpoint_id)
                    if self.db.dialect == "postgresql":
                        lock = lock.with_for_update()
                    session.execute(lock)
                    busy = session.execute(sa.select(sa.func.count()).select_from(d).where(
                        d.c.endpoint_id == owner.endpoint_id, d.c.status == PENDING,
                        d.c.lease_until >= now, d.c.id != delivery_id)).scalar_one()
                    if busy >= max_in_flight:
                        return Claim(None, "endpoint_busy")
            claimed = session.execute(sa.update(d).where(
                d.c.id == delivery_id, d.c.tenant_id == tenant_id, d.c.status == PENDING,
                sa.or_(d.c.lease_until.is_(None), d.c.lease_until < now),
                sa.or_(d.c.next_attempt_at.is_(None), d.c.next_attempt_at <= due_by),
            ).values(lease_until=lease_until).returning(d.c.id)).first()
            if claimed is None:
                state = session.execute(sa.select(d.c.status, d.c.lease_until).where(
                    d.c.id == delivery_id, d.c.tenant_id == tenant_id)).first()
                if state is None:
                    return Claim(None, "not_found")
                if state.status != PENDING:
                    return Claim(None, f"already_{state.status.lower()}")
                if state.lease_until is not None and state.lease_until >= now:
                    return Claim(None, "in_progress")
                return Claim(None, "not_due")
            row = session.execute(sa.select(
                d.c.id, d.c.tenant_id, d.c.endpoint_id, d.c.message_id, d.c.attempts,
                m.c.payload, e.c.url, e.c.secret, e.c.previous_secret,
                e.c.previous_secret_expires_at, e.c.status.label("endpoint_status"),
                e.c.disabled_reason, e.c.deleted_at,
            ).join(m, m.c.id == d.c.message_id).join(e, e.c.id == d.c.endpoint_id).where(
                d.c.id == delivery_id)).one()
            if row.deleted_at is not None or row.endpoint_status != ENABLED:
                reason = ("endpoint deleted" if row.deleted_at is not None
                          else f"endpoint disabled: {row.disabled_reason}".rstrip(": "))
                session.execute(sa.update(d).where(d.c.id == delivery_id).values(
                    status=FAILED, last_error=reason, lease_until=None, next_attempt_at=None,
                    completed_at=now))
                return Claim(None, "endpoint_unavailable")
        return Claim(Job(
            delivery_id=row.id, tenant_id=row.tenant_id, endpoint_id=row.endpoint_id,
            message_id=row.message_id, attempts=row.attempts, url=row.url, payload=row.payload,
            secret=self._box.open(row.secret),
            previous_secret=None if row.previous_secret is None else self._box.open(row.previous_secret),
            previous_secret_expires_at=row.previous_secret_expires_at))

    def record_attempt(self, job: Job, attempt: AttemptRecord, *, status: str,
                       next_attempt_at: dt.datetime | None, disable_reason: str | None,
                       now: dt.datetime, succeeded: bool = False,
                       disable_after: dt.timedelta | None = None) -> str | None:
        """Log the attempt and move the delivery on, releasing the lease, in one commit.

        The endpoint's health moves with it: a success ends its failure streak; a failure
        starts one (or extends it), and a streak older than ``disable_after`` disables the
        endpoint. Returns the reason when this attempt disabled the endpoint.
        """
        d, e = deliveries, endpoints
        number = job.attempts + 1
        with self.db.transaction() as session:
            session.execute(delivery_attempts.insert().values(
                delivery_id=job.delivery_id, attempt=number,
                status_code=attempt.status_code or 0, latency_ms=attempt.latency_ms,
                response_excerpt=attempt.response_excerpt, error=attempt.error,
                started_at=attempt.started_at))
            session.execute(sa.update(d).where(
                d.c.id == job.delivery_id, d.c.status == PENDING,
            ).values(
                status=status, attempts=number, last_status_code=attempt.status_code or 0,
                last_latency_ms=attempt.latency_ms,
                last_response_excerpt=attempt.response_excerpt, last_error=attempt.error,
                last_attempt_at=attempt.started_at, next_attempt_at=next_attempt_at,
                lease_until=None, completed_at=None if status == PENDING else now))
            if succeeded:
                session.execute(sa.update(e).where(e.c.id == job.endpoint_id).values(
                    failing_since=None, last_success_at=now))
                return None
            streak = session.execute(sa.update(e).where(e.c.id == job.endpoint_id).values(
                failing_since=sa.func.coalesce(e.c.failing_since, attempt.started_at),
            ).returning(e.c.failing_since)).scalar_one()
            if (disable_reason is None and disable_after is not None
                    and now - streak >= disable_after):
                disable_reason = (f"failing_since {rfc3339(streak)}: every attempt failed for "
                                  f"{int(disable_after.total_seconds())} s or more")
            if disable_reason is None:
                return None
            disabled = session.execute(sa.update(e).where(
                e.c.id == job.endpoint_id, e.c.status == ENABLED,
            ).values(status=DISABLED, disabled_reason=disable_reason, disabled_at=now,
                     updated_at=now).returning(e.c.id)).first()
            return disable_reason if disabled is not None else None

    def reschedule(self, tenant_id: str, delivery_id: str,
                   now: dt.datetime) -> tuple[Delivery | None, str]:
        """Make a failed delivery, or a pending one waiting for its next attempt, due now
        (a retry by hand). Returns the delivery, or None and why not: ``not_found``,
        ``in_progress`` (an attempt holds the lease) or ``succeeded``."""
        d = deliveries
        with self.db.transaction() as session:
            row = session.execute(sa.update(d).where(
                d.c.tenant_id == tenant_id, d.c.id == delivery_id,
                d.c.status.in_([PENDING, FAILED]),
                sa.or_(d.c.lease_until.is_(None), d.c.lease_until < now),
            ).values(status=PENDING, next_attempt_at=now, completed_at=None, lease_until=None,
                     ).returning(d.c.id)).first()
            if row is None:
                state = session.execute(sa.select(d.c.status).where(
                    d.c.tenant_id == tenant_id, d.c.id == delivery_id)).first()
                if state is None:
                    return None, "not_found"
                return None, "succeeded" if state.status == SUCCEEDED else "in_progress"
        return self.get_delivery(tenant_id, delivery_id), ""

    def recover(self, tenant_id: str, endpoint_id: str, since: dt.datetime,
                now: dt.datetime) -> list[Scheduled]:
        """Make every FAILED delivery of the endpoint created at or after ``since`` due now."""
        d = deliveries
        with self.db.transaction() as session:
            rows = session.execute(sa.update(d).where(
                d.c.tenant_id == tenant_id, d.c.endpoint_id == endpoint_id,
                d.c.status == FAILED, d.c.created_at >= since,
            ).values(status=PENDING, next_attempt_at=now, completed_at=None, lease_until=None,
                     ).returning(d.c.id, d.c.created_at)).all()
        return [Scheduled(tenant_id, r.id) for r in sorted(rows, key=lambda r: (r.created_at, r.id))]

    def requeue_stalled(self, now: dt.datetime, stalled_before: dt.datetime,
                        limit: int) -> list[Scheduled]:
        """Pending deliveries that were due long ago and are not being attempted: their
        message was lost (a crash between commit and enqueue). They are made due ``now``, so
        the next sweep skips them until they stall again."""
        d = deliveries
        with self.db.transaction() as session:
            query = sa.select(d.c.id, d.c.tenant_id).where(
                d.c.status == PENDING, d.c.next_attempt_at < stalled_before,
                sa.or_(d.c.lease_until.is_(None), d.c.lease_until < now),
            ).order_by(d.c.next_attempt_at).limit(limit)
            if self.db.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = session.execute(query).all()
            if rows:
                session.execute(sa.update(d).where(d.c.id.in_([r.id for r in rows])).values(
                    next_attempt_at=now))
        return [Scheduled(r.tenant_id, r.id) for r in rows]

