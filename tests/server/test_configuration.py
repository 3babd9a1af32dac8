"""The server's settings that depend on others, and the bounds of the new keys."""

from __future__ import annotations

import os

import pytest

from server.configuration import ServerConfigError, parse_server_config


def test_worker_threads_default_to_two_with_sqlite_and_eight_with_postgresql() -> None:
    assert parse_server_config("").effective_worker_threads == 2
    postgres = parse_server_config("database_url: postgresql://db.example/codedeploy\n")
    assert postgres.effective_worker_threads == 8
    assert parse_server_config("worker_threads: 5\n").effective_worker_threads == 5


def test_server_processes_default_to_one_per_usable_core_at_most_four() -> None:
    cores = len(os.sched_getaffinity(0))
    assert parse_server_config("").effective_server_processes == min(4, cores)
    assert parse_server_config("server_processes: 1\n").effective_server_processes == 1
    assert parse_server_config("server_processes: 6\n").effective_server_processes == 6


@pytest.mark.parametrize(
    "line, named",
    [
        ("server_processes: 0", "server_processes must be a whole number from 1 to 64, not 0"),
        ("busy_request_limit: -1", "busy_request_limit must be a whole number from 0 to 10000"),
        ("worker_threads: 0", "worker_threads must be a whole number from 1 to 256, not 0"),
    ],
)
def test_a_bad_count_is_one_line_naming_its_key(line: str, named: str) -> None:
    with pytest.raises(ServerConfigError) as raised:
        parse_server_config(line + "\n")
    assert named in raised.value.message
