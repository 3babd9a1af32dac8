"""The seed's flow on one machine (``scripts/demo-fleet`` runs this with the project's venv).

It starts SeaweedFS as the S3 store, ``codedeploy-server`` and three agent daemons, each
"host" in a mount namespace of its own in which the sample revision's install path
(/tmp/codedeploy-sample) is a folder of its own, then drives the server with the real AWS
CLI as the seed's Jenkins job does (create-application, create-deployment-group, deploy
push, create-deployment with HalfAtATime, wait deployment-successful, get-deployment),
shows what each host got and stops everything. The pieces are the end-to-end tests'
harnesses (tests/support: fleet.py, server.py, s3_servers.py), so the demo runs exactly
what the tests check.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, NoReturn

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.fleet import (  # noqa: E402
    Fleet,
    FleetHost,
    fleet_keys,
    fleet_server_files,
    s3_location_argument,
)
from tests.support.s3_servers import seaweedfs_s3_server, weed_binary  # noqa: E402
from tests.support.server import ServerProcess, free_loopback_port  # noqa: E402

SAMPLE = REPO / "hooks"
MOUNT_POINT = Path("/tmp/codedeploy-sample")  # noqa: S108 - where hooks/appspec.yml installs
APPLICATION = "demo-fleet"
GROUP = "fleet"
CONFIG = "CodeDeployDefault.HalfAtATime"
HOSTS = 3


class DemoError(Exception):
    """A step of the demo that failed: one line for the person running it."""


class _Steps:
    """Numbered steps on stdout, each with the time it took."""

    def __init__(self) -> None:
        self.number = 0
        self.started = time.monotonic()

    def __call__(self, text: str) -> None:
        self.number += 1
        print(f"\n{self.number}. {text}", flush=True)

    def detail(self, text: str) -> None:
        for line in text.rstrip("\n").splitlines():
            print(f"   {line}", flush=True)

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM unwind every ``with`` below, which stops what it started (Ctrl-C
    too when a shell started the demo in the background, with SIGINT ignored)."""

    def interrupt(_signum: int, _frame: object) -> NoReturn:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def _cli(fleet: Fleet, step: _Steps, *arguments: str, **environ: str) -> str:
    """Run ``aws --endpoint-url <server> ARGUMENTS``, show the command, return its stdout."""
    step.detail("$ aws --endpoint-url " + fleet.server.url + " " + " ".join(arguments))
    completed = fleet.cli.run(*arguments, extra_environ=environ or None)
    if completed.returncode != 0:
        raise DemoError(f"aws {' '.join(arguments[:2])} failed: {completed.stderr.strip()}")
    return completed.stdout


def _create_group(fleet: Fleet, step: _Steps) -> None:
    step("Create the application and a deployment group of the hosts tagged fleet=" + fleet.tag)
    _cli(fleet, step, "deploy", "create-application", "--application-name", APPLICATION)
    _cli(
        fleet, step, "deploy", "create-deployment-group", "--application-name", APPLICATION,
        "--deployment-group-name", GROUP,
        "--service-role-arn", "arn:aws:iam::000000000000:role/CodeDeploy",
        "--on-premises-instance-tag-filters", f"Key=fleet,Value={fleet.tag},Type=KEY_AND_VALUE",
    )  # fmt: skip


def _push(fleet: Fleet, step: _Steps) -> str:
    """``aws deploy push`` of hooks/ to SeaweedFS; the S3 location to deploy."""
    key = f"{APPLICATION}/sample.zip"
    step(f"Push the sample revision (hooks/) to s3://{fleet.bucket}/{key} and register it")
    output = _cli(
        fleet, step, "deploy", "push", "--application-name", APPLICATION,
        "--s3-location", f"s3://{fleet.bucket}/{key}", "--source", str(SAMPLE),
        AWS_ENDPOINT_URL_S3=fleet.s3_endpoint,
    )  # fmt: skip
    step.detail(output)
    return s3_location_argument(fleet.registered(APPLICATION, key))


def _deploy(fleet: Fleet, step: _Steps, location: str) -> str:
    """create-deployment, then wait deployment-successful; the deployment id."""
    step(f"Create a deployment with {CONFIG}")
    created = _cli(
        fleet, step, "deploy", "create-deployment", "--application-name", APPLICATION,
        "--deployment-group-name", GROUP, "--deployment-config-name", CONFIG,
        "--description", "scripts/demo-fleet", "--s3-location", location,
    )  # fmt: skip
    deployment_id = str(json.loads(created)["deploymentId"])
    step.detail(f"deployment {deployment_id}")
    return deployment_id


def _wait(fleet: Fleet, step: _Steps, deployment_id: str) -> bool:
    """``aws deploy wait deployment-successful``; whether the deployment succeeded."""
    step("Wait until it succeeds (the CLI looks at once, then every 15 s)")
    arguments = ("deploy", "wait", "deployment-successful", "--deployment-id", deployment_id)
    step.detail("$ aws --endpoint-url " + fleet.server.url + " " + " ".join(arguments))
    waited = fleet.cli.run(*arguments)
    if waited.returncode != 0:
        step.detail(waited.stderr.strip() or waited.stdout.strip())
    return waited.returncode == 0


