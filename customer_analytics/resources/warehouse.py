"""The SQL warehouse: one SQLAlchemy engine, the tables, bulk loads and atomic replacement.

Replacing a month (or a whole unpartitioned table) goes through `Warehouse.replace`:
rows are first *staged*, then published in one short transaction, so readers see either
the old rows or the new ones and a crash at any point leaves the old ones.

* PostgreSQL: everything happens in one transaction guarded by an advisory lock on the
  (table, month). A partitioned table's month is loaded with COPY into a fresh table, which
  is then swapped in (DETACH + DROP the old child, ATTACH the new one); other tables get
  DELETE + INSERT … SELECT from a temporary staging table.
* SQLite: rows are staged into TEMP tables (no lock on the main database while a long load
  parses files), then one `BEGIN IMMEDIATE` transaction deletes and inserts.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg import sql as psycopg_sql
from psycopg.errors import LockNotAvailable
from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    Integer,
    String,
    Table,
    and_,
    column,
    create_engine,
    event,
    insert,
    inspect,
    select,
    table,
    text,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import CreateIndex
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import TableClause

from customer_analytics.config import ConfigError, redact_url, validate_identifier
from customer_analytics.resources.pgbinary import encode_batches
from customer_analytics.resources.tables import ID, RETIRED_CONSTRAINTS, RETIRED_INDEXES, metadata, partition_column


class WarehouseUnavailable(RuntimeError):
    """The warehouse cannot be reached; the message names it without its password."""


def _arrow_type(column) -> pa.DataType:
    kind = column.type
    if isinstance(kind, DateTime):
        return pa.timestamp("us", tz="UTC")
    if isinstance(kind, Date):
        return pa.date32()
    if isinstance(kind, Boolean):
        return pa.bool_()
    if isinstance(kind, (BigInteger, Integer)):
        return pa.int64()
    if isinstance(kind, Float):
        return pa.float64()
    return pa.string()


def arrow_types(*columns) -> dict[str, pa.DataType]:
    """{name: Arrow type} of table columns, as `Warehouse.read_typed` wants them."""
    return {column.name: _arrow_type(column) for column in columns}


def frame_to_arrow(frame: pd.DataFrame, table: Table, columns: list[str]) -> pa.Table:
    """The frame's `columns`, typed as the table declares them (dates from datetimes, etc.)."""
    arrays = []
    for name in columns:
        target = _arrow_type(table.c[name])
        series = frame[name]
        if pa.types.is_date32(target) and pd.api.types.is_datetime64_any_dtype(series):
            array = pa.array(series.dt.tz_localize(None) if series.dt.tz is not None else series, from_pandas=True)
            array = pc.cast(array, pa.timestamp("us")).cast(pa.date32())
        elif pa.types.is_timestamp(target) and pd.api.types.is_datetime64_any_dtype(series):
            values = series if series.dt.tz is not None else series.dt.tz_localize("UTC")
            array = pa.array(values, from_pandas=True).cast(target)
        else:
            array = pa.array(series, from_pandas=True)
            if not array.type.equals(target):
                array = array.cast(target)
        arrays.append(array)
    return pa.Table.from_arrays(arrays, names=columns)


def _postgres_session(dbapi_connection, _record) -> None:
    """Settings of every warehouse session on PostgreSQL.

    Aggregates, joins and sorts over a month of a million customers must not spill to disk (the
    default work_mem is 4 MB). With 4 MB the planner also avoids hashing them: it grouped three
    months of summaries by customer through their primary-key indexes in 3.2 s, where a hash
    aggregate with room takes 1.0 s. A month's temporary tables (a million purchases, their
    customer-days) must stay in memory too: past the default 8 MB of `temp_buffers` every scan of
    them goes through the kernel (at 10M events, the summaries step took 17.4-18.0 s with 8 MB and
    16.3-16.4 s with 256 MB). Both are ceilings, taken only as needed; `temp_buffers` must be set
    before the session's first temporary table, so here.
    """
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET work_mem = '256MB'")
        cursor.execute("SET temp_buffers = '256MB'")
    dbapi_connection.commit()


