"""Statements run compiled on the driver's cursor answer and fail as Connection.execute
does, on SQLite and on PostgreSQL 15."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError

from server.database.compiled import CompiledStatement, one_of
from server.database.engine import Database, create_database_engine, open_database
from server.database.schema import applications
from tests.support.postgres import PostgresCluster

_INSERT = CompiledStatement(
    applications.insert().values(
        {
            **{name: sa.bindparam(name) for name in ("id", "name", "tags", "created_at")},
            "compute_platform": "Server",
        }
    )
)
_BY_PLATFORM = CompiledStatement(
    sa.select(applications.c.name, applications.c.tags, applications.c.created_at)
    .where(one_of(applications.c.compute_platform, ["Server", "Lambda"]))
    .order_by(applications.c.name)
)
_RENAME = CompiledStatement(
    applications.update()
    .where(applications.c.id == sa.bindparam("app"))
    .values(name=sa.bindparam("new_name"))
)
_BACKEND_PID = CompiledStatement(sa.select(sa.func.pg_backend_pid()))


def _insert(database: Database, app_id: str, name: str) -> None:
    with database.write() as connection:
        _INSERT.run(
            connection, {"id": app_id, "name": name, "tags": [{"Key": "k"}], "created_at": 1}
        )


def test_rows_come_back_as_connection_execute_gives_them(database_url: str) -> None:
    database = open_database(database_url)
    _insert(database, "a1", "first")
    _insert(database, "a2", "second")
    with database.write() as connection:
        assert _RENAME.run(connection, {"app": "a2", "new_name": "renamed"}).rowcount == 1
        assert _RENAME.run(connection, {"app": "none", "new_name": "x"}).rowcount == 0
    with database.read() as connection:
        compiled = _BY_PLATFORM.run(connection, {})
        executed = connection.execute(_BY_PLATFORM.statement).all()
    assert compiled.rows == [tuple(row) for row in executed]
    assert compiled.first() == {"name": "first", "tags": [{"Key": "k"}], "created_at": 1.0}
    assert [row["name"] for row in compiled.mappings()] == ["first", "renamed"]
    assert isinstance(compiled.rows[0][2], float)
    database.dispose()


def test_a_driver_error_is_sqlalchemys_and_rolls_the_transaction_back(database_url: str) -> None:
    database = open_database(database_url)
    _insert(database, "a1", "first")
    with pytest.raises(IntegrityError), database.write() as connection:
        _RENAME.run(connection, {"app": "a1", "new_name": "kept"})
        _INSERT.run(connection, {"id": "a1", "name": "again", "tags": [], "created_at": 2})
    with database.read() as connection:
        assert _BY_PLATFORM.scalar(connection, {}) == "first"
    database.dispose()


def test_a_plain_list_in_a_compiled_statement_is_refused(database_url: str) -> None:
    statement = CompiledStatement(
        sa.select(applications.c.name).where(applications.c.name.in_(["a", "b"]))
    )
    database = open_database(database_url)
    with pytest.raises(ValueError, match="execution time"), database.read() as connection:
        statement.run(connection, {})
    database.dispose()


def test_a_connection_dropped_under_a_compiled_statement_is_replaced(
    postgres: PostgresCluster,
) -> None:
    url = postgres.create_database()
    database = Database(create_database_engine(url, ping_after_idle_seconds=3600.0), url)
    with database.read() as connection:
        first = _BACKEND_PID.scalar(connection, {})
    ender = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with ender.begin() as connection:
        connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
    ender.dispose()
    with pytest.raises(DBAPIError) as raised, database.read() as connection:
        _BACKEND_PID.scalar(connection, {})
    assert raised.value.connection_invalidated
    with database.read() as connection:
        assert _BACKEND_PID.scalar(connection, {}) != first
    database.dispose()
