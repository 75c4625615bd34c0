"""The same migrations and state machine on the embedded default, SQLite (an attached file
per schema), with fakes for the HTTP client and a StubBroker without a worker."""

from __future__ import annotations

import dataclasses
import datetime as dt
import pathlib
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from accrual.messages.v1 import messages_pb2
from accrual_notify import bootstrap, storage
from accrual_notify.bootstrap import NotifyRuntime
from accrual_notify.delivery import Deliverer
from accrual_notify.transport import Response
from accrual_platform import errors, migrations, queue
from accrual_platform.db import utcnow
from accrual_platform.settings import Settings


class FakeClient:
    """Answers scripted status codes and records what would have been sent."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.sent: list[tuple[str, str, dict[str, str]]] = []

    def post(self, url: str, body: str, headers: Mapping[str, str]) -> Response:
        self.sent.append((url, body, dict(headers)))
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return Response(status, 3, "fake", "")

    def close(self) -> None:
        pass


@pytest.fixture
def runtime(tmp_path: pathlib.Path) -> Iterator[NotifyRuntime]:
    url = f"sqlite:///{tmp_path}/{{schema}}.db"
    migrations.upgrade(url, bootstrap.SCHEMA, bootstrap.MIGRATIONS)
    settings = Settings(database_url=url, broker_url="stub://", redis_url=None,
                        internal_token="t", webhook_retry_schedule=(0, 5, 60),
                        webhook_allow_private=True)
    rt = bootstrap.build(settings, queue.make_broker("stub://"))
    yield rt
    rt.stop()


def enqueued(rt: NotifyRuntime) -> int:
    """deliver_webhook messages waiting on the runtime's StubBroker."""
    broker: Any = rt.scheduler._broker
    return sum(broker.queues[q].qsize() for q in ("notify", "notify.DQ") if q in broker.queues)


def deliverer(rt: NotifyRuntime, client: FakeClient, **overrides: Any) -> Deliverer:
    """The runtime's wiring with a fake HTTP client (and optionally other settings)."""
    settings = dataclasses.replace(rt.settings, **overrides)
    return Deliverer(rt.store, client, rt.scheduler, settings)  # type: ignore[arg-type]


def note(tenant: str, fact_id: str, type_: str = "event.completed") -> messages_pb2.Notification:
    n = messages_pb2.Notification(tenant_id=tenant, type=type_, fact_id=fact_id)
    n.data.update({"event_id": fact_id})
    return n


def test_publish_is_idempotent_and_follows_subscriptions(runtime: NotifyRuntime) -> None:
    all_events, _ = runtime.endpoints.create("t1", "http://127.0.0.1:9/a", ["*"], "")
    points, _ = runtime.endpoints.create("t1", "http://127.0.0.1:9/b", ["points.awarded"], "")
    other, _ = runtime.endpoints.create("t2", "http://127.0.0.1:9/c", ["*"], "")

    assert runtime.publisher.publish([note("t1", "f1"), note("t1", "f1")]) == 1
    assert runtime.publisher.publish([note("t1", "f2", "points.awarded")]) == 2
    assert runtime.publisher.publish([note("t1", "f3", "order.shipped"), note("", "f4")]) == 0
    store = runtime.store
    assert len(store.list_deliveries("t1", all_events.id, 10, None)) == 2
    assert len(store.list_deliveries("t1", points.id, 10, None)) == 1
    assert store.list_deliveries("t2", other.id, 10, None) == []
    assert enqueued(runtime) == 3


def test_attempt_is_claimed_once_and_retried_on_schedule(runtime: NotifyRuntime) -> None:
    endpoint, secret = runtime.endpoints.create("t1", "http://127.0.0.1:9/a", ["*"], "")
    runtime.publisher.publish([note("t1", "f1")])
    [delivery] = runtime.store.list_deliveries("t1", endpoint.id, 10, None)
    now = utcnow()

    claim = runtime.store.claim("t1", delivery.id, now=now, lease_until=now + dt.timedelta(
        seconds=60), due_by=now + dt.timedelta(seconds=2))
    assert claim.job is not None and claim.job.secret == secret
    again = runtime.store.claim("t1", delivery.id, now=now, lease_until=now, due_by=now)
    assert again == storage.Claim(None, "in_progress")
    assert runtime.store.claim("t2", delivery.id, now=now, lease_until=now,
                               due_by=now).skipped == "not_found"
    runtime.store.record_attempt(
        claim.job, storage.AttemptRecord(now, 500, 3, "no", ""), status=storage.PENDING,
        next_attempt_at=now + dt.timedelta(seconds=5), disable_reason=None, now=now)
    early = runtime.store.claim("t1", delivery.id, now=now, lease_until=now,
                                due_by=now + dt.timedelta(seconds=2))
    assert early.skipped == "not_due"


def test_deliverer_signs_records_and_gives_up(runtime: NotifyRuntime) -> None:
    fake = FakeClient(500)
    d = deliverer(runtime, fake)
    endpoint, _ = runtime.endpoints.create("t1", "http://127.0.0.1:9/a", ["*"], "")
    runtime.publisher.publish([note("t1", "f1")])
    [delivery] = runtime.store.list_deliveries("t1", endpoint.id, 10, None)

    assert d.deliver("t1", delivery.id) == "retry"
    assert d.deliver("t1", delivery.id) == "not_due"
    _, body, headers = fake.sent[0]
    assert headers["webhook-id"] == delivery.message_id and '"type":"event.completed"' in body
    after = runtime.store.get_delivery("t1", delivery.id)
    assert after is not None and after.attempts == 1 and after.next_attempt_at is not None

    with pytest.raises(errors.NotFound):
        d.retry_by_hand("t2", delivery.id)
    d.retry_by_hand("t1", delivery.id)
    assert d.deliver("t1", delivery.id) == "retry"
    d.retry_by_hand("t1", delivery.id)
    assert d.deliver("t1", delivery.id) == "failed"
    final = runtime.store.get_delivery("t1", delivery.id)
    assert final is not None and final.status == storage.FAILED and final.attempts == 3
    assert len(runtime.store.list_attempts("t1", delivery.id)) == 3


def test_private_targets_are_refused_at_delivery_time_too(runtime: NotifyRuntime) -> None:
    fake = FakeClient(200)
    d = deliverer(runtime, fake, webhook_allow_private=False)
    endpoint, _ = runtime.endpoints.create("t1", "http://127.0.0.1:9/a", ["*"], "")
    runtime.publisher.publish([note("t1", "f1")])
    [delivery] = runtime.store.list_deliveries("t1", endpoint.id, 10, None)

    assert d.deliver("t1", delivery.id) == "retry"
    assert fake.sent == []
    [attempt] = runtime.store.list_attempts("t1", delivery.id)
    assert attempt.status_code == 0 and attempt.error.startswith("address_refused: url")
