"""The key cache over the real key store (SQLite and PostgreSQL): an opened key is read
once and kept, a revocation empties the cache within one window, unknown ids are asked
again after a window."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

from server.access_keys.master_key import MasterKey, load_or_create_master_key_on_disk
from server.access_keys.store import (
    ActiveKey,
    KeyKind,
    issue_access_key,
    load_active_key,
    revocations_state,
    revoke_access_key,
)
from server.database.engine import Database, open_database
from server.request_auth.key_cache import KeyCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def cache_over(database: Database, master: MasterKey, clock: Clock, loads: List[str]) -> KeyCache:
    """A cache over the real store, as the server builds it; ``loads`` records each read."""

    def load(access_key_id: str) -> Optional[ActiveKey]:
        loads.append(access_key_id)
        with database.read() as connection:
            return load_active_key(connection, master, access_key_id)

    def revocations() -> Tuple[int, Optional[float]]:
        with database.read() as connection:
            return revocations_state(connection)

    return KeyCache(load, revocations, ttl_seconds=2.0, clock=clock)


def test_keys_are_read_once_until_a_revocation(database_url: str, tmp_path: Path) -> None:
    database = open_database(database_url)
    master = load_or_create_master_key_on_disk(tmp_path / "master.key")
    with database.write() as connection:
        host = issue_access_key(connection, master, KeyKind.HOST, "host-1", 1.0)
        other = issue_access_key(connection, master, KeyKind.HOST, "host-2", 1.0)
    loads: List[str] = []
    clock = Clock()
    cache = cache_over(database, master, clock, loads)
    first = cache.get(host.key.access_key_id)
    assert first is not None and first.secret_access_key == host.secret_access_key
    for _ in range(5):
        clock.now += 10.0  # many windows later: still not read again
        assert cache.get(host.key.access_key_id) == first
    assert loads == [host.key.access_key_id]

    with database.write() as connection:
        revoke_access_key(connection, other.key.access_key_id, 2.0)
    clock.now += 0.5
    assert cache.get(other.key.access_key_id) is None  # read: it was never kept
    with database.write() as connection:
        revoke_access_key(connection, host.key.access_key_id, 3.0)
    clock.now += 2.0  # the next window sees the revocation and forgets every key
    assert cache.get(host.key.access_key_id) is None


def test_an_unknown_id_is_asked_again_after_a_window(database_url: str, tmp_path: Path) -> None:
    database = open_database(database_url)
    master = load_or_create_master_key_on_disk(tmp_path / "master.key")
    clock = Clock()
    cache = cache_over(database, master, clock, [])
    assert cache.get("AKIAUNKNOWNUNKNOWN12") is None
    with database.write() as connection:
        issued = issue_access_key(connection, master, KeyKind.OPERATOR, "ops", 1.0)
    assert cache.get(issued.key.access_key_id) is not None  # another id: read at once
    clock.now += 2.5
    assert cache.get(issued.key.access_key_id) is not None
