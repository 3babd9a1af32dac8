"""The same server on PostgreSQL 15: the AWS CLI's calls work unchanged, and two server
processes on one database share its state."""

from __future__ import annotations

from pathlib import Path

from tests.support.aws_cli import AwsCli
from tests.support.postgres import PostgresCluster
from tests.support.server import ServerFiles, ServerProcess


def test_two_servers_on_one_postgresql_database_share_the_fleet(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    url = postgres.create_database()
    first, second = ServerFiles(tmp_path / "one"), ServerFiles(tmp_path / "two")
    first.write_config(database_url=url)
    # The second server has its own data folder but the same database and master key.
    second.write_config(database_url=url)
    second.base.joinpath("keys").mkdir(parents=True)
    with ServerProcess(first) as one:
        operator = first.create_operator("pg-operator")
        second.master_key.write_bytes(first.master_key.read_bytes())
        second.master_key.chmod(0o600)
        with ServerProcess(second) as two:
            cli_one = AwsCli(tmp_path / "home-one", one.url, operator)
            cli_two = AwsCli(tmp_path / "home-two", two.url, operator)
            cli_one.ok("deploy", "create-application", "--application-name", "shared-app")
            assert cli_two.ok("deploy", "list-applications")["applications"] == ["shared-app"]
            assert cli_two.error(
                "deploy", "create-application", "--application-name", "shared-app"
            ).startswith("An error occurred (ApplicationAlreadyExistsException)")
