"""The server killed with SIGKILL in the middle of a deployment and started again on the
same database and port: the deployment finishes, and no host runs any command twice (a
command handed out before the crash is neither handed out twice nor forgotten). Then two
server processes on one PostgreSQL database share one fleet: hosts polling either get
every command once, woken across processes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from server.deployment_engine import IN_PLACE_COMMANDS
from tests.support.fleet import Fleet
from tests.support.postgres import PostgresCluster
from tests.support.server import ServerFiles, ServerProcess, free_loopback_port

pytestmark = [pytest.mark.root, pytest.mark.fleet]


def _every_host_ran_each_command_once(fleet: Fleet, deployment_id: str) -> None:
    for host in fleet.hosts:
        assert host.commands_run(deployment_id) == list(IN_PLACE_COMMANDS), fleet.diagnostics()
        hooks = [line.split()[0] for line in host.trace(deployment_id)]
        assert len(hooks) == len(set(hooks)) == 4  # ApplicationStop has nothing to run yet
        assert host.installed("crash-app") == "v1\n"


def test_a_deployment_survives_the_server_killed_twice(
    files: ServerFiles, tmp_path: Path, s3_endpoint: str
) -> None:
    listen = ["--listen", f"127.0.0.1:{free_loopback_port()}"]
    server = ServerProcess(files, listen).start()
    try:
        with Fleet(tmp_path / "fleet", server, s3_endpoint) as fleet:
            fleet.make_group("crash-app", "CodeDeployDefault.HalfAtATime")
            revision = fleet.revision("crash-app", "v1", held="AfterInstall")
            deployment_id = fleet.create_deployment("crash-app", fleet.push("crash-app", revision))
            # Once while the first host's commands come and go, once while a hook runs.
            for moment in (f"BeforeInstall {deployment_id}", f"AfterInstall {deployment_id}"):
                fleet.wait_for_trace(moment)
                assert server.process is not None
                server.process.kill()
                server.process.wait()
                server = ServerProcess(files, listen).start()
            fleet.release("crash-app", "v1")
            ended = fleet.wait_for_end(deployment_id)
            assert ended["status"] == "Succeeded", fleet.diagnostics()
            _every_host_ran_each_command_once(fleet, deployment_id)
    finally:
        server.stop()


@pytest.fixture
def shared_database(postgres: PostgresCluster) -> str:
    return postgres.create_database()


def test_two_servers_on_one_postgresql_database_share_a_fleet(
    tmp_path: Path, s3_endpoint: str, shared_database: str
) -> None:
    first, second = ServerFiles(tmp_path / "one"), ServerFiles(tmp_path / "two")
    # Polls that wait two minutes: a host polling one server gets the command the other
    # queued only if the other server's NOTIFY wakes it.
    extra = "poll_wait_seconds: 120\n"
    first.write_config(extra, database_url=shared_database)
    second.write_config(extra, database_url=shared_database)
    with ServerProcess(first) as one:
        # Replicas share the master key and the signer, as an operator sets them up.
        second.master_key.parent.mkdir(parents=True)
        second.master_key.write_bytes(first.master_key.read_bytes())
        second.master_key.chmod(0o600)
        shutil.copytree(first.data_dir / "signer", second.data_dir / "signer")
        with (
            ServerProcess(second) as two,
            Fleet(
                tmp_path / "fleet", one, s3_endpoint, servers=(one, two), read_timeout=150
            ) as fleet,
        ):
            fleet.make_group("crash-app", "CodeDeployDefault.OneAtATime")
            revision = fleet.revision("crash-app", "v1")
            deployment_id = fleet.create_deployment("crash-app", fleet.push("crash-app", revision))
            ended = fleet.wait_for_end(deployment_id, timeout=100)
            assert ended["status"] == "Succeeded", fleet.diagnostics()
            _every_host_ran_each_command_once(fleet, deployment_id)
