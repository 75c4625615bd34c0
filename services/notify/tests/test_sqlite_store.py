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
from accrual_platform.testing import SECRETS_KEY


class FakeClient:
    """Answers scripted status codes and records what would have been sent."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.sent: list[tuple[str, str, dict[str, str]]] = []
        self.addresses: list[str | None] = []

    def post(self, url: str, body: str, headers: Mapping[str, str], *,
             address: str | None = None) -> Response:
        self.sent.append((url, body, dict(headers)))
        self.addresses.append(address)
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
                        webhook_allow_private=True, secrets_keys=(SECRETS_KEY,))
    rt = bootstrap.build(settings, queue.make_broker("stub://"))
    yield rt
    rt.stop()


def enqueued(rt: NotifyRuntime) -> int:
    """deliver_webhook messages waiting on the runtime's StubBroker."""
    broker: Any = rt.scheduler._broker
    return sum(broker.queues[q].qsize() for q in ("notify", "notify.DQ") if q in broker.queues)


def deliverer(rt: NotifyRuntime, client: FakeClient, *, resolve: Any = None,
              clock: Any = None, **overrides: Any) -> Deliverer:
    """The runtime's wiring with a fake HTTP client (and optionally other settings, a fake
    resolver and a fake clock)."""
    settings = dataclasses.replace(rt.settings, **overrides)
    extra: dict[str, Any] = {}
    if resolve is not None:
        extra["resolve"] = resolve
    if clock is not None:
        extra["clock"] = clock
    return Deliverer(rt.store, client, rt.scheduler, settings, **extra)  # type: ignore[arg-type]


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


def test_delivery_connects_to_the_address_it_checked(runtime: NotifyRuntime) -> None:
    """DNS rebinding: the host is resolved once per attempt, every address is checked, and
    the request goes to a checked address; a host that now resolves privately is refused."""
    answers = [["93.184.216.34"], ["10.0.0.7", "93.184.216.34"]]
    asked: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return answers.pop(0)

    fake = FakeClient(500)
    d = deliverer(runtime, fake, resolve=resolve, webhook_allow_private=False)
    endpoint, _ = runtime.endpoints.create("t1", "http://127.0.0.1:9/a", ["*"], "")
    runtime.store.update_endpoint("t1", endpoint.id, now=utcnow(),
                                  url="https://hooks.partner.example/in")
    runtime.publisher.publish([note("t1", "f1")])
    [delivery] = runtime.store.list_deliveries("t1", endpoint.id, 10, None)

    assert d.deliver("t1", delivery.id) == "retry"
    assert fake.sent[0][0] == "https://hooks.partner.example/in"
    assert fake.addresses == ["93.184.216.34"]
    runtime.store.reschedule("t1", delivery.id, utcnow())
    assert d.deliver("t1", delivery.id) == "retry"
    assert len(fake.sent) == 1  # the rebound answer was never contacted
    assert asked == [("hooks.partner.example", 443)] * 2
    last = runtime.store.list_attempts("t1", delivery.id)[-1]
    assert last.error.startswith("address_refused: url") and "10.0.0.7" in last.error


def test_auto_disable_counts_from_the_last_success(runtime: NotifyRuntime) -> None:
    """The default period (5 days) on a fake clock: failures separated by a success never
    add up; an unbroken streak longer than the period disables the endpoint, with why."""
    start = utcnow()
    now = [start]
    fake = FakeClient(500)
    d = deliverer(runtime, fake, clock=lambda: now[0], webhook_retry_schedule=(0,) * 50)
    assert d._settings.webhook_disable_after_seconds == 5 * 24 * 3600
    endpoint, _ = runtime.endpoints.create("t1", "http://127.0.0.1:9/a", ["*"], "")

    def attempt(days: float, status: int) -> str:
        now[0] = start + dt.timedelta(days=days)
        fake.statuses = [status]
        runtime.publisher.publish([note("t1", f"f-{days}")])
        [latest] = runtime.store.list_deliveries("t1", endpoint.id, 1, None)
        return d.deliver("t1", latest.id)

    assert attempt(0, 500) == "retry"
    assert attempt(4, 500) == "retry"
    assert runtime.endpoints.get("t1", endpoint.id).failing_since == start
    assert attempt(4.5, 200) == "succeeded"
    assert runtime.endpoints.get("t1", endpoint.id).failing_since is None
    assert attempt(6, 500) == "retry"
    assert attempt(10.9, 500) == "retry"  # 4.9 days since the streak began
    assert runtime.endpoints.get("t1", endpoint.id).status == storage.ENABLED
    assert attempt(11.1, 500) == "retry"
    disabled = runtime.endpoints.get("t1", endpoint.id)
    assert disabled.status == storage.DISABLED
    assert disabled.disabled_reason.startswith(
        f"failing_since {(start + dt.timedelta(days=6)).isoformat(timespec='milliseconds')}"
        .replace("+00:00", "Z"))

    enabled = runtime.endpoints.update("t1", endpoint.id, status=storage.ENABLED)
    assert enabled.status == storage.ENABLED and enabled.disabled_reason == ""
    assert enabled.failing_since is None  # the old streak does not disable it again at once
    assert attempt(11.2, 500) == "retry"
    assert runtime.endpoints.get("t1", endpoint.id).status == storage.ENABLED


def test_update_rotation_and_recovery_on_sqlite(runtime: NotifyRuntime) -> None:
    fake = FakeClient(500)
    d = deliverer(runtime, fake, webhook_retry_schedule=(0,))
    endpoint, first = runtime.endpoints.create("t1", "http://127.0.0.1:9/a", ["*"], "")
    updated = runtime.endpoints.update("t1", endpoint.id, enabled_events=["event.failed"],
                                       description="  ops  ")
    assert updated.enabled_events == ("event.failed",) and updated.description == "ops"
    assert updated.url == endpoint.url
    with pytest.raises(errors.InvalidArgument):
        runtime.endpoints.update("t1", endpoint.id, enabled_events=["nope"])
    rotated, second = runtime.endpoints.rotate_secret("t1", endpoint.id)
    assert second != first and rotated.previous_secret_expires_at is not None

    runtime.publisher.publish([note("t1", "f1", "event.failed"), note("t1", "f2", "event.failed")])
    for delivery in runtime.store.list_deliveries("t1", endpoint.id, 10, None):
        assert d.deliver("t1", delivery.id) == "failed"
    signatures = fake.sent[0][2]["webhook-signature"].split(" ")
    assert len(signatures) == 2
    assert d.recover("t1", endpoint.id, utcnow() + dt.timedelta(minutes=1)) == []
    recovered = d.recover("t1", endpoint.id, utcnow() - dt.timedelta(minutes=1))
    assert len(recovered) == 2
    fake.statuses = [200]
    assert [d.deliver("t1", i) for i in recovered] == ["succeeded", "succeeded"]
    with pytest.raises(errors.Conflict):
        d.retry_by_hand("t1", recovered[0])
