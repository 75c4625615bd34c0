"""Queue payload encoding and the bulk row update helper."""

from __future__ import annotations

import binascii
import datetime as dt
import decimal
import json
import pathlib
import sys
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
import sqlalchemy as sa
from accrual.messages.v1 import messages_pb2
from accrual_platform import db as db_module
from accrual_platform import queue
from accrual_platform.db import (
    ExactDecimal,
    JsonType,
    UtcDateTime,
    ensure_schema,
    insert_rows,
    make_engine,
    update_rows,
)
from accrual_platform.testing import PG_URL
from sqlalchemy.orm import Session


def _outcomes() -> messages_pb2.EventOutcomes:
    msg = messages_pb2.EventOutcomes()
    o = msg.outcomes.add(tenant_id="t", event_id="e1", status=messages_pb2.OUTCOME_STATUS_COMPLETED,
                         points_awarded="187.5", participant_id="p")
    o.processed_at.FromDatetime(dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC))
    return msg


def test_encode_is_text_and_round_trips() -> None:
    msg = _outcomes()
    wire = queue.encode(msg)
    assert isinstance(wire, str)
    assert queue.decode(wire, messages_pb2.EventOutcomes) == msg


def test_decode_still_reads_proto_json_queued_by_earlier_versions() -> None:
    msg = _outcomes()
    assert queue.decode(queue.to_payload(msg), messages_pb2.EventOutcomes) == msg


def test_decode_refuses_garbage() -> None:
    with pytest.raises(queue.MalformedMessage) as info:
        queue.decode("not base64 of a message!", messages_pb2.EventOutcomes)
    assert isinstance(info.value.__cause__, binascii.Error)


metadata = sa.MetaData(schema="bulk_test")
things = sa.Table(
    "things", metadata,
    sa.Column("tenant_id", sa.String(36), primary_key=True),
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("amount", ExactDecimal()),
    sa.Column("doc", JsonType),
    sa.Column("owner", sa.String(36)),
    sa.Column("at", UtcDateTime()),
)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[sa.Engine]:
    url = f"sqlite:///{tmp_path}/t.db" if request.param == "sqlite" else PG_URL
    eng = make_engine(url, "bulk_test")
    if request.param == "postgresql":
        with eng.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA IF EXISTS bulk_test CASCADE")
    ensure_schema(eng, "bulk_test")
    metadata.create_all(eng)
    yield eng
    eng.dispose()


def test_update_rows_updates_each_row_to_its_values(engine: sa.Engine) -> None:
    at = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
    with Session(engine) as s, s.begin():
        s.execute(things.insert(), [
            {"tenant_id": "t", "id": "a", "status": "PENDING", "owner": "o1"},
            {"tenant_id": "t", "id": "b", "status": "PENDING", "owner": "o2"},
            {"tenant_id": "t", "id": "c", "status": "DONE", "owner": "o3"},
            {"tenant_id": "u", "id": "a", "status": "PENDING", "owner": "o4"},
        ])
    with Session(engine) as s, s.begin():
        got = update_rows(s, things, ("tenant_id", "id"), [
            {"tenant_id": "t", "id": "b", "status": "DONE", "amount": decimal.Decimal("0.1"),
             "doc": [{"k": 1}, [2, 3]], "owner": None, "at": at},
            {"tenant_id": "t", "id": "a", "status": "DONE", "amount": None, "doc": None, "owner": "new", "at": at},
            {"tenant_id": "t", "id": "c", "status": "AGAIN", "amount": None, "doc": None, "owner": "x", "at": at},
            {"tenant_id": "t", "id": "zz", "status": "DONE", "amount": None, "doc": None, "owner": "x", "at": at},
        ], where=[things.c.status == "PENDING"], keep=("owner",), returning=[things.c.id, things.c.owner])
    assert sorted((r.id, r.owner) for r in got) == [("a", "new"), ("b", "o2")]
    with Session(engine) as s:
        rows = {(r.tenant_id, r.id): r for r in s.execute(sa.select(things))}
    assert rows[("t", "b")].amount == decimal.Decimal("0.1") and rows[("t", "b")].doc == [{"k": 1}, [2, 3]]
    assert rows[("t", "b")].at == at and rows[("t", "b")].owner == "o2"
    assert rows[("t", "c")].status == "DONE" and rows[("t", "c")].owner == "o3"  # failed the where
    assert rows[("u", "a")].status == "PENDING"  # same id, other tenant: untouched


