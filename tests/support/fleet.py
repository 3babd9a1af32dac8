"""A fleet on one machine, as the self-hosted service's end-to-end tests run it: a real
``codedeploy-server``, moto's S3 for the bundles, and real ``codedeploy-agent run``
daemons, each a "host" with its own identity (a host key from ``keys create-host``, in the
on-premises file), its own deployment root and its own copy of the application.

The revisions install to one absolute path (:attr:`Fleet.mount_point`, a fresh folder of
/tmp) and each agent runs in a mount namespace of its own (``unshare --mount
--propagation private``, as root) in which that path is a bind mount of the host's own
folder (:attr:`FleetHost.folder`), so each host's files land apart. Hooks know their host
from ``FLEET_HOST``, inherited from their agent. The agents trust the server's signer
(``deployment_signer_ca_file`` and ``deployment_signer_name`` from ``codedeploy-server
signer``) and fetch bundles from moto (``s3_endpoint_override``).

Set-up calls go through botocore in the test process (the AWS CLI's own library: a CLI
run costs about a second); the steps a test is about go through the real AWS CLI.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml

from tests.support.aws_cli import AwsCli
from tests.support.daemon import AgentDaemon
from tests.support.s3_servers import s3_client
from tests.support.server import ServerFiles, ServerProcess
from tests.support.waiting import wait_until

TRACE = "trace.log"
FINAL_STATUSES = ("Succeeded", "Failed", "Stopped")
HOOKED = ("ApplicationStop", "BeforeInstall", "AfterInstall", "ApplicationStart", "ValidateService")
# The server's settings for fleet tests: short long polls, and agents that wait longer.
SERVER_CONFIG = "poll_wait_seconds: 5\nhost_command_timeout_seconds: 120\n"
AGENT_READ_TIMEOUT = 15


def fleet_server_files(base: Path, database_url: Optional[str] = None) -> ServerFiles:
    """A server's configuration for fleet tests (``SERVER_CONFIG``) under ``base``."""
    files = ServerFiles(base)
    files.write_config(SERVER_CONFIG, database_url=database_url)
    return files


@dataclass(frozen=True)
class FleetKeys:
    """A fleet's access keys: the operator's (for the AWS CLI, and S3) and each host's
    ``codedeploy.onpremises.yml`` by instance name."""

    tag: str
    operator: Dict[str, str]
    hosts: Dict[str, str]


def fleet_keys(files: ServerFiles, hosts: int, tag: str = "") -> FleetKeys:
    """Issue a fleet's keys with ``codedeploy-server keys`` (the server need not run):
    made first when a store must know them before it starts (SeaweedFS checks signatures)."""
    tag = tag or uuid.uuid4().hex[:12]
    operator = files.create_operator(f"op-{tag}")
    names = [f"host-{tag}-{number}" for number in range(hosts)]
    texts = {name: files.admin("keys", "create-host", name).stdout for name in names}
    return FleetKeys(tag, operator, texts)


@dataclass(frozen=True)
class _Endpoint:
    """What an agent's configuration takes from its command service: the URL."""

    url: str


@dataclass(frozen=True)
class _TrustedCa:
    """What an agent's configuration takes from a signing kit: the CA it trusts."""

    ca_bundle: Path


class FleetHost:
    """One agent daemon of the fleet, in its own mount namespace."""

    def __init__(
        self, base: Path, name: str, fleet: Fleet, server_url: str, on_premises_text: str
    ) -> None:
        self.name = name
        self.folder = base / "own"  # what the host sees at the fleet's mount point
        self.folder.mkdir(parents=True)
        self.mount_point = fleet.mount_point
        self.daemon = AgentDaemon(
            base,
            _Endpoint(server_url),  # type: ignore[arg-type]
            _TrustedCa(Path(fleet.signer["ca_file"])),  # type: ignore[arg-type]
            host="",
            credentials={},
            wait_after_error=1.0,
            http_read_timeout=fleet.read_timeout,
            extra_config=f":deployment_signer_name: '{fleet.signer['signer_name']}'\n"
            f":s3_endpoint_override: '{fleet.s3_endpoint}'\n" + fleet.agent_config,
        )
        self.daemon.on_premises_file.write_text(on_premises_text, encoding="utf-8")
        self.stderr = base / "agent.stderr"
        self.environ: Dict[str, str] = {}  # more variables for the agent and its hooks

    def start(self) -> None:
        command = [
            "unshare", "--mount", "--propagation", "private", "--",
            sys.executable, "-m", "tests.support.bind_mount_exec",
            str(self.folder), str(self.mount_point), "--",
            *self.daemon.command("run"),
        ]  # fmt: skip
        with self.stderr.open("a", encoding="utf-8") as stderr:
            process = subprocess.Popen(
                command,
                env=self.daemon.environment(
                    {"FLEET_HOST": self.name, **self.environ}, ("AWS_HOST_IDENTIFIER",)
                ),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                text=True,
                cwd=self.daemon.base,
            )
        self.daemon.processes.append(process)

    def trace(self, deployment_id: str = "") -> List[str]:
        """The hook runs on this host (``<event> <deployment> <host> <label>``)."""
        path = self.folder / TRACE
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        return [line for line in lines if deployment_id in line.split()[1:2] or not deployment_id]

    def commands_run(self, deployment_id: str) -> List[str]:
        """The commands of a deployment this host's agent ran, in order, from its log."""
        ran = []
        for line in self.daemon.logs().splitlines():
            fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
            if "running command" in line and fields.get("deployment_id") == deployment_id:
                ran.append(fields.get("command", ""))
        return ran

    def installed(self, application: str, name: str = "index.html") -> Optional[str]:
        path = self.folder / application / name
        return path.read_text(encoding="utf-8") if path.exists() else None


