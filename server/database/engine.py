"""Opening the server's database and bringing its schema up to date.

One :class:`Database` per process, made from a URL: SQLite (the embedded default, one file
in the data folder) or PostgreSQL (psycopg 3), through SQLAlchemy Core. Every state change
runs in one transaction (:meth:`Database.write`); reads that change nothing use
:meth:`Database.read`.

SQLite is opened in WAL mode (readers never wait for the writer), with foreign keys on
and a busy timeout, and its write transactions start with ``BEGIN IMMEDIATE``: a
transaction that reads and then writes would otherwise fail at once with "database is
locked" when another writer went first, instead of waiting its turn. The threads of one
process take turns for SQLite's one writer on a lock of their own: SQLite's busy handler
waits by sleeping (up to 100 ms a time), so with a few threads writing at once most of a
write's latency was sleep; the busy timeout still covers other processes (admin commands),
and the processes of a server with ``server_processes`` above 1 take turns on a lock file
(server/database/write_lock.py).

The schema is migrated with Alembic (``migrations/``) at start-up and by every admin
command, in one transaction that also holds a lock (SQLite's write lock, PostgreSQL's
advisory lock), so that two processes starting at once migrate once.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, TypeVar, Union

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from server.database.write_lock import NoProcessWriteLock, ProcessWriteLock
from server.errors import ServerError

MIGRATIONS_FOLDER = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Any constant both servers agree on: the key of PostgreSQL's advisory lock for migrations.
_MIGRATION_LOCK_KEY = 0x636F6465_6465706C
_BEGIN_OPTION = "codedeploy_sqlite_begin"
# PostgreSQL's deadlock and serialization failures: the transaction may simply run again.
_TRANSIENT_SQLSTATES = ("40P01", "40001")
WRITE_ATTEMPTS = 3
# A pooled PostgreSQL connection idle this long is pinged before use: the server or the
# network may have dropped it meanwhile. A busy pool is not pinged on every transaction;
# a connection that fails in use makes SQLAlchemy replace every connection pooled before.
PING_AFTER_IDLE_SECONDS = 5.0
_CHECKED_IN_AT = "codedeploy_checked_in_at"
T = TypeVar("T")


class DatabaseError(ServerError):
    """The database cannot be opened, migrated or reached."""


def describe_database_url(url: str) -> str:
    """The URL without its password, for the log and for errors."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(an unreadable database URL)"


def _sqlite_engine(url: sa.URL) -> Engine:
    database = url.database or ""
    if database in ("", ":memory:"):
        raise DatabaseError("the SQLite database must be a file: sqlite:////absolute/path.db")
    Path(database).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @sa.event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Transactions are begun by us (below), not by the driver's guesswork.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        _use_write_ahead_log(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(_BEGIN_OPTION, "IMMEDIATE")
        # Straight to the driver: through SQLAlchemy's execution path this one statement
        # cost as much CPU as a query, once per transaction. Its errors are SQLAlchemy's,
        # as they were (an unreachable database answers 503, not 500).
        statement = f"BEGIN {mode}"
        try:
            connection.connection.driver_connection.execute(statement)  # type: ignore[union-attr]
        except sqlite3.Error as error:
            raise DBAPIError.instance(statement, None, error, sqlite3.Error) from error

    return engine


def _use_write_ahead_log(cursor: sqlite3.Cursor) -> None:
    """Put the database in WAL mode (it stays so). The switch needs the database to itself
    and SQLite answers "locked" at once, without its busy handler, while another connection
    holds it (several processes opening a new database at once): tried again until the
    busy timeout has passed."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
        time.sleep(0.01)


def _postgresql_engine(url: sa.URL, ping_after_idle_seconds: float) -> Engine:
    engine = sa.create_engine(url, pool_size=10, max_overflow=20)

    @sa.event.listens_for(engine, "checkin")
    def on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN_AT] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        # SQLAlchemy's pre-ping, but only after idle time: one round trip less per
        # transaction. Failing, it replaces every connection pooled until now.
        checked_in_at = record.info.get(_CHECKED_IN_AT)
        if checked_in_at is None or time.monotonic() - checked_in_at < ping_after_idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise sa.exc.InvalidatePoolError(
                f"an idle connection failed its ping: {error}"
            ) from error

    return engine


def create_database_engine(
    url: str, ping_after_idle_seconds: float = PING_AFTER_IDLE_SECONDS
) -> Engine:
    """An engine for ``url`` (no connection is made yet); PostgreSQL's pooled connections are
    pinged before use when idle ``ping_after_idle_seconds`` or more."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(f"database URL {describe_database_url(url)} cannot be parsed") from None
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return _postgresql_engine(parsed, ping_after_idle_seconds)
    raise DatabaseError(f"database URL {describe_database_url(url)}: only SQLite and PostgreSQL")


class Database:
    """The engine and the two kinds of transaction the server runs."""

    def __init__(self, engine: Engine, url: str) -> None:
        self._engine = engine
        # A read on PostgreSQL runs each statement on its own: at READ COMMITTED, the
        # default, each statement of a transaction sees its own snapshot anyway, and the
        # BEGIN and COMMIT around it were two more round trips to the database.
        self._reader = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if engine.dialect.name == "postgresql"
            else engine.execution_options(**{_BEGIN_OPTION: "DEFERRED"})
        )
        self.url = url
        # SQLite has one writer at a time: this process's threads queue here for it.
        self._write_turn: ContextManager[Any] = (
            threading.RLock() if self.dialect == "sqlite" else nullcontext()
        )
        self._process_turn: Union[ProcessWriteLock, NoProcessWriteLock] = NoProcessWriteLock()

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def dialect(self) -> str:
        return str(self._engine.dialect.name)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that may change state: committed when the block ends, rolled back
        when it raises."""
        with (
            self._write_turn,
            self._process_turn.held_on_disk(),
            self._engine.begin() as connection,
        ):
            yield connection

    def share_writes_with_other_processes(self) -> None:
        """Several server processes will write to this SQLite file: take turns on a lock
        file beside it (server/database/write_lock.py). Nothing to do for PostgreSQL."""
        if self.dialect == "sqlite":
            database = make_url(self.url).database or ""
            self._process_turn = ProcessWriteLock(Path(f"{database}.write-lock"))

    def write_retrying(self, work: Callable[[Connection], T]) -> T:
        """``work`` in a write transaction, run again (up to three times in all) when
        PostgreSQL aborted it to break a deadlock; ``work`` must start from scratch."""
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                with self.write() as connection:
                    return work(connection)
            except DBAPIError as error:
                state = getattr(error.orig, "sqlstate", None)
                if attempt == WRITE_ATTEMPTS or state not in _TRANSIENT_SQLSTATES:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A transaction that only reads (on SQLite it takes no write lock)."""
        with self._reader.begin() as connection:
            yield connection

    def dispose(self) -> None:
        self._engine.dispose()
        self._process_turn.close()


def open_database(url: str) -> Database:
    """Open the database at ``url`` and migrate it to the current schema (network or disk).

    Fails with one line naming the database (never its password) when it cannot be
    reached or migrated.
    """
    engine = create_database_engine(url)
    database = Database(engine, url)
    try:
        upgrade_schema(database)
    except (OperationalError, DBAPIError) as error:
        database.dispose()
        reason = " ".join(str(error.orig or error).split())[:300]
        raise DatabaseError(
            f"database {describe_database_url(url)} cannot be used: {reason}"
        ) from None
    return database


def upgrade_schema(database: Database) -> None:
    """Apply every migration not applied yet, in one locked transaction."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_FOLDER))
    with database.write() as connection:
        if database.dialect == "postgresql":
            connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