def test_insert_rows_in_bulk_with_conflicts(engine: sa.Engine) -> None:
    rows = [{"tenant_id": "t", "id": f"{i:03}", "status": "NEW", "amount": decimal.Decimal(i) / 10,
             "doc": [{"i": i}] if i % 2 else {"i": [i]}, "owner": None,
             "at": dt.datetime(2026, 11, 23, tzinfo=dt.UTC)} for i in range(50)]
    with Session(engine) as s, s.begin():
        first = insert_rows(s, things, rows[:30], returning=[things.c.id])
        again = insert_rows(s, things, rows, conflict=lambda q: q.on_conflict_do_nothing(), returning=[things.c.id])
    assert len(first) == 30
    assert sorted(r.id for r in again) == [f"{i:03}" for i in range(30, 50)]
    with Session(engine) as s:
        got = {r.id: r for r in s.execute(sa.select(things))}
    assert got["007"].doc == [{"i": 7}] and got["008"].doc == {"i": [8]}
    assert got["049"].amount == decimal.Decimal("4.9") and got["001"].owner is None


def _copied(engine: sa.Engine, n: int) -> list[dict[str, Any]]:
    return [{"tenant_id": "t", "id": f"{i:03}", "status": "NEW", "amount": decimal.Decimal(i) / 8,
             "doc": [{"i": i, "s": "tab\there \\ \"q\" é"}] if i % 2 else {"i": [i], "n": None},
             "owner": None if i % 3 else f"o\n{i}",
             "at": dt.datetime(2026, 11, 23, 1, 2, 3, i, tzinfo=dt.timezone(dt.timedelta(hours=5)))}
            for i in range(n)]


def test_insert_rows_expecting_new_rows_stores_and_returns_them(engine: sa.Engine) -> None:
    """expect_new (COPY on PostgreSQL): every value stored as the INSERT stores it (JSON,
    exact decimals, text needing escapes, UTC datetimes), and the returned rows carry the
    given values, a column not given as None."""
    rows = _copied(engine, 40)
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with Session(engine) as s, s.begin():
        got = insert_rows(s, things, [{k: v for k, v in r.items() if k != "owner"} for r in rows],
                          conflict=lambda q: q.on_conflict_do_nothing(),
                          returning=[things.c.id, things.c.doc, things.c.owner], expect_new=True)
    if engine.dialect.name == "postgresql":  # by COPY: no INSERT statement ran
        assert not [x for x in statements if "INSERT" in x.upper()], statements
    statements.clear()
    with Session(engine) as s, s.begin():  # a few rows: the INSERT (see COPY_MIN_ROWS)
        few = insert_rows(s, things, [{**r, "id": "few" + r["id"]} for r in rows[:3]],
                          conflict=lambda q: q.on_conflict_do_nothing(), returning=[things.c.id], expect_new=True)
    assert len(few) == 3 and [x for x in statements if "INSERT" in x.upper()]
    assert sorted((r.id, r.doc, r.owner) for r in got) == sorted((r["id"], r["doc"], None) for r in rows)
    with Session(engine) as s:
        stored = {r.id: r for r in s.execute(sa.select(things))}
    for r in rows:
        row = stored[r["id"]]
        assert (row.amount, row.doc, row.owner) == (r["amount"], r["doc"], None)
        assert row.at == r["at"] and row.at.tzinfo == dt.UTC