class Warehouse:
    """The warehouse behind `CUSTOMER_ANALYTICS_DB_URL`, its tables living in `schema` on PostgreSQL."""

    def __init__(self, url: str, schema: str = "customer_analytics"):
        self.url = url
        self.schema = validate_identifier(schema, what="schema")
        try:
            parsed = make_url(url)
        except ArgumentError as error:
            raise ConfigError(
                f"database URL {redact_url(url)!r} is not a SQLAlchemy URL: use e.g. "
                "sqlite:///data/warehouse.db or postgresql+psycopg://user:password@host:5432/db"
            ) from error
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            self.engine = self._sqlite_engine(parsed)
        elif backend == "postgresql":
            if parsed.drivername in ("postgresql", "postgresql+psycopg2"):
                parsed = parsed.set(drivername="postgresql+psycopg")
            self.engine = create_engine(
                parsed,
                pool_pre_ping=True,
                poolclass=NullPool,
                execution_options={"schema_translate_map": {None: self.schema}},
            )
            event.listen(self.engine, "connect", _postgres_session)
        else:
            raise ConfigError(
                f"database URL {redact_url(url)!r} names {backend!r}: only sqlite:/// and "
                "postgresql+psycopg:// warehouses are supported"
            )
        self.dialect = backend
        self._tables_ready = False

    @staticmethod
    def _sqlite_engine(parsed) -> Engine:
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # A long timeout: writers wait for each other instead of failing with "database is locked".
        engine = create_engine(parsed, connect_args={"timeout": 600}, poolclass=NullPool)

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection, _record):
            # Let SQLAlchemy, not pysqlite, decide when transactions begin (SQLAlchemy's recipe).
            dbapi_connection.isolation_level = None
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
            dbapi_connection.execute("PRAGMA foreign_keys=ON")

        @event.listens_for(engine, "begin")
        def _begin(connection):
            mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
            connection.exec_driver_sql(f"BEGIN {mode}")

        return engine

    # -- names -------------------------------------------------------------------------
    def quote(self, name: str) -> str:
        return self.engine.dialect.identifier_preparer.quote(name)

    def qualified(self, name: str) -> str:
        """`schema.name` on PostgreSQL, `name` on SQLite, quoted for raw SQL."""
        if self.dialect == "postgresql":
            return f"{self.quote(self.schema)}.{self.quote(name)}"
        return self.quote(name)

    def partition_of(self, table: str, month: date) -> str:
        """Where to read one month of a partitioned table from, quoted for raw SQL.

        On PostgreSQL, the month's own partition when it exists: the planner then estimates a join
        from that partition's statistics. Through the parent it uses the parent's, whose count of
        distinct customers is a guess from a sample of every month: at month 9 it took a
        million-row join for an 8-million-row one and chose nested loops (21.7 s instead of 4.2 s).
        Otherwise (SQLite, or a month not yet built) the table itself; callers still filter on the month.
        """
        if self.dialect != "postgresql":
            return self.qualified(table)
        child = partition_name(table, month)
        with self.connect() as connection:
            exists = self.table_exists(connection, child)
        return self.qualified(child) if exists else self.qualified(table)

    def table_exists(self, connection: Connection, name: str) -> bool:
        """Whether the warehouse schema holds a table `name` (PostgreSQL), as `connection` sees it."""
        return bool(connection.execute(text("SELECT to_regclass(:name) IS NOT NULL"),
                                       {"name": f"{self.quote(self.schema)}.{self.quote(name)}"}).scalar())

    def sql_params(self, params: dict) -> dict:
        """Parameters for raw SQL: SQLite compares dates and timestamps as the text SQLAlchemy stores."""
        if self.dialect != "sqlite":
            return params
        converted = {}
        for name, value in params.items():
            if isinstance(value, datetime):
                value = value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value
                value = value.strftime("%Y-%m-%d %H:%M:%S.%f")
            elif isinstance(value, date):
                value = value.isoformat()
            converted[name] = value
        return converted

    def week_start(self, column: str) -> str:
        """SQL for the Monday of the ISO week of a DATE column."""
        if self.dialect == "postgresql":
            return f"CAST(date_trunc('week', {column}) AS DATE)"
        return f"date({column}, '-6 days', 'weekday 1')"

    def describe(self) -> str:
        return redact_url(self.url) + (f" (schema {self.schema})" if self.dialect == "postgresql" else "")

    # -- connections -------------------------------------------------------------------
    @contextlib.contextmanager
    def connect(self) -> Iterator[Connection]:
        try:
            connection = self.engine.connect()
        except OperationalError as error:
            raise WarehouseUnavailable(
                f"cannot connect to the warehouse {self.describe()}: {str(error.orig).strip().splitlines()[0]}"
            ) from None
        with connection:
            yield connection

    @contextlib.contextmanager
    def begin(self, *, immediate: bool = False) -> Iterator[Connection]:
        """A transaction; on SQLite `immediate` takes the write lock at once."""
        with self.connect() as connection:
            if immediate and self.dialect == "sqlite":
                connection = connection.execution_options(sqlite_begin="IMMEDIATE")
            with connection.begin():
                yield connection

    @contextlib.contextmanager
    def beside(self, function, *args, **kwargs) -> Iterator[Future]:
        """Run `function(*args, **kwargs)` while the block runs; its outcome is the yielded future's.

        On PostgreSQL it runs on a thread of its own (and its own connections), so a statement of
        the block and one of `function` keep both cores busy; leaving the block waits for it, also
        when the block fails, so no statement outlives the block. SQLite takes one writer at a time:
        there `function` runs first, before the block. Either way its error is raised by `result()`.
        """
        if self.dialect != "postgresql":
            future: Future = Future()
            try:
                future.set_result(function(*args, **kwargs))
            except Exception as error:  # raised by result(), as on the thread
                future.set_exception(error)
            yield future
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix=getattr(function, "__name__", "beside")) as pool:
            yield pool.submit(function, *args, **kwargs)

    def check_connection(self) -> None:
        with self.connect() as connection:
            connection.execute(text("SELECT 1"))

    def ensure_tables(self) -> None:
        """Create the schema and any missing table (idempotent, safe from several processes)."""
        if self._tables_ready:
            return
        with self.begin(immediate=True) as connection:
            if self.dialect == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key("ensure_tables", self.schema)})
                connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {self.quote(self.schema)}"))
            retired = self._retire_constraints(connection)
            metadata.create_all(connection)
            self._add_missing_columns(connection)
            for name in retired:  # SQLite: the rows of a table rebuilt without a retired constraint
                kept = {c["name"] for c in inspect(connection).get_columns(name + "__retired")}
                columns = ", ".join(self.quote(c.name) for c in metadata.tables[name].columns if c.name in kept)
                connection.execute(text(f"INSERT INTO {self.quote(name)} ({columns}) SELECT {columns} FROM {self.quote(name + '__retired')}"))
                connection.execute(text(f"DROP TABLE {self.quote(name + '__retired')}"))
            # A warehouse made by an earlier version: its tables exist, so create_all adds no index.
            for index in RETIRED_INDEXES:
                connection.execute(text(f"DROP INDEX IF EXISTS {self.qualified(index)}"))
            # IF NOT EXISTS rather than `checkfirst`: reflection cannot see an index on an expression.
            for table in metadata.sorted_tables:
                for index in table.indexes:
                    only = getattr(index, "_ddl_if", None)  # e.g. `.ddl_if(dialect="sqlite")`
                    if only is None or only.dialect in (None, self.dialect):
                        connection.execute(CreateIndex(index, if_not_exists=True))
        self._tables_ready = True

    def _add_missing_columns(self, connection: Connection) -> None:
        """Columns added to a table since a warehouse was made: added to its existing table (NULL in old rows).

        The contract only ever adds columns, so this is the one migration tables need; a new
        column must therefore be nullable. On PostgreSQL a partitioned table's partitions get it too.
        """
        inspector = inspect(connection)
        schema = self.schema if self.dialect == "postgresql" else None
        for table in metadata.sorted_tables:
            existing = {c["name"] for c in inspector.get_columns(table.name, schema=schema)}
            for column in table.columns:
                if column.name in existing:
                    continue
                if not column.nullable:
                    raise RuntimeError(f"{table.name}.{column.name} is new and NOT NULL: existing rows cannot hold it")
                kind = column.type.compile(dialect=connection.dialect)
                connection.execute(text(f"ALTER TABLE {self.qualified(table.name)} ADD COLUMN {self.quote(column.name)} {kind}"))

    def _retire_constraints(self, connection: Connection) -> list[str]:
        """Drop the unique constraints of earlier versions (`RETIRED_CONSTRAINTS`).

        PostgreSQL drops a constraint in place. SQLite cannot: the table is renamed aside (its
        indexes dropped, their names are reused) for `ensure_tables` to create it anew and copy
        its rows back; the names of the tables set aside are returned.
        """
        rebuilt = []
        for table_name, constraint in RETIRED_CONSTRAINTS:
            if self.dialect == "postgresql":
                connection.execute(text(f"ALTER TABLE IF EXISTS {self.qualified(table_name)} DROP CONSTRAINT IF EXISTS {self.quote(constraint)}"))
                continue
            sql = connection.execute(text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :name"),
                                     {"name": table_name}).scalar()
            if sql is None or constraint not in sql:
                continue
            for index in metadata.tables[table_name].indexes:
                connection.execute(text(f"DROP INDEX IF EXISTS {self.quote(index.name)}"))
            connection.execute(text(f"ALTER TABLE {self.quote(table_name)} RENAME TO {self.quote(table_name + '__retired')}"))
            rebuilt.append(table_name)
        return rebuilt

    def read_frame(self, statement, params: dict | None = None, *, lock_timeout: str | None = None,
                   parallel_workers: bool = True) -> pd.DataFrame:
        """A query's rows.

        On PostgreSQL, `lock_timeout` (e.g. `GIVE_WAY`) bounds its waits for a lock, and
        `parallel_workers=False` keeps it on its own backend: for a query beside another
        connection's work, where workers would only take the cores that work runs on.
        """
        with self.connect() as connection:
            if self.dialect == "postgresql":
                limit_transaction(connection, lock_timeout=lock_timeout, parallel_workers=parallel_workers)
            result = connection.execute(statement if not isinstance(statement, str) else text(statement), params or {})
            names = list(result.keys())
            rows = result.fetchall()
        # Column by column: pandas inspecting each SQLAlchemy Row as a record costs more than the query.
        columns = list(zip(*rows)) if rows else [() for _ in names]
        frame = pd.DataFrame({index: list(values) for index, values in enumerate(columns)}, index=pd.RangeIndex(len(rows)))
        frame.columns = names
        return frame

    def read_typed(self, sql: str, params: dict, types: dict[str, pa.DataType]) -> pd.DataFrame:
        """A large query's rows as a frame of the given column types.

        On PostgreSQL the rows come through `COPY (query) TO STDOUT` as CSV parsed by pyarrow:
        several times faster than building a Python object per value. Parameters are bound by
        psycopg, never pasted into the SQL.
        """
        if self.dialect != "postgresql":
            return self.read_frame(sql, self.sql_params(params))
        compiled = text(sql).compile(dialect=self.engine.dialect)
        values = compiled.construct_params(params)
        buffer = io.BytesIO()
        with self.connect() as connection:
            with connection.connection.driver_connection.cursor() as cursor:
                with cursor.copy(f"COPY ({compiled.string}) TO STDOUT (FORMAT csv, HEADER)", values) as copy:
                    for data in copy:
                        buffer.write(data)
        buffer.seek(0)
        table = pacsv.read_csv(buffer, convert_options=pacsv.ConvertOptions(
            column_types=types, strings_can_be_null=True, quoted_strings_can_be_null=False))
        return table.to_pandas()

    def scalar(self, statement, params: dict | None = None) -> Any:
        with self.connect() as connection:
            return connection.execute(statement if not isinstance(statement, str) else text(statement), params or {}).scalar()

    # -- bulk writes -------------------------------------------------------------------
    def insert_frame(self, connection: Connection, target: str, table: Table, frame: pd.DataFrame, *,
                     copier: "BackgroundCopier | None" = None, created_in_transaction: bool = False) -> None:
        """Append rows to `target` (a quoted name) with `table`'s columns: COPY on PostgreSQL.

        With a `copier` the COPY runs on its thread while the caller goes on (the rows are
        converted to Arrow first, so the caller may reuse `frame`). A `target` created in the
        connection's current transaction (a staging table) is loaded with its rows already frozen.
        """
        columns = [c.name for c in table.columns if c.name in frame.columns]
        if frame.empty:
            return
        arrow = frame_to_arrow(frame, table, columns)
        column_list = ", ".join(self.quote(c) for c in columns)
        if self.dialect == "postgresql":
            # Binary: PostgreSQL parses it about twice as fast as CSV (see `pgbinary`).
            # FREEZE (PostgreSQL allows it into a table created in the same transaction): the rows are
            # written frozen and all-visible, so the first scans after the commit need not set every row's
            # hint bits and write every page again, and autovacuum finds nothing to freeze. At 2,000,000
            # events, the first purchase scan of a month after its load: 0.80 s without, 0.56 s with.
            freeze = ", FREEZE" if created_in_transaction else ""
            statement = f"COPY {target} ({column_list}) FROM STDIN (FORMAT binary{freeze})"
            kinds = [table.c[name].type for name in columns]
            if copier is not None:
                copier.submit(_copy_binary, connection, statement, arrow, kinds)
            else:
                _copy_binary(connection, statement, arrow, kinds)
        else:
            values = []
            for name in columns:
                array = arrow.column(name)
                if pa.types.is_timestamp(array.type):
                    array = pc.strftime(array, format="%Y-%m-%d %H:%M:%S")
                elif pa.types.is_date32(array.type):
                    array = pc.strftime(array, format="%Y-%m-%d")
                values.append(array.to_pylist())
            placeholders = ", ".join("?" for _ in columns)
            connection.connection.driver_connection.executemany(
                f"INSERT INTO {target} ({column_list}) VALUES ({placeholders})", list(zip(*values))
            )

    def replace_month(self, table: Table, month: date, frame: pd.DataFrame) -> None:
        """Make `frame` all of `table`'s `month` partition, atomically."""
        with self.replace(lock_name=f"{table.name}/{month:%Y-%m}") as replacement:
            replacement.replace_partition(table, month)
            replacement.append(table, frame)

    @contextlib.contextmanager
    def replace(self, *, lock_name: str | tuple[str, ...], lock_timeout: str | None = None,
                parallel_workers: bool = True) -> Iterator["Replacement"]:
        """Stage rows for several tables, then publish them all in one transaction.

        `lock_name` names what is being replaced (e.g. `raw_events/2025-01`), or a tuple of such
        names: two replacements sharing a name never run at once on PostgreSQL (on SQLite the
        write lock serializes). The locks are held from the start, so rows read after entering
        cannot be replaced by another writer of the same names before these are published.
        `lock_timeout` (PostgreSQL, e.g. `GIVE_WAY`) bounds each wait for a lock of its statements, and
        `parallel_workers=False` keeps its queries on its own backend (see `read_frame`).
        """
        self.ensure_tables()
        with self.connect() as connection:
            replacement = Replacement(self, connection, (lock_name,) if isinstance(lock_name, str) else lock_name,
                                      lock_timeout, parallel_workers=parallel_workers)
            try:
                replacement.open()
                yield replacement
                replacement.publish()
            except BaseException:
                replacement.abort()
                raise


