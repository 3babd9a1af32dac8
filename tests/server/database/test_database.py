"""The database layer on SQLite and on PostgreSQL 15: the same tests on both."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import List, Tuple

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import DBAPIError

from server.access_keys.master_key import load_or_create_master_key_on_disk
from server.access_keys.store import (
    AccessKeyError,
    KeyKind,
    issue_access_key,
    list_access_keys,
    load_active_key,
    revoke_access_key,
)
from server.database.engine import (
    MIGRATIONS_FOLDER,
    Database,
    create_database_engine,
    open_database,
)
from server.database.schema import applications, deployment_groups, metadata
from tests.support.postgres import PostgresCluster


def test_the_migrations_make_exactly_the_schema_the_code_queries(database_url: str) -> None:
    database = open_database(database_url)
    with database.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []


def test_opening_twice_and_at_once_migrates_once(database_url: str) -> None:
    errors: List[BaseException] = []

    def open_it() -> None:
        try:
            open_database(database_url).dispose()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    database = open_database(database_url)
    with database.read() as connection:
        versions = connection.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_FOLDER))
    assert versions == [(ScriptDirectory.from_config(config).get_current_head(),)]


def test_a_failed_transaction_changes_nothing(database_url: str) -> None:
    database = open_database(database_url)
    with pytest.raises(RuntimeError), database.write() as connection:
        connection.execute(
            applications.insert().values(
                id="a1", name="app", compute_platform="Server", tags=[], created_at=1.0
            )
        )
        raise RuntimeError("half way")
    with database.read() as connection:
        assert connection.execute(sa.select(applications)).all() == []


def test_deleting_an_application_deletes_its_groups(database_url: str) -> None:
    database = open_database(database_url)
    with database.write() as connection:
        connection.execute(
            applications.insert().values(
                id="a1", name="app", compute_platform="Server", tags=[], created_at=1.0
            )
        )
        connection.execute(
            deployment_groups.insert().values(
                id="g1",
                application_id="a1",
                name="group",
                deployment_config_name="CodeDeployDefault.OneAtATime",
                service_role_arn="arn:aws:iam::000000000000:role/r",
                on_premises_tag_filters=[],
                on_premises_tag_set=[],
                settings={},
                created_at=1.0,
            )
        )
    with database.write() as connection:
        connection.execute(applications.delete().where(applications.c.id == "a1"))
    with database.read() as connection:
        assert connection.execute(sa.select(deployment_groups)).all() == []


def test_access_keys_are_issued_revoked_and_listed(database_url: str, tmp_path: Path) -> None:
    database = open_database(database_url)
    master = load_or_create_master_key_on_disk(tmp_path / "keys" / "master.key")
    with database.write() as connection:
        operator = issue_access_key(connection, master, KeyKind.OPERATOR, "alice", 10.0)
        host = issue_access_key(connection, master, KeyKind.HOST, "web-1", 11.0)
    with database.read() as connection:
        active = load_active_key(connection, master, host.key.access_key_id)
        assert active is not None and active.secret_access_key == host.secret_access_key
        assert [k.name for k in list_access_keys(connection)] == ["alice", "web-1"]
    with database.write() as connection:
        revoke_access_key(connection, operator.key.access_key_id, 12.0)
    with database.read() as connection:
        assert load_active_key(connection, master, operator.key.access_key_id) is None
        raw = connection.execute(sa.text("SELECT sealed_secret FROM access_keys")).all()
    assert all(operator.secret_access_key.encode() not in bytes(row[0]) for row in raw)
    with pytest.raises(AccessKeyError, match="no access key"), database.write() as connection:
        revoke_access_key(connection, "CDSKNOSUCHKEY0000000", 13.0)


def test_threads_of_one_process_queue_for_sqlite_beyond_its_busy_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite's own busy handler sleeps and then gives up ("database is locked"); writers of
    # one process take turns on the process's lock instead, however long the turn before.
    monkeypatch.setattr("server.database.engine.SQLITE_BUSY_TIMEOUT_MS", 50)
    database = open_database(f"sqlite:///{tmp_path / 'server.db'}")
    second_waits = threading.Event()
    errors: List[BaseException] = []

    def second_writer() -> None:
        second_waits.set()
        try:
            with database.write() as connection:
                connection.execute(
                    applications.insert().values(
                        id="a2", name="second", compute_platform="Server", tags=[], created_at=2.0
                    )
                )
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=second_writer)
    with database.write() as connection:
        connection.execute(
            applications.insert().values(
                id="a1", name="first", compute_platform="Server", tags=[], created_at=1.0
            )
        )
        thread.start()
        second_waits.wait()
        time.sleep(0.3)  # far past the busy timeout: the second writer waits meanwhile
    thread.join()
    assert errors == []
    with database.read() as connection:
        names = connection.execute(sa.select(applications.c.name).order_by(applications.c.name))
        assert [name for (name,) in names] == ["first", "second"]


def _backend_pid(database: Database) -> int:
    with database.read() as connection:
        return int(connection.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())


def _terminate_backend(url: str, pid: int) -> None:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        engine.dispose()


def _pool_whose_connection_was_dropped(
    postgres: PostgresCluster, ping_after_idle_seconds: float
) -> Tuple[Database, int]:
    """A database whose one pooled connection the server has just ended; its backend pid."""
    url = postgres.create_database()
    database = Database(create_database_engine(url, ping_after_idle_seconds), url)
    first = _backend_pid(database)
    _terminate_backend(url, first)
    return database, first


def test_a_pooled_postgresql_connection_dropped_while_idle_is_replaced_before_use(
    postgres: PostgresCluster,
) -> None:
    database, first = _pool_whose_connection_was_dropped(postgres, ping_after_idle_seconds=0.2)
    time.sleep(0.5)
    assert _backend_pid(database) != first


def test_a_pooled_postgresql_connection_dropped_while_busy_fails_once_then_is_replaced(
    postgres: PostgresCluster,
) -> None:
    # Not pinged before every transaction: the one that meets the dropped connection
    # fails (as one running when the connection dropped would), the next is answered.
    database, first = _pool_whose_connection_was_dropped(postgres, ping_after_idle_seconds=3600.0)
    with pytest.raises(DBAPIError):
        _backend_pid(database)
    assert _backend_pid(database) != first