def test_insert_rows_expecting_new_rows_falls_back_when_some_exist(engine: sa.Engine) -> None:
    """A key already taken: the rows are inserted by the conflict clause instead, only the
    new ones are returned, and the transaction's earlier work stays."""
    rows = _copied(engine, 40)
    with Session(engine) as s, s.begin():
        insert_rows(s, things, rows[10:12])
        s.execute(sa.update(things).where(things.c.id == "010").values(status="KEPT"))
        got = insert_rows(s, things, rows, conflict=lambda q: q.on_conflict_do_nothing(),
                          returning=[things.c.id], expect_new=True)
        assert sorted(r.id for r in got) == [r["id"] for r in rows if r["id"] not in ("010", "011")]
        assert s.execute(sa.select(things.c.status).where(things.c.id == "010")).scalar_one() == "KEPT"
    with Session(engine) as s:
        assert s.execute(sa.select(sa.func.count()).select_from(things)).scalar_one() == 40


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_insert_rows_expecting_new_rows_raises_other_errors_as_sqlalchemy_does(engine: sa.Engine) -> None:
    """A failure that is not a taken key (here a NULL in a NOT NULL column, a value too
    long) is raised, as the SQLAlchemy error a statement raises, not retried."""
    for bad, error in (({"status": None}, sa.exc.IntegrityError), ({"status": "x" * 17}, sa.exc.DataError)):
        with Session(engine) as s, pytest.raises(error), s.begin():
            rows = _copied(engine, 40)
            rows[17] = {**rows[17], **bad}
            insert_rows(s, things, rows, conflict=lambda q: q.on_conflict_do_nothing(), expect_new=True)
    with Session(engine) as s:
        assert s.execute(sa.select(sa.func.count()).select_from(things)).scalar_one() == 0


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_insert_rows_expecting_new_rows_waits_for_a_concurrent_insert_of_the_same_key(engine: sa.Engine) -> None:
    """Another transaction holding the same key uncommitted: the COPY waits for it, then
    falls back to the conflict clause, and the key is stored once."""
    import threading
    rows = _copied(engine, 40)
    holder = Session(engine)
    holder.begin()
    insert_rows(holder, things, rows[2:3])
    result: list[Any] = []

    def other() -> None:
        with Session(engine) as s, s.begin():
            result.extend(insert_rows(s, things, rows, conflict=lambda q: q.on_conflict_do_nothing(),
                                      returning=[things.c.id], expect_new=True))

    t = threading.Thread(target=other)
    t.start()
    t.join(0.5)
    assert t.is_alive()  # waiting at the unique index
    holder.commit()
    holder.close()
    t.join(10)
    assert sorted(r.id for r in result) == [r["id"] for r in rows if r["id"] != "002"]
    with Session(engine) as s:
        assert s.execute(sa.select(sa.func.count()).select_from(things)).scalar_one() == 40


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)  # cached on PostgreSQL only
def test_insert_and_update_statements_are_built_once_per_shape(engine: sa.Engine) -> None:
    """The second call of a shape reuses the first call's statement, with its own values."""
    cache = db_module._STATEMENTS
    row = {"tenant_id": "t", "id": "", "status": "NEW", "amount": None, "doc": None, "owner": None, "at": None}
    with Session(engine) as s, s.begin():
        before = len(cache._entries)
        for i in range(5):
            insert_rows(s, things, [{**row, "id": f"r{i}", "doc": {"i": i}}],
                        conflict=lambda q: q.on_conflict_do_nothing(), returning=[things.c.id])
        assert len(cache._entries) == before + 1
        done = (things.c.status == "NEW")
        for i in range(5):
            got = update_rows(s, things, ("tenant_id", "id"), [{"tenant_id": "t", "id": f"r{i}", "status": "DONE"}],
                              where=[done], returning=[things.c.id])
            assert [r.id for r in got] == [f"r{i}"]
        assert len(cache._entries) == before + 2
    with Session(engine) as s:
        assert {(r.id, r.status, r.doc["i"]) for r in s.execute(sa.select(things))} == {
            (f"r{i}", "DONE", i) for i in range(5)}


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)  # cached on PostgreSQL only
def test_statement_cache_never_mixes_up_clauses_made_per_call(engine: sa.Engine) -> None:
    """A conflict clause closing over its maker's variables, or a where clause built per
    call, is not taken for another one: each call gets the statement of its own clauses."""
    base = {"tenant_id": "t", "status": "NEW", "amount": None, "doc": None, "owner": None, "at": None}
    with Session(engine) as s, s.begin():
        insert_rows(s, things, [{**base, "id": "a", "owner": "old"}])

        def upsert(column: str) -> Any:
            return lambda q: q.on_conflict_do_update(index_elements=["tenant_id", "id"],
                                                     set_={column: q.excluded[column]})

        for column, value in (("owner", "o2"), ("status", "S2"), ("owner", "o3")):
            insert_rows(s, things, [{**base, "id": "a", "owner": value, "status": value}], conflict=upsert(column))
        got = s.execute(sa.select(things.c.owner, things.c.status)).one()
        assert (got.owner, got.status) == ("o3", "S2")
        for status in ("S2", "nope"):
            changed = update_rows(s, things, ("tenant_id", "id"), [{"tenant_id": "t", "id": "a", "amount": 1}],
                                  where=[things.c.status == status], returning=[things.c.id])
            assert len(changed) == (1 if status == "S2" else 0)