class Fleet:
    """The server's operator side and ``hosts`` agents: ``with Fleet(...) as fleet``.

    ``keys`` are the fleet's keys when issued beforehand (:func:`fleet_keys`);
    ``mount_point`` is the path the hosts share (a fresh folder of /tmp, removed at the
    end, unless given).
    """

    def __init__(
        self,
        base: Path,
        server: ServerProcess,
        s3_endpoint: str,
        *,
        hosts: int = 3,
        agent_config: str = "",
        servers: Sequence[ServerProcess] = (),
        read_timeout: float = AGENT_READ_TIMEOUT,
        keys: Optional[FleetKeys] = None,
        mount_point: Optional[Path] = None,
    ) -> None:
        self.base = base
        self.server = server
        self.s3_endpoint = s3_endpoint
        self.agent_config = agent_config
        self.read_timeout = read_timeout
        files = server.files
        keys = keys or fleet_keys(files, hosts)
        self.tag = keys.tag
        self.bucket = f"bundles-{self.tag}"
        self._own_mount_point = mount_point is None
        self.mount_point = mount_point or Path(
            tempfile.mkdtemp(prefix="codedeploy-fleet-", dir="/tmp")
        )
        self.shared = base / "shared"
        self.shared.mkdir(parents=True)
        self.signer: Dict[str, str] = json.loads(files.admin("signer").stdout)
        self.cli = AwsCli(base / "home", server.url, keys.operator)
        self.client = self.cli.codedeploy_client()
        operator = (keys.operator["AccessKeyId"], keys.operator["SecretAccessKey"])
        s3_client(s3_endpoint, *operator).create_bucket(Bucket=self.bucket)
        self.hosts: List[FleetHost] = []
        # Hosts may poll different servers sharing one database (``servers``, in turn).
        urls = [each.url for each in servers] or [server.url]
        for number, (name, text) in enumerate(keys.hosts.items()):
            url = urls[number % len(urls)]
            self.hosts.append(FleetHost(base / f"host-{number}", name, self, url, text))
            arn = yaml.safe_load(text)["iam_user_arn"]
            self.client.register_on_premises_instance(instanceName=name, iamUserArn=arn)
        self.client.add_tags_to_on_premises_instances(
            instanceNames=[host.name for host in self.hosts],
            tags=[{"Key": "fleet", "Value": self.tag}],
        )

    def __enter__(self) -> Fleet:
        for host in self.hosts:
            host.start()
        return self

    def __exit__(self, *_: object) -> None:
        for host in self.hosts:
            if host.daemon.process is not None and host.daemon.process.poll() is None:
                host.daemon.stop(timeout=30)
            host.daemon.cleanup()
        if self._own_mount_point:
            shutil.rmtree(self.mount_point, ignore_errors=True)

    def diagnostics(self) -> str:
        """The agents' logs and stderr, for an assertion's message."""
        parts = []
        for host in self.hosts:
            stderr = host.stderr.read_text(errors="replace") if host.stderr.exists() else ""
            parts.append(f"--- {host.name}\n{stderr[-2000:]}{host.daemon.logs()[-4000:]}")
        return "\n".join(parts)

    # -- the operator's side ------------------------------------------------------------

    def make_group(self, application: str, config: str = "", **options: Any) -> str:
        """An application and a group of every host of the fleet; the group's name."""
        self.client.create_application(applicationName=application)
        self.client.create_deployment_group(
            applicationName=application,
            deploymentGroupName="fleet",
            serviceRoleArn="arn:aws:iam::000000000000:role/CodeDeploy",
            onPremisesInstanceTagFilters=[
                {"Key": "fleet", "Value": self.tag, "Type": "KEY_AND_VALUE"}
            ],
            **({"deploymentConfigName": config} if config else {}),
            **options,
        )
        return "fleet"

    def revision(self, application: str, label: str, **behaviour: Any) -> Path:
        folder = self.base / "revisions" / f"{application}-{label}"
        write_fleet_revision(folder, self, application, label, **behaviour)
        return folder

    def release_file(self, application: str, label: str) -> Path:
        return self.shared / f"release-{application}-{label}"

    def release(self, application: str, label: str) -> None:
        """Let the held hooks of a revision (``held=``) go on."""
        self.release_file(application, label).touch()

    def push(self, application: str, folder: Path) -> Dict[str, Any]:
        """``aws deploy push`` of ``folder`` to moto; the S3 location it registered."""
        key = f"{application}/{folder.name}.zip"
        pushed = self.cli.run(
            "deploy", "push", "--application-name", application,
            "--s3-location", f"s3://{self.bucket}/{key}", "--source", str(folder),
            extra_environ={"AWS_ENDPOINT_URL_S3": self.s3_endpoint},
        )  # fmt: skip
        assert pushed.returncode == 0, pushed.stderr
        return self.registered(application, key)

    def registered(self, application: str, key: str) -> Dict[str, Any]:
        """The S3 location of the revision registered at ``key`` of the fleet's bucket."""
        revisions = self.client.list_application_revisions(
            applicationName=application, s3Bucket=self.bucket, s3KeyPrefix=key
        )["revisions"]
        location: Dict[str, Any] = revisions[0]["s3Location"]
        return location

    def create_deployment(self, application: str, location: Dict[str, Any], *extra: str) -> str:
        """``aws deploy create-deployment`` of an S3 revision; the deployment id."""
        s3 = s3_location_argument(location)
        created = self.cli.ok(
            "deploy", "create-deployment", "--application-name", application,
            "--deployment-group-name", "fleet", "--s3-location", s3, *extra,
        )  # fmt: skip
        return str(created["deploymentId"])

    def info(self, deployment_id: str) -> Dict[str, Any]:
        info: Dict[str, Any] = self.client.get_deployment(deploymentId=deployment_id)[
            "deploymentInfo"
        ]
        return info

    def wait_for_end(self, deployment_id: str, timeout: float = 120.0) -> Dict[str, Any]:
        """The deployment once it ended (polled through botocore)."""
        ended = wait_until(
            lambda: self.info(deployment_id)["status"] in FINAL_STATUSES, timeout=timeout
        )
        assert ended, (
            f"{deployment_id} did not end: {self.info(deployment_id)}\n{self.diagnostics()}"
        )
        return self.info(deployment_id)

    def wait_for_trace(self, needle: str, timeout: float = 60.0) -> FleetHost:
        """The first host whose trace has a line holding ``needle``."""
        found: List[FleetHost] = []

        def seen() -> bool:
            found.extend(h for h in self.hosts if any(needle in line for line in h.trace()))
            return bool(found)

        assert wait_until(seen, timeout=timeout), f"no host traced {needle!r}\n{self.diagnostics()}"
        return found[0]


