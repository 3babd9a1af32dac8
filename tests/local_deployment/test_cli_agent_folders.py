"""A files destination may not be, contain or lie inside the agent's own folders.

For a local revision codedeploy-local refuses it in the pre-flight (exit 2, one line,
before ApplicationStop); a remote revision is refused at Install, before anything is
copied; the engine the daemon runs refuses it at Install as a failed command.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

import pytest

from agent.configuration.model import AgentConfig
from agent.deployment_specification.model import (
    BundleType,
    DeploymentSpecification,
    LocalRevision,
)
from agent.errors import AgentError
from agent.host_command.dispatch import execute_host_command
from agent.host_command.engine_settings import EngineSettings
from agent.revision.fetchers.settings import FetchSettings
from tests.support.archives import make_bundle, write_tree
from tests.support.local_agent import LocalAgent
from tests.support.s3_servers import LOCAL_AGENT_ENV, serve_bundle_from_moto

STOP_SCRIPT = "#!/bin/sh\necho stopped >> {record}\n"


def revision(where: Path, destination: Path, record: Path) -> Path:
    return write_tree(
        where,
        {
            "appspec.yml": (
                "version: 0.0\nos: linux\nfiles:\n  - source: state\n"
                f"    destination: {destination}\n"
                "hooks:\n  ApplicationStop:\n    - location: stop.sh\n"
            ),
            "stop.sh": STOP_SCRIPT.format(record=record),
            "state/deployment-instructions/default-local-deployment-group-cleanup": "/etc/passwd\n",
            "state/codedeploy-agent.pid": "1\n",
        },
    )


def snapshot(folder: Path) -> List[str]:
    return sorted(str(path) for path in folder.rglob("*")) if folder.exists() else []


def deployed_once(agent: LocalAgent, tmp_path: Path, record: Path) -> None:
    """A good first deployment, so that the next one has an ApplicationStop to run."""
    good = revision(tmp_path / "good", tmp_path / "app", record)
    run = agent.run("--bundle-location", str(good), "--type", "directory")
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("kind", ["directory", "tgz"])
@pytest.mark.parametrize("relation", ["contains", "is", "is inside", "through a symlink"])
def test_a_local_revision_is_refused_before_application_stop(
    kind: str, relation: str, local_agent: LocalAgent, tmp_path: Path
) -> None:
    record = tmp_path / "record.txt"
    deployed_once(local_agent, tmp_path, record)
    log_dir = local_agent.base / "log"
    log_dir.mkdir(exist_ok=True)
    destination, what, folder = {
        "contains": (local_agent.base, "deployment root", local_agent.root),
        "is": (log_dir, "log folder", log_dir),
        "is inside": (local_agent.root / "deployment-instructions", "deployment root", None),
        "through a symlink": (tmp_path / "link" / "sub", "log folder", log_dir),
    }[relation]
    if relation == "through a symlink":
        (tmp_path / "link").symlink_to(log_dir)
    bad = revision(tmp_path / "bad", destination, record)
    bundle = bad if kind == "directory" else make_bundle(bad, tmp_path / "bad.tgz", "tgz")
    before = snapshot(local_agent.root)

    run = local_agent.run("--bundle-location", str(bundle), "--type", kind)

    assert run.returncode == 2, run.stderr
    assert run.stdout == ""
    (line,) = run.stderr.strip().splitlines()
    shown = "is inside" if relation == "through a symlink" else relation
    assert line.startswith(
        f"codedeploy-local: appspec.yml files entry 1: the destination {destination} {shown}"
        f" the agent's {what} "
    ), line
    if folder is not None:
        assert f" the agent's {what} {folder};" in line
    assert not record.exists()  # the first deployment had nothing to stop
    assert snapshot(local_agent.root) == before


def test_the_pid_folder_is_guarded_too(local_agent: LocalAgent, tmp_path: Path) -> None:
    pid_dir = tmp_path / "state" / ".pid"
    with local_agent.config.open("a", encoding="utf-8") as config:
        config.write(f":pid_dir: '{pid_dir}'\n")
    bad = revision(tmp_path / "bad", tmp_path / "state", tmp_path / "record.txt")
    run = local_agent.run("--bundle-location", str(bad), "--type", "directory")
    assert run.returncode == 2, run.stderr
    assert f"contains the agent's pid folder {pid_dir};" in run.stderr
    assert not pid_dir.exists()


def test_a_remote_revision_is_refused_at_install_before_copying(
    local_agent: LocalAgent, s3_endpoint: str, tmp_path: Path
) -> None:
    bad = revision(tmp_path / "bad", local_agent.base, tmp_path / "record.txt")
    bundle = make_bundle(bad, tmp_path / "bad.tgz", "tgz")
    location = serve_bundle_from_moto(local_agent, s3_endpoint, bundle, tmp_path.name)

    run = local_agent.run("--bundle-location", location, "--type", "tgz", env=LOCAL_AGENT_ENV)

    assert run.returncode == 1, run.stderr
    failures = [line for line in run.stderr.splitlines() if line.startswith("Deployment ")]
    assert len(failures) == 1, run.stderr
    assert "failed in Install: files entry 1 (source 'state'" in failures[0]
    assert (
        f"the destination {local_agent.base} contains the agent's deployment root"
        f" {local_agent.root};" in failures[0]
    )
    instructions = local_agent.root / "deployment-instructions"
    assert not (instructions / "default-local-deployment-group-cleanup").exists()
    assert not (local_agent.base / "codedeploy-agent.pid").exists()


def test_the_daemons_engine_refuses_it_as_a_failed_install(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    config = AgentConfig(root_dir=tmp_path / "root", log_dir=log_dir, pid_dir=tmp_path / "pid")
    settings = EngineSettings.from_config(config, FetchSettings(), {})
    bad = revision(tmp_path / "bad", log_dir / "app", tmp_path / "record.txt")
    bundle = make_bundle(bad, tmp_path / "bad.tgz", "tgz")
    spec = DeploymentSpecification(
        deployment_id="d-AGENTDIRS",
        deployment_group_id="g",
        deployment_group_name="web",
        application_name="shop",
        revision=LocalRevision(bundle, BundleType.TGZ),
    )
    execute_host_command("DownloadBundle", spec, settings)

    with pytest.raises(AgentError) as caught:
        execute_host_command("Install", spec, settings)

    message = caught.value.message
    assert "\n" not in message
    assert f"the destination {log_dir / 'app'} is inside the agent's log folder {log_dir};" in (
        message
    )
    assert not log_dir.exists()


def test_a_symlink_inside_the_destination_does_not_lead_into_an_agent_folder(
    local_agent: LocalAgent, tmp_path: Path
) -> None:
    log_dir = local_agent.base / "log"
    log_dir.mkdir(exist_ok=True)
    app = tmp_path / "app"
    app.mkdir()
    (app / "deployment-instructions").symlink_to(log_dir)
    bad = revision(tmp_path / "bad", app, tmp_path / "record.txt")

    run = local_agent.run("--bundle-location", str(bad), "--type", "directory")

    assert run.returncode == 1, run.stderr
    failures = [line for line in run.stderr.splitlines() if line.startswith("Deployment ")]
    assert len(failures) == 1, run.stderr
    assert (
        f"the folder {app / 'deployment-instructions'} is the agent's log folder {log_dir};"
        in failures[0]
    )
    # Only codedeploy-local's own log: nothing of the revision.
    assert sorted(path.name for path in log_dir.iterdir()) == ["codedeploy-local.log"]
    assert sorted(path.name for path in app.iterdir()) == ["deployment-instructions"]
