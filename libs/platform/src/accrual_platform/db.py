"""Database engines and column types shared by the services.

Each service owns one schema. On PostgreSQL that is a real schema in DATABASE_URL's database;
on the embedded SQLite default it is a database file attached under the schema's name
(``ATTACH 'var/ingest.db' AS ingest``), so the same table names, queries and Alembic
migrations work on both.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import decimal
import functools
import json
import operator
import os
import pathlib
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool

from accrual_platform import exactjson, files
from accrual_platform.errors import Unavailable


def _sqlite_path(url: str, schema: str) -> pathlib.Path:
    raw = url.split(":///", 1)[1] if ":///" in url else ""
    if not raw:
        raise ValueError(f"SQLite DATABASE_URL needs a file path: {url!r}")
    if "{schema}" in raw:
        return pathlib.Path(raw.format(schema=schema))
    path = pathlib.Path(raw)
    return path.with_name(f"{path.stem}_{schema}{path.suffix or '.db'}")


def _json_default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal) and value.is_finite():
        return orjson.Fragment(str(value))  # exact (event data: see accrual_platform.exactjson)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def dumps_json(value: Any) -> str:
    """JSON text of a value for a JSON column, written by orjson (json.dumps was 3-5% of the
    workers' time). Keys that are not strings become strings, as json.dumps makes them;
    decimals are written exactly."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS, default=_json_default).decode()


def loads_json(text: str | bytes) -> Any:
    """A JSON column's value, read by orjson; json reads what orjson refuses (e.g. a lone
    surrogate escape in a SQLite text column), so nothing stored becomes unreadable. orjson
    reads an integer wider than 64 bits as a float; none is stored here, every number having
    come through a protobuf Struct (a double) or our own counters."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def make_engine(url: str, schema: str, *, pool_size: int = 10) -> sa.Engine:
    """Engine for one service schema; creates the schema (or its SQLite file) if missing."""
    if url.startswith("sqlite"):
        path = _sqlite_path(url, schema)
        path.parent.mkdir(parents=True, exist_ok=True)
        # SQLite gives its -wal and -shm files the mode of the database file, so creating
        # that one owner-only (an empty file is an empty database) covers all three.
        files.create_private(path)
        for companion in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if companion.exists():
                os.chmod(companion, files.FILE_MODE)

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(":memory:", check_same_thread=False, timeout=30,
                                   isolation_level=None)
            conn.execute(f"ATTACH DATABASE ? AS {schema}", (str(path),))
            conn.execute(f"PRAGMA {schema}.journal_mode=WAL")
            conn.execute(f"PRAGMA {schema}.synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            return conn

        engine = sa.create_engine("sqlite+pysqlite://", creator=connect, poolclass=QueuePool,
                                  pool_size=pool_size, max_overflow=pool_size,
                                  json_serializer=dumps_json, json_deserializer=loads_json)

        @sa_event.listens_for(engine, "begin")
        def _begin_immediate(conn: sa.Connection) -> None:
            # Writers queue on the file lock up front instead of failing on upgrade.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # No pre-ping: it costs a round trip per transaction. A connection that died (database
    # restart) raises a disconnect error, which invalidates the whole pool, and transaction()
    # answers Unavailable; the next transaction reconnects. Overflow is kept small so that
    # every process of the suite together stays under PostgreSQL's default 100 connections.
    #
    # Custom plans only: psycopg prepares a statement on its fifth use, and PostgreSQL then
    # settles on a generic plan made with the statistics of that moment. Our tables start
    # empty and grow by tens of thousands of rows a minute; where nothing analyzes them
    # (autovacuum is off on some servers, this machine's included) a generic plan made on an
    # empty table (a sequential scan joined to a batch) stays for the connection's life and
    # costs 800 ms per 200-row batch update on a 55k-row table. A custom plan sees the
    # table's current size and the batch's values, at a planning cost (a fraction of a
    # millisecond) that is small beside a statement per batch.
    engine = sa.create_engine(url, pool_size=pool_size, max_overflow=max(2, pool_size // 4),
                              pool_pre_ping=False, pool_recycle=1800, json_serializer=dumps_json,
                              json_deserializer=loads_json,
                              connect_args={"options": "-c plan_cache_mode=force_custom_plan"})
    if engine.dialect.driver == "psycopg":
        from psycopg.types.array import ListBinaryDumper
        from psycopg.types.json import set_json_loads

        @sa_event.listens_for(engine, "connect")
        def _binary_arrays(dbapi_conn: Any, _record: Any) -> None:
            # List parameters (the column arrays of insert_rows/update_rows) go in binary:
            # the text form quotes every element through a regular expression in Python,
            # about 7x slower for a batch's JSON payloads.
            dbapi_conn.adapters.register_dumper(list, ListBinaryDumper)
            # psycopg parses JSONB results itself, with json.loads unless told otherwise.
            set_json_loads(loads_json, dbapi_conn)
            # Large values (an outbox row of a batch's notifications: hundreds of KB) are
            # compressed with lz4 where the server has it: half pglz's time to write (the
            # ingest worker's notification outbox insert was a tenth of PostgreSQL's time
            # in a pipeline drain), faster to read, about as small. A server built without
            # lz4 keeps its default.
            dbapi_conn.execute(
                "SELECT set_config('default_toast_compression', 'lz4', false) FROM pg_settings"
                " WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)")
            dbapi_conn.commit()
    return engine


def ensure_schema(engine: sa.Engine, schema: str) -> None:
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')


class Database:
    """One service's engine and session factory."""

    def __init__(self, url: str, schema: str, *, pool_size: int = 10) -> None:
        self.schema = schema
        self.engine = make_engine(url, schema, pool_size=pool_size)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error.

        Connection-level failures surface as Unavailable so callers answer 503 and clients
        retry; nothing is acknowledged that was not committed.
        """
        try:
            with self._sessions() as session, session.begin():
                yield session
        except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
            if isinstance(exc, sa_exc.OperationalError) and "locked" in str(exc.orig):
                raise Unavailable("database is busy, retry") from exc
            raise Unavailable("database unavailable, retry") from exc

    def dispose(self) -> None:
        self.engine.dispose()


class UtcDateTime(sa.types.TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps naive text)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)  # type: ignore[no-any-return]


class ExactDecimal(sa.types.TypeDecorator[decimal.Decimal]):
    """Exact decimals: NUMERIC on PostgreSQL, text on SQLite (whose NUMERIC is a float)."""

    impl = sa.Numeric(30, 10)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.String(64))
        return dialect.type_descriptor(sa.Numeric(30, 10))

    def process_bind_param(self, value: decimal.Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return str(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> decimal.Decimal | None:
        if value is None:
            return None
        return decimal.Decimal(str(value))


JsonType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


class ExactJson(sa.types.TypeDecorator[Any]):
    """A JSON column (JSONB on PostgreSQL) whose numbers are read back exactly, as
    :func:`accrual_platform.exactjson.loads` reads them. PostgreSQL keeps a JSONB number
    exactly, but psycopg would parse it as a double: the column is selected as text
    instead and parsed here. Written like any JSON column (decimals exactly)."""

    impl = sa.JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.JSONB())
        return dialect.type_descriptor(sa.JSON())

    def column_expression(self, colexpr: Any) -> Any:
        return sa.type_coerce(sa.cast(colexpr, sa.Text()), self)

    def result_processor(self, dialect: Dialect, coltype: Any) -> Callable[[Any], Any]:
        def process(value: Any) -> Any:
            return exactjson.loads(value) if isinstance(value, str | bytes) else value
        return process


def is_json(typ: Any) -> bool:
    """Whether a column type holds JSON (JsonType, or ExactJson)."""
    return isinstance(typ, sa.JSON) or isinstance(getattr(typ, "impl_instance", None), sa.JSON)


def decimal_str(value: decimal.Decimal) -> str:
    """Plain decimal text without exponent or trailing zeros: 125, 187.5, -3."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def update_rows(session: Session, table: sa.Table, key: Sequence[str], rows: Sequence[dict[str, Any]], *,
                where: Sequence[Any] = (), keep: Sequence[str] = (),
                returning: Sequence[Any] = ()) -> list[sa.Row[Any]]:
    """Update many rows, each to its own values, matched by the ``key`` columns; the rows
    updated (``returning`` columns of each).

    Every dict of ``rows`` has the same columns. ``where`` adds conditions on ``table`` (a row
    that fails them is left alone and not returned); a column named in ``keep`` keeps its
    stored value where the new one is NULL. On PostgreSQL this is one statement,
    ``UPDATE … FROM (VALUES …)``, instead of a round trip per row; elsewhere (SQLite, the
    embedded default) it is one UPDATE per row with the same meaning. Rows are updated in
    key order, so concurrent callers lock shared rows in one order.
    """
    if not rows:
        return []
    names = list(rows[0])
    ordered = sorted(rows, key=lambda r: tuple(r[k] for k in key))
    out: list[sa.Row[Any]] = []
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        # One array parameter per column, unnested side by side: the statement text is the
        # same for any number of rows, so SQLAlchemy's compiled cache, psycopg's query cache
        # and PostgreSQL's prepared plans all apply (a VALUES list with a placeholder per
        # cell is compiled and parsed anew each time). The statement itself is built once
        # per shape (see _STATEMENTS) and the arrays are its execution parameters.
        def build() -> Any:
            v = _unnest(table, names)
            assign = {n: (sa.func.coalesce(v[n], table.c[n]) if n in keep else v[n])
                      for n in names if n not in key}
            stmt = sa.update(table).where(*[table.c[k] == v[k] for k in key], *where).values(assign)
            return stmt.returning(*returning) if returning else stmt

        stmt = _STATEMENTS.get(("update", table, tuple(names), tuple(key), tuple(keep), *where, "returning",
                                *returning), build)
        result = session.execute(stmt, _arrays(table, names, ordered))
        return list(result.all()) if returning else out
    for r in ordered:
        assign = {n: r[n] for n in names if n not in key and not (n in keep and r[n] is None)}
        stmt = sa.update(table).where(*[table.c[k] == r[k] for k in key], *where).values(assign)
        if returning:
            out.extend(session.execute(stmt.returning(*returning)).all())
        else:
            session.execute(stmt)
    return out