def _copy_binary(connection: Connection, statement: str, arrow: pa.Table, kinds: list) -> None:
    with connection.connection.driver_connection.cursor() as cursor:
        with cursor.copy(statement) as copy:
            for data in encode_batches(arrow, kinds):
                copy.write(data)


class BackgroundCopier:
    """COPYs on one background thread, so parsing the next chunk overlaps the database's work.

    At most `depth` COPYs wait; `sync` waits for all and raises the first error. The
    connection is used by one thread at a time: callers `sync` before using it themselves.
    """

    def __init__(self, depth: int = 2):
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="copy")
        self._pending: list[Future] = []
        self._depth = depth

    def submit(self, function, *args) -> None:
        while len(self._pending) >= self._depth:
            self._pending.pop(0).result()
        self._pending.append(self._executor.submit(function, *args))

    def sync(self) -> None:
        pending, self._pending = self._pending, []
        errors = [f.exception() for f in pending]
        for error in errors:
            if error is not None:
                raise error

    def close(self) -> None:
        for future in self._pending:
            future.cancel()
        with contextlib.suppress(BaseException):
            self.sync()
        self._executor.shutdown(wait=True)


# How long work beside a replacement waits for a lock before giving way (`Replacement.beside`).
GIVE_WAY = "5s"


def limit_transaction(connection: Connection, *, lock_timeout: str | None = None, parallel_workers: bool = True) -> None:
    """For the rest of `connection`'s transaction (PostgreSQL): bound each wait for a lock by
    `lock_timeout`, and with `parallel_workers=False` plan no parallel workers."""
    settings = {"lock_timeout": lock_timeout, "max_parallel_workers_per_gather": None if parallel_workers else "0"}
    for setting, value in settings.items():
        if value is not None:
            connection.execute(text("SELECT set_config(:setting, :value, true)"), {"setting": setting, "value": value})