def test_statement_cache_is_bounded() -> None:
    cache = db_module.StatementCache(size=3)
    keep = [object() for _ in range(5)]
    built = [cache.get(("x", o), lambda o=o: ("stmt", id(o))) for o in keep]
    assert len(cache._entries) == 3
    assert cache.get(("x", keep[4]), lambda: "rebuilt") == built[4]
    assert cache.get(("x", keep[0]), lambda: "rebuilt") == "rebuilt"  # evicted: built again


def test_statement_cache_is_safe_for_threads() -> None:
    """Worker and RPC threads share the cache: concurrent lookups, builds and evictions
    neither fail nor return another shape's statement."""
    import threading

    cache = db_module.StatementCache(size=8)
    shapes = [(f"shape{i}",) for i in range(40)]
    failures: list[BaseException] = []

    def run(offset: int) -> None:
        try:
            for n in range(3000):
                shape = shapes[(n * 7 + offset) % len(shapes)]
                assert cache.get(shape, lambda s=shape: ("stmt", s)) == ("stmt", shape)
        except BaseException as exc:  # reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert failures == [] and len(cache._entries) <= 8


def test_the_orjson_envelope_is_the_json_one() -> None:
    """Messages written by Dramatiq's stdlib encoder (already queued during an upgrade) read
    back the same, and what orjson writes the stdlib reads."""
    queue.make_broker("stub://")
    message = dramatiq.Message(queue_name="rules", actor_name="evaluate_events", args=("Cg5hYmM=",),
                               kwargs={}, options={"retries": 2, "traceback": "é\n"})
    assert isinstance(dramatiq.get_encoder(), queue.OrjsonEncoder)
    assert dramatiq.Message.decode(json.dumps(message.asdict()).encode()) == message
    assert json.loads(message.encode()) == json.loads(json.dumps(message.asdict()))
    with pytest.raises(dramatiq.DecodeError):
        dramatiq.Message.decode(b"{not json")


def test_connections_compress_large_values_with_lz4_where_the_server_has_it() -> None:
    eng = make_engine(PG_URL, "bulk_test")
    try:
        with eng.connect() as conn:
            has_lz4 = conn.exec_driver_sql(
                "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'").scalar()
            setting = conn.exec_driver_sql("SHOW default_toast_compression").scalar()
    finally:
        eng.dispose()
    assert has_lz4, "this project's PostgreSQL (Debian's) is built with lz4"
    assert setting == "lz4"


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_insert_rows_expecting_new_rows_on_a_lost_connection_is_unavailable(engine: sa.Engine) -> None:
    """The connection dies before the COPY: Database.transaction answers Unavailable (a 503
    for callers), as for a statement, and the next transaction works on a new connection."""
    from accrual_platform.db import Database
    from accrual_platform.errors import Unavailable
    db = Database(PG_URL, "bulk_test")
    rows = _copied(engine, 40)

    def lost(insert: Any) -> None:
        with pytest.raises(Unavailable), db.transaction() as s:
            pid = s.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
            with engine.connect() as other:
                other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                other.commit()
            insert(s)

    try:
        # the savepoint's statement meets the dead connection first; then the COPY itself
        lost(lambda s: insert_rows(s, things, rows, conflict=lambda q: q.on_conflict_do_nothing(), expect_new=True))
        lost(lambda s: db_module.copy_rows(s, things, list(rows[0]), rows))
        with db.transaction() as s:
            insert_rows(s, things, rows, conflict=lambda q: q.on_conflict_do_nothing(), expect_new=True)
        with db.transaction() as s:
            assert s.execute(sa.select(sa.func.count()).select_from(things)).scalar_one() == 40
    finally:
        db.dispose()