def _unnest(table: sa.Table, names: Sequence[str]) -> dict[str, Any]:
    """Columns of ``unnest(array per column) AS v(...)`` typed like ``table``'s, by name; the
    arrays are the bind parameters ``u_<column>`` (:func:`_arrays` gives their values).

    JSON values travel as text and are cast back: an array parameter would read a JSON list
    as one more array dimension. Strings travel as unbounded text: an explicit cast to
    ``VARCHAR(n)[]`` cuts a longer value short without a word, where storing text in the
    column refuses it as COPY and a plain INSERT do."""
    binds, cols, out = [], [], {}
    for n in names:
        typ = table.c[n].type
        if isinstance(typ, sa.String) and typ.length is not None and not isinstance(typ, sa.Enum):
            typ = sa.Text()
        if is_json(typ):
            binds.append(sa.bindparam(f"u_{n}", type_=postgresql.ARRAY(sa.Text())))
            cols.append(sa.column(n, sa.Text()))
        else:
            binds.append(sa.bindparam(f"u_{n}", type_=postgresql.ARRAY(typ)))
            cols.append(sa.column(n, typ))
    v = sa.func.unnest(*binds).table_valued(*cols).render_derived(name="v", with_types=False)
    for n in names:
        out[n] = sa.cast(v.c[n], postgresql.JSONB()) if is_json(table.c[n].type) else v.c[n]
    return out