def _giving_way(function, *args):
    """`function(*args)`, or None when a statement of it waited `GIVE_WAY` for a lock."""
    try:
        return function(*args)
    except OperationalError as error:
        if isinstance(error.orig, LockNotAvailable):
            return None
        raise


def partition_name(table: str, month: date) -> str:
    """The name of `table`'s partition for `month` on PostgreSQL (e.g. raw_events_2025_01)."""
    return f"{table}_{month:%Y_%m}"


def lock_key(*parts: str) -> int:
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class Replacement:
    """Rows staged for publication; see `Warehouse.replace`."""

    def __init__(self, warehouse: Warehouse, connection: Connection, lock_names: tuple[str, ...],
                 lock_timeout: str | None = None, *, parallel_workers: bool = True):
        self.warehouse = warehouse
        self.connection = connection
        self.lock_names = lock_names
        self.lock_timeout = lock_timeout
        self.parallel_workers = parallel_workers
        self._token = uuid.uuid4().hex[:10]
        self._staging: dict[str, str] = {}  # table name -> quoted staging table
        self._deletes: list[tuple[Table, ColumnElement]] = []
        self._partitions: dict[str, date] = {}  # partitioned table name -> month swapped in
        self._order: list[Table] = []
        self._ignore_conflicts: set[str] = set()
        self._defaults: dict[str, dict[str, Any]] = {}  # table name -> staging column defaults set by `append`
        self._key_tables: list[str] = []  # temporary tables dropped at the end
        self._analyzed: set[str] = set()  # SQL names analyzed and not written since
        self._copier = BackgroundCopier() if warehouse.dialect == "postgresql" else None
        self._transaction = None
        self._before_publish: list[tuple[str, Any]] = []

    @property
    def postgres(self) -> bool:
        return self.warehouse.dialect == "postgresql"

    def open(self) -> None:
        self._transaction = self.connection.begin()
        if self.postgres:
            limit_transaction(self.connection, lock_timeout=self.lock_timeout, parallel_workers=self.parallel_workers)
        if self.postgres:
            # Always the same order, so two writers needing overlapping locks cannot deadlock.
            for name in sorted(set(self.lock_names)):
                self._lock(name)

    def _lock(self, name: str) -> None:
        """PostgreSQL: the advisory lock `name` of this schema, until the transaction ends."""
        self.connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(self.warehouse.schema, name)})

    def replace_partition(self, table: Table, month: date) -> None:
        """Publishing will make the staged rows *all* of `table`'s `month` partition."""
        column = partition_column(table)
        if column is None:
            raise ValueError(f"{table.name} is not partitioned by month")
        self._partitions[table.name] = month
        self._delete(table, table.c[column] == month)
        self._stage_table(table)

    def delete_where(self, table: Table, condition: ColumnElement, *, keep_existing_on_conflict: bool = False) -> None:
        """Publishing first deletes `table`'s rows matching `condition`, then inserts the staged ones.

        With `keep_existing_on_conflict`, a staged row whose unique key another writer already
        published (rows shared by concurrent runs, e.g. file-level rejections) is skipped.
        """
        self._delete(table, condition)
        self._stage_table(table)
        if keep_existing_on_conflict:
            self._ignore_conflicts.add(table.name)

    def stage_keys(self, key_column: str, keys) -> TableClause:
        """A temporary table of distinct `keys` (ids, typed as the id columns are) for `replace_rows`: bound values, any number, never SQL text."""
        self._sync()
        name = f"keys__{self._token}_{len(self._key_tables)}"
        wh = self.warehouse
        temp_schema = "pg_temp" if self.postgres else "temp"
        self.connection.execute(text(f"CREATE TEMP TABLE {wh.quote(name)} ({wh.quote(key_column)} "
                                     f"{ID.compile(dialect=self.connection.dialect)} PRIMARY KEY)"))
        self._key_tables.append(f"{temp_schema}.{wh.quote(name)}")
        # An explicit temporary schema: the engine's schema_translate_map must not move it into the warehouse schema.
        keys_table = table(name, column(key_column, String), schema=temp_schema)
        values = [str(k) for k in dict.fromkeys(keys)]
        if self.postgres:
            with self.connection.connection.driver_connection.cursor() as cursor:
                with cursor.copy(f"COPY {temp_schema}.{wh.quote(name)} ({wh.quote(key_column)}) FROM STDIN") as copy:
                    for value in values:
                        copy.write_row((value,))
        elif values:
            self.connection.execute(insert(keys_table), [{key_column: v} for v in values])
        return keys_table

    def replace_rows(self, table: Table, month: date, keys: TableClause) -> None:
        """Publishing will replace the `month` rows of `table` whose key is in `keys` (from `stage_keys`) by the staged rows."""
        key = next(iter(keys.columns))
        self._delete(table, and_(table.c[partition_column(table)] == month, table.c[key.name].in_(select(key))))
        self._stage_table(table)

    def _delete(self, table: Table, condition: ColumnElement) -> None:
        self._deletes.append((table, condition))

    def _stage_table(self, table: Table) -> str:
        if table.name in self._staging:
            return self._staging[table.name]
        self._sync()
        wh = self.warehouse
        name = f"{table.name}__load_{self._token}"
        if self.postgres and table.name in self._partitions:
            staging = wh.qualified(name)
            self.connection.execute(text(f"CREATE TABLE {staging} (LIKE {wh.qualified(table.name)} INCLUDING DEFAULTS)"))
            # Checked row by row while loading, and it spares ATTACH PARTITION its validation scan.
            month = self._partitions[table.name].isoformat()
            self.connection.execute(text(f"ALTER TABLE {staging} ADD CONSTRAINT {wh.quote(name + '_month')} "
                                         f"CHECK ({wh.quote(partition_column(table))} = DATE '{month}')"))
        elif self.postgres:
            staging = wh.quote(name)
            self.connection.execute(
                text(f"CREATE TEMP TABLE {staging} (LIKE {wh.qualified(table.name)} INCLUDING DEFAULTS) ON COMMIT DROP")
            )
        else:
            staging = f"temp.{wh.quote(name)}"
            self.connection.execute(text(f"CREATE TEMP TABLE {wh.quote(name)} AS SELECT * FROM {wh.quote(table.name)} WHERE 0"))
        self._staging[table.name] = staging
        self._order.append(table)
        return staging

    def append(self, table: Table, frame: pd.DataFrame, *, constants: dict[str, Any] | None = None) -> None:
        """Stage rows for `table` (declare what they replace first).

        `constants` are columns holding one value in every row (the month, a run stamp). On
        PostgreSQL they become the staging table's column defaults instead of travelling in the
        COPY: formatting and parsing a timestamp a million times costs seconds.
        """
        if table.name not in self._staging:
            raise ValueError(f"declare what the rows of {table.name} replace before staging them")
        constants = constants or {}
        unknown = sorted(set(constants) - set(table.c.keys()))
        if unknown:
            raise ValueError(f"{table.name} has no column {', '.join(unknown)}")
        if self.postgres:
            self._set_defaults(table, constants, frame)
            frame = frame.drop(columns=[name for name in constants if name in frame.columns])
        else:
            frame = frame.assign(**constants)
        self._analyzed.discard(self._staging[table.name])
        self.warehouse.insert_frame(self.connection, self._staging[table.name], table, frame, copier=self._copier,
                                    created_in_transaction=True)  # every staging table is (`_stage_table`)

    def _set_defaults(self, table: Table, constants: dict[str, Any], frame: pd.DataFrame) -> None:
        """Make the staging table's defaults `constants`, and no other column default to a value set before."""
        current = self._defaults.setdefault(table.name, {})
        changes = []
        for name in [n for n in current if n not in constants and n not in frame.columns]:
            changes.append(f"ALTER COLUMN {self.warehouse.quote(name)} DROP DEFAULT")
            del current[name]
        for name, value in constants.items():
            column = table.c[name]
            if column.server_default is not None:
                raise ValueError(f"{table.name}.{name} has a default of its own: pass its values in the rows")
            if isinstance(value, pd.Timestamp):
                value = value.to_pydatetime()
            if isinstance(column.type, Date) and isinstance(value, datetime):
                value = value.date()
            if name not in current or current[name] != value:
                literal = psycopg_sql.Literal(value).as_string(self.connection.connection.driver_connection)
                changes.append(f"ALTER COLUMN {self.warehouse.quote(name)} SET DEFAULT {literal}")
                current[name] = value
        if changes:
            self._sync()  # a background COPY must not see the defaults change under it
            self.connection.execute(text(f"ALTER TABLE {self._staging[table.name]} {', '.join(changes)}"))

    def _sync(self) -> None:
        """Wait for background COPYs before using the connection here."""
        if self._copier is not None:
            self._copier.sync()

    def append_select(self, table: Table, columns: list[str], select_sql: str, params: dict, *,
                      few_rows: bool = False) -> int:
        """Stage the rows of a SQL query (`{...}` names in it are formatted with `Warehouse.qualified`).

        `few_rows`: the query sums many rows into few. On PostgreSQL it then runs as a plain query and
        its rows are staged from the result: PostgreSQL 15 runs a `SELECT` on parallel workers (also over
        tables staged in this transaction), an `INSERT … SELECT` never.
        """
        if table.name not in self._staging:
            raise ValueError(f"declare what the rows of {table.name} replace before staging them")
        if few_rows and self.postgres:
            rows = self.query(select_sql, params)
            rows.columns = columns
            self.append(table, rows)
            return len(rows)
        column_list = ", ".join(self.warehouse.quote(c) for c in columns)
        self._sync()
        self._analyzed.discard(self._staging[table.name])
        result = self.connection.execute(
            text(f"INSERT INTO {self._staging[table.name]} ({column_list}) {select_sql}"),
            self.warehouse.sql_params(params),
        )
        return result.rowcount

    def temp_table(self, name: str, select_sql: str, params: dict, *, analyze: bool = True) -> str:
        """A temporary table of a query's rows for later statements of this replacement; returns its SQL name.

        It is analyzed for the planner unless `analyze` is false (a table only ever read in full).
        """
        self._sync()
        temp_schema = "pg_temp" if self.postgres else "temp"
        qualified = f"{temp_schema}.{self.warehouse.quote(f'{name}__{self._token}')}"
        self.connection.execute(text(f"CREATE TEMP TABLE {self.warehouse.quote(f'{name}__{self._token}')} AS {select_sql}"),
                                self.warehouse.sql_params(params))
        self._key_tables.append(qualified)
        if analyze:
            self.analyze(qualified)
        return qualified

    def analyze(self, sql_name: str) -> None:
        """Give the planner statistics on a staged or temporary table before querying it (PostgreSQL)."""
        if self.postgres and sql_name not in self._analyzed:
            self._sync()
            self.connection.execute(text(f"ANALYZE {sql_name}"))
            self._analyzed.add(sql_name)

    def staged(self, table: Table) -> str:
        """The SQL name of the table holding `table`'s staged rows, for queries over them before publishing."""
        if table.name not in self._staging:
            raise ValueError(f"nothing is staged for {table.name}")
        return self._staging[table.name]

    def execute(self, sql: str, params: dict, *, writes: Table | None = None) -> int:
        """Run a statement on the replacement's connection, e.g. an UPDATE of staged rows (see `staged`).

        `writes` names the table whose staged rows it changes (their statistics must be gathered
        again); without it, any staged or temporary table may have changed.
        """
        self._sync()
        if writes is None:
            self._analyzed.clear()
        else:
            self._analyzed.discard(self._staging[writes.name])
        return self.connection.execute(text(sql), self.warehouse.sql_params(params)).rowcount

    def query(self, sql: str, params: dict) -> pd.DataFrame:
        """A small query's rows on the replacement's connection, so it sees the staged rows (see `staged`)."""
        self._sync()
        result = self.connection.execute(text(sql), self.warehouse.sql_params(params))
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))

    def scalar(self, statement) -> Any:
        """One value of a SQLAlchemy statement on the replacement's connection (it sees the staged rows)."""
        self._sync()
        return self.connection.execute(statement).scalar()

    def query_binary(self, sql: str) -> list[tuple]:
        """A query's rows on the replacement's connection in PostgreSQL's binary format: bytea arrives
        as it is stored, not hex-encoded at twice its size (five months' id hashes, 20 MB: 48 ms against 157 ms)."""
        self._sync()
        with self.connection.connection.driver_connection.cursor(binary=True) as cursor:
            cursor.execute(sql)
            return cursor.fetchall()

    @contextlib.contextmanager
    def beside(self, function, *args, reads: list[str]) -> Iterator[Future]:
        """Run `function(*args)` on another connection while the block runs (`Warehouse.beside`), over
        the same rows of the tables it `reads` (SQL names) as this replacement sees.

        Those tables are first locked here against being replaced (ACCESS SHARE, until this
        replacement ends), so the rows both connections read stay put. `function` must give way
        rather than wait for a lock (`GIVE_WAY`): a replacement of one of them already waiting for
        this one's lock would queue its locks behind it, and this one waits for `function` — a
        wait PostgreSQL cannot see. The future's result is then None, as it is on SQLite, where
        nothing runs beside: the caller does that work itself, in this replacement.
        """
        if not self.postgres:
            future: Future = Future()
            future.set_result(None)
            yield future
            return
        self._sync()
        self.connection.execute(text(f"LOCK TABLE {', '.join(reads)} IN ACCESS SHARE MODE"))
        with self.warehouse.beside(_giving_way, function, *args) as result:
            yield result

    def before_publish(self, function, *, lock_name: str) -> None:
        """Call `function(self)` when publishing, holding `lock_name` too, before anything is replaced.

        For decisions that must see what other writers published: under `lock_name` (PostgreSQL: an
        advisory lock taken after this replacement's own, so every writer takes them in that order;
        SQLite: its one write lock) no other writer publishing under it can change the rows read.
        `function` may stage more rows and change other rows in this transaction; an error from it
        replaces nothing.
        """
        self._before_publish.append((lock_name, function))

    def publish(self) -> None:
        wh = self.warehouse
        self._sync()
        if not self.postgres:
            # Staging happened in TEMP tables; now take the write lock for a short transaction.
            self._transaction.commit()
            self._transaction = self.connection.execution_options(sqlite_begin="IMMEDIATE").begin()
        for lock_name, function in self._before_publish:
            if self.postgres:
                self._lock(lock_name)
            function(self)
        self._sync()
        if self._copier is not None:
            self._copier.close()
        for table, condition in self._deletes:
            if self.postgres and table.name in self._partitions:
                continue  # replaced by the partition swap below
            self.connection.execute(table.delete().where(condition))
        for table in self._order:
            staging = self._staging[table.name]
            if self.postgres and table.name in self._partitions:
                self._swap_partition(table, staging, self._partitions[table.name])
                continue
            columns = ", ".join(wh.quote(c.name) for c in table.columns if not (c.primary_key and c.autoincrement is True))
            conflict = " WHERE true ON CONFLICT DO NOTHING" if table.name in self._ignore_conflicts else ""
            self.connection.execute(
                text(f"INSERT INTO {wh.qualified(table.name)} ({columns}) SELECT {columns} FROM {staging}{conflict}")
            )
        if not self.postgres:
            for table in self._order:
                self.connection.execute(text(f"DROP TABLE {self._staging[table.name]}"))
        for name in self._key_tables:
            self.connection.execute(text(f"DROP TABLE {name}"))
        self._transaction.commit()

    def _swap_partition(self, table: Table, staging: str, month: date) -> None:
        wh = self.warehouse
        child_name = partition_name(table.name, month)
        child = wh.qualified(child_name)
        parent = wh.qualified(table.name)
        exists = wh.table_exists(self.connection, child_name)
        if exists:
            self.connection.execute(text(f"ALTER TABLE {parent} DETACH PARTITION {child}"))
            self.connection.execute(text(f"DROP TABLE {child}"))
        # A new partition has no statistics until autovacuum comes by; the next steps of the same run
        # query it, and on a guess of a few rows the planner picks nested loops over a million.
        self.analyze(staging)  # (once: a step that analyzed its staged rows to query them wrote none since)
        if self._defaults.get(table.name):
            # The constants' defaults were for loading only; the partition keeps the parent's (none).
            drops = ", ".join(f"ALTER COLUMN {wh.quote(name)} DROP DEFAULT" for name in self._defaults[table.name])
            self.connection.execute(text(f"ALTER TABLE {staging} {drops}"))
        self.connection.execute(text(f"ALTER TABLE {staging} RENAME TO {wh.quote(child_name)}"))
        # ATTACH builds the child's indexes: give the sorts memory (this transaction only).
        self.connection.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
        self.connection.execute(
            text(f"ALTER TABLE {parent} ATTACH PARTITION {child} FOR VALUES IN ('{month.isoformat()}')")
        )
        # The planner estimates a join of a partitioned table from the parent's statistics, even when
        # one partition is scanned, and nothing gathers them (autovacuum skips partitioned parents).
        # Without them it guesses 200 distinct customers and joins a million rows by nested loop.
        # But ANALYZE of a parent analyzes every partition again (PostgreSQL 15 has no ANALYZE ONLY):
        # at 12 months of a million customers, 2-6 s per table, so a month's first build grew with
        # the months behind it. They are refreshed when the partition count reaches a power of two
        # (1, 2, 4, 8, ...): a sample of at least half of the months, at a constant cost per month.
        # Replacing a month barely changes them.
        has_stats, partitions = self.connection.execute(
            text("SELECT EXISTS (SELECT 1 FROM pg_stats WHERE schemaname = :schema AND tablename = :table AND inherited), "
                 "(SELECT COUNT(*) FROM pg_inherits WHERE inhparent = CAST(:parent AS regclass))"),
            {"schema": wh.schema, "table": table.name, "parent": parent},
        ).one()
        if not has_stats or (not exists and partitions & (partitions - 1) == 0):
            self.connection.execute(text(f"ANALYZE {parent}"))

    def abort(self) -> None:
        if self._copier is not None:
            self._copier.close()  # a COPY still running must end before the rollback
        if self._transaction is not None and self._transaction.is_active:
            self._transaction.rollback()
        if not self.postgres:
            for staging in [*self._staging.values(), *self._key_tables]:
                with contextlib.suppress(Exception):
                    self.connection.execute(text(f"DROP TABLE IF EXISTS {staging}"))
                    self.connection.commit()