def s3_location_argument(location: Dict[str, Any]) -> str:
    """An S3 location as ``aws deploy create-deployment --s3-location`` takes it."""
    return ",".join(f"{key}={location[key]}" for key in ("bucket", "key", "bundleType", "eTag"))


def write_fleet_revision(
    folder: Path,
    fleet: Fleet,
    application: str,
    label: str,
    *,
    fail_validate_at: Optional[int] = None,
    held: Optional[str] = None,
) -> None:
    """A revision whose files go to ``<mount point>/<application>/`` and whose hooks trace
    ``<event> <deployment id> <host> <label>`` into the host's trace file. The
    ``fail_validate_at``-th host to reach ValidateService (counted across the fleet, with
    folders made one at a time in a shared folder) fails it; the ``held`` event's hook,
    once traced, waits until the test calls :meth:`Fleet.release` (a minute at most)."""
    destination = fleet.mount_point / application
    tickets = fleet.shared / f"{application}-{label}"
    (folder / "content").mkdir(parents=True)
    (folder / "content" / "index.html").write_text(f"{label}\n", encoding="utf-8")
    (folder / "scripts").mkdir()
    for event in HOOKED:
        body = f'echo "$LIFECYCLE_EVENT $DEPLOYMENT_ID $FLEET_HOST {label}" >> "{fleet.mount_point / TRACE}"\n'
        if event == held:
            release = fleet.release_file(application, label)
            body += f'n=0\nwhile [ ! -e "{release}" ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n+1)); done\n'

        if event == "ValidateService" and fail_validate_at is not None:
            body += (
                f'mkdir -p "{tickets}"\nn=1\n'
                f'while ! mkdir "{tickets}/$n" 2>/dev/null; do n=$((n+1)); done\n'
                f'if [ "$n" = "{fail_validate_at}" ]; then\n'
                '  echo "ValidateService fails on purpose on $FLEET_HOST (number $n)" >&2\n'
                "  exit 1\nfi\n"
            )
        script = folder / "scripts" / f"{event}.sh"
        script.write_text("#!/bin/sh\n" + body, encoding="utf-8")
        script.chmod(0o755)
    hooks = "".join(
        f"  {event}:\n    - location: scripts/{event}.sh\n      timeout: 60\n" for event in HOOKED
    )
    (folder / "appspec.yml").write_text(
        "version: 0.0\nos: linux\nfiles:\n"
        f"  - source: content\n    destination: {destination}\nhooks:\n{hooks}",
        encoding="utf-8",
    )