def _report(fleet: Fleet, step: _Steps, deployment_id: str) -> None:
    step("The deployment as the service reports it")
    output = _cli(fleet, step, "deploy", "get-deployment", "--deployment-id", deployment_id)
    info = json.loads(output)["deploymentInfo"]
    step.detail(f"status: {info['status']}, hosts: {json.dumps(info['deploymentOverview'])}")
    step(f"Each host's own {MOUNT_POINT} (a folder of its own, bind-mounted in its namespace)")
    for host in fleet.hosts:
        target = fleet.client.get_deployment_target(deploymentId=deployment_id, targetId=host.name)
        status = target["deploymentTarget"]["instanceTarget"]["status"]
        step.detail(f"{host.name}: {status}; {_host_files(host)}")
        step.detail(f"    {_service_answer(host)}")
        if status != "Succeeded":
            step.detail(f"    {_diagnostics(target['deploymentTarget']['instanceTarget'])}")


def _diagnostics(target: Dict[str, Any]) -> str:
    """The first failed lifecycle event of a host and what its agent said about it."""
    for event in target.get("lifecycleEvents", []):
        if event.get("status") == "Failed":
            said = event.get("diagnostics", {})
            return f"{event['lifecycleEventName']} failed: {said.get('message', '')}"
    return "no failed event"


def _host_files(host: FleetHost) -> str:
    app = host.folder / "app"
    names = sorted(path.name for path in app.iterdir()) if app.is_dir() else []
    release = app / "RELEASE"
    stamp = release.read_text(encoding="utf-8").strip() if release.exists() else "none"
    return f"files {', '.join(names) or 'none'} (RELEASE {stamp}) in {host.folder}"


def _service_answer(host: FleetHost) -> str:
    port = host.environ["SAMPLE_APP_PORT"]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as reply:
            return f"its service on port {port} answers {reply.read().decode().strip()}"
    except OSError as error:
        return f"its service on port {port} does not answer ({error})"


def _stop_services(fleet: Fleet) -> None:
    """Stop the sample service each host's ApplicationStart left running (its pid file)."""
    for host in fleet.hosts:
        pid_file = host.folder / "run" / "server.pid"
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text(encoding="utf-8").strip()), signal.SIGTERM)


def _run_fleet(work: Path, step: _Steps) -> None:
    step("Issue keys with codedeploy-server: an operator key and three host keys")
    files = fleet_server_files(work / "server")
    keys = fleet_keys(files, HOSTS)
    step.detail(f"server data folder {files.data_dir}")
    step("Start SeaweedFS (the S3 store) on 127.0.0.1")
    with seaweedfs_s3_server(work, extra_keys=_key_pairs(keys.operator, keys.hosts)) as store:
        step.detail(f"S3 endpoint {store.endpoint}")
        step("Start codedeploy-server on 127.0.0.1")
        with ServerProcess(files) as server:
            step.detail(f"listening on {server.url}; log {files.log}")
            step("Register and tag three on-premises hosts; start their agents")
            fleet = Fleet(
                work / "fleet", server, store.endpoint, keys=keys, mount_point=MOUNT_POINT
            )
            for host in fleet.hosts:
                host.environ["SAMPLE_APP_PORT"] = str(free_loopback_port())
            with fleet:
                try:
                    for host in fleet.hosts:
                        step.detail(f"{host.name}: agent in its own mount namespace")
                    _create_group(fleet, step)
                    deployment_id = _deploy(fleet, step, _push(fleet, step))
                    succeeded = _wait(fleet, step, deployment_id)
                    _report(fleet, step, deployment_id)
                finally:
                    _stop_services(fleet)
            step("Stop the agents, the server and SeaweedFS")
    if not succeeded:
        raise DemoError(f"deployment {deployment_id} did not succeed (see the hosts above)")


def _key_pairs(operator: Dict[str, str], hosts: Dict[str, str]) -> List[Any]:
    """The access key pairs SeaweedFS must accept: the operator's and each host's."""
    pairs = [(operator["AccessKeyId"], operator["SecretAccessKey"])]
    for text in hosts.values():
        document = yaml.safe_load(text)
        pairs.append((document["aws_access_key_id"], document["aws_secret_access_key"]))
    return pairs


def _check_prerequisites() -> None:
    if os.geteuid() != 0:
        raise DemoError("run as root: each host's agent runs in a mount namespace of its own")
    for program in ("unshare", "mount"):
        if shutil.which(program) is None:
            raise DemoError(f"{program} is missing (util-linux)")
    if weed_binary() is None:
        raise DemoError("the weed binary is missing: run scripts/setup --test")


def main() -> int:
    _stop_on_signals()
    step = _Steps()
    work = Path(tempfile.mkdtemp(prefix="codedeploy-demo-fleet.", dir="/tmp"))
    made_mount_point = False
    try:
        _check_prerequisites()
        if not MOUNT_POINT.exists():
            MOUNT_POINT.mkdir()
            made_mount_point = True
        _run_fleet(work, step)
    except DemoError as error:
        print(f"demo-fleet: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo-fleet: interrupted; everything it started was stopped", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if made_mount_point:  # empty here: the hosts' files are in their own folders
            with contextlib.suppress(OSError):
                MOUNT_POINT.rmdir()
    print(f"\ndemo-fleet: done in {step.elapsed():.0f} s; nothing left running", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
