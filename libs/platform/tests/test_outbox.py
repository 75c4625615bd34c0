"""Outbox relay: merged messages, order, and nothing lost or left behind."""

from __future__ import annotations

import pathlib

import dramatiq
import sqlalchemy as sa
from accrual.messages.v1 import messages_pb2
from accrual_platform import queue
from accrual_platform.db import Database
from accrual_platform.outbox import OutboxRelay, merge_messages, outbox_row, outbox_table


def _relay(tmp_path: pathlib.Path, **kwargs: object) -> tuple[Database, sa.Table, dramatiq.Broker, OutboxRelay]:
    metadata = sa.MetaData(schema="ob")
    table = outbox_table(metadata)
    db = Database(f"sqlite:///{tmp_path}/x.db", "ob")
    metadata.create_all(db.engine)
    broker = queue.make_broker("stub://")
    return db, table, broker, OutboxRelay(db, table, broker, **kwargs)  # type: ignore[arg-type]


def _published(broker: dramatiq.Broker, name: str) -> list[dramatiq.Message]:  # type: ignore[type-arg]
    q = broker.queues.get(name)  # type: ignore[attr-defined]
    return [dramatiq.Message.decode(raw) for raw in (list(q.queue) if q is not None else [])]


def test_mergeable_rows_become_few_messages_per_tenant_and_the_rest_pass_unchanged(tmp_path: pathlib.Path) -> None:
    merger = merge_messages(messages_pb2.EventsAccepted, "event_ids", group_by=("tenant_id",), limit=3)
    db, table, broker, relay = _relay(tmp_path, mergers={("rules", "evaluate_events"): merger})
    rows = []
    for i in range(7):
        tenant = "a" if i % 2 == 0 else "b"
        rows.append(outbox_row("rules", "evaluate_events",
                               messages_pb2.EventsAccepted(tenant_id=tenant, event_ids=[f"e{i}"])))
    rows.insert(3, outbox_row("notify", "publish_notifications", messages_pb2.Notifications()))
    with db.transaction() as session:
        for r in rows:
            session.execute(table.insert().values(**r))
    assert relay.relay_once() == 8
    batches = [queue.decode(m.args[0], messages_pb2.EventsAccepted) for m in _published(broker, "rules")]
    got = {(b.tenant_id, tuple(b.event_ids)) for b in batches}
    assert got == {("a", ("e0", "e2", "e4")), ("a", ("e6",)), ("b", ("e1", "e3", "e5"))}
    assert len(_published(broker, "notify")) == 1
    with db.transaction() as session:
        assert session.execute(sa.select(sa.func.count()).select_from(table)).scalar_one() == 0
    db.dispose()


def test_without_mergers_each_row_is_one_message(tmp_path: pathlib.Path) -> None:
    db, table, broker, relay = _relay(tmp_path)
    with db.transaction() as session:
        for i in range(3):
            session.execute(table.insert().values(**outbox_row(
                "rules", "evaluate_events", messages_pb2.EventsAccepted(tenant_id="a", event_ids=[f"e{i}"]))))
    assert relay.relay_once() == 3
    assert [list(queue.decode(m.args[0], messages_pb2.EventsAccepted).event_ids)
            for m in _published(broker, "rules")] == [["e0"], ["e1"], ["e2"]]
    db.dispose()