def _arrays(table: sa.Table, names: Sequence[str], rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """The ``u_<column>`` parameters of :func:`_unnest` for ``rows``."""
    out: dict[str, list[Any]] = {}
    for n in names:
        values = [r[n] for r in rows]
        if is_json(table.c[n].type):
            values = [_json_text(x) for x in values]
        out[f"u_{n}"] = values
    return out


def _json_text(value: Any) -> str | None:
    """A JSON column's value as the text sent for it (NULL stays NULL)."""
    return None if value is None else dumps_json(value)


class StatementCache:
    """Statements built once per shape and reused, instead of built anew on every call.

    Building an ``INSERT … SELECT FROM unnest(…)`` and generating its cache key cost more
    than executing it (bench/README.md, "Statement cache"), and the pipeline runs a few of
    them per batch in every service. A key holds the objects it was made of (tables,
    columns, where clauses, code objects), so their ids can never be reused by other objects
    while the entry exists: an entry is found again only through those very objects. The
    cache is bounded; a caller that builds its where clause anew on every call still gets a
    correct statement, it only misses.
    """

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._entries: dict[tuple[Any, ...], tuple[tuple[Any, ...], Any]] = {}
        self._lock = threading.Lock()  # worker and RPC threads share one cache

    def get(self, parts: tuple[Any, ...], build: Callable[[], Any]) -> Any:
        key = _identity(parts)
        hit = self._entries.get(key)
        if hit is not None:
            return hit[1]
        stmt = build()  # two threads may both build a new shape; either statement serves
        with self._lock:
            if key not in self._entries and len(self._entries) >= self._size:
                self._entries.pop(next(iter(self._entries)))
            self._entries[key] = (parts, stmt)  # parts keep their objects (and so their ids) alive
        return stmt


def _identity(part: Any) -> Any:
    """Strings, numbers and None by value, tuples item by item, anything else by id."""
    if isinstance(part, (str, int, bool, type(None))):
        return part
    if type(part) is tuple:
        return tuple(_identity(p) for p in part)
    return ("id", id(part))


_STATEMENTS = StatementCache()


def _conflict_part(conflict: Callable[[Any], Any] | None) -> Any:
    """What identifies the clause ``conflict`` builds: its code, when it closes over nothing
    (the same clause every call); otherwise the function itself (a new one per call of its
    maker: never found again, so it is built each time, as before)."""
    if conflict is None:
        return None
    code = getattr(conflict, "__code__", None)
    if code is None or any(getattr(conflict, a, None) for a in ("__closure__", "__defaults__", "__kwdefaults__")):
        return conflict
    return code


def insert_rows(session: Session, table: sa.Table, rows: Sequence[dict[str, Any]], *,
                conflict: Callable[[Any], Any] | None = None,
                returning: Sequence[Any] = (), expect_new: bool = False) -> list[Any]:
    """Insert many rows in their given order; with ``returning``, the rows inserted.

    ``conflict`` turns the dialect's insert into its ON CONFLICT form, e.g.
    ``lambda s: s.on_conflict_do_nothing(index_elements=[...])`` (``s.excluded`` works).
    On PostgreSQL this is one ``INSERT … SELECT FROM unnest(arrays)`` whose text is the same
    for any number of rows (compiled, parsed and planned once), instead of SQLAlchemy's
    multi-row VALUES with a placeholder per cell or a round trip per row. Elsewhere it is
    the dialect's executemany.

    ``expect_new`` says the rows' keys are almost always new (events just accepted, ledger
    entries of a first evaluation). On PostgreSQL they then go in by COPY in a savepoint,
    which costs PostgreSQL about two thirds of the INSERT and this process a fifth of
    dumping the arrays (psycopg formats COPY rows in C, array parameters in Python). If some
    key is taken (a retry, or a concurrent transaction that just committed it), the COPY
    fails at the unique index, the savepoint is rolled back and the INSERT with ``conflict``
    runs instead: the same rows end up stored either way. The rows returned are then built
    from ``rows`` (every one was inserted), with attribute access like the Row RETURNING
    gives; a returned column that is not in ``rows`` is None, so ``expect_new`` is only used
    when no such column has a default. Fewer than COPY_MIN_ROWS rows take the INSERT: the
    savepoint's round trips cost more than COPY saves on a handful of rows.
    """
    if not rows:
        return []
    names = list(rows[0])
    pg = session.get_bind().dialect.name == "postgresql"
    if pg and expect_new and len(rows) >= COPY_MIN_ROWS and _copyable(table, names, returning):
        try:
            with session.begin_nested():
                copy_rows(session, table, names, rows)
        except sa_exc.IntegrityError as exc:
            if getattr(exc.orig, "sqlstate", None) != _UNIQUE_VIOLATION:
                raise
        else:
            return _rows_of(returning, rows) if returning else []
    def build() -> Any:
        if pg:
            v = _unnest(table, names)
            stmt: Any = postgresql.insert(table).from_select(names, sa.select(*[v[n] for n in names]))
        else:
            stmt = sqlite.insert(table)
        if conflict is not None:
            stmt = conflict(stmt)
        return stmt.returning(*returning) if returning else stmt

    if pg:
        stmt = _STATEMENTS.get(("insert", table, tuple(names), _conflict_part(conflict), "returning", *returning),
                               build)
        result = session.execute(stmt, _arrays(table, names, rows))
    else:
        result = session.execute(build(), list(rows))
    return list(result.all()) if returning else []


_UNIQUE_VIOLATION = "23505"
#: Below this many rows insert_rows(expect_new=True) runs the INSERT (a group commit of a few
#: single-event accepts): COPY's fixed cost outweighs its per-row gain on a few rows
#: (bench/README.md, "COPY or INSERT").
COPY_MIN_ROWS = 32


def _copyable(table: sa.Table, names: Sequence[str], returning: Sequence[Any]) -> bool:
    """Whether COPY of ``names`` can answer ``returning``: each returned column is given,
    or has no default (it is NULL in the stored row too)."""
    given = set(names)
    return all(c.table is table and (c.name in given or (c.default is None and c.server_default is None))
               for c in returning)


def _rows_of(returning: Sequence[Any], rows: Sequence[dict[str, Any]]) -> list[Any]:
    make = _row_type(tuple(c.name for c in returning))
    return [make(*[r.get(n) for n in make._fields]) for r in rows]


@functools.lru_cache(maxsize=64)
def _row_type(names: tuple[str, ...]) -> Any:
    return collections.namedtuple("CopiedRow", names)


def copy_rows(session: Session, table: sa.Table, names: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    """``COPY table (names) FROM STDIN`` of ``rows`` in the session's transaction
    (PostgreSQL). JSON columns are written as JSON text, everything else as psycopg dumps
    it. A database error is raised as SQLAlchemy raises it for a statement (IntegrityError,
    OperationalError...), and a lost connection is invalidated, so callers (and
    Database.transaction, which answers 503) treat it like any statement's failure."""
    conn = session.connection()
    # Per column: JSON as text, our TypeDecorators' bind processing (UTC datetimes...), or
    # the value itself for types psycopg dumps as they are.
    procs: list[Callable[[Any], Any] | None] = [
        _json_text if is_json(table.c[n].type) else table.c[n].type.bind_processor(conn.dialect)
        for n in names]
    target = f'{_quoted(table.schema)}.{_quoted(table.name)}' if table.schema else _quoted(table.name)
    sql = f"COPY {target} ({', '.join(_quoted(n) for n in names)}) FROM STDIN"
    dbapi = conn.connection.driver_connection
    assert dbapi is not None
    try:
        with dbapi.cursor() as cur, cur.copy(sql) as copy:
            write = copy.write_row
            values = operator.itemgetter(*names) if len(names) > 1 else (lambda r: (r[names[0]],))
            processed = [(i, p) for i, p in enumerate(procs) if p is not None]
            if not processed:
                for r in rows:
                    write(values(r))
            else:
                for r in rows:
                    row = list(values(r))
                    for i, p in processed:
                        row[i] = p(row[i])
                    write(row)
    except conn.dialect.loaded_dbapi.Error as exc:
        disconnect = conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, None)
        if disconnect:
            conn.invalidate(exc)
        raise sa_exc.DBAPIError.instance(sql, None, exc, conn.dialect.loaded_dbapi.Error,
                                          connection_invalidated=disconnect, dialect=conn.dialect) from exc


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def in_values(session: Session, columns: Sequence[Any], values: Sequence[Any]) -> Any:
    """The condition ``columns IN values``: one column and its values, or several columns and
    tuples of theirs.

    On PostgreSQL it is ``col = ANY(array)``, or for several columns ``(a, b) IN (SELECT *
    FROM unnest(array_a, array_b))``: one array parameter per column, so the statement text
    is the same for any number of values. SQLAlchemy's expanding IN renders a placeholder per
    value, and psycopg parsed each new text again (a third of identity's resolution time).
    Elsewhere (SQLite) it is the plain IN.
    """
    values = list(values)
    if session.get_bind().dialect.name != "postgresql":
        if len(columns) == 1:
            return columns[0].in_(values)
        return sa.tuple_(*columns).in_(values)
    if len(columns) == 1:
        col = columns[0]
        return col == sa.any_(sa.bindparam(None, values, type_=postgresql.ARRAY(col.type), unique=True))
    arrays = [sa.bindparam(None, [v[i] for v in values], type_=postgresql.ARRAY(col.type), unique=True)
              for i, col in enumerate(columns)]
    rows = sa.func.unnest(*arrays).table_valued(
        *[sa.column(f"c{i}", col.type) for i, col in enumerate(columns)]).render_derived(with_types=False)
    return sa.tuple_(*columns).in_(sa.select(*rows.c))


def newest_first(query: sa.Select[Any], created_at: Any, id_: Any,
                 before: tuple[dt.datetime, str] | None, limit: int) -> sa.Select[Any]:
    """A keyset page of ``query``: newest first by (``created_at``, ``id_``), after ``before``
    (the last row of the previous page), at most ``limit`` rows."""
    if before is not None:
        at, last_id = before
        query = query.where(sa.or_(created_at < at, sa.and_(created_at == at, id_ < last_id)))
    return query.order_by(created_at.desc(), id_.desc()).limit(limit)
