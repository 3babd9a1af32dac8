"""Test support for the self-hosted service: ``codedeploy-server`` as a real process, the
real AWS CLI against it, and a throw-away PostgreSQL cluster.

:class:`ServerProcess` writes a configuration under a test folder (data folder and master
key apart), runs ``codedeploy-server run`` on 127.0.0.1 port 0 and reads the URL from
its ready line. :class:`AwsCli` runs the ``aws`` program of this venv with a HOME of its
own (its own config and credentials files), ``--endpoint-url`` and
``AWS_EC2_METADATA_DISABLED``. :class:`PostgresCluster` runs ``initdb`` and ``postgres``
(PostgreSQL 15) as the unprivileged ``nobody`` in a folder it owns, on a unix socket only.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

VENV_BIN = Path(sys.executable).parent
SERVER_PROGRAM = str(VENV_BIN / "codedeploy-server")
AWS_PROGRAM = str(VENV_BIN / "aws")
POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
READY_PREFIX = "listening on "


def server_environment() -> Dict[str, str]:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    environ.pop("NOTIFY_SOCKET", None)
    return environ


@dataclass
class ServerFiles:
    """Where one test server keeps its files."""

    base: Path

    @property
    def config(self) -> Path:
        return self.base / "server.yml"

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def master_key(self) -> Path:
        return self.base / "keys" / "master.key"

    @property
    def log(self) -> Path:
        return self.base / "server.log"

    def write_config(self, extra: str = "", database_url: Optional[str] = None) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        lines = [
            f"data_dir: {self.data_dir}",
            f"master_key_file: {self.master_key}",
            "key_cache_seconds: 1",
        ]
        if database_url:
            lines.append(f"database_url: '{database_url}'")
        self.config.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")

    def admin(self, *arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``codedeploy-server --config <ours> ARGUMENTS`` and wait for it."""
        completed = subprocess.run(
            [SERVER_PROGRAM, "--config", str(self.config), *arguments],
            capture_output=True,
            text=True,
            env=server_environment(),
            timeout=120,
            check=False,
        )
        if check and completed.returncode != 0:
            raise AssertionError(f"{arguments} failed: {completed.stderr}")
        return completed

    def create_operator(self, name: str = "operator") -> Dict[str, str]:
        document: Dict[str, str] = json.loads(self.admin("keys", "create-operator", name).stdout)
        return document


class ServerProcess:
    """``codedeploy-server run`` in the background: ``with ServerProcess(files) as server``."""

    def __init__(self, files: ServerFiles, extra_arguments: Sequence[str] = ()) -> None:
        self.files = files
        self.marker = f"codedeploy-server-test-{uuid.uuid4().hex}"
        self._extra = list(extra_arguments)
        self.process: Optional[subprocess.Popen[str]] = None
        self.url = ""

    def start(self, timeout: float = 60.0) -> ServerProcess:
        log = self.files.log.open("a", encoding="utf-8")
        environ = {**server_environment(), "CODEDEPLOY_SERVER_TEST_MARKER": self.marker}
        self.process = subprocess.Popen(
            [
                SERVER_PROGRAM,
                "--config",
                str(self.files.config),
                "run",
                "--listen",
                "127.0.0.1:0",
                *self._extra,
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=environ,
        )
        log.close()
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        line = self.process.stdout.readline()
        while not line.startswith(READY_PREFIX):
            if not line or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"server did not start: {self.files.log.read_text()}")
            line = self.process.stdout.readline()
        self.url = line[len(READY_PREFIX) :].strip()
        return self

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then the exit status."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


@dataclass
class AwsCli:
    """The AWS CLI with its own HOME and credentials, pointed at a server."""

    home: Path
    endpoint_url: str
    credentials: Dict[str, str] = field(default_factory=dict)
    region: str = "us-east-1"

    def __post_init__(self) -> None:
        aws = self.home / ".aws"
        aws.mkdir(parents=True, exist_ok=True)
        (aws / "config").write_text(
            f"[default]\nregion = {self.region}\noutput = json\n"
            "[profile unvalidated]\nparameter_validation = false\n"
            f"region = {self.region}\noutput = json\n",
            encoding="utf-8",
        )
        self.use(self.credentials)

    def use(self, credentials: Dict[str, str]) -> None:
        """Write these credentials as the default and the ``unvalidated`` profile's."""
        self.credentials = credentials
        text = "".join(
            f"[{profile}]\naws_access_key_id = {credentials.get('AccessKeyId', '')}\n"
            f"aws_secret_access_key = {credentials.get('SecretAccessKey', '')}\n"
            for profile in ("default", "unvalidated")
        )
        (self.home / ".aws" / "credentials").write_text(text, encoding="utf-8")

    def run(
        self,
        *arguments: str,
        profile: Optional[str] = None,
        extra_environ: Optional[Dict[str, str]] = None,
    ) -> subprocess.CompletedProcess[str]:
        environ = {
            **server_environment(),
            "HOME": str(self.home),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_MAX_ATTEMPTS": "1",
            **(extra_environ or {}),
        }
        command = [AWS_PROGRAM, "--endpoint-url", self.endpoint_url, *arguments]
        if profile:
            command += ["--profile", profile]
        return subprocess.run(
            command, capture_output=True, text=True, env=environ, timeout=120, check=False
        )

    def ok(self, *arguments: str) -> Dict[str, object]:
        """Run a command that must succeed; its JSON output ({} when it printed nothing)."""
        completed = self.run(*arguments)
        assert completed.returncode == 0, completed.stderr
        return json.loads(completed.stdout) if completed.stdout.strip() else {}

    def error(self, *arguments: str, profile: Optional[str] = None) -> str:
        """Run a command that must fail; the error line the CLI printed."""
        completed = self.run(*arguments, profile=profile)
        assert completed.returncode != 0, completed.stdout
        return completed.stderr.strip()


def postgres_unavailable_reason() -> Optional[str]:
    for program in ("initdb", "postgres"):
        if not (POSTGRES_BIN / program).is_file():
            return f"PostgreSQL 15 is not installed ({POSTGRES_BIN / program} is missing)"
    if os.geteuid() != 0:
        return "starting PostgreSQL as the unprivileged user nobody needs root"
    return None


class PostgresCluster:
    """A PostgreSQL 15 cluster of its own, run by ``nobody``, reachable on a unix socket."""

    USER = "nobody"

    def __init__(self) -> None:
        import pwd

        entry = pwd.getpwnam(self.USER)
        self._uid, self._gid = entry.pw_uid, entry.pw_gid
        self.folder = Path(tempfile.mkdtemp(prefix="codedeploy-server-pg-", dir="/tmp"))
        os.chown(self.folder, self._uid, self._gid)
        self.data = self.folder / "data"
        self.socket_dir = self.folder
        self.process: Optional[subprocess.Popen[bytes]] = None

    def _as_owner(
        self, arguments: List[str], **options: object
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            arguments,
            user=self._uid,
            group=self._gid,
            extra_groups=[],
            cwd=self.folder,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            capture_output=True,
            check=True,
            timeout=120,
            **options,  # type: ignore[call-overload]
        )

    def start(self) -> PostgresCluster:
        self._as_owner(
            [
                str(POSTGRES_BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ]
        )
        self.process = subprocess.Popen(
            [
                str(POSTGRES_BIN / "postgres"),
                "-D",
                str(self.data),
                "-k",
                str(self.socket_dir),
                "-c",
                "listen_addresses=",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ],
            user=self._uid,
            group=self._gid,
            extra_groups=[],
            cwd=self.folder,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            stdout=subprocess.DEVNULL,
            stderr=(self.folder / "postgres.log").open("ab"),
        )
        deadline = time.monotonic() + 60
        while not (self.socket_dir / ".s.PGSQL.5432").exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((self.folder / "postgres.log").read_text(errors="replace"))
            time.sleep(0.05)
        return self

    def create_database(self, name: Optional[str] = None) -> str:
        """A new empty database; its SQLAlchemy URL."""
        import psycopg

        name = name or f"test_{uuid.uuid4().hex[:12]}"
        for _ in range(200):  # the socket exists a moment before connections are accepted
            try:
                with psycopg.connect(
                    host=str(self.socket_dir), user="postgres", dbname="postgres", autocommit=True
                ) as connection:
                    connection.execute(f'CREATE DATABASE "{name}"')
                break
            except psycopg.OperationalError:
                time.sleep(0.05)
        return f"postgresql+psycopg://postgres@/{name}?host={self.socket_dir}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
